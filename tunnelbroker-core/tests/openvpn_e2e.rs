//! Real OpenVPN 2.6 carrying IPv6 between network namespaces (issue 5,
//! "Proof with real OpenVPN"), plus the contents of client bundles. The
//! namespace harness is in `lab.rs`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tunnelbroker_core::broker::{ClientOs, RenderReport, SERVER_CN, ServerMode, SessionEnd};
use tunnelbroker_core::openvpn::{
    ClientConfig, ClientMaterial, CommonName, Endpoint, InterfaceName, server_address,
};
use tunnelbroker_core::pki::{CaParams, KeyType, RevocationReason};
use tunnelbroker_core::{Broker, Client, ClientId, ClientKind, NewClient};

use crate::lab::*;

/// A broker with alice (subnet), bob (hermit), carol (`carol_kind`) and
/// dave (hermit), its server rendered without warnings but the one that
/// a directory under /tmp earns.
fn rendered(
    tmp: &Path,
    mode: ServerMode,
    port: u16,
    carol_kind: ClientKind,
) -> (Broker, [Client; 4], RenderReport) {
    let b = broker(tmp, mode, port);
    let clients = [
        ("alice", ClientKind::Subnet),
        ("bob", ClientKind::Hermit),
        ("carol", carol_kind),
        ("dave", ClientKind::Hermit),
    ]
    .map(|(id, kind)| add(&b, id, kind));
    let report = render_with_own_run_dir(&b);
    let unexpected: Vec<_> = report
        .warnings
        .iter()
        .filter(|w| !w.contains("PrivateTmp"))
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
    (b, clients, report)
}

