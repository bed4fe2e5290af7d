//! A PostgreSQL password reaches the server from `PGPASSWORD` or a libpq
//! passfile and is never written anywhere in the broker directory (issue
//! 12). The test cluster (scripts/lib/postgres.sh) asks members of
//! `tb_password_users` for a SCRAM password; this test makes such a role.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::{fails, ok, pg, text};

const PASSWORD: &str = "c0rrect horse: battery staple";

/// `tunnelbroker --dir DIR ARGS` with `HOME` an empty directory (no
/// ~/.pgpass) and exactly the password environment given.
fn tb_pw(dir: &Path, home: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tunnelbroker"));
    c.arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("TUNNELBROKER_DIR")
        .env_remove("TUNNELBROKER_DATABASE")
        .env_remove("PGPASSWORD")
        .env_remove("PGPASSFILE")
        .env("HOME", home)
        .env("RUST_BACKTRACE", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run tunnelbroker")
}

/// Every file below `dir`, read as bytes.
fn all_files(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn the_password_comes_from_pgpassword_or_a_private_passfile_and_is_never_written() {
    let Some(db) = pg::database() else { return };
    // A role that must give a password, owning the test database.
    let role = format!("{}_pw", db.name());
    let mut admin = db.admin();
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}' IN ROLE tb_password_users;
             ALTER DATABASE {name} OWNER TO {role};
             ALTER SCHEMA public OWNER TO {role};",
            name = db.name()
        ))
        .expect("create the password role");
    let (_, rest) = db.url().as_str().split_once('@').unwrap();
    let url = format!("postgresql://{role}@{rest}");
    let (hostport, _) = rest.split_once('/').unwrap();
    let (host, port) = hostport.rsplit_once(':').unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    fs::create_dir(&home).unwrap();
    let dir = tmp.path().join("broker");
    let init = [
        "init",
        "--pool",
        "2001:db8:0:f100::/56",
        "--endpoint",
        "vpn.example.net",
        "--database",
        &url,
    ];

    // No password anywhere: refused in one line, nothing made.
    let err = fails(&tb_pw(&dir, &home, &[], &init), 1);
    assert!(err.contains("password"), "{err}");
    assert!(!dir.exists());
    // A wrong one: refused, and neither password is repeated.
    let err = fails(
        &tb_pw(&dir, &home, &[("PGPASSWORD", "wrong-one")], &init),
        1,
    );
    assert!(
        !err.contains("wrong-one") && !err.contains(PASSWORD),
        "{err}"
    );
    assert!(!dir.exists());

    // PGPASSWORD: init and an add work, and the password is in no file.
    ok(&tb_pw(&dir, &home, &[("PGPASSWORD", PASSWORD)], &init));
    ok(&tb_pw(
        &dir,
        &home,
        &[("PGPASSWORD", PASSWORD)],
        &["client", "add", "alice", "--subnet"],
    ));
    for contents in all_files(&dir) {
        let haystack = String::from_utf8_lossy(&contents);
        assert!(!haystack.contains(PASSWORD), "the password was written");
    }

    // A passfile (PGPASSFILE), private: used. The ':' in the password is
    // escaped as libpq's format wants.
    let passfile = tmp.path().join("pgpass");
    fs::write(
        &passfile,
        format!(
            "# a comment\nother:1:*:*:nope\n{host}:{port}:{name}:{role}:{}\n",
            PASSWORD.replace(':', "\\:"),
            name = db.name()
        ),
    )
    .unwrap();
    fs::set_permissions(&passfile, fs::Permissions::from_mode(0o600)).unwrap();
    let pf = passfile.to_str().unwrap();
    let list = ok(&tb_pw(
        &dir,
        &home,
        &[("PGPASSFILE", pf)],
        &["client", "list"],
    ));
    assert!(list.contains("alice"), "{list}");
    // ~/.pgpass when PGPASSFILE is not set.
    fs::copy(&passfile, home.join(".pgpass")).unwrap();
    fs::set_permissions(home.join(".pgpass"), fs::Permissions::from_mode(0o600)).unwrap();
    ok(&tb_pw(
        &dir,
        &home,
        &[],
        &["client", "add", "bob", "--hermit"],
    ));

    // A passfile others can read: refused in one line naming it.
    fs::set_permissions(&passfile, fs::Permissions::from_mode(0o644)).unwrap();
    let out = tb_pw(&dir, &home, &[("PGPASSFILE", pf)], &["client", "list"]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(pf), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
}
