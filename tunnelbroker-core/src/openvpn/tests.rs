//! Snapshot and hostile-input tests of the rendered files.

use super::*;
use crate::broker::{ClientOs, ServerMode};
use crate::{Assignment, ClientId, Pool};

const CA: &str = "-----BEGIN CERTIFICATE-----\nQ0EgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
const CERT: &str = "-----BEGIN CERTIFICATE-----\nY2xpZW50IGNlcnQ=\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nY2xpZW50IGtleQ==\n-----END PRIVATE KEY-----\n";
const TC: &str = "#\n# 2048 bit OpenVPN static key\n#\n-----BEGIN OpenVPN Static key V1-----\n00112233445566778899aabbccddeeff\n-----END OpenVPN Static key V1-----\n";

pub(crate) fn pool() -> Pool {
    "2001:db8:0:f100::/56".parse().unwrap()
}
/// 2001:db8:0:f1ab::/64 of [`pool`].
pub(crate) fn subnet() -> Assignment {
    Assignment::Subnet(
        pool()
            .subnet("2001:db8:0:f1ab::/64".parse().unwrap())
            .unwrap(),
    )
}
/// 2001:db8:0:f1ff::7 of [`pool`].
pub(crate) fn hermit() -> Assignment {
    Assignment::Hermit(
        pool()
            .hermit("2001:db8:0:f1ff::7".parse().unwrap())
            .unwrap(),
    )
}
fn id(s: &str) -> ClientId {
    s.parse().unwrap()
}

fn client(name: &str, a: Assignment, os: ClientOs, mode: ServerMode) -> ClientConfig {
    let material = ClientMaterial::new(CA, CERT, Some(KEY), TC).unwrap();
    client_with(name, a, os, mode, material)
}

/// A client of [`pool`] on vpn.example.org:5000 with `material`.
pub(crate) fn client_with(
    name: &str,
    a: Assignment,
    os: ClientOs,
    mode: ServerMode,
    material: ClientMaterial,
) -> ClientConfig {
    ClientConfig {
        client: id(name),
        assignment: a,
        os,
        mode,
        server_address: server_address(mode, &pool(), &a),
        remote: Endpoint::new("vpn.example.org").unwrap(),
        port: 5000,
        server_name: CommonName::new("tunnelbroker-server").unwrap(),
        lan_interface: InterfaceName::new("eth0").unwrap(),
        material,
    }
}

fn all(files: &[RenderedFile]) -> String {
    files
        .iter()
        .map(|f| {
            format!(
                "===== {}{} =====\n{}",
                f.name,
                if f.executable { " (0755)" } else { "" },
                f.text
            )
        })
        .collect()
}

#[test]
fn per_client_server_subnet() {
    let s = PerClientServer::new(id("alice"), subnet(), 5000, ServerOptions::default()).unwrap();
    insta::assert_snapshot!(all(&s.emit().unwrap()));
}

#[test]
fn per_client_server_hermit() {
    let s = PerClientServer::new(id("bob"), hermit(), 5001, ServerOptions::default()).unwrap();
    let files = s.emit().unwrap();
    assert_eq!(files.len(), 1, "a hermit instance needs no scripts");
    insta::assert_snapshot!(all(&files));
}

#[test]
fn shared_server_with_ccd() {
    let s = SharedServer::new(pool(), 5000, ServerOptions::default()).unwrap();
    let (a, b) = (id("alice"), id("bob"));
    let (sa, hb) = (subnet(), hermit());
    insta::assert_snapshot!(all(&s.emit([(&a, &sa), (&b, &hb)]).unwrap()));
}

#[test]
fn linux_clients() {
    for (name, a, t) in [
        ("linux_subnet_per_client", subnet(), ServerMode::PerClient),
        ("linux_hermit_per_client", hermit(), ServerMode::PerClient),
        ("linux_subnet_shared", subnet(), ServerMode::Shared),
        ("linux_hermit_shared", hermit(), ServerMode::Shared),
    ] {
        let c = client("alice", a, ClientOs::Linux, t);
        insta::assert_snapshot!(name, all(&c.emit().unwrap()));
    }
}

