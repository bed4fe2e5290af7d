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
    let tmp = crate::operator_tempdir();
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

fn shared_broker(tmp: &Path) -> std::path::PathBuf {
    let dir = tmp.join("broker");
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
    dir
}

#[test]
fn render_refuses_a_directory_out_of_nobodys_reach_with_exit_2() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = crate::operator_tempdir();
    let dir = shared_broker(tmp.path());
    let private = tmp.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = private.join("server");
    let err = fails(
        &tb(&dir, &["server", "render", "-o", out.to_str().unwrap()]),
        2,
    );
    assert!(
        err.contains(&format!("chmod o+x {}", private.display())),
        "{err}"
    );
    assert!(!out.join("tb-shared.conf").exists());
}

#[test]
fn render_records_its_directories_and_crl_refreshes_the_copy() {
    let tmp = crate::operator_tempdir();
    let dir = shared_broker(tmp.path());
    let out = tmp.path().join("etc");
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let rendered: Value = serde_json::from_str(&run_ok(
        &dir,
        &[
            "--json",
            "server",
            "render",
            "-o",
            out.to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
        ],
    ))
    .unwrap();
    assert_eq!(rendered["run_dir"], serde_json::json!(run));
    let settings = std::fs::read_to_string(dir.join("tunnelbroker.toml")).unwrap();
    let out = std::fs::canonicalize(&out).unwrap();
    assert!(
        settings.contains(&format!(
            "[server]\ndir = \"{}\"\nrun_dir = \"{}\"\n",
            out.display(),
            run.display()
        )),
        "{settings}"
    );
    let conf = std::fs::read_to_string(out.join("tb-shared.conf")).unwrap();
    assert!(
        conf.contains(&format!(
            "\nmanagement {}/tb5000.sock unix\n",
            run.display()
        )),
        "{conf}"
    );
    // The CRL refresh unit runs this very binary.
    let service = std::fs::read_to_string(out.join("systemd/tunnelbroker-crl.service")).unwrap();
    assert!(
        service.contains(&format!(
            "\nExecStart={} --dir {} crl\n",
            env!("CARGO_BIN_EXE_tunnelbroker"),
            std::path::absolute(&dir).unwrap().display()
        )),
        "{service}"
    );
    // `crl` (no -o) refreshes the copy OpenVPN reads.
    let before = std::fs::read(out.join("crl.pem")).unwrap();
    run_ok(&dir, &["crl"]);
    let after = std::fs::read(out.join("crl.pem")).unwrap();
    assert_ne!(before, after);
    assert_eq!(after, std::fs::read(dir.join("crl.pem")).unwrap());
    // Without -o, render goes to the recorded directory.
    let again = run_ok(&dir, &["server", "render"]);
    assert!(
        again.starts_with(&format!("{}: 0 written", out.display())),
        "{again}"
    );
    // Revoking ends the session through the recorded run directory.
    let r = tb(&dir, &["client", "revoke", "alice"]);
    ok(&r);
    let err = text(&r.stderr);
    assert!(
        err.contains(&format!("{}/tb5000.sock", run.display())),
        "{err}"
    );
}
