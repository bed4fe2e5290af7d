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
    let dir = shared_broker(tmp.path());
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
    // A directory gets the default name inside it, as in Python.
    let bundles = tmp.path().join("bundles");
    std::fs::create_dir(&bundles).unwrap();
    let printed = run_ok(
        &dir,
        &["client", "bundle", "bob", "-o", bundles.to_str().unwrap()],
    );
    assert!(printed.contains("bundles/bob.zip"), "{printed}");
    assert_eq!(&std::fs::read(bundles.join("bob.zip")).unwrap()[..2], b"PK");

    // Revoking says on stderr that no server runs here to end a session.
    let r = tb(&dir, &["--json", "client", "revoke", "bob"]);
    ok(&r);
    let err = text(&r.stderr);
    assert!(err.contains("no OpenVPN server answers"), "{err}");
    // --json says the same as Python's Revocation: the client and its session.
    let shown: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(shown["id"], "bob");
    assert_eq!(shown["state"], "revoked");
    assert_eq!(shown["session"], "no-server");
    assert_eq!(shown["session_ended"], false);
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

#[test]
fn revoke_exits_1_when_the_session_cannot_be_ended_in_time_and_keeps_the_revocation() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("broker");
    crate::init(&dir, &["--mode", "shared"]);
    run_ok(&dir, &["client", "add", "alice", "--subnet"]);
    let out = tmp.path().join("out");
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    run_ok(
        &dir,
        &[
            "server",
            "render",
            "-o",
            out.to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
        ],
    );
    let conf = std::fs::read_to_string(out.join("tb-shared.conf")).unwrap();
    let socket = conf
        .lines()
        .find_map(|l| l.strip_prefix("management "))
        .unwrap()
        .trim_end_matches(" unix")
        .to_owned();
    // A management socket that chatters forever and never answers.
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        while conn.write_all(b">INFO:still here\r\n").is_ok() {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    });
    let started = std::time::Instant::now();
    let r = tb(&dir, &["--json", "client", "revoke", "alice"]);
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(13), "took {took:?}");
    let err = fails(&r, 1);
    assert!(
        err.contains("client alice is revoked, but its live session could not be ended")
            && err.contains("did not answer within 10 s")
            && err.contains("systemctl restart openvpn-server@tb-shared"),
        "{err}"
    );
    let shown: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(shown["state"], "revoked");
    assert_eq!(shown["session"], "unanswered");
    assert_eq!(shown["session_ended"], false);
    let now: Value =
        serde_json::from_str(&run_ok(&dir, &["--json", "client", "show", "alice"])).unwrap();
    assert_eq!(now["state"], "revoked");
    server.join().unwrap();
}

#[test]
fn render_refuses_foreign_files_without_force_and_never_follows_a_ccd_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("broker");
    crate::init(&dir, &["--mode", "shared"]);
    run_ok(&dir, &["client", "add", "alice", "--subnet"]);
    let out = tmp.path().join("etc-openvpn-server");
    std::fs::create_dir(&out).unwrap();
    let o = out.to_str().unwrap();
    for f in ["ca.crt", "server.crt", "server.key", "tls-crypt.key"] {
        std::fs::write(out.join(f), format!("another server's {f}\n")).unwrap();
    }
    let listing = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let before = listing(&out);
    let r = tb(&dir, &["server", "render", "-o", o]);
    let err = fails(&r, 2);
    assert!(
        err.contains(&format!("{}", out.join("ca.crt").display()))
            && err.contains("not written by this broker")
            && err.contains("--force"),
        "{err}"
    );
    assert!(r.stdout.is_empty());
    assert_eq!(listing(&out), before, "something was written");
    assert_eq!(
        std::fs::read_to_string(out.join("server.key")).unwrap(),
        "another server's server.key\n"
    );
    // --force replaces them; afterwards a plain render has nothing to do.
    let forced = run_ok(&dir, &["server", "render", "-o", o, "--force"]);
    assert!(forced.contains("wrote"), "{forced}");
    assert_ne!(
        std::fs::read_to_string(out.join("server.key")).unwrap(),
        "another server's server.key\n"
    );
    let again = run_ok(&dir, &["server", "render", "-o", o]);
    assert!(again.contains(": 0 written"), "{again}");

    // A ccd symlink is refused, with or without --force; the target stays.
    let other = tmp.path().join("other");
    let target = other.join("ccd");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("alice"), "keep\n").unwrap();
    let out2 = other.join("server");
    std::fs::create_dir(&out2).unwrap();
    std::os::unix::fs::symlink(&target, out2.join("ccd")).unwrap();
    for extra in [&[][..], &["--force"][..]] {
        let mut args = vec!["server", "render", "-o", out2.to_str().unwrap()];
        args.extend_from_slice(extra);
        let r = tb(&dir, &args);
        let err = fails(&r, 2);
        assert!(err.contains("ccd: is a symbolic link"), "{err}");
        assert_eq!(listing(&target), ["alice"]);
        assert_eq!(
            std::fs::read_to_string(target.join("alice")).unwrap(),
            "keep\n"
        );
        assert_eq!(listing(&out2), ["ccd"]);
    }
}