#[test]
fn windows_clients() {
    for (name, a, t) in [
        ("windows_subnet_per_client", subnet(), ServerMode::PerClient),
        ("windows_hermit_shared", hermit(), ServerMode::Shared),
    ] {
        let c = client("alice", a, ClientOs::Windows, t);
        let files = c.emit().unwrap();
        assert_eq!(files.len(), 2, "a Windows bundle has no scripts");
        let conf = &files[0].text;
        for unknown in ["\nup ", "\ndown ", "script-security", "\nuser ", "plugin"] {
            assert!(!conf.contains(unknown), "{unknown} in {conf}");
        }
        insta::assert_snapshot!(name, all(&files));
    }
}

#[test]
fn csr_client_reads_its_own_key_file() {
    let mut c = client("carol", hermit(), ClientOs::Linux, ServerMode::Shared);
    c.material.key = None;
    let text = c.config().to_string();
    assert!(text.contains("\nkey carol.key\n"), "{text}");
    assert!(!text.contains("<key>"), "{text}");
    assert!(c.readme().to_string().contains("carol.key"));
}

#[test]
fn every_config_avoids_what_openvpn_26_refuses_or_ignores() {
    let per = PerClientServer::new(id("alice"), subnet(), 5000, ServerOptions::default()).unwrap();
    let shared = SharedServer::new(pool(), 5000, ServerOptions::default()).unwrap();
    let mut texts = vec![
        per.config().unwrap().to_string(),
        shared.config().unwrap().to_string(),
    ];
    for t in [ServerMode::PerClient, ServerMode::Shared] {
        for p in [ClientOs::Linux, ClientOs::Windows] {
            texts.push(client("alice", subnet(), p, t).config().to_string());
        }
    }
    for text in &texts {
        for bad in [
            "tun-ipv6",
            "\ncipher ",
            "data-ciphers-fallback",
            "ncp-disable",
            "comp-lzo",
            "\ncompress",
            "tls-auth",
        ] {
            assert!(!text.contains(bad), "{bad} in\n{text}");
        }
    }
    for server in &texts[..2] {
        assert!(server.contains("\ndh none\n"));
        assert!(server.contains("\nremote-cert-tls client\n"));
        assert!(server.contains("\ncrl-verify /etc/openvpn/server/crl.pem\n"));
        assert!(server.contains("\nuser nobody\ngroup nogroup\n"));
        // OpenVPN logs to stdout (the journal) and stays in the foreground
        // under systemd.
        for bad in ["log-append", "log ", "daemon"] {
            assert!(!server.contains(&format!("\n{bad}")), "{bad} in\n{server}");
        }
    }
}

/// The lines of `text` that set `option`, as their arguments.
fn option_args<'a>(text: &'a str, option: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix(option)?.strip_prefix(' '))
        .collect()
}

