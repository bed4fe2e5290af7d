//! `doctor` on a real client (issue 7): a subnet client connected by real
//! OpenVPN 2.6 in its own network namespace, with a LAN behind it, passes
//! every check; each broken setup (forwarding off, LAN address missing,
//! default route missing, certificate expired, key of another client) gives
//! exactly the FAIL that names it, and nothing else fails. A shared-mode
//! client passes too: its configuration's facts line names the server.
//!
//! `doctor` runs as the library call with the real machine, seen from
//! inside the client's namespace: [`InNamespace`] runs every command
//! `doctor` runs and reads every `/proc` file it reads through
//! `ip netns exec`. The harness (root, namespaces, cleanup) is `lab.rs`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;
use time::OffsetDateTime;
use tunnelbroker_core::broker::ServerMode;
use tunnelbroker_core::doctor::{
    self, CommandOutput, DoctorOptions, LiveSystem, Report, Status, System,
};
use tunnelbroker_core::pki::{KeyType, PrivateKey};
use tunnelbroker_core::{Broker, ClientKind, NewClient};

use crate::lab::*;

/// The machine as a process inside network namespace `ns` sees it.
struct InNamespace {
    ns: String,
}

impl System for InNamespace {
    fn run(&self, program: &str, args: &[&str]) -> Option<CommandOutput> {
        let mut full = vec!["netns", "exec", &self.ns, program];
        full.extend_from_slice(args);
        LiveSystem.run("ip", &full)
    }

    fn read(&self, path: &str) -> Option<String> {
        // /proc/net and /proc/sys/net belong to the reader's namespace.
        self.run("cat", &[path])
            .filter(|o| o.success)
            .map(|o| o.stdout)
    }

    fn is_char_device(&self, path: &str) -> Option<bool> {
        LiveSystem.is_char_device(path)
    }

    fn now(&self) -> OffsetDateTime {
        LiveSystem.now()
    }
}

fn doctor(ns: &str, conf: &Path) -> Report {
    doctor::run(
        conf,
        &DoctorOptions::default(),
        &InNamespace { ns: ns.to_owned() },
    )
}

/// Every check passes: nothing fails, warns or is skipped.
fn assert_all_pass(r: &Report) {
    let names: Vec<&str> = r.checks.iter().map(|c| c.name.as_str()).collect();
    // A subnet client whose tunnel is up gets every check.
    assert_eq!(names, doctor::CHECKS, "{r}");
    assert_eq!(r.count(Status::Pass), doctor::CHECKS.len(), "{r}");
}

