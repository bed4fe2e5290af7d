//! `tunnelbroker server render`, `client bundle` and the session note of
//! `client revoke` (issue 5).

use std::path::Path;

use serde_json::Value;

use crate::{failure, success, tunnelbroker};

fn at(dir: &Path, args: &[&str]) -> Vec<String> {
    let mut v = vec!["--dir".to_owned(), dir.to_str().unwrap().to_owned()];
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

fn run_ok(dir: &Path, args: &[&str]) -> String {
    let v = at(dir, args);
    let refs: Vec<&str> = v.iter().map(String::as_str).collect();
    success(&refs)
}

#[test]
fn render_bundle_and_revoke() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("broker");
    run_ok(
        &dir,
        &[
            "init",
            "--pool",
            "2001:db8:0:f100::/56",
            "--endpoint",
            "vpn.example.net",
            "--mode",
            "shared",
        ],
    );
    run_ok(&dir, &["client", "add", "alice", "--subnet"]);
    run_ok(
        &dir,
        &["client", "add", "bob", "--hermit", "--os", "windows"],
    );

    let out = tmp.path().join("etc-openvpn-server");
    let o = out.to_str().unwrap();
    let first: Value =
        serde_json::from_str(&run_ok(&dir, &["--json", "server", "render", "-o", o])).unwrap();
    assert_eq!(first["instances"], serde_json::json!(["tb-shared"]));
    assert!(out.join("tb-shared.conf").exists());
    assert!(out.join("ccd/alice").exists() && out.join("ccd/bob").exists());
    let again = run_ok(&dir, &["server", "render", "-o", o]);
    assert!(again.contains(": 0 written"), "{again}");
    assert!(again.contains("openvpn-server@tb-shared"), "{again}");

    let tgz = tmp.path().join("alice.tar.gz");
    let text = run_ok(
        &dir,
        &["client", "bundle", "alice", "-o", tgz.to_str().unwrap()],
    );
    assert!(text.contains("alice.tar.gz"), "{text}");
    assert!(std::fs::metadata(&tgz).unwrap().len() > 500);
    let zip = tmp.path().join("bob.zip");
    run_ok(
        &dir,
        &["client", "bundle", "bob", "-o", zip.to_str().unwrap()],
    );
    assert_eq!(&std::fs::read(&zip).unwrap()[..2], b"PK");

    // Revoking says on stderr that no server runs here to end a session.
    let v = at(&dir, &["client", "revoke", "bob"]);
    let refs: Vec<&str> = v.iter().map(String::as_str).collect();
    let r = tunnelbroker(&refs);
    assert!(r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("no OpenVPN server answers"), "{err}");
    let after = run_ok(&dir, &["server", "render", "-o", o]);
    assert!(after.contains("removed"), "{after}");
    assert!(!out.join("ccd/bob").exists());

    // No bundle for a revoked or unknown client, or with a bad ID: exit 2.
    for id in ["bob", "ghost", "../x"] {
        let v = at(
            &dir,
            &[
                "client",
                "bundle",
                id,
                "-o",
                tmp.path().join("x").to_str().unwrap(),
            ],
        );
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        failure(&refs, 2);
    }
}
