//! Several provisioning hosts on one PostgreSQL database (issue 12), with
//! real `tunnelbroker` processes: two broker directories (the second a copy
//! of the first, as an operator copies /srv/broker to a second host)
//! provisioning at the same time, a connection lost inside an import. The
//! tests need `TUNNELBROKER_TEST_POSTGRES` (see `pg`); without it they do
//! nothing but print a note, except under CI=true, where they fail.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tunnelbroker_core::Broker;
use tunnelbroker_core::pki::{Crl, Serial};

use crate::{fails, json, ok, pg, tb};

/// A pool with room for thousands of subnets.
const POOL: &str = "2001:db8:f000::/48";

/// `tunnelbroker init` of a broker in `dir` on the database at `url`.
pub(crate) fn init_on(dir: &Path, url: &str) {
    ok(&tb(
        dir,
        &[
            "init",
            "--pool",
            POOL,
            "--endpoint",
            "vpn.example.net",
            "--database",
            url,
        ],
    ));
}

/// Copies the broker directory `from` to `to` with its modes, as an
/// operator copies it to a second host.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir(to).unwrap();
    fs::set_permissions(to, fs::metadata(from).unwrap().permissions()).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// `client list --json` through `dir`.
fn list(dir: &Path) -> Vec<Value> {
    json(&tb(dir, &["--json", "client", "list"]))
        .as_array()
        .unwrap()
        .clone()
}

/// Checks that no two clients share an ID, an assignment, a port or a
/// serial, and returns the IDs.
fn assert_unique(clients: &[Value]) -> BTreeSet<String> {
    let n = clients.len();
    let ids: BTreeSet<String> = clients
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    let assignments: HashSet<String> = clients
        .iter()
        .map(|c| c["assignment"].to_string())
        .collect();
    let ports: HashSet<u64> = clients
        .iter()
        .map(|c| c["port"].as_u64().unwrap())
        .collect();
    let serials: HashSet<&str> = clients
        .iter()
        .map(|c| c["serial"].as_str().unwrap())
        .collect();
    assert_eq!(
        (ids.len(), assignments.len(), ports.len(), serials.len()),
        (n, n, n, n),
        "a duplicate ID, assignment, port or serial"
    );
    ids
}

/// The kind of the `i`th client of a process: every fourth a subnet.
fn kind(i: usize) -> &'static str {
    if i.is_multiple_of(4) {
        "--subnet"
    } else {
        "--hermit"
    }
}

#[test]
fn eight_processes_on_two_directories_never_share_an_assignment_port_or_serial() {
    const WORKERS: usize = 8;
    const ADDS: usize = 250;
    let Some(db) = pg::database() else { return };
    let t = tempfile::tempdir().unwrap();
    let one = t.path().join("host-one");
    let two = t.path().join("host-two");
    init_on(&one, db.url().as_str());
    copy_dir(&one, &two);
    // Eight provisioning streams at once, four through each directory, each
    // one `tunnelbroker client add` process after another.
    let started = Instant::now();
    std::thread::scope(|s| {
        for w in 0..WORKERS {
            let dir = if w % 2 == 0 { &one } else { &two };
            s.spawn(move || {
                for i in 0..ADDS {
                    let id = format!("w{w}-c{i}");
                    let out = tb(dir, &["client", "add", &id, kind(i)]);
                    ok(&out);
                }
            });
        }
    });
    eprintln!(
        "{} client adds by {WORKERS} concurrent streams: {:?}",
        WORKERS * ADDS,
        started.elapsed()
    );
    // Every client exactly once, the same through both directories.
    let clients = list(&two);
    let ids = assert_unique(&clients);
    let want: BTreeSet<String> = (0..WORKERS)
        .flat_map(|w| (0..ADDS).map(move |i| format!("w{w}-c{i}")))
        .collect();
    assert_eq!(ids, want);
    assert_eq!(list(&one), clients);
    // Subnets got /64s and hermits addresses, as asked.
    for c in &clients {
        let i: usize = c["id"]
            .as_str()
            .unwrap()
            .rsplit_once("-c")
            .unwrap()
            .1
            .parse()
            .unwrap();
        let want = &kind(i)[2..];
        assert_eq!(c["kind"], want, "{c}");
    }
    // A revocation made through one directory is in the CRL signed
    // through the other.
    let revoked = &clients[17];
    let id = revoked["id"].as_str().unwrap();
    ok(&tb(&two, &["client", "revoke", id]));
    let crl_file = t.path().join("crl.pem");
    ok(&tb(&one, &["crl", "-o", crl_file.to_str().unwrap()]));
    let crl = Crl::from_pem(&fs::read_to_string(&crl_file).unwrap()).unwrap();
    let serial: Serial = revoked["serial"].as_str().unwrap().parse().unwrap();
    assert_eq!(crl.revoked_serials(), std::slice::from_ref(&serial));
    // The CRL is signed by the CA both directories hold.
    Broker::open(&two).unwrap().ca().check_crl(&crl).unwrap();
    // CRL numbers keep growing across the directories.
    ok(&tb(&two, &["crl"]));
    let next = Broker::open(&two).unwrap().crl().unwrap();
    assert!(next.number() > crl.number());
    assert_eq!(next.revoked_serials(), [serial]);
}

