//! `tunnelbroker server render`, `client bundle` and the session note of
//! `client revoke` (issue 5).

use std::path::Path;

use serde_json::Value;

use crate::{fails, ok, tb, text};

fn run_ok(dir: &Path, args: &[&str]) -> String {
    let out = tb(dir, args);
    let stdout = ok(&out);
    assert!(out.stderr.is_empty(), "{args:?}: {}", text(&out.stderr));
    stdout
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
    let printed = run_ok(
        &dir,
        &["client", "bundle", "alice", "-o", tgz.to_str().unwrap()],
    );
    assert!(printed.contains("alice.tar.gz"), "{printed}");
    assert!(std::fs::metadata(&tgz).unwrap().len() > 500);
    let zip = tmp.path().join("bob.zip");
    run_ok(
        &dir,
        &["client", "bundle", "bob", "-o", zip.to_str().unwrap()],
    );
    assert_eq!(&std::fs::read(&zip).unwrap()[..2], b"PK");

    // Revoking says on stderr that no server runs here to end a session.
    let r = tb(&dir, &["client", "revoke", "bob"]);
    ok(&r);
    let err = text(&r.stderr);
    assert!(err.contains("no OpenVPN server answers"), "{err}");
    let after = run_ok(&dir, &["server", "render", "-o", o]);
    assert!(after.contains("removed"), "{after}");
    assert!(!out.join("ccd/bob").exists());

    // No bundle for a revoked or unknown client, or with a bad ID: exit 2.
    for id in ["bob", "ghost", "../x"] {
        let x = tmp.path().join("x");
        let out = tb(&dir, &["client", "bundle", id, "-o", x.to_str().unwrap()]);
        fails(&out, 2);
        assert!(out.stdout.is_empty());
        assert!(!x.exists());
    }
}