#[test]
fn a_second_brokers_files_survive_a_render_and_our_orphans_go() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    crate::init(&a, &[]);
    crate::init(&b, &[]);
    run_ok(&a, &["client", "add", "alice", "--subnet"]);
    run_ok(&a, &["client", "add", "anna", "--hermit"]);
    run_ok(&b, &["client", "add", "bob", "--subnet"]);
    let out = tmp.path().join("etc-openvpn-server");
    let o = out.to_str().unwrap();
    run_ok(&b, &["server", "render", "-o", o]);
    let bobs: Vec<_> = [
        "tb-client-bob.conf",
        "tb-client-bob.up",
        "tb-client-bob.down",
    ]
    .iter()
    .map(|n| (out.join(n), std::fs::read(out.join(n)).unwrap()))
    .collect();
    // Both cannot own ca.crt: refused without --force.
    let err = fails(&tb(&a, &["server", "render", "-o", o]), 2);
    assert!(err.contains("ca.crt belongs to another broker"), "{err}");
    run_ok(&a, &["server", "render", "-o", o, "--force"]);
    ok(&tb(&a, &["client", "revoke", "anna"]));
    let after = run_ok(&a, &["--json", "server", "render", "-o", o]);
    let after: Value = serde_json::from_str(&after).unwrap();
    assert_eq!(
        after["removed"],
        serde_json::json!([out.join("tb-client-anna.conf")])
    );
    for (p, data) in &bobs {
        assert_eq!(&std::fs::read(p).unwrap(), data, "{}", p.display());
    }
    let again = run_ok(&a, &["server", "render", "-o", o]);
    assert!(
        // alice's 3, 4 certificates, keys and CRL, 3 units, and the
        // tls-crypt-v2 server key, verify program and list of clients
        again.contains(": 0 written, 13 unchanged, 0 removed"),
        "{again}"
    );
}

/// A shared-mode broker in `tmp/broker` with alice, a subnet client.
fn shared_broker(tmp: &Path) -> std::path::PathBuf {
    let dir = tmp.join("broker");
    crate::init(&dir, &["--mode", "shared"]);
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

#[test]
fn hostile_run_dirs_are_refused_in_one_line_and_nothing_is_recorded() {
    let tmp = crate::operator_tempdir();
    let dir = shared_broker(tmp.path());
    let out = tmp.path().join("out");
    let settings = std::fs::read_to_string(dir.join("tunnelbroker.toml")).unwrap();
    for bad in ["/run/a b", "/run/x\ny", "/run/$(id)", "/run/`id`;rm"] {
        let err = fails(
            &tb(
                &dir,
                &[
                    "server",
                    "render",
                    "-o",
                    out.to_str().unwrap(),
                    "--run-dir",
                    bad,
                ],
            ),
            2,
        );
        assert!(err.contains("is not allowed"), "{bad:?}: {err}");
        assert!(!out.join("tb-shared.conf").exists(), "{bad:?}");
        assert_eq!(
            std::fs::read_to_string(dir.join("tunnelbroker.toml")).unwrap(),
            settings,
            "{bad:?}"
        );
    }
}

/// Issue 15: `init --tls-crypt v1` makes a v1 broker; `server tls-crypt-v2
/// migrate` moves it to v2 (once), `revert` back; bad versions are bad input.
#[test]
fn tls_crypt_v2_migrate_and_revert() {
    let tmp = crate::operator_tempdir();
    let dir = tmp.path().join("broker");
    let d = dir.to_str().unwrap();
    let out = crate::run(&[
        "--dir",
        d,
        "init",
        "--pool",
        "2001:db8:0:f100::/56",
        "--endpoint",
        "vpn.example.net",
        "--tls-crypt",
        "v1",
    ]);
    assert!(ok(&out).contains("tls-crypt     v1"));
    let moved: Value = serde_json::from_str(&run_ok(
        &dir,
        &["--json", "server", "tls-crypt-v2", "migrate"],
    ))
    .unwrap();
    assert_eq!(moved["from"], "v1");
    assert_eq!(moved["to"], "v2");
    assert_eq!(moved["changed"], true);
    assert_eq!(moved["made_server_key"], false);
    let again = run_ok(&dir, &["server", "tls-crypt-v2", "migrate"]);
    assert!(again.contains("uses tls-crypt v2 already"), "{again}");
    let toml = std::fs::read_to_string(dir.join("tunnelbroker.toml")).unwrap();
    assert!(toml.contains("\ntls_crypt = \"v2\"\n"), "{toml}");
    let back = run_ok(&dir, &["server", "tls-crypt-v2", "revert"]);
    assert!(back.contains("now uses tls-crypt v1 (was v2)"), "{back}");
    let bad = crate::run(&[
        "--dir",
        tmp.path().join("other").to_str().unwrap(),
        "init",
        "--pool",
        "2001:db8:0:f100::/56",
        "--endpoint",
        "vpn.example.net",
        "--tls-crypt",
        "v3; rm -rf /",
    ]);
    assert!(fails(&bad, 2).contains("tls-crypt version"));
}