#[test]
fn configs_are_ready_for_data_channel_offload_and_carry_the_fast_defaults() {
    // Issue 19: what DCO needs (topology subnet in server mode, AEAD data
    // ciphers only, no compression), 4 MiB socket buffers and a tun queue
    // of 1000, on both ends.
    let per = PerClientServer::new(id("alice"), subnet(), 5000, ServerOptions::default()).unwrap();
    let shared = SharedServer::new(pool(), 5000, ServerOptions::default()).unwrap();
    let mut texts = vec![
        ("per-client server", per.config().unwrap().to_string(), true),
        ("shared server", shared.config().unwrap().to_string(), true),
    ];
    for t in [ServerMode::PerClient, ServerMode::Shared] {
        for p in [ClientOs::Linux, ClientOs::Windows] {
            let text = client("alice", subnet(), p, t).config().to_string();
            texts.push(("client", text, p == ClientOs::Linux));
        }
    }
    for (what, text, linux) in &texts {
        assert_eq!(option_args(text, "data-ciphers"), [DATA_CIPHERS], "{what}");
        for cipher in DATA_CIPHERS.split(':') {
            assert!(
                cipher.ends_with("-GCM") || cipher == "CHACHA20-POLY1305",
                "{cipher} is not AEAD"
            );
        }
        assert_eq!(option_args(text, "allow-compression"), ["no"], "{what}");
        assert_eq!(option_args(text, "sndbuf"), ["4194304"], "{what}");
        assert_eq!(option_args(text, "rcvbuf"), ["4194304"], "{what}");
        // OpenVPN for Windows refuses txqueuelen.
        let queue: &[&str] = if *linux { &["4000"] } else { &[] };
        assert_eq!(option_args(text, "txqueuelen"), queue, "{what}");
    }
    let text = &texts[1].1;
    assert_eq!(option_args(text, "topology"), ["subnet"]);
    assert!(text.contains("\nmode server\ntopology subnet\n"), "{text}");
    // Sized for the clients: OpenVPN's own 1024 at least, room for twice
    // the clients, and the whole storm answered within ten seconds.
    assert_eq!(option_args(text, "max-clients"), ["1024"]);
    assert_eq!(option_args(text, "connect-freq-initial"), ["1024 10"]);
    assert_eq!(option_args(text, "hash-size"), ["1024 1024"]);
    let big = shared
        .clone()
        .with_clients(10_000)
        .config()
        .unwrap()
        .to_string();
    assert_eq!(option_args(&big, "max-clients"), ["32768"]);
    assert_eq!(option_args(&big, "connect-freq-initial"), ["32768 10"]);
    // emit sizes the server for the clients it is given.
    let (a, sa) = (id("alice"), subnet());
    let ids: Vec<ClientId> = (0..600).map(|i| id(&format!("c{i}"))).collect();
    let many: Vec<(&ClientId, &Assignment)> = ids.iter().map(|c| (c, &sa)).collect();
    let files = shared.emit(many).unwrap();
    assert_eq!(option_args(&files[0].text, "max-clients"), ["2048"]);
    let files = shared.emit([(&a, &sa)]).unwrap();
    assert_eq!(option_args(&files[0].text, "max-clients"), ["1024"]);
    // The per-client server is point to point: no server-mode sizing.
    assert!(option_args(&texts[0].1, "max-clients").is_empty());
    assert!(option_args(&texts[0].1, "topology").is_empty());
}

#[test]
fn server_configs_name_every_runtime_file_by_absolute_path_in_the_rendered_dir() {
    let options = ServerOptions::new(
        ConfigPath::new("/srv/vpn").unwrap(),
        ConfigPath::new("/run/vpn").unwrap(),
    )
    .unwrap();
    let per = PerClientServer::new(id("alice"), subnet(), 5000, options.clone()).unwrap();
    let shared = SharedServer::new(pool(), 5000, options).unwrap();
    for conf in [per.config().unwrap(), shared.config().unwrap()] {
        let conf = conf.to_string();
        for (key, file) in [
            ("ca", "ca.crt"),
            ("cert", "server.crt"),
            ("key", "server.key"),
            ("tls-crypt-v2", "tls-crypt-v2-server.key"),
            ("tls-crypt-v2-verify", "tls-crypt-v2-verify"),
            ("crl-verify", "crl.pem"),
        ] {
            assert!(
                conf.contains(&format!("\n{key} /srv/vpn/{file}\n")),
                "{key} in\n{conf}"
            );
        }
        assert!(
            conf.contains("\nmanagement /run/vpn/tb5000.sock unix\n"),
            "{conf}"
        );
    }
    assert!(
        shared
            .config()
            .unwrap()
            .to_string()
            .contains("\nclient-config-dir /srv/vpn/ccd\n")
    );
    assert!(
        per.config()
            .unwrap()
            .to_string()
            .contains("\nup /srv/vpn/tb-client-alice.up\n")
    );
}