/// Scenario 1: per-client mode with a subnet client (and a host on its
/// LAN), a hermit client, and a hermit whose live session ends on revocation.
fn per_client_mode() {
    let tmp = tempfile::tempdir().unwrap();
    // Dave's instance runs, but only impostors try it.
    let (b, [alice, bob, carol, dave], report) =
        rendered(tmp.path(), ServerMode::PerClient, 5000, ClientKind::Hermit);
    assert_eq!(report.instances.len(), 4);

    let mut lab = Lab::new("p");
    let (s, ns) = underlay(&mut lab, &["a", "b", "c"]);
    let lan = lab.add_ns("l");
    lab.link(&ns[0], LAN_IF, &lan, "eth0");

    let server_dir = report.dir.clone();
    let logs = b.dir().join("log");
    let mut server_logs = Vec::new();
    for c in [&alice, &bob, &carol, &dave] {
        let name = format!("tb-client-{}", c.id);
        server_logs.push(start_server(&mut lab, &s, &b, &server_dir, &name));
    }
    let mut client_logs = Vec::new();
    for (c, n) in [&alice, &bob, &carol].iter().zip(&ns) {
        let dir = unpack(&b, c.id.as_str(), tmp.path());
        client_logs.push(start_client(
            &mut lab,
            c.id.as_str(),
            n,
            &dir,
            c.id.as_str(),
        ));
    }
    for (log, srv_log) in client_logs.iter().zip(&server_logs) {
        wait_connected(log, srv_log);
    }

    // The subnet client reaches its server end over the routing net and the
    // link-local tunnel ends are in place.
    let sa = alice.assignment.as_subnet().unwrap();
    assert!(
        lab.ping(&ns[0], &sa.server_end().to_string(), None, 10),
        "alice -> server end"
    );
    let ll = format!("{}%tun0", sa.server_link_local());
    assert!(
        lab.ping(&ns[0], &ll, None, 10),
        "alice -> server link-local"
    );
    let addrs = lab.ns(&ns[0], &["ip", "-6", "addr", "show", "dev", "tun0"]);
    assert!(
        addrs.contains(&format!("{}/112", sa.client_end())),
        "{addrs}"
    );
    assert!(
        addrs.contains(&format!("{}/64", sa.client_link_local())),
        "{addrs}"
    );
    // The up script put PREFIX::1/64 on the LAN interface and enabled forwarding.
    let lan_addrs = lab.ns(&ns[0], &["ip", "-6", "addr", "show", "dev", LAN_IF]);
    assert!(
        lan_addrs.contains(&format!("{}/64", sa.lan_address())),
        "{lan_addrs}"
    );
    let fwd = lab.ns(&ns[0], &["sysctl", "-n", "net.ipv6.conf.all.forwarding"]);
    assert_eq!(fwd.trim(), "1");

    // A host on alice's LAN, with the client as its default router.
    let host = std::net::Ipv6Addr::from(u128::from(sa.prefix().network()) | 0x100);
    lab.ns(
        &lan,
        &[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{host}/64"),
            "dev",
            "eth0",
            "nodad",
        ],
    );
    lab.ns(
        &lan,
        &[
            "ip",
            "-6",
            "route",
            "add",
            "default",
            "via",
            &sa.lan_address().to_string(),
        ],
    );
    assert!(
        lab.ping(&lan, &sa.server_end().to_string(), None, 15),
        "LAN host -> server through alice's tunnel"
    );

    // The hermit has its /128 on the tunnel and reaches its server end
    // (fe80::1) and, via the default route, another tunnel's server end.
    let hb = bob.assignment.as_hermit().unwrap();
    let addrs = lab.ns(&ns[1], &["ip", "-6", "addr", "show", "dev", "tun0"]);
    assert!(addrs.contains(&hb.address().to_string()), "{addrs}");
    assert!(lab.ping(&ns[1], "fe80::1%tun0", None, 10), "bob -> fe80::1");
    assert!(
        lab.ping(&ns[1], &sa.server_end().to_string(), None, 10),
        "bob -> routed"
    );
    assert!(
        lab.ping(&ns[2], "fe80::1%tun0", None, 10),
        "carol -> fe80::1"
    );

    // Revoking carol ends her instance, and with it her session; the others keep working.
    let revoked = b.revoke(&carol.id, RevocationReason::Unspecified).unwrap();
    match revoked.session {
        SessionEnd::Ended(_) => {}
        other => panic!("carol's session was not ended: {other:?}"),
    }
    assert!(
        lab.exited("tb-client-carol", Duration::from_secs(10)),
        "carol's instance still runs"
    );
    assert!(
        !lab.ping(&ns[2], "fe80::1%tun0", None, 2),
        "carol still reaches the server"
    );
    assert!(
        lab.ping(&ns[0], &sa.server_end().to_string(), None, 5),
        "alice lost her tunnel"
    );
    assert!(
        lab.ping(&ns[1], "fe80::1%tun0", None, 5),
        "bob lost his tunnel"
    );

    // Re-rendering removes carol's files and leaves the others untouched.
    let again = b.render_server(None).unwrap();
    assert!(again.written.is_empty(), "{:?}", again.written);
    assert_eq!(again.removed.len(), 1, "{:?}", again.removed);
    assert!(!server_dir.join("tb-client-carol.conf").exists());

    // A certificate for dave from another CA is refused by dave's instance;
    // so is bob's own, valid certificate: the instance accepts only CN dave,
    // so nobody else can take dave's assignment.
    let dave_log = logs.join("tb-client-dave.log");
    let dave_port = dave.port.unwrap();
    let mallory = foreign_client(
        &b,
        "dave",
        &dave,
        tmp.path(),
        ServerMode::PerClient,
        dave_port,
    );
    let log = start_client(&mut lab, "mallory", &ns[2], &mallory, "dave");
    assert_refused(
        &log,
        &dave_log,
        &["VERIFY ERROR", "CN=dave"],
        "a foreign CA's certificate for dave",
    );
    lab.stop("mallory");
    let bob_dir = tmp.path().join("clients").join("bob");
    let conf = fs::read_to_string(bob_dir.join("bob.conf")).unwrap();
    let bob_port = bob.port.unwrap();
    let hijack = conf.replace(
        &format!("\nremote {SERVER_IP} {bob_port}\n"),
        &format!("\nremote {SERVER_IP} {dave_port}\n"),
    );
    assert_ne!(hijack, conf);
    let hijack_dir = tmp.path().join("hijack");
    fs::create_dir_all(&hijack_dir).unwrap();
    fs::write(hijack_dir.join("bob.conf"), hijack).unwrap();
    let log = start_client(&mut lab, "hijack", &ns[2], &hijack_dir, "bob");
    assert_refused(
        &log,
        &dave_log,
        &["X509NAME", "CN=bob"],
        "bob on dave's instance",
    );
    lab.stop("hijack");
    // Stopping the subnet client runs its down script: the LAN address goes.
    lab.stop("alice");
    let lan_addrs = lab.ns(&ns[0], &["ip", "-6", "addr", "show", "dev", LAN_IF]);
    assert!(
        !lan_addrs.contains(&sa.lan_address().to_string()),
        "{lan_addrs}"
    );
    let fwd = lab.ns(&ns[0], &["sysctl", "-n", "net.ipv6.conf.all.forwarding"]);
    assert_eq!(fwd.trim(), "0", "down did not restore forwarding");
}

