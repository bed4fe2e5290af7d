//! `doctor` against fake machines: a healthy subnet client passes every
//! check, and each breakage gives exactly the FAIL that names it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};

use super::*;
use crate::broker::{ClientOs, ServerMode};
use crate::openvpn::ClientMaterial;
use crate::openvpn::tests::{client_with, hermit, pool, subnet};
use crate::pki::{Ca, CaParams, Issued, KeyType, TlsCryptKey};
use crate::plan::ClientKind;

#[derive(Clone)]
struct Fake {
    openvpn: Option<String>,
    ip: bool,
    tun: Option<bool>,
    files: HashMap<&'static str, String>,
    ifaces: Vec<(&'static str, &'static str, Vec<String>)>,
    routes: Vec<(String, Option<&'static str>, &'static str)>,
    ping_ok: Option<bool>,
    now: OffsetDateTime,
    pings: RefCell<Vec<String>>,
}

impl System for Fake {
    fn run(&self, program: &str, args: &[&str]) -> Option<CommandOutput> {
        let ok = |stdout: String| {
            Some(CommandOutput {
                success: true,
                stdout,
                stderr: String::new(),
            })
        };
        match (program, args) {
            ("openvpn", ["--version"]) => self.openvpn.clone().map(|v| CommandOutput {
                success: false, // as the real one on many versions
                stdout: v,
                stderr: String::new(),
            }),
            ("ip", ["-j", "addr"]) if self.ip => {
                let list: Vec<_> = self
                    .ifaces
                    .iter()
                    .map(|(name, lt, addrs)| {
                        let info: Vec<_> = addrs
                            .iter()
                            .map(|a| {
                                let (addr, len) = a.split_once('/').unwrap();
                                serde_json::json!({"family": "inet6", "local": addr,
                                    "prefixlen": len.parse::<u8>().unwrap(), "scope": "global"})
                            })
                            .collect();
                        serde_json::json!({"ifname": name, "link_type": lt, "addr_info": info})
                    })
                    .collect();
                ok(serde_json::to_string(&list).unwrap())
            }
            ("ip", ["-j", "-6", "route"]) if self.ip => {
                let list: Vec<_> = self
                    .routes
                    .iter()
                    .map(|(dst, dev, ty)| {
                        let mut v = serde_json::json!({"dst": dst, "metric": 1024});
                        if let Some(d) = dev {
                            v["dev"] = (*d).into();
                        }
                        if *ty != "unicast" {
                            v["type"] = (*ty).into();
                        }
                        v
                    })
                    .collect();
                ok(serde_json::to_string(&list).unwrap())
            }
            ("ping", ["-6", "-c1", "-W2", target]) => {
                self.pings.borrow_mut().push((*target).to_owned());
                self.ping_ok.map(|success| CommandOutput {
                    success,
                    ..CommandOutput::default()
                })
            }
            _ => None,
        }
    }

    fn read(&self, path: &str) -> Option<String> {
        self.files.get(path).cloned()
    }

    fn is_char_device(&self, _path: &str) -> Option<bool> {
        self.tun
    }

    fn now(&self) -> OffsetDateTime {
        self.now
    }
}

const ROUTING_END: &str = "2001:db8:0:f100::f1ab:2";
const SERVER_END: &str = "2001:db8:0:f100::f1ab:1";
const LAN_ADDR: &str = "2001:db8:0:f1ab::1/64";

/// A healthy subnet client (per-client mode, tunnel up).
fn healthy() -> Fake {
    let mut files = HashMap::new();
    files.insert(
        "/proc/net/if_inet6",
        "00000000000000000000000000000001 01 80 10 80 lo\n".into(),
    );
    files.insert("/proc/sys/net/ipv6/conf/all/disable_ipv6", "0\n".into());
    files.insert("/proc/sys/net/ipv6/conf/all/forwarding", "1\n".into());
    Fake {
        openvpn: Some("OpenVPN 2.6.14 x86_64-pc-linux-gnu [SSL (OpenSSL)]\n".into()),
        ip: true,
        tun: Some(true),
        files,
        ifaces: vec![
            ("lo", "loopback", vec!["::1/128".into()]),
            ("eth0", "ether", vec![LAN_ADDR.into(), "fe80::5/64".into()]),
            (
                "tun0",
                "none",
                vec![format!("{ROUTING_END}/112"), "fe80::f1ab:2/64".into()],
            ),
        ],
        routes: vec![
            (
                "2001:db8:0:f100::f1ab:0/112".into(),
                Some("tun0"),
                "unicast",
            ),
            ("2000::/4".into(), Some("tun0"), "unicast"),
            ("3000::/4".into(), Some("tun0"), "unicast"),
            ("2001:db8:0:f1ab::/64".into(), Some("eth0"), "unicast"),
            ("fe80::/64".into(), Some("eth0"), "unicast"),
            ("default".into(), Some("eth0"), "unicast"),
        ],
        ping_ok: Some(true),
        now: OffsetDateTime::now_utc(),
        pings: RefCell::new(Vec::new()),
    }
}