#[test]
fn tls_crypt_v1_servers_name_the_shared_key_and_run_no_verify_program() {
    let mut options = ServerOptions::new(
        ConfigPath::new("/srv/vpn").unwrap(),
        ConfigPath::new("/run/vpn").unwrap(),
    )
    .unwrap();
    options.tls_crypt = crate::words::TlsCryptVersion::V1;
    let per = PerClientServer::new(id("alice"), subnet(), 5000, options.clone()).unwrap();
    let hermit = PerClientServer::new(id("bob"), hermit(), 5001, options.clone()).unwrap();
    let shared = SharedServer::new(pool(), 5000, options).unwrap();
    for conf in [per.config(), hermit.config(), shared.config()] {
        let conf = conf.unwrap().to_string();
        assert!(
            conf.contains("\ntls-crypt /srv/vpn/tls-crypt.key\n"),
            "{conf}"
        );
        assert!(!conf.contains("tls-crypt-v2"), "{conf}");
    }
    // The subnet instance still allows its up script; the others run none.
    assert!(
        per.config()
            .unwrap()
            .to_string()
            .contains("\nscript-security 2\n")
    );
    assert!(
        !hermit
            .config()
            .unwrap()
            .to_string()
            .contains("script-security")
    );
    // With v2 every instance allows scripts exactly once.
    let v2 = PerClientServer::new(id("alice"), subnet(), 5000, ServerOptions::default()).unwrap();
    assert_eq!(
        v2.config()
            .unwrap()
            .to_string()
            .matches("script-security")
            .count(),
        1
    );
}

/// The CCD entry formats each address once (issue 19); its text is still
/// exactly the description of [`describe`] and the two directives with the
/// addresses as `Ipv6Addr`/`Ipv6Net` print them, for every kind of address
/// (zero runs in any place, the longest run chosen, no run at all).
#[test]
fn ccd_text_formats_each_address_once_and_says_the_same() {
    let s = SharedServer::new(pool(), 5000, ServerOptions::default()).unwrap();
    let gateway = s.server_address();
    let mut assignments = Vec::new();
    for n in [0x01u16, 0x10, 0xab, 0xfe] {
        let net = format!("2001:db8:0:f1{n:02x}::/64").parse().unwrap();
        if let Ok(sub) = pool().subnet(net) {
            assignments.push(Assignment::Subnet(sub));
        }
    }
    for h in [
        "2001:db8:0:f1ff::7",
        "2001:db8:0:f1ff:0:0:1:0",
        "2001:db8:0:f1ff:1::1",
        "2001:db8:0:f1ff:1:0:0:1",
        "2001:db8:0:f1ff:ffff:ffff:ffff:fffe",
        "2001:db8:0:f1ff:0:1:0:0",
    ] {
        if let Ok(her) = pool().hermit(h.parse().unwrap()) {
            assignments.push(Assignment::Hermit(her));
        }
    }
    assert!(assignments.len() >= 7, "{assignments:?}");
    for a in &assignments {
        let (tunnel, iroute) = match a {
            Assignment::Subnet(s) => (s.client_end(), s.prefix()),
            Assignment::Hermit(h) => (h.address(), h.prefix()),
        };
        let want = format!(
            "# tunnelbroker: client alice: {}\nifconfig-ipv6-push {tunnel}/64 {gateway}\niroute-ipv6 {iroute}\n",
            super::server::describe(a)
        );
        assert_eq!(s.ccd(&id("alice"), a).unwrap().to_string(), want);
        let files = s.emit([(&id("alice"), a)]).unwrap();
        assert_eq!(files[1].text, want);
    }
}

#[test]
fn ccd_has_exactly_one_push_and_the_per_client_addresses() {
    let s = SharedServer::new(pool(), 5000, ServerOptions::default()).unwrap();
    let sub = s.ccd(&id("alice"), &subnet()).unwrap().to_string();
    assert_eq!(sub.matches("ifconfig-ipv6-push").count(), 1);
    // Same tunnel address as in per-client mode: routing::H:2.
    assert!(sub.contains("ifconfig-ipv6-push 2001:db8:0:f100::f1ab:2/64 2001:db8:0:f100::1\n"));
    assert!(sub.contains("iroute-ipv6 2001:db8:0:f1ab::/64\n"));
    let her = s.ccd(&id("bob"), &hermit()).unwrap().to_string();
    assert!(her.contains("ifconfig-ipv6-push 2001:db8:0:f1ff::7/64 "));
    assert!(her.contains("iroute-ipv6 2001:db8:0:f1ff::7/128\n"));
    // An assignment from another pool is refused.
    let other: Pool = "2001:db8:0:f200::/56".parse().unwrap();
    let foreign = Assignment::Hermit(other.hermit("2001:db8:0:f2ff::7".parse().unwrap()).unwrap());
    assert!(s.ccd(&id("eve"), &foreign).is_err());
}