/// The all-PASS report that docs/troubleshooting.md shows (its region
/// `doctor-pass`) is this one: compared, or rewritten with `UPDATE_DOCS=1`
/// (the mechanism and the other examples: tunnelbroker-cli/tests/docs.rs).
/// The configuration's path reads as /etc/openvpn/client, the date as if
/// the test ran on 2026-11-26, the OpenVPN version as 2.6.14.
fn docs_example(r: &Report, conf: &Path) {
    let shown = "/etc/openvpn/client/dora.conf";
    let mut text = r.to_string().replace(conf.to_str().unwrap(), shown);
    let doc_today = time::macros::date!(2026 - 11 - 26);
    let shift = doc_today - OffsetDateTime::now_utc().date();
    if let Some(at) = text.find("valid until ").map(|i| i + "valid until ".len()) {
        let d: Vec<u32> = text[at..at + 10]
            .split('-')
            .map(|n| n.parse().unwrap())
            .collect();
        let month = time::Month::try_from(d[1] as u8).unwrap();
        let date = time::Date::from_calendar_date(d[0] as i32, month, d[2] as u8).unwrap() + shift;
        let shifted = format!(
            "{:04}-{:02}-{:02}",
            date.year(),
            u8::from(date.month()),
            date.day()
        );
        text.replace_range(at..at + 10, &shifted);
    }
    if let Some(at) = text.find("OpenVPN 2.").map(|i| i + "OpenVPN ".len()) {
        let len = text[at..].find(' ').unwrap();
        text.replace_range(at..at + len, "2.6.14");
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let body = format!("```console\n$ tunnelbroker doctor --config {shown}\n{text}```\n");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/troubleshooting.md");
    let doc = fs::read_to_string(&path).unwrap();
    let open = "<!-- generated: doctor-pass -->\n";
    let start = doc
        .find(open)
        .expect("troubleshooting.md has the doctor-pass region")
        + open.len();
    let end = start + doc[start..].find("<!-- end -->").expect("the region ends");
    if doc[start..end] == body {
        return;
    }
    if std::env::var("UPDATE_DOCS").is_ok_and(|v| v == "1") {
        fs::write(&path, format!("{}{body}{}", &doc[..start], &doc[end..])).unwrap();
    } else {
        panic!(
            "docs/troubleshooting.md's doctor-pass example differs from this report; refresh it \
             with UPDATE_DOCS=1 cargo test -p tunnelbroker-core --test tests doctor_e2e (as root):\n{body}"
        );
    }
}

/// Exactly one check fails, the named one, and its message says `what`.
fn assert_only_fail(r: &Report, name: &str, what: &str) {
    let failed: Vec<_> = r.with_status(Status::Fail).collect();
    assert_eq!(failed.len(), 1, "{r}");
    assert_eq!(failed[0].name, name, "{r}");
    assert!(failed[0].message.contains(what), "{what}: {r}");
    assert!(failed[0].hint.is_some(), "{r}");
}

/// A PKCS#10 request for `key`, as a client that keeps its key makes it.
fn csr(key: &PrivateKey, cn: &str) -> String {
    let pair = rcgen::KeyPair::from_pem(key.to_pem()).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.serialize_request(&pair).unwrap().pem().unwrap()
}

/// A client certificate for `cn` and `key`, signed by the broker's CA like
/// its own, but valid from 60 days ago to yesterday.
fn expired_certificate(b: &Broker, cn: &str, key: &PrivateKey) -> String {
    let ca_key = rcgen::KeyPair::from_pem(b.ca().key().unwrap().to_pem()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(b.ca().certificate().pem(), ca_key).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let now = OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(60);
    p.not_after = now - time::Duration::days(1);
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&[
        0x4e, 0x0f, 0x1d, 0x2c, 0x3b, 0x4a, 0x59, 0x68, 0x77,
    ]));
    p.is_ca = rcgen::IsCa::ExplicitNoCa;
    p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    let pair = rcgen::KeyPair::from_pem(key.to_pem()).unwrap();
    p.signed_by(&pair, &issuer).unwrap().pem()
}

/// The routes the client configuration's `redirect-gateway ipv6` put on
/// `dev`: everything shorter than a /16 there (the routing net and the
/// link-local net are longer). Each as `ip -6 route` arguments.
fn redirect_routes(lab: &Lab, ns: &str, dev: &str) -> Vec<Vec<String>> {
    let json: Value =
        serde_json::from_str(&lab.ns(ns, &["ip", "-j", "-6", "route", "show", "dev", dev]))
            .unwrap();
    let mut routes = Vec::new();
    for r in json.as_array().unwrap() {
        let dst = r["dst"].as_str().unwrap().to_owned();
        let len = if dst == "default" {
            0
        } else {
            dst.split_once('/')
                .map_or(128, |(_, l)| l.parse::<u8>().unwrap())
        };
        if len >= 16 {
            continue;
        }
        let mut args = vec![dst, "dev".to_owned(), dev.to_owned()];
        if let Some(m) = r["metric"].as_u64() {
            args.extend(["metric".to_owned(), m.to_string()]);
        }
        routes.push(args);
    }
    routes
}

/// Waits until the tunnel carries traffic to `server` (doctor's one ping
/// is meant for a tunnel that is up, not for one still coming up).
fn carries(lab: &Lab, ns: &str, server: &str) {
    assert!(
        lab.ping(ns, server, None, 15),
        "the tunnel does not carry traffic to {server}"
    );
}

