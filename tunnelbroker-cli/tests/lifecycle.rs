//! Issue 18 at the command line: a lost database is refused by every
//! command, the server certificate is renewed, certificates never outlive
//! the CA, and pools must be global unicast or unique local.

use std::fs;
use std::path::{Path, PathBuf};

use tunnelbroker_core::pki::{Ca, CaParams};

use crate::{fails, init, json, ok, tb, text, tunnelbroker};

/// Every entry under `dir` with its contents (directories empty).
fn listing(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
                out.push((p, Vec::new()));
            } else {
                out.push((p.clone(), fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_command_refuses_a_lost_database_and_changes_nothing() {
    type Make = fn(&Path);
    let cases: [(&str, Make, &str); 4] = [
        ("missing", |_| {}, "it is missing"),
        ("0-byte", |p| fs::write(p, b"").unwrap(), "empty (0 bytes)"),
        ("foreign", foreign_db, "another program"),
        (
            "not sqlite",
            |p| fs::write(p, "id,kind\n".repeat(50)).unwrap(),
            "not an SQLite database",
        ),
    ];
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("b");
    init(&dir, &[]);
    ok(&tb(&dir, &["client", "add", "alice", "--subnet"]));
    ok(&tb(&dir, &["server", "render"]));
    let db = dir.join("clients.db");
    let saved = fs::read(&db).unwrap();
    let commands: [&[&str]; 8] = [
        &["client", "list"],
        &["client", "add", "bob", "--subnet"],
        &["client", "revoke", "alice"],
        &["server", "render"],
        &["server", "renew"],
        &["crl"],
        &["audit"],
        &["audit", "--fix"],
    ];
    for (what, make, why) in cases {
        let _ = fs::remove_file(&db);
        make(&db);
        let before = listing(&dir);
        for args in commands {
            let out = tb(&dir, args);
            if args[0] == "audit" {
                // The audit reports the broken database its own way; it
                // must fail and change nothing.
                assert_eq!(out.status.code(), Some(1), "{what} {args:?}");
            } else {
                let err = fails(&out, 1);
                assert!(
                    err.contains(&format!("client database {}: ", db.display())),
                    "{what} {args:?}: {err}"
                );
                assert!(err.contains(why), "{what} {args:?}: {err}");
            }
            assert_eq!(listing(&dir), before, "{what} {args:?} changed the broker");
        }
    }
    let _ = fs::remove_file(&db);
    fs::write(&db, saved).unwrap();
    ok(&tb(&dir, &["client", "list"]));
}

/// Another program's SQLite database: one table `foo` (made with Python's
/// sqlite3 module; the CLI tests do not link SQLite themselves).
fn foreign_db(p: &Path) {
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('CREATE TABLE foo (x)'); c.commit()",
        ])
        .arg(p)
        .status()
        .expect("python3");
    assert!(status.success());
}

#[test]
fn init_and_plan_refuse_a_pool_outside_global_unicast_and_ula() {
    let t = tempfile::tempdir().unwrap();
    for pool in ["::/48", "fe80::/48", "ff02::/48"] {
        let dir = t.path().join("b");
        let err = fails(
            &tb(
                &dir,
                &["init", "--pool", pool, "--endpoint", "vpn.example.net"],
            ),
            2,
        );
        assert!(
            err.contains("a pool must be global unicast (2000::/3) or unique local (fc00::/7)"),
            "{err}"
        );
        assert!(!dir.exists());
        let err = fails(&tunnelbroker(&["plan", "--pool", pool]), 2);
        assert!(err.contains("2000::/3"), "{err}");
    }
    ok(&tunnelbroker(&["plan", "--pool", "fd00:1:2::/48"]));
}

#[test]
fn server_renew_replaces_the_certificate_and_names_the_units() {
    let t = crate::operator_tempdir();
    let dir = t.path().join("b");
    init(&dir, &[]);
    ok(&tb(&dir, &["client", "add", "alice", "--subnet"]));
    let out = ok(&tb(&dir, &["server", "renew"]));
    assert!(
        out.contains("no rendered server files to update; run `tunnelbroker server render`"),
        "{out}"
    );
    assert!(
        out.contains("restart with: systemctl restart openvpn-server@tb-client-alice"),
        "{out}"
    );
    ok(&tb(&dir, &["server", "render"]));
    let old = fs::read_to_string(dir.join("server.crt")).unwrap();
    let v = json(&tb(&dir, &["--json", "server", "renew"]));
    let new = fs::read_to_string(dir.join("server.crt")).unwrap();
    assert_ne!(new, old);
    assert_eq!(
        fs::read_to_string(dir.join("server").join("server.crt")).unwrap(),
        new
    );
    assert_eq!(
        v["restart"],
        serde_json::json!(["openvpn-server@tb-client-alice"])
    );
    assert_eq!(v["warnings"], serde_json::json!([]));
    assert!(v["not_after"].as_str().unwrap().len() >= 20, "{v}");
    assert!(v["previous_not_after"].is_string(), "{v}");
    let written = v["rendered"]["written"].as_array().unwrap();
    assert!(
        written
            .iter()
            .any(|p| p.as_str().unwrap().ends_with("/server.crt")),
        "{v}"
    );
}

#[test]
fn an_imported_ca_that_ends_soon_cuts_certificates_and_says_so() {
    let t = tempfile::tempdir().unwrap();
    let ca = Ca::generate(&CaParams {
        validity_days: 100,
        ..CaParams::default()
    })
    .unwrap();
    let (cert, key) = (t.path().join("ca.crt"), t.path().join("ca.key"));
    fs::write(&cert, ca.certificate().pem()).unwrap();
    fs::write(&key, ca.key().unwrap().to_pem()).unwrap();
    let dir = t.path().join("b");
    let args = |json: bool| {
        let mut a = vec![];
        if json {
            a.push("--json");
        }
        a.extend(crate::init_args(
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
            &[],
        ));
        a
    };
    let out = ok(&tb(&dir, &args(false)));
    assert!(
        out.contains("warning: the CA \"tunnelbroker CA\" expires on ")
            && out.contains("before a client certificate of 365 days would"),
        "{out}"
    );
    let v = json(&tb(&t.path().join("c"), &args(true)));
    assert_eq!(v["warnings"].as_array().unwrap().len(), 2, "{v}");
    let added = tb(&dir, &["--json", "client", "add", "alice", "--subnet"]);
    let client = json(&added);
    let stderr = text(&added.stderr);
    assert!(
        stderr.starts_with("tunnelbroker: warning: the CA ") && stderr.lines().count() == 1,
        "{stderr}"
    );
    let ca_end = ca.certificate().info().not_after;
    let end = time::OffsetDateTime::parse(
        client["not_after"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(end, ca_end);
    // A CA that outlives the defaults warns about nothing.
    let plain = ok(&tb(&t.path().join("d"), &args(false)[..5]));
    assert!(!plain.contains("warning"), "{plain}");
}