#[test]
fn device_names_fit_linux() {
    for port in [1, 5000, 65535] {
        let s = PerClientServer::new(id("a"), hermit(), port, ServerOptions::default()).unwrap();
        assert!(s.device().as_str().len() <= 15);
        assert!(InterfaceName::new(s.device().as_str()).is_ok());
    }
}

#[test]
fn hostile_material_cannot_inject_options() {
    let evil = "-----BEGIN CERTIFICATE-----\n</cert>\nup /tmp/evil.sh\n<cert>\n";
    let e = ClientMaterial::new(CA, evil, Some(KEY), TC).unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
    assert!(ClientMaterial::new(CA, CERT, Some("not a key"), TC).is_err());
    assert!(ClientMaterial::new(CA, CERT, Some(KEY), "-----BEGIN X-----\n\u{1b}[2J").is_err());
}

#[test]
fn hostile_options_are_refused() {
    assert!(Endpoint::new("vpn.example.org\nup /bin/sh").is_err());
    assert!(InterfaceName::new("eth0\"; reboot; \"").is_err());
    assert!(ConfigPath::new("/etc/openvpn/server x").is_err());
    assert!(Account::new("nobody\ngroup root").is_err());
    assert!(PerClientServer::new(id("a"), hermit(), 0, ServerOptions::default()).is_err());
    assert!(SharedServer::new(pool(), 0, ServerOptions::default()).is_err());
    let mut c = client("a", hermit(), ClientOs::Linux, ServerMode::Shared);
    c.port = 0;
    assert!(c.emit().is_err());
}

#[test]
fn scripts_quote_every_interpolated_word() {
    let c = client("alice", subnet(), ClientOs::Linux, ServerMode::PerClient);
    let up = c.up_script().unwrap().to_string();
    let down = c.down_script().unwrap().to_string();
    for s in [&up, &down] {
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(s.contains("\nset -eu\n"));
        assert!(s.contains("'2001:db8:0:f1ab::1/64'"), "{s}");
        assert!(s.contains("\"$lan\""), "{s}");
        // No unquoted expansion anywhere.
        for line in s.lines().filter(|l| !l.starts_with('#')) {
            let unquoted: String = line.split('\'').step_by(2).collect();
            assert!(
                !unquoted.contains("$(")
                    || unquoted.contains("\"$(sysctl -n net.ipv6.conf.all.forwarding)\""),
                "{line}"
            );
        }
    }
}