/// A client configuration with a certificate for `cn` from a different CA
/// (but this broker's CA certificate and tls-crypt key), in its own folder.
fn foreign_client(
    b: &Broker,
    cn: &str,
    like: &tunnelbroker_core::Client,
    tmp: &Path,
    mode: ServerMode,
    port: u16,
) -> PathBuf {
    let other = tunnelbroker_core::pki::Ca::generate(&CaParams::default()).unwrap();
    let issued = other
        .issue_client(&cn.parse().unwrap(), KeyType::P256, 30)
        .unwrap();
    let cfg = ClientConfig {
        client: cn.parse().unwrap(),
        assignment: like.assignment,
        os: ClientOs::Linux,
        mode,
        server_address: server_address(mode, &POOL.parse().unwrap(), &like.assignment),
        remote: Endpoint::new(SERVER_IP).unwrap(),
        port,
        server_name: CommonName::new(SERVER_CN).unwrap(),
        lan_interface: InterfaceName::new(LAN_IF).unwrap(),
        material: ClientMaterial::new(
            b.ca().certificate().pem(),
            issued.certificate.pem(),
            Some(issued.key.to_pem()),
            b.tls_crypt_key().unwrap().to_text(),
        )
        .unwrap(),
    };
    let dir = tmp.join("foreign").join(cn);
    fs::create_dir_all(&dir).unwrap();
    for f in cfg.emit().unwrap() {
        fs::write(dir.join(&f.name), &f.text).unwrap();
        if f.executable {
            fs::set_permissions(dir.join(&f.name), fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    dir
}

/// Scenarios 2 and 3: shared mode with three clients at once; a client
/// cannot use another's addresses; a revoked client is refused; a live
/// session ends on revocation while the others keep working; a foreign CA
/// is refused.
fn shared_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, [alice, bob, carol, dave], report) =
        rendered(tmp.path(), ServerMode::Shared, 5100, ClientKind::Subnet);
    assert_eq!(report.instances, ["tb-shared"]);

    let mut lab = Lab::new("s");
    let (s, ns) = underlay(&mut lab, &["a", "b", "c", "d"]);
    let srv_log = start_server(&mut lab, &s, &b, &report.dir, "tb-shared");
    assert!(log_has(&srv_log, READY, UP), "server:\n{}", tail(&srv_log));
    let server_addr = "2001:db8:0:f100::1";

    // LAN interfaces of the subnet clients: alice's has the configured
    // name, carol's another one, named by the environment variable.
    for (n, name) in [(&ns[0], LAN_IF), (&ns[2], "lan7")] {
        let peer = format!("{name}p");
        lab.ns(
            n,
            &[
                "ip", "link", "add", name, "type", "veth", "peer", "name", &peer,
            ],
        );
        lab.ns(n, &["ip", "link", "set", name, "up"]);
        lab.ns(n, &["ip", "link", "set", &peer, "up"]);
    }

    let clients = [&alice, &bob, &carol];
    let mut logs = Vec::new();
    for (c, n) in clients.iter().zip(&ns) {
        let dir = unpack(&b, c.id.as_str(), tmp.path());
        // OpenVPN hands its scripts only its own variables: `setenv`.
        let extra: &[&str] = if c.id.as_str() == "carol" {
            &["--setenv", "TUNNELBROKER_LAN_IF", "lan7"]
        } else {
            &[]
        };
        logs.push(start_client_with(
            &mut lab,
            c.id.as_str(),
            n,
            &dir,
            c.id.as_str(),
            extra,
        ));
    }
    for log in &logs {
        wait_connected(log, &srv_log);
    }
    // Each client has the same tunnel address as in per-client mode and
    // reaches the server, all at once.
    for (c, n) in clients.iter().zip(&ns) {
        let addrs = lab.ns(n, &["ip", "-6", "addr", "show", "dev", "tun0"]);
        assert!(
            addrs.contains(&c.assignment.tunnel_address().to_string()),
            "{}: {addrs}",
            c.id
        );
        assert!(lab.ping(n, server_addr, None, 10), "{} -> server", c.id);
    }
    // Subnet clients' /64s are routed to them: ping alice's LAN address.
    let sa = alice.assignment.as_subnet().unwrap();
    let sc = carol.assignment.as_subnet().unwrap();
    let lan7 = lab.ns(&ns[2], &["ip", "-6", "addr", "show", "dev", "lan7"]);
    assert!(
        lan7.contains(&format!("{}/64", sc.lan_address())),
        "TUNNELBROKER_LAN_IF ignored: {lan7}"
    );
    assert!(
        lab.ping(&ns[1], &sa.lan_address().to_string(), None, 10),
        "bob -> alice's /64"
    );

    // Alice cannot use carol's assignment: the server drops her packets.
    let stolen = std::net::Ipv6Addr::from(u128::from(sc.prefix().network()) | 0x99);
    lab.ns(
        &ns[0],
        &[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{stolen}/128"),
            "dev",
            "tun0",
            "nodad",
        ],
    );
    assert!(
        !lab.ping(&ns[0], server_addr, Some(&stolen.to_string()), 3),
        "alice used carol's /64"
    );
    let own = std::net::Ipv6Addr::from(u128::from(sa.prefix().network()) | 0x99);
    lab.ns(
        &ns[0],
        &[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{own}/128"),
            "dev",
            "tun0",
            "nodad",
        ],
    );
    assert!(
        lab.ping(&ns[0], server_addr, Some(&own.to_string()), 5),
        "alice's own /64 works"
    );

    // Dave got his bundle, then was revoked before he ever connected: refused.
    let dave_dir = unpack(&b, "dave", tmp.path());
    b.revoke(&dave.id, RevocationReason::KeyCompromise).unwrap();
    assert!(
        b.bundle(&dave.id, Some(&tmp.path().join("dave.tar.gz")))
            .is_err(),
        "bundle for a revoked client"
    );
    let log = start_client(&mut lab, "dave", &ns[3], &dave_dir, "dave");
    assert_refused(
        &log,
        &srv_log,
        &["certificate revoked", "CN=dave"],
        "revoked dave",
    );
    lab.stop("dave");

    // Carol is connected and gets revoked: her session ends, the others keep theirs.
    let revoked = b.revoke(&carol.id, RevocationReason::Unspecified).unwrap();
    let carol_now = revoked.client;
    match revoked.session {
        SessionEnd::Ended(_) => {}
        other => panic!("carol's session was not ended: {other:?}"),
    }
    assert!(
        !lab.ping(&ns[2], server_addr, None, 2),
        "carol still has a session"
    );
    assert!(
        lab.ping(&ns[0], server_addr, None, 5),
        "alice lost her session"
    );
    assert!(
        lab.ping(&ns[1], server_addr, None, 5),
        "bob lost his session"
    );
    // Her reconnection is refused by the CRL.
    lab.stop("carol");
    let carol_dir = tmp.path().join("clients").join("carol");
    let log = carol_dir.join("openvpn.log");
    let _ = fs::remove_file(&log);
    start_client(&mut lab, "carol", &ns[2], &carol_dir, "carol");
    assert_refused(
        &log,
        &srv_log,
        &["certificate revoked", "CN=carol"],
        "revoked carol reconnecting",
    );
    lab.stop("carol");
    // A second end_session finds her gone.
    assert_eq!(b.end_session(&carol_now).unwrap(), SessionEnd::NotConnected);

    // A certificate for "bob" from another CA is refused.
    let mallory = foreign_client(&b, "bob", &bob, tmp.path(), ServerMode::Shared, 5100);
    let log = start_client(&mut lab, "mallory", &ns[3], &mallory, "bob");
    assert_refused(
        &log,
        &srv_log,
        &["VERIFY ERROR", "CN=bob"],
        "a foreign CA's certificate for bob",
    );
    assert!(
        lab.ping(&ns[1], server_addr, None, 5),
        "the real bob lost his session"
    );
}

#[test]
fn openvpn_carries_ipv6_in_both_modes() {
    needs_root("openvpn_carries_ipv6_in_both_modes", || {
        per_client_mode();
        shared_mode();
    });
}

/// Everything in a bundle, by name.
fn bundle_entries(path: &Path, os: ClientOs) -> Vec<(String, u32, String)> {
    let data = fs::read(path).unwrap();
    let mut out = Vec::new();
    match os {
        ClientOs::Linux => {
            let gz = flate2::read::GzDecoder::new(&data[..]);
            let mut ar = tar::Archive::new(gz);
            for e in ar.entries().unwrap() {
                let mut e = e.unwrap();
                let name = e.path().unwrap().to_string_lossy().into_owned();
                let mode = e.header().mode().unwrap();
                let mut text = String::new();
                std::io::Read::read_to_string(&mut e, &mut text).unwrap();
                out.push((name, mode, text));
            }
        }
        _ => {
            let mut z = zip::ZipArchive::new(std::io::Cursor::new(data)).unwrap();
            for i in 0..z.len() {
                let mut f = z.by_index(i).unwrap();
                let name = f.name().unwrap().to_string();
                let mode = f.unix_mode().unwrap_or(0) & 0o7777;
                let mut text = String::new();
                std::io::Read::read_to_string(&mut f, &mut text).unwrap();
                out.push((name, mode, text));
            }
        }
    }
    out
}

#[test]
fn bundles_hold_only_the_clients_own_material() {
    let tmp = tempfile::tempdir().unwrap();
    for mode in [ServerMode::PerClient, ServerMode::Shared] {
        let dir = tmp.path().join(mode.to_string());
        fs::create_dir_all(&dir).unwrap();
        let b = broker(&dir, mode, 5000);
        let mut linux = NewClient::new("alice".parse().unwrap(), ClientKind::Subnet);
        linux.os = ClientOs::Linux;
        let mut win = NewClient::new("bob".parse().unwrap(), ClientKind::Subnet);
        win.os = ClientOs::Windows;
        b.add_client(&linux).unwrap();
        b.add_client(&win).unwrap();
        let secrets_of_others = |id: &str| {
            let other: ClientId = (if id == "alice" { "bob" } else { "alice" })
                .parse()
                .unwrap();
            let creds = b.client_credentials(&other).unwrap();
            vec![
                fs::read_to_string(&b.paths().ca_key).unwrap(),
                fs::read_to_string(&b.paths().server_key).unwrap(),
                creds.key.unwrap().to_pem().to_owned(),
                creds.certificate.pem().to_owned(),
            ]
        };
        for (id, os, ext) in [
            ("alice", ClientOs::Linux, "tar.gz"),
            ("bob", ClientOs::Windows, "zip"),
        ] {
            let cid: ClientId = id.parse().unwrap();
            // Given the directory, the bundle gets its default name in it.
            let path = b.bundle(&cid, Some(&dir)).unwrap();
            assert_eq!(path, dir.join(format!("{id}.{ext}")));
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            let entries = bundle_entries(&path, os);
            let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
            let own = b.client_credentials(&cid).unwrap();
            let all: String = entries.iter().map(|e| e.2.as_str()).collect();
            for secret in secrets_of_others(id) {
                let body = secret.lines().nth(1).unwrap().to_owned();
                assert!(
                    !all.contains(&body),
                    "{id}'s bundle holds material that is not its own"
                );
            }
            assert!(all.contains(own.key.unwrap().to_pem().lines().nth(1).unwrap()));
            assert!(all.contains(own.certificate.pem().lines().nth(1).unwrap()));
            match os {
                ClientOs::Linux => {
                    assert_eq!(
                        names,
                        [
                            "alice/",
                            "alice/alice.conf",
                            "alice/alice.up",
                            "alice/alice.down",
                            "alice/README.txt"
                        ]
                    );
                    let mode_of = |n: &str| entries.iter().find(|e| e.0 == n).unwrap().1;
                    assert_eq!(mode_of("alice/alice.up"), 0o755);
                    assert_eq!(mode_of("alice/alice.down"), 0o755);
                    assert_eq!(mode_of("alice/alice.conf"), 0o600);
                }
                _ => {
                    assert_eq!(names, ["bob/", "bob/bob.ovpn", "bob/README.txt"]);
                    let readme = &entries[2].2;
                    assert!(readme.contains("forwarding=enabled"), "{readme}");
                }
            }
        }
        // A revoked client gets no bundle; an unknown one neither.
        b.revoke(&"bob".parse().unwrap(), RevocationReason::Unspecified)
            .unwrap();
        assert!(
            b.bundle(&"bob".parse().unwrap(), Some(&dir.join("x.zip")))
                .is_err()
        );
        assert!(
            b.bundle(&"nobody".parse().unwrap(), Some(&dir.join("y.zip")))
                .is_err()
        );
        assert!(!dir.join("x.zip").exists());
    }
}

#[test]
fn render_server_is_idempotent_and_keeps_keys_private() {
    let tmp = tempfile::tempdir().unwrap();
    for mode in [ServerMode::PerClient, ServerMode::Shared] {
        let dir = tmp.path().join(mode.to_string());
        fs::create_dir_all(&dir).unwrap();
        let b = broker(&dir, mode, 5000);
        add(&b, "alice", ClientKind::Subnet);
        add(&b, "bob", ClientKind::Hermit);
        let first = b.render_server(None).unwrap();
        assert!(first.unchanged.is_empty());
        let out = first.dir.clone();
        for key in ["server.key", "tls-crypt.key"] {
            assert_eq!(
                fs::metadata(out.join(key)).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let stamp = |p: &Path| fs::metadata(p).unwrap().modified().unwrap();
        let before: Vec<_> = first
            .written
            .iter()
            .map(|p| (p.clone(), stamp(p)))
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        let second = b.render_server(None).unwrap();
        assert!(second.written.is_empty(), "{:?}", second.written);
        assert!(second.removed.is_empty());
        for (p, t) in before {
            assert_eq!(stamp(&p), t, "{} was rewritten", p.display());
        }
        // A foreign file in the directory is left alone; a revoked client's files go.
        fs::write(out.join("operator-notes.txt"), "mine").unwrap();
        b.revoke(&"bob".parse().unwrap(), RevocationReason::Unspecified)
            .unwrap();
        let third = b.render_server(None).unwrap();
        assert!(out.join("operator-notes.txt").exists());
        let removed: Vec<String> = third
            .removed
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        match mode {
            ServerMode::PerClient => assert_eq!(removed, ["tb-client-bob.conf"]),
            _ => {
                assert_eq!(removed, ["bob"]);
                assert!(out.join("ccd/alice").exists());
            }
        }
        // The CRL is a copy in the rendered directory, which the broker
        // rewrites with every CRL it signs.
        let conf_name = if mode == ServerMode::Shared {
            "tb-shared.conf"
        } else {
            "tb-client-alice.conf"
        };
        let conf = fs::read_to_string(out.join(conf_name)).unwrap();
        let copy = out.join("crl.pem");
        assert!(
            conf.contains(&format!("\ncrl-verify {}\n", copy.display())),
            "{conf}"
        );
        assert_eq!(fs::read(&copy).unwrap(), fs::read(&b.paths().crl).unwrap());
        assert_eq!(
            fs::metadata(&copy).unwrap().permissions().mode() & 0o7777,
            0o644
        );
        for (key, file) in [
            ("ca", "ca.crt"),
            ("cert", "server.crt"),
            ("key", "server.key"),
            ("tls-crypt", "tls-crypt.key"),
        ] {
            let path = out.join(file);
            assert!(
                conf.contains(&format!("\n{key} {}\n", path.display())),
                "{conf}"
            );
        }
        assert!(!conf.contains("log-append"), "{conf}");
    }
}

/// Counts the lines of `path` that contain `needle`.
fn count_lines(path: &Path, needle: &str) -> usize {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// What OpenVPN logs when it cannot re-read the CRL after dropping
/// privileges (and then keeps the CRL it loaded at start).
const STAT_FAILED: &str = "Failed to stat CRL file";

/// Issue 17, finding 1, per-client mode: a broker in a private directory
/// under /root, its server rendered to /srv and run as Debian's unit does.
/// Revoking a connected client ends its instance; the restarted instance
/// refuses the client by the CRL in the rendered directory.
fn per_client_revocation_under_the_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new("up");
    let b = layout.broker(ServerMode::PerClient, 5200);
    let alice = add(&b, "alice", ClientKind::Subnet);
    let carol = add(&b, "carol", ClientKind::Hermit);
    layout.render(&b);

    let mut lab = Lab::new("up");
    let (s, ns) = underlay(&mut lab, &["a", "c"]);
    // Alice, a subnet client, has a LAN interface.
    let peer = format!("{LAN_IF}p");
    lab.ns(
        &ns[0],
        &[
            "ip", "link", "add", LAN_IF, "type", "veth", "peer", "name", &peer,
        ],
    );
    lab.ns(&ns[0], &["ip", "link", "set", LAN_IF, "up"]);
    let mut server_logs = Vec::new();
    for c in [&alice, &carol] {
        let name = format!("tb-client-{}", c.id);
        let log = tmp.path().join(format!("{name}.log"));
        start_server_as_unit(&mut lab, &s, &layout.server, &layout.run, &name, &log);
        server_logs.push(log);
    }
    let mut client_logs = Vec::new();
    for (c, n) in [&alice, &carol].iter().zip(&ns) {
        let dir = unpack(&b, c.id.as_str(), tmp.path());
        client_logs.push(start_client(
            &mut lab,
            c.id.as_str(),
            n,
            &dir,
            c.id.as_str(),
        ));
    }
    for (log, srv) in client_logs.iter().zip(&server_logs) {
        wait_connected(log, srv);
    }
    assert!(
        lab.ping(&ns[1], "fe80::1%tun0", None, 10),
        "carol -> fe80::1"
    );

    // The core's revoke ends carol's instance, with no re-render.
    let revoked = b
        .revoke(&carol.id, RevocationReason::KeyCompromise)
        .unwrap();
    assert!(
        matches!(revoked.session, SessionEnd::Ended(_)),
        "{:?}",
        revoked.session
    );
    assert!(
        lab.exited("tb-client-carol", Duration::from_secs(10)),
        "carol's instance still runs"
    );
    assert!(
        !lab.ping(&ns[1], "fe80::1%tun0", None, 2),
        "carol still has a session"
    );
    // Her instance comes back (the operator, a reboot): it refuses her
    // next connection.
    start_server_as_unit(
        &mut lab,
        &s,
        &layout.server,
        &layout.run,
        "tb-client-carol",
        &server_logs[1],
    );
    assert!(
        log_line(&server_logs[1], &[READY], UP),
        "{}",
        tail(&server_logs[1])
    );
    lab.stop("carol");
    let carol_dir = tmp.path().join("clients").join("carol");
    let _ = fs::remove_file(&client_logs[1]);
    start_client(&mut lab, "carol", &ns[1], &carol_dir, "carol");
    assert_refused(
        &client_logs[1],
        &server_logs[1],
        &["certificate revoked", "CN=carol"],
        "revoked carol on her restarted instance",
    );
    // Alice kept her tunnel.
    let sa = alice.assignment.as_subnet().unwrap();
    assert!(
        lab.ping(&ns[0], &sa.server_end().to_string(), None, 5),
        "alice lost her tunnel"
    );
    for log in &server_logs {
        assert_eq!(count_lines(log, STAT_FAILED), 0, "{}", tail(log));
    }
    drop(lab);
    drop(layout);
}

/// Issue 17, findings 1 and 2, shared mode under the unit: a revoked
/// client's session ends and its own reconnection is refused by the
/// running server (which re-reads the CRL copy as nobody); a server whose
/// CRL has expired refuses clients, and `refresh_crl` lets them in again.
fn shared_revocation_and_crl_expiry_under_the_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new("us");
    let b = layout.broker(ServerMode::Shared, 5300);
    let alice = add(&b, "alice", ClientKind::Hermit);
    let carol = add(&b, "carol", ClientKind::Hermit);
    layout.render(&b);

    let mut lab = Lab::new("us");
    let (s, ns) = underlay(&mut lab, &["a", "c"]);
    let srv_log = tmp.path().join("tb-shared.log");
    start_server_as_unit(
        &mut lab,
        &s,
        &layout.server,
        &layout.run,
        "tb-shared",
        &srv_log,
    );
    assert!(log_has(&srv_log, READY, UP), "server:\n{}", tail(&srv_log));
    let server_addr = "2001:db8:0:f100::1";
    let mut logs = Vec::new();
    for (c, n) in [&alice, &carol].iter().zip(&ns) {
        let dir = unpack(&b, c.id.as_str(), tmp.path());
        logs.push(start_client(
            &mut lab,
            c.id.as_str(),
            n,
            &dir,
            c.id.as_str(),
        ));
    }
    for log in &logs {
        wait_connected(log, &srv_log);
    }
    assert!(lab.ping(&ns[1], server_addr, None, 10), "carol -> server");

    // Revoke carol while she is connected: the session ends, and her
    // client, which reconnects by itself, is refused by the CRL.
    let revoked = b
        .revoke(&carol.id, RevocationReason::KeyCompromise)
        .unwrap();
    assert!(
        matches!(revoked.session, SessionEnd::Ended(_)),
        "{:?}",
        revoked.session
    );
    let connected = count_lines(&logs[1], READY);
    assert!(
        log_line(
            &srv_log,
            &["certificate revoked", "CN=carol"],
            Duration::from_secs(60)
        ),
        "carol's reconnection was not refused:\n{}",
        tail(&srv_log)
    );
    assert!(
        !lab.ping(&ns[1], server_addr, None, 2),
        "carol still has a session"
    );
    assert_eq!(
        count_lines(&logs[1], READY),
        connected,
        "carol connected again"
    );
    lab.stop("carol");
    assert!(
        lab.ping(&ns[0], server_addr, None, 5),
        "alice lost her session"
    );

    // An expired CRL in the rendered directory: alice's next connection is
    // refused.
    let now = time::OffsetDateTime::now_utc();
    let expired = b
        .ca()
        .crl_at(
            &[],
            1,
            now - time::Duration::days(40),
            now - time::Duration::days(10),
        )
        .unwrap();
    fs::write(layout.server.join("crl.pem"), expired.pem()).unwrap();
    lab.stop("alice");
    let alice_dir = tmp.path().join("clients").join("alice");
    let alice_log = alice_dir.join("openvpn.log");
    let _ = fs::remove_file(&alice_log);
    start_client(&mut lab, "alice", &ns[0], &alice_dir, "alice");
    assert_refused(
        &alice_log,
        &srv_log,
        &["CRL has expired"],
        "alice with an expired CRL",
    );
    // The refresh (what the timer's `tunnelbroker crl` does) lets her in,
    // with no re-render and no restart of the server.
    b.refresh_crl().unwrap();
    lab.stop("alice");
    let _ = fs::remove_file(&alice_log);
    start_client(&mut lab, "alice", &ns[0], &alice_dir, "alice");
    wait_connected(&alice_log, &srv_log);
    assert!(lab.ping(&ns[0], server_addr, None, 10), "alice -> server");
    assert_eq!(count_lines(&srv_log, STAT_FAILED), 0, "{}", tail(&srv_log));
    drop(lab);
    drop(layout);
}

#[test]
fn revocation_holds_under_debians_unit_with_a_private_broker() {
    needs_root(
        "revocation_holds_under_debians_unit_with_a_private_broker",
        || {
            per_client_revocation_under_the_unit();
            shared_revocation_and_crl_expiry_under_the_unit();
        },
    );
}