struct Bundle {
    _dir: tempfile::TempDir,
    conf: PathBuf,
    ca: Ca,
    issued: Issued,
}

/// A client bundle as the broker writes it: the real renderer's files,
/// with the facts line and the material inline.
fn bundle(kind: ClientKind, mode: ServerMode) -> Bundle {
    let ca = Ca::generate(&CaParams::default()).unwrap();
    let id: crate::ClientId = "alice".parse().unwrap();
    let issued = ca.issue_client(&id, KeyType::P256, 365).unwrap();
    let tls = TlsCryptKey::generate().unwrap();
    let a = match kind {
        ClientKind::Subnet => subnet(),
        ClientKind::Hermit => hermit(),
    };
    let material = ClientMaterial::new(
        ca.certificate().pem(),
        issued.certificate.pem(),
        Some(issued.key.to_pem()),
        tls.to_text(),
    )
    .unwrap();
    let cfg = client_with("alice", a, ClientOs::Linux, mode, material);
    // The renderer and BundleFacts::new agree on what the client should have.
    assert_eq!(
        cfg.facts(),
        BundleFacts::new(&id, &a, &pool(), mode, "eth0")
    );
    let dir = tempfile::tempdir().unwrap();
    for f in cfg.emit().unwrap() {
        std::fs::write(dir.path().join(&f.name), &f.text).unwrap();
    }
    Bundle {
        conf: dir.path().join(cfg.file_name()),
        _dir: dir,
        ca,
        issued,
    }
}

fn doctor(b: &Bundle, sys: &Fake) -> Report {
    run(&b.conf, &DoctorOptions::default(), sys)
}

fn fails(r: &Report) -> Vec<&str> {
    r.with_status(Status::Fail)
        .map(|c| c.name.as_str())
        .collect()
}

/// Exactly one FAIL, the named one.
fn assert_only_fail(r: &Report, name: &str) {
    assert_eq!(fails(r), [name], "{r}");
}

#[test]
fn a_healthy_subnet_client_passes_everything_with_one_ping() {
    let b = bundle(ClientKind::Subnet, ServerMode::PerClient);
    let sys = healthy();
    let r = doctor(&b, &sys);
    assert_eq!(r.count(Status::Pass), r.checks.len(), "{r}");
    for name in client::CHECKS {
        assert_eq!(r.status_of(name), Some(Status::Pass), "{name}: {r}");
    }
    assert_eq!(*sys.pings.borrow(), [SERVER_END]);
}

/// A change that breaks a healthy machine.
type Breakage = Box<dyn Fn(&mut Fake)>;

#[test]
fn each_system_breakage_fails_exactly_its_check() {
    let b = bundle(ClientKind::Subnet, ServerMode::PerClient);
    let cases: Vec<(&str, Breakage)> = vec![
        ("openvpn", Box::new(|f| f.openvpn = None)),
        (
            "openvpn",
            Box::new(|f| f.openvpn = Some("OpenVPN 2.5.1 x86_64\n".into())),
        ),
        ("tun-device", Box::new(|f| f.tun = None)),
        ("tun-device", Box::new(|f| f.tun = Some(false))),
        (
            "ipv6",
            Box::new(|f| {
                f.files.remove("/proc/net/if_inet6");
            }),
        ),
        (
            "ipv6",
            Box::new(|f| {
                f.files
                    .insert("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1\n".into());
            }),
        ),
        (
            "forwarding",
            Box::new(|f| {
                f.files
                    .insert("/proc/sys/net/ipv6/conf/all/forwarding", "0\n".into());
            }),
        ),
        (
            "lan-address",
            Box::new(|f| f.ifaces[1].2.retain(|a| a != LAN_ADDR)),
        ),
        (
            "lan-address",
            Box::new(|f| {
                f.ifaces[1].2 = vec!["2001:db8:0:f1ab::1/80".into()];
            }),
        ),
        (
            "route",
            Box::new(|f| f.routes.retain(|r| !r.0.ends_with("/4"))),
        ),
        (
            "route",
            Box::new(|f| {
                f.routes
                    .retain(|r| !r.0.ends_with("/4") && r.0 != "default");
            }),
        ),
        (
            "route",
            Box::new(|f| {
                f.routes
                    .push(("2a00::/12".into(), Some("lo"), "unreachable"))
            }),
        ),
        ("ping", Box::new(|f| f.ping_ok = Some(false))),
        (
            "prefix-owner",
            Box::new(|f| f.ifaces[2].2.push("2001:db8:0:f1ab::99/64".into())),
        ),
        (
            "prefix-owner",
            Box::new(|f| {
                f.routes
                    .push(("2001:db8:0:f1ab:1::/80".into(), Some("tun0"), "unicast"));
            }),
        ),
        (
            "tunnel",
            Box::new(|f| f.ifaces[2].2.retain(|a| !a.starts_with(ROUTING_END))),
        ),
    ];
    for (name, breakage) in cases {
        let mut sys = healthy();
        breakage(&mut sys);
        let r = doctor(&b, &sys);
        assert_only_fail(&r, name);
        let c = r.checks.iter().find(|c| c.status == Status::Fail).unwrap();
        assert!(c.hint.as_deref().is_some_and(|h| !h.is_empty()), "{r}");
    }
}

