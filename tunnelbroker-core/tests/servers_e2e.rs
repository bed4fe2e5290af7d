//! Issue 13 with real OpenVPN: two servers of one broker on two hosts
//! (namespaces), each with its own pool and certificate. Clients of each
//! reach an address behind their own server; a bundle for one server,
//! pointed at the other, is refused; a client revoked on the second server
//! is refused by it. The namespace harness is in `lab.rs`.

use std::fs;
use std::path::Path;

use tunnelbroker_core::broker::{NewServer, RenderOptions, RenderReport, ServerMode};
use tunnelbroker_core::pki::RevocationReason;
use tunnelbroker_core::{Broker, ClientKind, NewClient};

use crate::lab::*;

/// The backbone addresses behind server main (host A) and server b (host B).
const BACKBONE_A: &str = "2001:db8:ffff::a";
const BACKBONE_B: &str = "2001:db8:ffff::b";

fn add_on(b: &Broker, id: &str, kind: ClientKind, server: &str) -> tunnelbroker_core::Client {
    let mut req = NewClient::new(id.parse().unwrap(), kind);
    req.server = Some(server.into());
    let c = b.add_client(&req).unwrap();
    assert_eq!(c.server, server);
    c
}

fn render(b: &Broker, server: &str, tmp: &Path) -> RenderReport {
    let run = tmp.join(format!("{server}-run"));
    fs::create_dir_all(&run).unwrap();
    let mut o = RenderOptions::new();
    o.dir = Some(tmp.join(format!("{server}-server")));
    o.run_dir = Some(run);
    b.render_server_named(server, &o).unwrap()
}

/// An address of the backbone behind that host's server, on its loopback
/// (this kernel has no dummy interfaces).
fn backbone(lab: &Lab, ns: &str, addr: &str) {
    lab.ns(
        ns,
        &[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{addr}/128"),
            "dev",
            "lo",
        ],
    );
}

fn two_servers_on_two_hosts() {
    let tmp = tempfile::tempdir().unwrap();
    // Main on host A (198.18.0.1), shared; b on host B (198.18.0.10),
    // shared, its own /56.
    let b = broker(tmp.path(), ServerMode::Shared, 5100);
    let mut sb = NewServer::new("b", "198.18.0.10".parse().unwrap());
    sb.mode = ServerMode::Shared;
    sb.port = Some(5100);
    sb.pool = Some("2001:db8:0:f200::/56".parse().unwrap());
    b.add_server(&sb).unwrap();
    let alice = add_on(&b, "alice", ClientKind::Hermit, "main");
    let bob = add_on(&b, "bob", ClientKind::Subnet, "b");
    add_on(&b, "mallory", ClientKind::Hermit, "main");
    let dave = add_on(&b, "dave", ClientKind::Hermit, "b");
    assert!(alice.prefix().to_string().starts_with("2001:db8:0:f1ff::"));
    assert_eq!(bob.prefix().to_string(), "2001:db8:0:f201::/64");
    let ra = render(&b, "main", tmp.path());
    let rb = render(&b, "b", tmp.path());
    assert_eq!((ra.instances.len(), rb.instances.len()), (1, 1));

    let mut lab = Lab::new("m");
    // Host A is the underlay's server namespace; host B, alice, bob,
    // mallory and dave sit on its bridge.
    let (host_a, ns) = underlay(&mut lab, &["hb", "al", "bo", "ma", "da"]);
    let host_b = ns[0].clone();
    backbone(&lab, &host_a, BACKBONE_A);
    backbone(&lab, &host_b, BACKBONE_B);
    let log_a = start_server(&mut lab, &host_a, &b, &ra.dir, &ra.instances[0]);
    let log_b = {
        let logs = b.dir().join("log");
        fs::create_dir_all(&logs).unwrap();
        let log = logs.join("b.log");
        let conf = format!("{}.conf", rb.instances[0]);
        lab.spawn_logged(
            "server-b",
            &host_b,
            &[
                "openvpn",
                "--cd",
                rb.dir.to_str().unwrap(),
                "--config",
                &conf,
            ],
            &log,
        );
        log
    };
    assert!(log_has(&log_a, READY, UP), "server A:\n{}", tail(&log_a));
    assert!(log_has(&log_b, READY, UP), "server B:\n{}", tail(&log_b));

    // Each client reaches the backbone behind its own server, with the
    // address from its own server's pool.
    let dir_alice = unpack(&b, "alice", tmp.path());
    let dir_bob = unpack(&b, "bob", tmp.path());
    let la = start_client(&mut lab, "alice", &ns[1], &dir_alice, "alice");
    let lb = start_client(&mut lab, "bob", &ns[2], &dir_bob, "bob");
    wait_connected(&la, &log_a);
    wait_connected(&lb, &log_b);
    for (n, c, behind) in [(&ns[1], &alice, BACKBONE_A), (&ns[2], &bob, BACKBONE_B)] {
        let addrs = lab.ns(n, &["ip", "-6", "addr", "show", "dev", "tun0"]);
        assert!(
            addrs.contains(&c.tunnel_address().to_string()),
            "{}: {addrs}",
            c.id
        );
        assert!(lab.ping(n, behind, None, 10), "{} -> {behind}", c.id);
    }

    // Mallory's bundle is for main; pointed at host B it is refused: B's
    // certificate is not the server her bundle names.
    let dir_m = unpack(&b, "mallory", tmp.path());
    let conf = dir_m.join("mallory.conf");
    let text = fs::read_to_string(&conf).unwrap();
    assert!(text.contains("remote 198.18.0.1 5100"), "{text}");
    fs::write(
        &conf,
        text.replace("remote 198.18.0.1 5100", "remote 198.18.0.10 5100"),
    )
    .unwrap();
    let lm = start_client(&mut lab, "mallory", &ns[3], &dir_m, "mallory");
    assert!(
        log_line(&lm, &["VERIFY X509NAME ERROR", "tunnelbroker-server-b"], UP),
        "mallory's client did not refuse server B:\n{}",
        tail(&lm)
    );
    assert!(!log_has(&lm, READY, REFUSED), "mallory connected to B");
    lab.stop("mallory");

    // Dave, on b, got his bundle and was revoked: b refuses him (its CRL
    // comes with its files: render b again, as its host does).
    let dir_d = unpack(&b, "dave", tmp.path());
    b.revoke(&dave.id, RevocationReason::KeyCompromise).unwrap();
    render(&b, "b", tmp.path());
    let ld = start_client(&mut lab, "dave", &ns[4], &dir_d, "dave");
    assert_refused(
        &ld,
        &log_b,
        &["certificate revoked", "CN=dave"],
        "dave, revoked, on server b",
    );
    lab.stop("dave");
    // The others keep their sessions.
    assert!(lab.ping(&ns[1], BACKBONE_A, None, 5), "alice lost hers");
    assert!(lab.ping(&ns[2], BACKBONE_B, None, 5), "bob lost his");
}

#[test]
fn two_servers_with_their_own_pools_on_two_hosts() {
    needs_root(
        "two_servers_with_their_own_pools_on_two_hosts",
        two_servers_on_two_hosts,
    );
}
