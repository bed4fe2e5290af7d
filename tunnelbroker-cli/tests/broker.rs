//! `tunnelbroker init`, `client ...` and `crl` as an operator runs them:
//! exit statuses, one-line errors, JSON, concurrent processes and a killed
//! import (issue 4).

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tunnelbroker_core::{Broker, ClientId};

use crate::{fails, init, json, ok, tb, usage_error};

#[test]
fn init_then_add_prints_the_assignment() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("b");
    init(&dir, &[]);
    let text = ok(&tb(
        &dir,
        &[
            "client",
            "add",
            "alice",
            "--subnet",
            "--email",
            "alice@example.org",
        ],
    ));
    assert!(text.contains("2001:db8:0:f101::/64"), "{text}");
    assert!(text.contains("2001:db8:0:f100::f101:2"), "{text}");
    let v = json(&tb(
        &dir,
        &[
            "--json", "client", "add", "bob", "--hermit", "--os", "windows",
        ],
    ));
    assert_eq!(v["id"], "bob");
    assert_eq!(v["kind"], "hermit");
    assert_eq!(v["os"], "windows");
    assert_eq!(v["assignment"]["address"], "2001:db8:0:f1ff::1");
    assert_eq!(v["port"], 5001);
    assert_eq!(v["state"], "active");
    let list = json(&tb(&dir, &["client", "list", "--json"]));
    let ids: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["alice", "bob"]);
    let shown = json(&tb(&dir, &["client", "show", "alice", "--json"]));
    assert_eq!(shown["assignment"]["server_end"], "2001:db8:0:f100::f101:1");
    assert_eq!(shown["email"], "alice@example.org");
    let table = ok(&tb(&dir, &["client", "list"]));
    assert!(table.starts_with("ID"), "{table}");
}

#[test]
fn init_twice_refuses_and_bad_init_input_exits_2() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("b");
    init(&dir, &[]);
    let before = std::fs::read(dir.join("ca.crt")).unwrap();
    let err = fails(
        &tb(
            &dir,
            &[
                "init",
                "--pool",
                "2001:db8:1::/48",
                "--endpoint",
                "x.example",
            ],
        ),
        2,
    );
    assert!(err.contains("already holds a broker"), "{err}");
    assert_eq!(std::fs::read(dir.join("ca.crt")).unwrap(), before);
    let fresh = t.path().join("fresh");
    for args in [
        &[
            "init",
            "--pool",
            "2001:db8::1/56",
            "--endpoint",
            "vpn.example.net",
        ][..],
        &["init", "--pool", "hello", "--endpoint", "vpn.example.net"],
        &[
            "init",
            "--pool",
            "2001:db8::/56",
            "--endpoint",
            "vpn.example.net;reboot",
        ],
        &[
            "init",
            "--pool",
            "2001:db8::/56",
            "--endpoint",
            "v",
            "--mode",
            "mesh",
        ],
        &[
            "init",
            "--pool",
            "2001:db8::/56",
            "--endpoint",
            "v",
            "--key-type",
            "dsa",
        ],
        &[
            "init",
            "--pool",
            "2001:db8::/56",
            "--endpoint",
            "v",
            "--lan-interface",
            "../eth0",
        ],
        &[
            "init",
            "--pool",
            "2001:db8::/56",
            "--endpoint",
            "v",
            "--ca-cert",
            "/nonexistent",
        ],
        &[
            "init",
            "--pool",
            "2001:db8::/56",
            "--endpoint",
            "v",
            "--ca-cert",
            "/dev/zero",
            "--ca-key",
            "/dev/zero",
        ],
        &[
            "init",
            "--pool",
            "2001:db8::/56",
            "--endpoint",
            "v",
            "--country",
            "Germany",
        ],
    ] {
        fails(&tb(&fresh, args), 2);
        assert!(!fresh.exists(), "{args:?} left {fresh:?}");
    }
}

