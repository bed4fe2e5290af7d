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

/// A certificate request made with openssl, and its path.
fn openssl_csr(dir: &Path) -> std::path::PathBuf {
    let csr = dir.join("own.csr");
    let status = std::process::Command::new("openssl")
        .args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:P-256")
        .args(["-nodes", "-subj", "/CN=own", "-keyout"])
        .arg(dir.join("own.key"))
        .arg("-out")
        .arg(&csr)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    csr
}

#[test]
fn a_bundle_named_for_the_other_format_is_refused_and_messages_say_what_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("broker");
    crate::init(&dir, &[]);
    run_ok(&dir, &["client", "add", "alice", "--subnet"]);
    run_ok(
        &dir,
        &["client", "add", "bob", "--hermit", "--os", "windows"],
    );
    // A Linux bundle is a .tar.gz: alice.zip is refused, nothing written.
    for (id, name, says) in [
        (
            "alice",
            "alice.zip",
            "a Linux client's bundle is a .tar.gz archive",
        ),
        (
            "bob",
            "bob.tar.gz",
            "a Windows client's bundle is a .zip archive",
        ),
        (
            "bob",
            "bob.TGZ",
            "a Windows client's bundle is a .zip archive",
        ),
    ] {
        let file = tmp.path().join(name);
        let out = tb(
            &dir,
            &["client", "bundle", id, "-o", file.to_str().unwrap()],
        );
        let err = fails(&out, 2);
        assert!(err.contains(says), "{err}");
        assert!(!file.exists());
    }
    // The client's key is in its bundle, and the message says so.
    let tgz = tmp.path().join("alice.tar.gz");
    let said = run_ok(
        &dir,
        &["client", "bundle", "alice", "-o", tgz.to_str().unwrap()],
    );
    assert!(said.contains("it holds the client's key"), "{said}");
    // A CSR client's bundle holds no key, and the message does not claim one.
    let csr = openssl_csr(tmp.path());
    run_ok(
        &dir,
        &[
            "client",
            "add",
            "own",
            "--hermit",
            "--csr",
            csr.to_str().unwrap(),
        ],
    );
    let own = tmp.path().join("own.tar.gz");
    let said = run_ok(
        &dir,
        &["client", "bundle", "own", "-o", own.to_str().unwrap()],
    );
    assert!(!said.contains("holds the client's key"), "{said}");
    assert!(said.contains("it holds no key"), "{said}");
}

#[test]
fn renew_says_what_happens_to_the_live_session() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("broker");
    crate::init(&dir, &[]);
    run_ok(&dir, &["client", "add", "alice", "--subnet"]);
    let out = tb(&dir, &["--json", "client", "renew", "alice"]);
    let shown: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(shown["id"], "alice");
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("a live session goes on until OpenVPN's next TLS renegotiation"),
        "{err}"
    );
    assert!(err.contains("tunnelbroker client bundle alice"), "{err}");
}