fn ip6_route(lab: &Lab, ns: &str, verb: &str, args: &[String]) {
    let mut full = vec!["ip", "-6", "route", verb];
    full.extend(args.iter().map(String::as_str));
    lab.ns(ns, &full);
}

/// A broker with `dora`, a subnet client that made her own key (her
/// configuration reads `dora.key` from its folder), and `bob`, a hermit
/// whose key the broker made. Returns the broker and dora's key.
///
/// Not `alice`, the subnet client of openvpn_e2e.rs, which runs at the same
/// time: a subnet client's up script keeps its forwarding marker in `/run`
/// under the client's ID, and `/run` is shared by every namespace.
fn broker_with_dora(tmp: &Path, mode: ServerMode, port: u16) -> (Broker, PrivateKey) {
    let b = broker(tmp, mode, port);
    let key = PrivateKey::generate(KeyType::P256).unwrap();
    let mut req = NewClient::new("dora".parse().unwrap(), ClientKind::Subnet);
    req.csr = Some(csr(&key, "dora"));
    b.add_client(&req).unwrap();
    add(&b, "bob", ClientKind::Hermit);
    (b, key)
}

/// Unpacks dora's bundle and puts her key next to the configuration.
fn install_dora(b: &Broker, key: &PrivateKey, tmp: &Path) -> std::path::PathBuf {
    let dir = unpack(b, "dora", tmp);
    let path = dir.join("dora.key");
    fs::write(&path, key.to_pem()).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    dir
}

/// Per-client mode: all PASS, then each breakage alone.
fn per_client_subnet_client() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, dora_key) = broker_with_dora(tmp.path(), ServerMode::PerClient, 5200);
    let dora = b.client(&"dora".parse().unwrap()).unwrap();
    let sa = *dora.assignment.as_subnet().unwrap();
    let report = render_with_own_run_dir(&b);

    let mut lab = Lab::new("d");
    let (s, ns) = underlay(&mut lab, &["a"]);
    let client = ns[0].clone();
    let lan = lab.add_ns("l");
    lab.link(&client, LAN_IF, &lan, "eth0");
    let srv_log = start_server(&mut lab, &s, &b, &report.dir, "tb-client-dora");
    let dir = install_dora(&b, &dora_key, tmp.path());
    let log = start_client(&mut lab, "dora", &client, &dir, "dora");
    wait_connected(&log, &srv_log);
    let conf = dir.join("dora.conf");
    // The server instance completes its side a moment after the client.
    carries(&lab, &client, &sa.server_end().to_string());

    // Healthy: every check passes, with the bundle's own scripts having
    // set forwarding and the LAN address, and the server end answering.
    let r = doctor(&client, &conf);
    assert_all_pass(&r);
    docs_example(&r, &conf);
    let ping = r.checks.iter().find(|c| c.name == "ping").unwrap();
    assert_eq!(
        ping.message,
        format!("the server's end {} answers", sa.server_end())
    );
    let lan_check = r.checks.iter().find(|c| c.name == "lan-address").unwrap();
    assert_eq!(
        lan_check.message,
        format!("{LAN_IF} carries {}/64", sa.lan_address())
    );

    // Forwarding off.
    let sysctl = |v: &str| {
        lab.ns(
            &client,
            &[
                "sysctl",
                "-q",
                "-w",
                &format!("net.ipv6.conf.all.forwarding={v}"),
            ],
        );
    };
    sysctl("0");
    assert_only_fail(
        &doctor(&client, &conf),
        "forwarding",
        "IPv6 forwarding is off",
    );
    sysctl("1");
    assert_all_pass(&doctor(&client, &conf));

    // The LAN address removed.
    let lan_addr = format!("{}/64", sa.lan_address());
    lab.ns(
        &client,
        &["ip", "-6", "addr", "del", &lan_addr, "dev", LAN_IF],
    );
    assert_only_fail(
        &doctor(&client, &conf),
        "lan-address",
        &format!("{LAN_IF} does not carry {lan_addr}"),
    );
    lab.ns(
        &client,
        &["ip", "-6", "addr", "add", &lan_addr, "dev", LAN_IF, "nodad"],
    );
    assert_all_pass(&doctor(&client, &conf));

    // The default IPv6 route through the tunnel removed: what
    // `redirect-gateway ipv6` installed (OpenVPN 2.6: ::/3, 2000::/4,
    // 3000::/4, fc00::/7; at least the one that covers 2000::/3).
    let routes = redirect_routes(&lab, &client, "tun0");
    assert!(
        routes
            .iter()
            .any(|r| r[0] == "2000::/4" || r[0] == "2000::/3" || r[0] == "default"),
        "{routes:?}"
    );
    for r in &routes {
        ip6_route(&lab, &client, "del", r);
    }
    assert_only_fail(
        &doctor(&client, &conf),
        "route",
        "there is no route for global IPv6",
    );
    for r in &routes {
        ip6_route(&lab, &client, "add", r);
    }
    assert_all_pass(&doctor(&client, &conf));

    // An expired certificate (the CA's signature, dora's key).
    let text = fs::read_to_string(&conf).unwrap();
    let current = b.client_credentials(&dora.id).unwrap().certificate;
    let expired = expired_certificate(&b, "dora", &dora_key);
    let with_expired = text.replace(current.pem(), &expired);
    assert_ne!(with_expired, text);
    fs::write(&conf, &with_expired).unwrap();
    assert_only_fail(
        &doctor(&client, &conf),
        "validity",
        "the certificate expired on",
    );
    fs::write(&conf, &text).unwrap();
    assert_all_pass(&doctor(&client, &conf));

    // The key of another client in dora's key file.
    let key_file = dir.join("dora.key");
    let bob_key = b
        .client_credentials(&"bob".parse().unwrap())
        .unwrap()
        .key
        .unwrap();
    fs::write(&key_file, bob_key.to_pem()).unwrap();
    assert_only_fail(
        &doctor(&client, &conf),
        "key",
        "the key does not belong to the certificate of \"dora\"",
    );
    fs::write(&key_file, dora_key.to_pem()).unwrap();
    assert_all_pass(&doctor(&client, &conf));
}

