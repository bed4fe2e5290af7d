//! Issue 15 with real OpenVPN: per-client tls-crypt-v2 keys in both server
//! modes, run as Debian's unit runs OpenVPN (a private broker, the server
//! rendered outside it, `nobody` after start, a private /tmp). Tunnels come
//! up with the keys the broker makes; a revoked client's key is refused by
//! the verify program before any TLS, and the server log says so.

use std::fs;
use std::path::Path;
use std::time::Duration;

use tunnelbroker_core::broker::{ServerMode, SessionEnd, TlsCryptVersion};
use tunnelbroker_core::pki::RevocationReason;
use tunnelbroker_core::{Client, ClientKind};

use crate::lab::*;

/// The server's log from byte `from` on.
fn log_since(path: &Path, from: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.get(from..).unwrap_or_default().to_owned()
}

fn log_len(path: &Path) -> usize {
    fs::metadata(path).map(|m| m.len() as usize).unwrap_or(0)
}

/// Alice and carol (hermits) connect with their own tls-crypt-v2 keys;
/// carol is revoked, and her next connection is dropped by the verify
/// program before TLS while alice keeps her tunnel.
fn scenario(mode: ServerMode, port: u16, tag: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new(tag);
    let mut b = layout.broker(mode, port);
    // The lab makes v1 brokers; this one moves, as an operator would.
    let change = b.set_tls_crypt(TlsCryptVersion::V2).unwrap();
    assert!(change.changed());
    let alice = add(&b, "alice", ClientKind::Hermit);
    let carol = add(&b, "carol", ClientKind::Hermit);
    let report = layout.render(&b);
    for f in [
        "tls-crypt-v2-server.key",
        "tls-crypt-v2-verify",
        "tls-crypt-v2-clients",
    ] {
        assert!(layout.server.join(f).is_file(), "{f} not rendered");
    }
    assert!(!layout.server.join("tls-crypt.key").exists());

    let mut lab = Lab::new(tag);
    let (s, ns) = underlay(&mut lab, &["a", "c"]);
    let (names, server_addr): (Vec<String>, &str) = match mode {
        ServerMode::PerClient => (
            [&alice, &carol]
                .iter()
                .map(|c| format!("tb-client-{}", c.id))
                .collect(),
            "fe80::1%tun0",
        ),
        ServerMode::Shared => (vec!["tb-shared".into()], "2001:db8:0:f100::1"),
    };
    assert_eq!(report.instances, names);
    let logs: Vec<_> = names
        .iter()
        .map(|name| {
            let log = tmp.path().join(format!("{name}.log"));
            start_server_as_unit(&mut lab, &s, &layout.server, &layout.run, name, &log)
        })
        .collect();
    let server_log = |c: &Client| match mode {
        ServerMode::PerClient => logs[if c.id == alice.id { 0 } else { 1 }].clone(),
        ServerMode::Shared => logs[0].clone(),
    };
    let mut client_logs = Vec::new();
    for (c, n) in [&alice, &carol].iter().zip(&ns) {
        let dir = unpack(&b, c.id.as_str(), tmp.path());
        let conf = fs::read_to_string(dir.join(format!("{}.conf", c.id))).unwrap();
        assert!(
            conf.contains("\n<tls-crypt-v2>\n-----BEGIN OpenVPN tls-crypt-v2 client key-----\n")
        );
        assert!(!conf.contains("<tls-crypt>"));
        client_logs.push(start_client(
            &mut lab,
            c.id.as_str(),
            n,
            &dir,
            c.id.as_str(),
        ));
    }
    for (c, log) in [&alice, &carol].iter().zip(&client_logs) {
        wait_connected(log, &server_log(c));
        assert!(
            log_has(&server_log(c), "TLS CRYPT V2 VERIFY SCRIPT OK", UP),
            "{}",
            tail(&server_log(c))
        );
    }
    assert!(lab.ping(&ns[1], server_addr, None, 10), "carol -> server");

    // Revoke carol: her session ends, the list of current clients loses her.
    let revoked = b
        .revoke(&carol.id, RevocationReason::KeyCompromise)
        .unwrap();
    assert!(
        matches!(revoked.session, SessionEnd::Ended(_)),
        "{:?}",
        revoked.session
    );
    let list = fs::read_to_string(layout.server.join("tls-crypt-v2-clients")).unwrap();
    assert!(list.contains(&format!("tunnelbroker-1 {} alice\n", alice.serial)));
    assert!(!list.contains("carol"), "{list}");
    let carol_log = server_log(&carol);
    if mode == ServerMode::PerClient {
        assert!(
            lab.exited("tb-client-carol", Duration::from_secs(10)),
            "carol's instance still runs"
        );
    }
    let mark = log_len(&carol_log);
    if mode == ServerMode::PerClient {
        // Her instance comes back (the operator, a reboot).
        start_server_as_unit(
            &mut lab,
            &s,
            &layout.server,
            &layout.run,
            "tb-client-carol",
            &carol_log,
        );
        assert!(log_line(&carol_log, &[READY], UP), "{}", tail(&carol_log));
    }
    lab.stop("carol");
    let carol_dir = tmp.path().join("clients").join("carol");
    let _ = fs::remove_file(&client_logs[1]);
    start_client(&mut lab, "carol", &ns[1], &carol_dir, "carol");
    assert_refused(
        &client_logs[1],
        &carol_log,
        &[
            "tls-crypt-v2-verify: refused",
            "carol is not a current client",
        ],
        "revoked carol",
    );
    assert!(
        log_line(&carol_log, &["TLS CRYPT V2 VERIFY SCRIPT ERROR"], UP),
        "{}",
        tail(&carol_log)
    );
    // No TLS with her: no certificate of hers was looked at, no peer.
    let after = log_since(&carol_log, mark);
    for never in ["CN=carol", "Peer Connection Initiated", "VERIFY OK"] {
        assert!(
            !after
                .lines()
                .any(|l| l.contains(never) && !l.contains("alice")),
            "TLS went on with revoked carol ({never}):\n{after}"
        );
    }
    assert!(
        after.contains("TLS CRYPT V2 VERIFY SCRIPT ERROR"),
        "{after}"
    );
    // Alice kept her tunnel.
    assert!(
        lab.ping(&ns[0], server_addr, None, 5),
        "alice lost her tunnel"
    );
    drop(lab);
    drop(layout);
}

#[test]
fn tls_crypt_v2_refuses_revoked_clients_before_tls_in_both_modes() {
    needs_root(
        "tls_crypt_v2_refuses_revoked_clients_before_tls_in_both_modes",
        || {
            scenario(ServerMode::PerClient, 5400, "vp");
            scenario(ServerMode::Shared, 5500, "vs");
        },
    );
}