#[test]
fn each_material_breakage_fails_exactly_its_check() {
    let b = bundle(ClientKind::Subnet, ServerMode::PerClient);
    let text = std::fs::read_to_string(&b.conf).unwrap();
    let other_ca = Ca::generate(&CaParams::default()).unwrap();
    let bob =
        b.ca.issue_client(&"bob".parse().unwrap(), KeyType::P256, 365)
            .unwrap();
    let foreign = other_ca
        .issue_client(&"alice".parse().unwrap(), KeyType::P256, 365)
        .unwrap();
    let key = b.issued.key.to_pem();
    let cert = b.issued.certificate.pem();
    let cases: Vec<(&str, String)> = vec![
        // the key of another client
        ("key", text.replace(key, bob.key.to_pem())),
        // another client's certificate and key
        (
            "certificate",
            text.replace(cert, bob.certificate.pem())
                .replace(key, bob.key.to_pem()),
        ),
        // a certificate of another CA
        (
            "certificate",
            text.replace(cert, foreign.certificate.pem())
                .replace(key, foreign.key.to_pem()),
        ),
        ("ca", text.replace(b.ca.certificate().pem(), cert)),
        (
            "tls-crypt",
            text.replace("-----END OpenVPN Static key V1-----", ""),
        ),
        (
            "key",
            text.replace("<key>", "<nokey>")
                .replace("</key>", "</nokey>"),
        ),
        ("config", text.replace("</ca>", "")),
        ("assignment", text.replace("kind=subnet", "kind=router")),
        // the facts line and `ifconfig-ipv6` disagree
        (
            "assignment",
            text.replace(
                &format!("server={SERVER_END}"),
                "server=2001:db8:0:f100::f1ab:3",
            ),
        ),
    ];
    for (name, t) in cases {
        std::fs::write(&b.conf, &t).unwrap();
        let r = doctor(&b, &healthy());
        assert_only_fail(&r, name);
    }
}

/// A bundle of an intermediate CA carries its chain in `<ca>`: the
/// issuing CA first, then its issuers (any order OpenVPN accepts passes).
#[test]
fn a_ca_chain_in_the_bundle_passes() {
    let b = bundle(ClientKind::Subnet, ServerMode::PerClient);
    let text = std::fs::read_to_string(&b.conf).unwrap();
    let ca = b.ca.certificate().pem();
    let root = Ca::generate(&CaParams::default()).unwrap();
    let root = root.certificate().pem();
    for chain in [format!("{ca}{root}"), format!("{root}{ca}")] {
        std::fs::write(&b.conf, text.replace(ca, &chain)).unwrap();
        let r = doctor(&b, &healthy());
        assert_eq!(fails(&r), Vec::<&str>::new(), "{r}");
    }
}

#[test]
fn an_expired_or_expiring_certificate_is_named() {
    let b = bundle(ClientKind::Subnet, ServerMode::PerClient);
    let not_after = b.issued.certificate.info().not_after;
    let mut sys = healthy();
    sys.now = not_after + Duration::days(2);
    assert_only_fail(&doctor(&b, &sys), "validity");
    sys.now = not_after - Duration::days(10);
    let r = doctor(&b, &sys);
    assert!(!r.failed(), "{r}");
    assert_eq!(r.status_of("validity"), Some(Status::Warn));
    // Before notBefore the CA is not valid either: a wrong clock.
    sys.now = b.issued.certificate.info().not_before - Duration::days(1);
    assert_eq!(doctor(&b, &sys).status_of("validity"), Some(Status::Fail));
}