/// A CSV of `n` new clients `u0`...
fn csv(n: usize) -> String {
    let mut text = String::from("id,kind,os,email,name\n");
    for i in 0..n {
        let kind = if i.is_multiple_of(4) {
            "subnet"
        } else {
            "hermit"
        };
        text.push_str(&format!("u{i},{kind},linux,u{i}@example.org,User {i}\n"));
    }
    text
}

/// Every client in the broker's database is whole: its certificate, issued
/// by the CA for its ID, with its key, and an assignment of its own.
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
        assert!(seen.insert(c.prefix()));
    }
    clients.len()
}

#[test]
fn a_connection_lost_inside_an_import_fails_it_in_one_line_and_leaves_nothing_of_it() {
    const N: usize = 2000;
    let Some(db) = pg::database() else { return };
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("broker");
    init_on(&dir, db.url().as_str());
    let file = t.path().join("many.csv");
    fs::write(&file, csv(N)).unwrap();
    let mut admin = db.admin();
    let clients = |admin: &mut postgres::Client| -> i64 {
        admin
            .query_one("SELECT count(*) FROM clients", &[])
            .unwrap()
            .get(0)
    };
    let child = Command::new(env!("CARGO_BIN_EXE_tunnelbroker"))
        .arg("--dir")
        .arg(&dir)
        .args(["client", "import", file.to_str().unwrap()])
        .env_remove("TUNNELBROKER_DIR")
        .env_remove("TUNNELBROKER_DATABASE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Terminate the import's backend as soon as it is inside a write
    // transaction: the one holding the writers' advisory lock.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (terminated, before): (bool, i64) = loop {
        let row = admin
            .query_one(
                "SELECT coalesce(bool_or(pg_terminate_backend(a.pid)), false),
                        (SELECT count(*) FROM clients)
                 FROM pg_stat_activity a
                 WHERE a.datname = current_database()
                   AND a.application_name = 'tunnelbroker'
                   AND a.pid <> pg_backend_pid()
                   AND EXISTS (SELECT 1 FROM pg_locks l
                               WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted)",
                &[],
            )
            .unwrap();
        if row.get::<_, bool>(0) {
            break (true, row.get(1));
        }
        assert!(Instant::now() < deadline, "the import never wrote");
        std::thread::sleep(Duration::from_millis(2));
    };
    assert!(terminated);
    let out = child.wait_with_output().unwrap();
    let stderr = fails(&out, 1);
    assert!(stderr.contains("database"), "{stderr}");
    // Nothing of the transaction that was cut is in the database: only the
    // whole batches (of 500 rows, each its own transaction) committed before
    // it, every client whole.
    let after = clients(&mut admin);
    assert!(
        after >= before && (after % 500) == 0,
        "{before} then {after}"
    );
    assert!(after < N as i64, "the import finished before the kill");
    let certs: i64 = admin
        .query_one("SELECT count(*) FROM certificates", &[])
        .unwrap()
        .get(0);
    assert_eq!(certs, after);
    assert_eq!(assert_every_client_whole(&dir), after as usize);
    // The next command works: the same import completes.
    let out = tb(&dir, &["client", "import", file.to_str().unwrap()]);
    assert!(matches!(out.status.code(), Some(0 | 2)), "{out:?}");
    assert_eq!(assert_every_client_whole(&dir), N);
    assert_unique(&list(&dir));
    ok(&tb(&dir, &["client", "add", "late", "--subnet"]));
}