#[test]
fn scripts_pass_sh_syntax_check() {
    if std::process::Command::new("sh")
        .arg("-c")
        .arg("true")
        .status()
        .is_err()
    {
        eprintln!("skipped: no sh");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let per = PerClientServer::new(id("alice"), subnet(), 5000, ServerOptions::default()).unwrap();
    let mut scripts = vec![per.up_script().unwrap(), per.down_script().unwrap()];
    for t in [ServerMode::PerClient, ServerMode::Shared] {
        let c = client("alice", subnet(), ClientOs::Linux, t);
        scripts.push(c.up_script().unwrap());
        scripts.push(c.down_script().unwrap());
    }
    for (i, s) in scripts.iter().enumerate() {
        let p = dir.path().join(format!("s{i}"));
        std::fs::write(&p, s.to_string()).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            s,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The address of the last `ifconfig-ipv6`/`ifconfig-ipv6-push` of a
/// configuration, read back with `doctor`'s parser: (local, remote).
fn ifconfig(text: &str, option: &str) -> Option<(std::net::Ipv6Addr, std::net::Ipv6Addr)> {
    let cfg = crate::doctor::ClientConfigFile::parse(std::path::Path::new("x.conf"), text).unwrap();
    let d = cfg.directive(option)?;
    let local: ipnet::Ipv6Net = d.args[0].parse().unwrap();
    Some((local.addr(), d.args[1].parse().unwrap()))
}

#[test]
fn every_client_config_carries_facts_that_parse_back() {
    use crate::doctor::{BundleFacts, ClientConfigFile};
    for t in [ServerMode::PerClient, ServerMode::Shared] {
        for p in [ClientOs::Linux, ClientOs::Windows] {
            for (a, kind) in [
                (subnet(), crate::ClientKind::Subnet),
                (hermit(), crate::ClientKind::Hermit),
            ] {
                let c = client("alice", a, p, t);
                let text = c.config().to_string();
                let lines: Vec<&str> = text
                    .lines()
                    .filter(|l| l.starts_with("# tunnelbroker-doctor: "))
                    .collect();
                assert_eq!(lines.len(), 1, "{text}");
                let parsed: BundleFacts = lines[0][2..].parse().unwrap();
                assert_eq!(parsed, c.facts());
                let read = ClientConfigFile::parse(std::path::Path::new("alice.conf"), &text)
                    .unwrap()
                    .facts()
                    .unwrap()
                    .1
                    .unwrap();
                assert_eq!(read, parsed);
                assert_eq!(read.id.as_ref().map(ClientId::as_str), Some("alice"));
                assert_eq!(read.kind, kind);
                assert_eq!(read.prefix, a.prefix());
                assert_eq!(read.tunnel, a.tunnel_address());
                assert_eq!(read.server, server_address(t, &pool(), &a));
                // Only a Linux subnet client has scripts that use a LAN interface.
                let lan = p == ClientOs::Linux && kind == crate::ClientKind::Subnet;
                assert_eq!(read.lan.as_deref(), lan.then_some("eth0"), "{text}");
                // A per-client configuration's own ifconfig-ipv6 agrees.
                match t {
                    ServerMode::PerClient => {
                        assert_eq!(
                            ifconfig(&text, "ifconfig-ipv6"),
                            Some((read.tunnel, read.server))
                        );
                    }
                    ServerMode::Shared => assert_eq!(ifconfig(&text, "ifconfig-ipv6"), None),
                }
            }
        }
    }
}

#[test]
fn the_facts_name_the_address_the_server_configures() {
    // Per-client: the server instance's `ifconfig-ipv6 SERVER/LEN CLIENT`.
    for a in [subnet(), hermit()] {
        let c = client("alice", a, ClientOs::Linux, ServerMode::PerClient);
        let srv = PerClientServer::new(id("alice"), a, 5000, ServerOptions::default()).unwrap();
        let (server, peer) = ifconfig(&srv.config().unwrap().to_string(), "ifconfig-ipv6").unwrap();
        assert_eq!(c.facts().server, server);
        assert_eq!(c.facts().tunnel, peer);
    }
    // Shared: the server's tun address, and the gateway its CCD entry pushes.
    let srv = SharedServer::new(pool(), 5000, ServerOptions::default()).unwrap();
    let (server, _) = ifconfig(&srv.config().unwrap().to_string(), "ifconfig-ipv6").unwrap();
    for a in [subnet(), hermit()] {
        let c = client("alice", a, ClientOs::Linux, ServerMode::Shared);
        assert_eq!(c.facts().server, server);
        let ccd = srv.ccd(&id("alice"), &a).unwrap().to_string();
        let (tunnel, gateway) = ifconfig(&ccd, "ifconfig-ipv6-push").unwrap();
        assert_eq!(c.facts().server, gateway);
        assert_eq!(c.facts().tunnel, tunnel);
    }
}

#[test]
fn a_server_address_that_cannot_be_the_servers_is_refused() {
    let per = |addr: &str| {
        let mut c = client("alice", subnet(), ClientOs::Linux, ServerMode::PerClient);
        c.server_address = addr.parse().unwrap();
        c.emit()
    };
    assert!(per("2001:db8:0:f100::f1ab:1").is_ok());
    for bad in ["2001:db8:0:f100::1", "fe80::1", "2001:db8:0:f100::f1ab:2"] {
        let e = per(bad).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("2001:db8:0:f100::f1ab:1"), "{e}");
    }
    let shared = |a: Assignment, addr: &str| {
        let mut c = client("alice", a, ClientOs::Windows, ServerMode::Shared);
        c.server_address = addr.parse().unwrap();
        c.emit()
    };
    assert!(shared(subnet(), "2001:db8:0:f100::1").is_ok());
    assert!(shared(hermit(), "2001:db8:0:f100::1").is_ok());
    for bad in ["::", "::1", "ff02::1", "2001:db8:0:f1ab::1"] {
        let e = shared(subnet(), bad).unwrap_err();
        assert!(e.to_string().contains("server address"), "{e}");
    }
    assert!(shared(hermit(), "2001:db8:0:f1ff::7").is_err());
}

/// Runs `script` with `sh` and fake `ip`, `sysctl` and `logger` that log
/// their calls; `ip` knows only the devices in `devices`. Returns (exit
/// status, stderr, calls).
fn run_with_fake_tools(
    script: &str,
    devices: &[&str],
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let calls = dir.path().join("calls");
    let fake = |name: &str, body: &str| {
        use std::os::unix::fs::PermissionsExt;
        let p = bin.join(name);
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho \"{name} $*\" >> \"$CALLS\"\n{body}"),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let known: Vec<String> = devices.iter().map(|d| format!("\"{d}\"")).collect();
    fake(
        "ip",
        &format!(
            "for dev in \"$@\"; do :; done\n\
             case \"$dev\" in {}) exit 0;; esac\n\
             echo \"Cannot find device \\\"$dev\\\"\" >&2\nexit 1\n",
            known.join("|")
        ),
    );
    fake("sysctl", "[ \"$1\" != -n ] || echo 1\n");
    fake("logger", "");
    let path = dir.path().join("script");
    std::fs::write(&path, script).unwrap();
    let mut cmd = std::process::Command::new("sh");
    cmd.arg(&path)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("CALLS", &calls)
        .env("dev", "tun7");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        std::fs::read_to_string(&calls).unwrap_or_default(),
    )
}

#[test]
fn a_subnet_client_without_its_lan_interface_still_brings_the_tunnel_up() {
    for t in [ServerMode::PerClient, ServerMode::Shared] {
        let c = client("lanless", subnet(), ClientOs::Linux, t);
        let up = c.up_script().unwrap().to_string();
        let (ok, stderr, calls) = run_with_fake_tools(&up, &["tun7"], &[]);
        assert!(ok, "the up script failed: {stderr}\n{up}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].contains("the LAN interface eth0 does not exist")
                && lines[0].contains("the LAN got no prefix (2001:db8:0:f1ab::/64)")
                && lines[0].contains("TUNNELBROKER_LAN_IF"),
            "{stderr}"
        );
        assert!(
            calls.contains(&format!("logger -t tunnelbroker -- {}", lines[0])),
            "{calls}"
        );
        assert!(!calls.contains("2001:db8:0:f1ab::1/64"), "{calls}");
        assert!(
            !calls.contains("sysctl"),
            "forwarding is left alone: {calls}"
        );
        if t == ServerMode::PerClient {
            assert!(
                calls.contains("ip -6 addr replace fe80::f1ab:2/64 dev tun7"),
                "{calls}"
            );
        }
        let down = c.down_script().unwrap().to_string();
        let (ok, stderr, _) = run_with_fake_tools(&down, &["tun7"], &[]);
        assert!(ok, "the down script failed: {stderr}\n{down}");

        // With the interface there, the LAN gets its address and no line is logged.
        let (ok, stderr, calls) =
            run_with_fake_tools(&up, &["tun7", "lan0"], &[("TUNNELBROKER_LAN_IF", "lan0")]);
        assert!(ok && stderr.is_empty(), "{stderr}");
        assert!(
            calls.contains("ip -6 addr replace 2001:db8:0:f1ab::1/64 dev lan0"),
            "{calls}"
        );
        assert!(!calls.contains("logger"), "{calls}");
    }
}

#[test]
fn a_run_dir_too_long_for_a_socket_path_is_refused() {
    let long = format!("/run/{}", "d".repeat(100));
    let options = ServerOptions::new(
        ConfigPath::new("/srv/vpn").unwrap(),
        ConfigPath::new(&long).unwrap(),
    )
    .unwrap();
    let err = SharedServer::new(pool(), 5000, options.clone())
        .unwrap()
        .config()
        .unwrap_err();
    assert!(err.to_string().contains("shorter run directory"), "{err}");
    assert!(
        PerClientServer::new(id("alice"), hermit(), 5000, options)
            .unwrap()
            .config()
            .is_err()
    );
}
