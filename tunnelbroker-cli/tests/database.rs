//! `init --database`, `TUNNELBROKER_DATABASE`, `db status` and `db migrate`
//! (issue 12): a broker on PostgreSQL from the command line, every refusal
//! one line with nothing changed. The PostgreSQL tests need
//! `TUNNELBROKER_TEST_POSTGRES` (see `pg`); without it they do nothing but
//! print a note, except under CI=true, where they fail.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::{fails, init, json, ok, pg, tb, text};

const POOL: &str = "2001:db8:0:f100::/56";

/// `tunnelbroker --dir DIR ARGS` with `TUNNELBROKER_DATABASE` set to `env`
/// (or unset).
fn tb_env(dir: &Path, env: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tunnelbroker"));
    c.arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("TUNNELBROKER_DIR")
        .env_remove("TUNNELBROKER_DATABASE")
        .env("RUST_BACKTRACE", "1");
    if let Some(v) = env {
        c.env("TUNNELBROKER_DATABASE", v);
    }
    c.output().expect("run tunnelbroker")
}

fn init_args(extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["init", "--pool", POOL, "--endpoint", "vpn.example.net"]
        .iter()
        .map(ToString::to_string)
        .collect();
    a.extend(extra.iter().map(ToString::to_string));
    a
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A PostgreSQL URL where nothing listens (a closed port on this host).
fn unreachable() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("postgresql://tb@127.0.0.1:{port}/tunnelbroker")
}