#[test]
fn hostile_client_ids_exit_2_and_change_nothing() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("b");
    init(&dir, &[]);
    let long = "a".repeat(65);
    for id in [
        "../../etc/passwd",
        "a;rm -rf /",
        "$(reboot)",
        "",
        "-rf",
        ".hidden",
        "jörg",
        "a b",
        &long,
        "a\nb",
    ] {
        let err = fails(&tb(&dir, &["client", "add", "--subnet", "--", id]), 2);
        assert!(err.contains("invalid client id"), "{id:?}: {err}");
    }
    let list = json(&tb(&dir, &["client", "list", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 0);
}

#[test]
fn windows_reserved_ids_exit_2_for_windows_clients() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("b");
    init(&dir, &[]);
    for id in ["CON", "nul", "com1", "LPT1.txt", "alice."] {
        let err = fails(
            &tb(&dir, &["client", "add", "--hermit", "--os", "windows", id]),
            2,
        );
        assert!(
            err.contains("invalid client id") && err.contains("Windows"),
            "{id:?}: {err}"
        );
    }
    let list = json(&tb(&dir, &["client", "list", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 0);
    ok(&tb(&dir, &["client", "add", "--hermit", "con"]));
}

#[test]
fn every_failure_path_has_its_status_and_line() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("b");
    let err = fails(&tb(&dir, &["client", "list"]), 2);
    assert!(err.contains("tunnelbroker init"), "{err}");
    ok(&tb(
        &dir,
        &[
            "init",
            "--pool",
            "2001:db8:0:f1fc::/62",
            "--endpoint",
            "vpn.example.net",
        ],
    ));
    ok(&tb(
        &dir,
        &[
            "client",
            "add",
            "a",
            "--subnet",
            "--prefix",
            "2001:db8:0:f1fd::/64",
        ],
    ));
    usage_error(&tb(&dir, &["client", "add", "x"])); // neither --hermit nor --subnet
    usage_error(&tb(&dir, &["client", "add", "x", "--hermit", "--subnet"]));
    usage_error(&tb(&dir, &["client", "frobnicate"]));
    // (arguments after `client add`, what the one line must say); exit 2.
    let bad_adds: [(&[&str], &str); 6] = [
        (&["a", "--hermit"], "exists already"),
        (
            &["b", "--subnet", "--prefix", "2001:db8:0:f1fd::/64"],
            "already assigned to a",
        ),
        (
            &["b", "--subnet", "--prefix", "2001:db8:9::/64"],
            "outside the pool",
        ),
        (
            &["b", "--subnet", "--prefix", "2001:db8:0:f1ff::/64"],
            "hermit",
        ),
        (&["b", "--subnet", "--os", "plan9"], "linux, windows"),
        (
            &["b", "--subnet", "--csr", "/nonexistent.csr"],
            "nonexistent",
        ),
    ];
    // Files that are not what they claim: nothing is read from them.
    for file in ["/dev/zero", "/dev/urandom", "/tmp"] {
        let e = fails(
            &tb(&dir, &["client", "add", "z", "--subnet", "--csr", file]),
            2,
        );
        assert!(e.contains("not a regular file"), "{e}");
        let e = fails(&tb(&dir, &["client", "import", file]), 2);
        assert!(e.contains("not a regular file"), "{e}");
    }
    for (args, says) in bad_adds {
        let all = [&["client", "add"][..], args].concat();
        let e = fails(&tb(&dir, &all), 2);
        assert!(e.contains(says), "{all:?}: {e}");
    }
    ok(&tb(&dir, &["client", "add", "b", "--subnet"]));
    let e = fails(&tb(&dir, &["client", "add", "c", "--subnet"]), 1);
    assert!(e.contains("no free subnet"), "{e}");
    for cmd in [
        &["client", "show", "ghost"][..],
        &["client", "revoke", "ghost"],
        &["client", "renew", "ghost"],
        &["client", "purge", "ghost"],
    ] {
        let e = fails(&tb(&dir, cmd), 2);
        assert!(e.contains("no client named ghost"), "{e}");
    }
    let e = fails(
        &tb(&dir, &["client", "revoke", "a", "--reason", "because"]),
        2,
    );
    assert!(e.contains("key-compromise"), "{e}");
    let e = fails(&tb(&dir, &["client", "purge", "a"]), 2);
    assert!(e.contains("revoke it first"), "{e}");
    let list = json(&tb(&dir, &["client", "list", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 2);
}

#[test]
fn revoke_crl_purge() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("b");
    init(&dir, &["--mode", "shared"]);
    let a = json(&tb(&dir, &["--json", "client", "add", "a", "--subnet"]));
    assert_eq!(a["port"], Value::Null);
    let r = json(&tb(
        &dir,
        &[
            "--json",
            "client",
            "revoke",
            "a",
            "--reason",
            "key-compromise",
        ],
    ));
    assert_eq!(r["state"], "revoked");
    let crl_file = t.path().join("out.crl");
    let out = ok(&tb(&dir, &["crl", "-o", crl_file.to_str().unwrap()]));
    assert!(out.contains("1 revoked"), "{out}");
    let pem = std::fs::read_to_string(&crl_file).unwrap();
    assert!(pem.starts_with("-----BEGIN X509 CRL-----"));
    let printed = ok(&tb(&dir, &["crl"]));
    assert!(printed.starts_with("-----BEGIN X509 CRL-----"));
    let p = ok(&tb(&dir, &["client", "purge", "a"]));
    assert!(p.contains("2001:db8:0:f101::/64 is free again"), "{p}");
    let b = json(&tb(&dir, &["--json", "client", "add", "b", "--subnet"]));
    assert_eq!(b["assignment"]["prefix"], "2001:db8:0:f101::/64");
}

/// `tunnelbroker ARGS` run by `sh` under `umask 000`.
fn tb_umask_000(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg("umask 000 && exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_tunnelbroker"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("TUNNELBROKER_DIR")
        .output()
        .unwrap()
}

#[test]
fn crl_output_is_replaced_atomically_at_0644_and_never_through_a_symlink() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("b");
    init(&dir, &["--mode", "shared"]);
    let out = t.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let file = out.join("crl.pem");
    let f = file.to_str().unwrap();

    // Under umask 000 the CRL is still 0644, not 0666.
    ok(&tb_umask_000(&dir, &["crl", "-o", f]));
    let first = std::fs::metadata(&file).unwrap();
    assert_eq!(first.permissions().mode() & 0o7777, 0o644);
    // A reader holding the old file keeps a whole CRL: the new one is a
    // new file renamed over it (a new inode), and no temporary file stays.
    let held = std::fs::File::open(&file).unwrap();
    ok(&tb_umask_000(&dir, &["crl", "-o", f]));
    let second = std::fs::metadata(&file).unwrap();
    assert_ne!(first.ino(), second.ino(), "written in place");
    assert_eq!(second.permissions().mode() & 0o7777, 0o644);
    assert_eq!(held.metadata().unwrap().len(), first.len());
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["crl.pem"], "a temporary file was left");

    // A symlink at FILE: refused with one line, exit 2; the link and its
    // target stay as they were.
    let target = t.path().join("precious");
    std::fs::write(&target, "keep me").unwrap();
    let link = out.join("link.pem");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let r = tb(&dir, &["crl", "-o", link.to_str().unwrap()]);
    let err = fails(&r, 2);
    assert!(
        err.contains("link.pem") && err.contains("symbolic link"),
        "{err}"
    );
    assert!(r.stdout.is_empty());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    // A dangling link is not followed to create its target either.
    let dangling = out.join("dangling.pem");
    let nowhere = t.path().join("nowhere");
    std::os::unix::fs::symlink(&nowhere, &dangling).unwrap();
    fails(&tb(&dir, &["crl", "-o", dangling.to_str().unwrap()]), 2);
    assert!(!nowhere.exists());
}

#[test]
fn import_reports_bad_rows_with_exit_2_and_keeps_good_ones() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("b");
    init(&dir, &[]);
    let csv = t.path().join("users.csv");
    std::fs::write(&csv, "id,kind,os,email,name\nalice,subnet,linux,a@example.org,Alice\n$(x),hermit,linux,,\nbob,hermit,,,\n").unwrap();
    let out = tb(&dir, &["client", "import", csv.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("subscribed 2 client(s)"), "{stdout}");
    assert!(stdout.contains("line 3:"), "{stdout}");
    fails(&out, 2);
    let list = json(&tb(&dir, &["client", "list", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 2);
    fails(&tb(&dir, &["client", "import", "/nonexistent.csv"]), 2);
}

#[test]
fn concurrent_processes_never_share_an_assignment_or_port() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("b");
    init(&dir, &[]);
    let children: Vec<_> = (0..8)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_tunnelbroker"))
                .arg("--dir")
                .arg(&dir)
                .args([
                    "client",
                    "add",
                    &format!("c{i}"),
                    if i % 2 == 0 { "--subnet" } else { "--hermit" },
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let b = Broker::open(&dir).unwrap();
    let clients = b.clients().unwrap();
    assert_eq!(clients.len(), 8);
    let prefixes: HashSet<_> = clients.iter().map(|c| c.prefix()).collect();
    let ports: HashSet<_> = clients.iter().map(|c| c.port).collect();
    assert_eq!((prefixes.len(), ports.len()), (8, 8));
}

/// Every client of the broker is whole: record, certificate issued by the CA
/// for its ID, key, assignment in the pool.
fn assert_every_client_whole(dir: &Path) -> usize {
    let b = Broker::open(dir).unwrap();
    let clients = b.clients().unwrap();
    let mut seen = HashSet::new();
    for c in &clients {
        let creds = b.client_credentials(&c.id).unwrap();
        b.ca().verify(&creds.certificate).unwrap();
        assert_eq!(creds.certificate.info().common_name, c.id.as_str());
        assert_eq!(creds.certificate.serial(), &c.serial);
        assert!(creds.key.is_some());
        assert!(b.settings().pool.net().contains(&c.prefix()));
        assert!(seen.insert(c.prefix()));
    }
    clients.len()
}

#[test]
fn a_killed_import_leaves_only_whole_clients() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("b");
    init(&dir, &[]);
    killed_import(&t, &dir);
}

#[test]
fn a_killed_import_on_postgresql_leaves_only_whole_clients() {
    let Some(db) = crate::pg::database() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("b");
    init(&dir, &["--database", db.url().as_str()]);
    killed_import(&t, &dir);
}

/// Kills `client import` of 2,000 clients with SIGKILL, at the start and
/// in the middle, four times; then checks that every client is whole and
/// that the same import completes.
fn killed_import(t: &tempfile::TempDir, dir: &Path) {
    let csv = t.path().join("many.csv");
    let mut text = String::from("id,kind,os,email,name\n");
    for i in 0..2000 {
        text.push_str(&format!("u{i},hermit,linux,u{i}@example.org,User {i}\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let count = || Broker::open(dir).unwrap().clients().unwrap().len();
    let mut counts = Vec::new();
    // Kill once right after the start, then each time as soon as another
    // batch has committed, that is in the middle of the import.
    for round in 0..4 {
        let before = count();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tunnelbroker"))
            .arg("--dir")
            .arg(dir)
            .args(["client", "import", csv.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if round == 0 {
            std::thread::sleep(Duration::from_millis(5));
        } else {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while count() == before && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        counts.push(assert_every_client_whole(dir));
    }
    assert!(
        counts.iter().any(|&c| c > 0 && c < 2000),
        "no kill landed in the middle of the import: {counts:?}"
    );
    // After the kills, the same import completes: rows already there are
    // reported as existing, the rest are added, and every client is whole.
    let out = tb(dir, &["client", "import", csv.to_str().unwrap()]);
    assert!(out.status.code() == Some(0) || out.status.code() == Some(2));
    assert_eq!(
        assert_every_client_whole(dir),
        2000,
        "counts after kills: {counts:?}"
    );
    let b = Broker::open(dir).unwrap();
    b.client(&ClientId::new("u1999").unwrap()).unwrap();
}

/// Whether `bytes` hold a control character other than the newline that ends a line.
fn raw_controls(bytes: &[u8]) -> Vec<char> {
    String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| c.is_control() && *c != '\n')
        .collect()
}

#[test]
fn control_characters_of_a_ca_subject_or_a_path_never_reach_the_terminal() {
    let t = tempfile::tempdir().unwrap();
    // A CA whose subject holds a newline and an escape sequence (openssl
    // writes them as they are).
    let (cert, key) = (t.path().join("ca.crt"), t.path().join("ca.key"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "30", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-subj", "/O=line1\nline2/CN=evil\x1b[31mCA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        .output();
    match made {
        Ok(o) if o.status.success() => {}
        other => {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "no openssl: {other:?}"
            );
            eprintln!("skipped: openssl could not make the CA: {other:?}");
            return;
        }
    }
    // A broker directory whose name holds both too.
    let dir = t.path().join("b\nx\x1b[31m");
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let dir_s = dir.to_str().unwrap().to_owned();
    let bundle = format!("{dir_s}/alice\x1b[2J.tar.gz");
    let missing = format!("{dir_s}/missing\x1b[2J.conf");
    let nowhere = t.path().join("no\nbroker\x1b[31m");
    let runs: Vec<(Vec<&str>, &Path)> = vec![
        (crate::init_args(cert, key, &[]), &dir),
        (vec!["client", "add", "alice", "--subnet"], &dir),
        (vec!["client", "list"], &dir),
        (vec!["client", "bundle", "alice", "-o", &bundle], &dir),
        (vec!["audit"], &dir),
        (vec!["server", "render"], &dir),
        (vec!["crl", "-o", &bundle], &dir),
        (vec!["doctor", "--config", &missing], &dir),
        (vec!["client", "list"], &nowhere),
        (
            vec![
                "init",
                "--pool",
                "2001:db8:0:f100::/56",
                "--endpoint",
                "vpn.example.net",
            ],
            &dir,
        ),
    ];
    let mut saw_ca = false;
    for (args, d) in runs {
        let out = tb(d, &args);
        let (stdout, stderr) = (crate::text(&out.stdout), crate::text(&out.stderr));
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(raw_controls(&out.stdout), [], "{args:?} stdout: {stdout:?}");
        assert_eq!(raw_controls(&out.stderr), [], "{args:?} stderr: {stderr:?}");
        saw_ca |= stdout.contains("evil\\u{1b}[31mCA");
        if !out.status.success() {
            assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
        }
    }
    assert!(saw_ca, "init shows the CA's name, escaped");
}

/// A root and an intermediate ("VPN Issuing CA") under it, made with
/// `openssl` in `d`: int.crt, int.key, chain.pem (intermediate, then root).
fn openssl_intermediate(d: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(d)
            .args(args)
            .output()
            .expect("run openssl");
        assert!(out.status.success(), "{}", crate::text(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
    std::fs::write(
        d.join("ext.cnf"),
        "[v3_int]\nbasicConstraints=critical,CA:TRUE,pathlen:0\n\
         keyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n\
         authorityKeyIdentifier=keyid:always\n",
    )
    .unwrap();
    let mut root = vec!["req", "-x509", "-nodes", "-days", "3650"];
    root.extend(ec);
    root.extend([
        "-subj",
        "/CN=Test Root",
        "-keyout",
        "root.key",
        "-out",
        "root.crt",
    ]);
    openssl(&root);
    let mut csr = vec!["req", "-new", "-nodes", "-subj", "/CN=VPN Issuing CA"];
    csr.extend(ec);
    csr.extend(["-keyout", "int.key", "-out", "int.csr"]);
    openssl(&csr);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "int.csr",
        "-CA",
        "root.crt",
        "-CAkey",
        "root.key",
        "-set_serial",
        "77",
        "-days",
        "365",
        "-extfile",
        "ext.cnf",
        "-extensions",
        "v3_int",
        "-out",
        "int.crt",
    ]);
    let chain = std::fs::read_to_string(d.join("int.crt")).unwrap()
        + &std::fs::read_to_string(d.join("root.crt")).unwrap();
    std::fs::write(d.join("chain.pem"), chain).unwrap();
}

#[test]
fn init_refuses_an_intermediate_without_its_issuers_in_one_line() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    openssl_intermediate(d);
    let dir = d.join("b");
    let int = d.join("int.crt");
    let key = d.join("int.key");
    let (int, key) = (int.to_str().unwrap(), key.to_str().unwrap());
    let err = fails(&tb(&dir, &crate::init_args(int, key, &[])), 2);
    assert_eq!(
        err.trim_end(),
        format!(
            "tunnelbroker: error: {int}: the CA certificate \"CN=VPN Issuing CA\" is issued by \
             \"CN=Test Root\", which is not in the file: append the issuing CA's certificates up \
             to the root"
        )
    );
    assert!(!dir.exists());

    // With the root appended it is accepted, and the whole chain is kept.
    let chain = d.join("chain.pem");
    let text = ok(&tb(
        &dir,
        &crate::init_args(chain.to_str().unwrap(), key, &[]),
    ));
    assert!(text.contains("VPN Issuing CA"), "{text}");
    let stored = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
    assert_eq!(stored.matches("BEGIN CERTIFICATE").count(), 2, "{stored}");
}

/// An imported CA keeps its own subject and key: init refuses the options
/// that describe a CA to make, and reports the imported CA's own key type
/// (--key-type chooses the server's and clients' keys).
#[test]
fn init_refuses_a_ca_certificate_without_its_key_and_a_key_without_its_certificate() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("b");
    let pem = t.path().join("x.pem");
    std::fs::write(&pem, "x").unwrap();
    let pem = pem.to_str().unwrap();
    for (flag, says) in [
        (
            "--ca-cert",
            "the CA certificate was given without the CA key",
        ),
        (
            "--ca-key",
            "the CA key was given without the CA certificate",
        ),
    ] {
        let args = [
            "init",
            "--pool",
            "2001:db8::/56",
            "--endpoint",
            "v",
            flag,
            pem,
        ];
        let err = fails(&tb(&dir, &args), 2);
        assert!(err.contains(says) && err.contains("go together"), "{err}");
        assert!(!dir.exists());
    }
}

#[test]
fn init_with_an_imported_ca_refuses_subject_options_and_reports_its_key() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    openssl_intermediate(d);
    let dir = d.join("b");
    let chain = d.join("chain.pem");
    let key = d.join("int.key");
    let (chain, key) = (chain.to_str().unwrap(), key.to_str().unwrap());
    for (flag, value) in [
        ("--ca-name", "My CA"),
        ("--country", "DE"),
        ("--organization", "Example"),
        ("--unit", "Networks"),
    ] {
        let err = fails(&tb(&dir, &crate::init_args(chain, key, &[flag, value])), 2);
        assert!(err.contains(flag) && err.contains("--ca-cert"), "{err}");
        assert!(!dir.exists());
    }
    let text = ok(&tb(
        &dir,
        &crate::init_args(chain, key, &["--key-type", "p384"]),
    ));
    assert!(
        text.contains("CA            VPN Issuing CA (p256)"),
        "{text}"
    );
    assert!(text.contains("keys          p384"), "{text}");
    let settings = std::fs::read_to_string(dir.join("tunnelbroker.toml")).unwrap();
    assert!(
        settings.contains("common_name = \"VPN Issuing CA\"")
            && !settings.contains("tunnelbroker CA")
            && settings.contains("key_type = \"p384\""),
        "{settings}"
    );
}