/// The serials a CRL file lists, as openssl prints them, sorted.
fn openssl_serials(crl: &Path) -> Option<Vec<String>> {
    let out = Command::new("openssl")
        .args(["crl", "-noout", "-text", "-in"])
        .arg(crl)
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        other => {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "no openssl: {other:?}"
            );
            return None;
        }
    };
    let mut serials: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Serial Number: "))
        .map(str::to_owned)
        .collect();
    serials.sort();
    Some(serials)
}

/// The serials of a CRL file, read by the core, sorted.
fn crl_serials(crl: &Path) -> Vec<String> {
    let crl = Crl::from_pem(&fs::read_to_string(crl).unwrap()).unwrap();
    let mut serials: Vec<String> = crl
        .revoked_serials()
        .iter()
        .map(ToString::to_string)
        .collect();
    serials.sort();
    serials
}

#[test]
fn db_migrate_of_a_thousand_clients_loses_nothing() {
    let Some(db) = pg::database() else { return };
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("broker");
    ok(&tb(
        &dir,
        &["init", "--pool", POOL, "--endpoint", "vpn.example.net"],
    ));
    let file = t.path().join("clients.csv");
    fs::write(&file, csv(1000)).unwrap();
    ok(&tb(&dir, &["client", "import", file.to_str().unwrap()]));
    // Every tenth revoked (in-process: a hundred processes would only be
    // slower), one of them purged, one renewed (its old certificate
    // superseded, listed).
    {
        let b = Broker::open(&dir).unwrap();
        for i in (0..1000).step_by(10) {
            b.revoke(&format!("u{i}").parse().unwrap(), Default::default())
                .unwrap();
        }
    }
    ok(&tb(&dir, &["client", "purge", "u0"]));
    ok(&tb(&dir, &["client", "renew", "u1"]));
    let before_list = ok(&tb(&dir, &["--json", "client", "list"]));
    let before_crl = t.path().join("before.pem");
    ok(&tb(&dir, &["crl", "-o", before_crl.to_str().unwrap()]));
    let serials = crl_serials(&before_crl);
    assert_eq!(serials.len(), 101);

    let url = db.url().to_string();
    let v = json(&tb(&dir, &["--json", "db", "migrate", "--to", &url]));
    assert_eq!(
        (v["clients"].as_u64(), v["certificates"].as_u64()),
        (Some(999), Some(1001)),
        "{v}"
    );

    // The same clients, the same revocations in the next CRL.
    assert_eq!(ok(&tb(&dir, &["--json", "client", "list"])), before_list);
    let after_crl = t.path().join("after.pem");
    ok(&tb(&dir, &["crl", "-o", after_crl.to_str().unwrap()]));
    assert_eq!(crl_serials(&after_crl), serials);
    if let (Some(a), Some(b)) = (openssl_serials(&before_crl), openssl_serials(&after_crl)) {
        assert_eq!(a.len(), 101);
        assert_eq!(a, b);
    }
    let number = |f: &Path| {
        Crl::from_pem(&fs::read_to_string(f).unwrap())
            .unwrap()
            .number()
    };
    assert!(number(&after_crl) > number(&before_crl));
    // New adds go to PostgreSQL and take what is free.
    let status = json(&tb(&dir, &["--json", "db", "status"]));
    assert_eq!(status["engine"], "postgresql", "{status}");
    for (id, kind) in [
        ("new-subnet", "--subnet"),
        ("new-hermit", "--hermit"),
        ("u0", "--subnet"),
    ] {
        ok(&tb(&dir, &["client", "add", id, kind]));
    }
    let in_pg: i64 = db
        .admin()
        .query_one("SELECT count(*) FROM clients", &[])
        .unwrap()
        .get(0);
    assert_eq!(in_pg, 1002);
    let clients = list(&dir);
    assert_eq!(assert_unique(&clients).len(), 1002);
}