/// Every file below `dir` with its contents (SQLite's -shm aside, which
/// readers write).
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.to_string_lossy().ends_with("-shm") {
                out.push((p.clone(), fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The names in `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// URLs that are refused as bad input, and a word the refusal must not
/// repeat (the password).
const HOSTILE: &[(&str, &str)] = &[
    ("postgresql://tb:s3cr3t-pw@db.example.net/tb", "s3cr3t-pw"),
    (
        "postgresql://tb:s3cr3t-pw@db.example.net:5432/tb?sslmode=require",
        "s3cr3t-pw",
    ),
    ("mysql://tb@db.example.net/tb", "\u{0}"),
    ("", "\u{0}"),
    ("postgresql://tb@db.example.net/tb\nrm -rf /", "\u{0}"),
    ("postgresql://tb@db.example.net/tb;DROP TABLE x", "\u{0}"),
    ("postgresql://tb@db.example.net/tb?sslmode=prefer", "\u{0}"),
    (
        "postgresql://tb@db.example.net/tb?password=s3cr3t-pw",
        "s3cr3t-pw",
    ),
    ("postgresql://t%62@db.example.net/tb", "\u{0}"),
];

#[test]
fn init_refuses_hostile_database_urls_and_makes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("broker");
    let long = format!("postgresql://tb@db.example.net/{}", "a".repeat(5000));
    let mut all: Vec<(&str, &str)> = HOSTILE.to_vec();
    all.push((&long, "\u{0}"));
    for (url, secret) in all {
        for (flag, env) in [(true, None), (false, Some(url))] {
            let mut args = init_args(&[]);
            if flag {
                args.extend(["--database".to_owned(), url.to_owned()]);
            }
            let out = tb_env(&dir, env, &strs(&args));
            let err = fails(&out, 2);
            assert!(!err.contains(secret), "{err}");
            assert!(err.contains("database URL"), "{url:?}: {err}");
            assert!(
                names(tmp.path()).is_empty(),
                "{url:?}: {:?}",
                names(tmp.path())
            );
        }
    }
}

#[test]
fn init_on_an_unreachable_database_fails_in_one_line_and_makes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("broker");
    let url = unreachable();
    let args = init_args(&["--database", &url]);
    let err = fails(&tb_env(&dir, None, &strs(&args)), 1);
    assert!(err.contains("127.0.0.1"), "{err}");
    assert!(names(tmp.path()).is_empty(), "{:?}", names(tmp.path()));
}

#[test]
fn the_flag_wins_over_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    // A well-formed URL in the environment, a bad one in the flag: the
    // flag's is the one refused.
    let dir = tmp.path().join("broker");
    let args = init_args(&["--database", "mysql://x@y/z"]);
    let err = fails(&tb_env(&dir, Some(&unreachable()), &strs(&args)), 2);
    assert!(err.contains("mysql"), "{err}");
    assert!(names(tmp.path()).is_empty());
}

#[test]
fn init_on_postgresql_names_the_database() {
    let Some(db) = pg::database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let url = db.url().to_string();
    // From the environment, in JSON.
    let one = tmp.path().join("one");
    let args = init_args(&["--json"]);
    let v = json(&tb_env(&one, Some(&url), &strs(&args)));
    assert_eq!(v["database"], url.as_str(), "{v}");
    assert_eq!(v["settings"]["database"]["url"], url.as_str(), "{v}");
    assert!(!one.join("clients.db").exists());
    let toml = fs::read_to_string(one.join("tunnelbroker.toml")).unwrap();
    assert!(
        toml.contains(&format!("[database]\nurl = \"{url}\"")),
        "{toml}"
    );
    ok(&tb(&one, &["client", "add", "alice", "--subnet"]));
    let status = json(&tb(&one, &["db", "status", "--json"]));
    assert_eq!(status["engine"], "postgresql", "{status}");
    assert_eq!(status["location"], url.as_str(), "{status}");
    assert_eq!(status["clients"], 1, "{status}");
    assert!(status["schema_version"].as_u64().unwrap() >= 1, "{status}");
    let text_status = ok(&tb(&one, &["db", "status"]));
    assert!(
        text_status.contains(&format!("{url} (postgresql, schema version ")),
        "{text_status}"
    );

    // Another init on it: refused, one line, nothing made, the flag winning
    // over a bad environment value.
    let two = tmp.path().join("two");
    let args = init_args(&["--database", &url]);
    let err = fails(&tb_env(&two, Some("mysql://x@y/z"), &strs(&args)), 2);
    assert!(err.contains("holds a broker already"), "{err}");
    assert!(err.contains("copy that broker's directory"), "{err}");
    assert!(!two.exists());

    // A second host: a copy of the directory, with a stale pool in its file.
    let copy = tmp.path().join("copy");
    ok(&Command::new("cp")
        .arg("-a")
        .arg(&one)
        .arg(&copy)
        .output()
        .unwrap());
    let settings = copy.join("tunnelbroker.toml");
    let stale = fs::read_to_string(&settings)
        .unwrap()
        .replace(POOL, "2001:db8:0:e000::/56");
    fs::write(&settings, stale).unwrap();
    let out = tb(&copy, &["client", "add", "bob", "--subnet", "--json"]);
    let v = json(&out);
    assert_eq!(v["assignment"]["prefix"], "2001:db8:0:f102::/64", "{v}");
    let warning = text(&out.stderr);
    assert_eq!(warning.lines().count(), 1, "{warning}");
    assert!(warning.starts_with("tunnelbroker: warning: "), "{warning}");
    assert!(warning.contains("pool"), "{warning}");
    let list = ok(&tb(&one, &["client", "list"]));
    assert!(list.contains("alice") && list.contains("bob"), "{list}");
}

#[test]
fn init_text_output_names_the_database() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("broker");
    let out = ok(&tb(&dir, &strs(&init_args(&[]))));
    let line = format!("database      {}", dir.join("clients.db").display());
    assert!(out.contains(&line), "{out}");
    let Some(db) = pg::database() else { return };
    let dir = tmp.path().join("pg");
    let url = db.url().to_string();
    let out = ok(&tb(&dir, &strs(&init_args(&["--database", &url]))));
    assert!(out.contains(&format!("database      {url}")), "{out}");
}

#[test]
fn db_migrate_moves_a_sqlite_broker_to_postgresql() {
    let Some(db) = pg::database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("broker");
    init(&dir, &[]);
    for id in ["alice", "bob", "carol"] {
        ok(&tb(&dir, &["client", "add", id, "--hermit"]));
    }
    ok(&tb(&dir, &["client", "revoke", "bob"]));
    let list_before = ok(&tb(&dir, &["client", "list", "--json"]));
    let url = db.url().to_string();
    let v = json(&tb(&dir, &["db", "migrate", "--to", &url, "--json"]));
    assert_eq!(v["database"], url.as_str(), "{v}");
    assert_eq!(v["clients"], 3, "{v}");
    assert_eq!(v["certificates"], 3, "{v}");
    let kept = dir.join("clients.db.migrated");
    assert_eq!(v["kept"], kept.display().to_string(), "{v}");
    assert!(kept.exists() && !dir.join("clients.db").exists());
    assert_eq!(ok(&tb(&dir, &["client", "list", "--json"])), list_before);
    let status = json(&tb(&dir, &["db", "status", "--json"]));
    assert_eq!(status["engine"], "postgresql", "{status}");
    let crl = json(&tb(&dir, &["crl", "--json"]));
    assert_eq!(crl["revoked"], 1, "{crl}");
    // On PostgreSQL already: refused.
    let err = fails(&tb(&dir, &["db", "migrate", "--to", &url]), 2);
    assert!(err.contains("PostgreSQL already"), "{err}");
}

#[test]
fn db_migrate_says_what_it_did_in_text() {
    let Some(db) = pg::database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("broker");
    init(&dir, &[]);
    ok(&tb(&dir, &["client", "add", "alice", "--hermit"]));
    let url = db.url().to_string();
    let out = ok(&tb(&dir, &["db", "migrate", "--to", &url]));
    assert!(
        out.contains(&format!("moved 1 clients and 1 certificates to {url}")),
        "{out}"
    );
    assert!(out.contains("clients.db.migrated"), "{out}");
}

#[test]
fn db_migrate_refusals_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("broker");
    init(&dir, &[]);
    ok(&tb(&dir, &["client", "add", "alice", "--hermit"]));
    let before = snapshot(&dir);
    for (url, secret) in HOSTILE {
        let err = fails(&tb(&dir, &["db", "migrate", "--to", url]), 2);
        assert!(!err.contains(secret), "{err}");
        assert_eq!(snapshot(&dir), before, "{url:?}");
    }
    let err = fails(&tb(&dir, &["db", "migrate", "--to", &unreachable()]), 1);
    assert!(err.contains("127.0.0.1"), "{err}");
    assert_eq!(snapshot(&dir), before);
    // No broker at all.
    let err = fails(
        &tb(
            &tmp.path().join("none"),
            &["db", "migrate", "--to", "postgresql://tb@127.0.0.1/tb"],
        ),
        2,
    );
    assert!(err.contains("tunnelbroker init"), "{err}");

    // A target that holds a broker.
    let Some(db) = pg::database() else { return };
    let url = db.url().to_string();
    let other = tmp.path().join("other");
    ok(&tb(&other, &strs(&init_args(&["--database", &url]))));
    let err = fails(&tb(&dir, &["db", "migrate", "--to", &url]), 2);
    assert!(err.contains("holds a broker already"), "{err}");
    assert!(err.contains("new, empty database"), "{err}");
    assert_eq!(snapshot(&dir), before);
    ok(&tb(&dir, &["client", "add", "bob", "--hermit"]));
}

#[test]
fn db_commands_have_help() {
    for args in [
        &["db", "--help"][..],
        &["db", "migrate", "--help"],
        &["db", "status", "--help"],
    ] {
        let out = ok(&crate::run(args));
        assert!(out.contains("Usage: tunnelbroker db"), "{out}");
    }
    let out = ok(&crate::run(&["db", "migrate", "--help"]));
    assert!(
        out.contains("--to <URL>") && out.contains("PGPASSWORD"),
        "{out}"
    );
    let out = ok(&crate::run(&["init", "--help"]));
    assert!(out.contains("--database <URL>"), "{out}");
    assert!(out.contains("TUNNELBROKER_DATABASE"), "{out}");
}
