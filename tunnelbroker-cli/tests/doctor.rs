//! `tunnelbroker doctor` and `tunnelbroker audit` from the command line
//! (issue 7): exit statuses, text and JSON.

use std::process::Output;

use serde_json::Value;

use crate::{init, ok, tb, text};

#[test]
fn audit_exits_1_on_a_failure_and_fix_repairs_the_crl() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    init(&dir, &[]);
    ok(&tb(&dir, &["client", "add", "alice", "--subnet"]));

    let out = tb(&dir, &["audit"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("PASS  crl "),
        "{}",
        text(&out.stdout)
    );

    std::fs::remove_file(dir.join("crl.pem")).unwrap();
    let out = tb(&dir, &["--json", "audit"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "tunnelbroker: error: 1 check failed\n");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed: Vec<_> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(failed, ["crl"]);

    let out = tb(&dir, &["audit", "--fix", "--days", "400"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("fixed: signed a fresh CRL"), "{stdout}");
    assert!(stdout.contains("WARN  expiry"), "{stdout}");
    assert!(dir.join("crl.pem").exists());

    // Not a broker: one line, exit 2 (the directory the user named).
    let out = tb(&tmp.path().join("nothing"), &["audit"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr).lines().count(), 1);
}

#[test]
fn audit_reports_a_missing_or_unreadable_database_on_stdout_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    init(&dir, &[]);
    let db = dir.join("clients.db");
    std::fs::remove_file(&db).unwrap();
    let out = tb(&dir, &["--json", "audit"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "tunnelbroker: error: 1 check failed\n");
    assert_eq!(
        checks(&out, "fail"),
        [(
            "database".to_owned(),
            format!("{} is missing", db.display())
        )]
    );
    assert!(!db.exists(), "audit made a new database");
    let out = tb(&dir, &["audit"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("FAIL  database"), "{stdout}");
    assert!(stdout.contains("SKIP  certificate"), "{stdout}");

    // Not a database: the same, naming the file.
    std::fs::write(&db, "garbage that is not a database at all").unwrap();
    let out = tb(&dir, &["--json", "audit"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let failed = checks(&out, "fail");
    assert_eq!(failed[0].0, "database", "{failed:?}");
    assert!(
        failed[0].1.contains(&db.display().to_string()),
        "{failed:?}"
    );

    // A corrupt CA certificate: a report too, naming the file.
    std::fs::remove_file(&db).unwrap();
    std::fs::write(dir.join("ca.crt"), "not a certificate").unwrap();
    let out = tb(&dir, &["--json", "audit"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let failed = checks(&out, "fail");
    assert!(
        failed
            .iter()
            .any(|(n, m)| n == "ca" && m.contains("ca.crt")),
        "{failed:?}"
    );
}

#[test]
fn doctor_reports_an_unreadable_configuration_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("alice.conf");
    std::fs::write(&conf, "client\n<ca>\nnever closed\n").unwrap();
    let out = tb(
        tmp.path(),
        &[
            "--json",
            "doctor",
            "--no-ping",
            "--config",
            conf.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let config = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "config")
        .unwrap();
    assert_eq!(config["status"], "fail");
    assert!(config["message"].as_str().unwrap().contains("never closed"));
    assert!(config["hint"].is_string());

    // A bad --lan is bad input: exit 2.
    let out = tb(
        tmp.path(),
        &[
            "doctor",
            "--lan",
            "eth0;reboot",
            "--config",
            conf.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

fn checks(out: &Output, status: &str) -> Vec<(String, String)> {
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == status)
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn audit_checks_the_rendered_server_files() {
    let tmp = crate::operator_tempdir();
    let dir = tmp.path().join("b");
    init(&dir, &["--mode", "shared"]);
    for (id, kind) in [("alice", "--subnet"), ("bob", "--hermit")] {
        let out = tb(&dir, &["client", "add", id, kind]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    // Never rendered: a warning, exit 0.
    let out = tb(&dir, &["--json", "audit"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let warned = checks(&out, "warn");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert_eq!(warned[0].0, "server-files");

    assert!(tb(&dir, &["server", "render"]).status.success());
    let server = std::fs::canonicalize(dir.join("server")).unwrap();
    let out = tb(&dir, &["--json", "audit"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(checks(&out, "warn").is_empty());

    // A missing CCD entry: FAIL naming it, exit 1.
    std::fs::remove_file(server.join("ccd/alice")).unwrap();
    let out = tb(&dir, &["--json", "audit"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "tunnelbroker: error: 1 check failed\n");
    assert_eq!(
        checks(&out, "fail"),
        [(
            "server-files".to_owned(),
            format!("{} is missing", server.join("ccd/alice").display())
        )]
    );

    // --fix writes it and says so; afterwards all is well.
    let out = tb(&dir, &["audit", "--fix"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "fixed: re-rendered {}: wrote ccd/alice\n",
            server.display()
        )),
        "{stdout}"
    );
    assert!(server.join("ccd/alice").exists());

    // A revoked client's entry is an orphan: a warning (exit 0) until --fix
    // removes it; JSON lists the action.
    assert!(tb(&dir, &["client", "revoke", "bob"]).status.success());
    let out = tb(&dir, &["--json", "audit"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        checks(&out, "warn"),
        [(
            "orphan-files".to_owned(),
            format!(
                "{} was rendered for revoked client bob; nothing uses it",
                server.join("ccd/bob").display()
            )
        )]
    );
    let out = tb(&dir, &["--json", "audit", "--fix"]);
    assert_eq!(out.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["actions"],
        serde_json::json!([format!("re-rendered {}: removed ccd/bob", server.display())])
    );
    assert!(!server.join("ccd/bob").exists());

    // Files rendered elsewhere: --server-dir.
    let other = tmp.path().join("etc");
    assert!(
        tb(
            &dir,
            &["server", "render", "--out", other.to_str().unwrap()]
        )
        .status
        .success()
    );
    let out = tb(&dir, &["audit", "--server-dir", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains(&format!(
            // (tls-crypt-v2: server key and verify program; its list of
            // clients is live data, not counted)
            "PASS  server-files        all 8 server files in {}",
            std::fs::canonicalize(&other).unwrap().display()
        )),
        "{}",
        text(&out.stdout)
    );
}