#[test]
fn a_tunnel_that_is_down_is_a_warning_and_sends_nothing() {
    let b = bundle(ClientKind::Subnet, ServerMode::PerClient);
    let mut sys = healthy();
    sys.ifaces.truncate(2);
    sys.files
        .insert("/proc/sys/net/ipv6/conf/all/forwarding", "0\n".into());
    let r = doctor(&b, &sys);
    assert!(!r.failed(), "{r}");
    assert_eq!(r.status_of("tunnel"), Some(Status::Warn));
    for name in ["route", "ping", "forwarding", "lan-address", "prefix-owner"] {
        assert_eq!(r.status_of(name), Some(Status::Skip), "{name}");
    }
    assert!(sys.pings.borrow().is_empty());
    // --no-ping sends nothing either.
    let sys = healthy();
    let opts = DoctorOptions {
        ping: false,
        ..DoctorOptions::default()
    };
    let r = run(&b.conf, &opts, &sys);
    assert_eq!(r.status_of("ping"), Some(Status::Skip));
    assert!(sys.pings.borrow().is_empty());
}

#[test]
fn missing_tools_are_reported_not_panicked_on() {
    let b = bundle(ClientKind::Subnet, ServerMode::PerClient);
    let mut sys = healthy();
    sys.ip = false;
    let r = doctor(&b, &sys);
    assert_only_fail(&r, "tunnel");
    let mut sys = healthy();
    sys.ping_ok = None;
    let r = doctor(&b, &sys);
    assert_eq!(r.status_of("ping"), Some(Status::Warn));
    let mut sys = healthy();
    sys.openvpn = Some("something else\n".into());
    assert_eq!(doctor(&b, &sys).status_of("openvpn"), Some(Status::Warn));
}

#[test]
fn a_hermit_pings_the_link_local_server_on_the_tunnel() {
    let b = bundle(ClientKind::Hermit, ServerMode::PerClient);
    let mut sys = healthy();
    sys.ifaces[2].2 = vec!["2001:db8:0:f1ff::7/64".into()];
    sys.files
        .insert("/proc/sys/net/ipv6/conf/all/forwarding", "0\n".into());
    sys.ifaces[1].2.clear();
    let r = doctor(&b, &sys);
    assert!(!r.failed(), "{r}");
    assert_eq!(r.status_of("forwarding"), None);
    let names: Vec<&str> = r.checks.iter().map(|c| &*c.name).collect();
    assert_eq!(names, client::CHECKS[..13], "the subnet checks come last");
    assert_eq!(*sys.pings.borrow(), ["fe80::1%tun0"]);
}

#[test]
fn a_shared_mode_client_pings_the_routing_nets_first_address() {
    let b = bundle(ClientKind::Subnet, ServerMode::Shared);
    let mut sys = healthy();
    sys.ifaces[2].2 = vec![format!("{ROUTING_END}/64")];
    let r = doctor(&b, &sys);
    assert!(!r.failed(), "{r}");
    assert_eq!(*sys.pings.borrow(), ["2001:db8:0:f100::1"]);
}

#[test]
fn the_lan_interface_can_be_named() {
    let b = bundle(ClientKind::Subnet, ServerMode::PerClient);
    let mut sys = healthy();
    sys.ifaces[1].0 = "lan0";
    for r in sys.routes.iter_mut() {
        if r.1 == Some("eth0") {
            r.1 = Some("lan0");
        }
    }
    assert_only_fail(&doctor(&b, &sys), "lan-address");
    let opts = DoctorOptions {
        lan_interface: Some("lan0".parse().unwrap()),
        ..DoctorOptions::default()
    };
    assert!(!run(&b.conf, &opts, &sys).failed());
    let text = std::fs::read_to_string(&b.conf).unwrap();
    std::fs::write(&b.conf, format!("{text}setenv TUNNELBROKER_LAN_IF lan0\n")).unwrap();
    assert!(!doctor(&b, &sys).failed());
}

#[test]
fn unreadable_configurations_fail_the_config_check_only() {
    let dir = tempfile::tempdir().unwrap();
    let sys = healthy();
    let bin = dir.path().join("bin.conf");
    std::fs::write(&bin, [0xffu8, 0, 1, 2]).unwrap();
    for p in [
        dir.path().join("missing.conf"),
        dir.path().to_path_buf(),
        bin,
    ] {
        let r = run(&p, &DoctorOptions::default(), &sys);
        assert_only_fail(&r, "config");
        // The path is named once, then why.
        let config = r.checks.iter().find(|c| c.name == "config").unwrap();
        assert_eq!(
            config.message.matches(&*p.display().to_string()).count(),
            1,
            "{}",
            config.message
        );
        // The rest is skipped, in the order of CHECKS, up to the ping.
        let names: Vec<&str> = r.checks.iter().map(|c| &*c.name).collect();
        assert_eq!(names, client::CHECKS[..13], "{r}");
    }
    let _ = Path::new("");
}