/// Shared mode: the server's address is not in the configuration's
/// options, only in its facts line; doctor pings it and passes.
fn shared_subnet_client() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, dora_key) = broker_with_dora(tmp.path(), ServerMode::Shared, 5300);
    let report = render_with_own_run_dir(&b);
    let mut lab = Lab::new("e");
    let (s, ns) = underlay(&mut lab, &["a"]);
    let client = ns[0].clone();
    let lan = lab.add_ns("l");
    lab.link(&client, LAN_IF, &lan, "eth0");
    let srv_log = start_server(&mut lab, &s, &b, &report.dir, "tb-shared");
    let dir = install_dora(&b, &dora_key, tmp.path());
    let conf = dir.join("dora.conf");
    assert!(
        !fs::read_to_string(&conf)
            .unwrap()
            .contains("\nifconfig-ipv6 ")
    );
    let log = start_client(&mut lab, "dora", &client, &dir, "dora");
    wait_connected(&log, &srv_log);
    carries(&lab, &client, "2001:db8:0:f100::1");
    let r = doctor(&client, &conf);
    assert_all_pass(&r);
    assert!(
        r.to_string()
            .contains("PASS  ping          the server's end 2001:db8:0:f100::1 answers"),
        "{r}"
    );
    // With the server gone, the tunnel stays up but carries nothing:
    // exactly `ping` fails.
    lab.stop("tb-shared");
    assert_only_fail(&doctor(&client, &conf), "ping", "does not answer");
}

#[test]
fn doctor_passes_a_working_client_and_names_each_breakage() {
    needs_root(
        "doctor_passes_a_working_client_and_names_each_breakage",
        || {
            per_client_subnet_client();
            shared_subnet_client();
        },
    );
}