#[test]
fn a_config_without_facts_derives_them_or_warns() {
    let b = bundle(ClientKind::Subnet, ServerMode::PerClient);
    let text = std::fs::read_to_string(&b.conf).unwrap();
    let no_facts: String = text
        .lines()
        .filter(|l| !l.contains(FACTS_TAG))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&b.conf, &no_facts).unwrap();
    let r = doctor(&b, &healthy());
    assert!(!r.failed(), "{r}");
    let bare: String = no_facts
        .lines()
        .filter(|l| !l.starts_with("ifconfig-ipv6"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&b.conf, bare).unwrap();
    let r = doctor(&b, &healthy());
    assert!(!r.failed(), "{r}");
    assert_eq!(r.status_of("assignment"), Some(Status::Warn));
    assert_eq!(r.status_of("tunnel"), Some(Status::Skip));
}

#[test]
fn a_missing_lan_interface_is_named_and_forwarding_is_not_blamed() {
    // What the up script leaves when the LAN interface is missing: the
    // tunnel is up, forwarding untouched (off), the host's uplink is wlan0.
    let b = bundle(ClientKind::Subnet, ServerMode::PerClient);
    let mut sys = healthy();
    sys.ifaces[1] = ("wlan0", "ether", vec!["fe80::5/64".into()]);
    sys.routes.retain(|r| r.0 != "2001:db8:0:f1ab::/64");
    for r in sys.routes.iter_mut() {
        if r.1 == Some("eth0") {
            r.1 = Some("wlan0");
        }
    }
    sys.files
        .insert("/proc/sys/net/ipv6/conf/all/forwarding", "0\n".into());
    let r = doctor(&b, &sys);
    assert_only_fail(&r, "lan-address");
    let lan = r.checks.iter().find(|c| c.name == "lan-address").unwrap();
    assert!(
        lan.message
            .contains("the LAN interface \"eth0\" does not exist")
            && lan
                .message
                .contains("the LAN got no prefix (2001:db8:0:f1ab::/64)"),
        "{r}"
    );
    assert_eq!(r.status_of("forwarding"), Some(Status::Skip), "{r}");
    assert_eq!(r.status_of("prefix-owner"), Some(Status::Skip), "{r}");
    assert_eq!(r.status_of("tunnel"), Some(Status::Pass), "{r}");
}

/// Issue 15: a configuration with a tls-crypt-v2 key of its own passes
/// when the key is well formed; a damaged one, or a configuration with
/// both kinds of key, fails the `tls-crypt` check alone.
#[test]
fn a_tls_crypt_v2_key_is_checked() {
    use crate::pki::TlsCryptV2ServerKey;
    let b = bundle(ClientKind::Subnet, ServerMode::PerClient);
    let text = std::fs::read_to_string(&b.conf).unwrap();
    let start = text.find("<tls-crypt>\n").unwrap();
    let end = text.find("</tls-crypt>\n").unwrap() + "</tls-crypt>\n".len();
    let v1_block = &text[start..end];
    let server = TlsCryptV2ServerKey::generate().unwrap();
    let key = server.client_key(&[0, b'x']).unwrap().to_pem();
    let v2_block = format!("<tls-crypt-v2>\n{key}</tls-crypt-v2>\n");
    let v2 = text.replace(v1_block, &v2_block);
    std::fs::write(&b.conf, &v2).unwrap();
    let r = doctor(&b, &healthy());
    assert!(fails(&r).is_empty(), "{r}");
    let check = r.checks.iter().find(|c| c.name == "tls-crypt").unwrap();
    assert!(check.message.contains("tls-crypt-v2"), "{r}");
    for broken in [
        v2.replace("-----END OpenVPN tls-crypt-v2 client key-----", ""),
        v2.replace(&key, &key.replace("client key", "server key")),
        v2.replace(&v2_block, &format!("{v2_block}{v1_block}")),
        v2.replace(&v2_block, "<tls-crypt-v2>\n\n</tls-crypt-v2>\n"),
    ] {
        std::fs::write(&b.conf, &broken).unwrap();
        assert_only_fail(&doctor(&b, &healthy()), "tls-crypt");
    }
}
