//! Issue 18: a lost or foreign client database is refused, never recreated;
//! certificates never outlive the CA; the server certificate is renewed; the
//! CRL is read back at any size the broker writes. The lifetimes run on both
//! stores (`stores`); the database and CRL cases write into `clients.db`
//! behind the broker's back and are SQLite's.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tunnelbroker_core::{Broker, ClientKind, Error, ErrorKind, NewClient, Settings};

use crate::stores::{TestStore, by_store};

fn new_broker() -> (tempfile::TempDir, Broker) {
    new_broker_on(&TestStore::Sqlite)
}

/// A new broker in a temporary directory, its clients in `store`.
fn new_broker_on(store: &TestStore) -> (tempfile::TempDir, Broker) {
    let tmp = tempfile::tempdir().unwrap();
    let settings = Settings::new(
        "2001:db8:0:f100::/56".parse().unwrap(),
        "vpn.example.net".parse().unwrap(),
    );
    let b = Broker::init(&tmp.path().join("broker"), &store.options(settings)).unwrap();
    (tmp, b)
}

fn req(id: &str, kind: ClientKind) -> NewClient {
    NewClient::new(id.parse().unwrap(), kind)
}

/// Every file of a directory tree with its mode and contents.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p.clone());
                out.push((p, meta.permissions().mode(), Vec::new()));
            } else {
                out.push((p.clone(), meta.permissions().mode(), fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Removes the database and its -wal and -shm files.
fn remove_database(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = fs::remove_file(PathBuf::from(p));
    }
}

/// An SQLite database at `path` made by `sql` (another program's).
fn sqlite_db(path: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(sql).unwrap();
}

/// The application_id in the header of the database at `path`.
fn application_id(path: &Path) -> u32 {
    let bytes = fs::read(path).unwrap();
    u32::from_be_bytes(bytes[68..72].try_into().unwrap())
}

mod database {
    use super::*;

    /// Makes a broken database at a path.
    type Break = Box<dyn Fn(&Path)>;

    /// What each broken database is and a word its message must have.
    fn broken() -> Vec<(&'static str, Break, &'static str)> {
        vec![
            ("missing", Box::new(|_: &Path| {}), "missing"),
            (
                "0-byte",
                Box::new(|p: &Path| fs::write(p, b"").unwrap()),
                "empty (0 bytes)",
            ),
            (
                "text",
                Box::new(|p: &Path| fs::write(p, "alice,2001:db8::/64\n".repeat(20)).unwrap()),
                "not an SQLite database",
            ),
            (
                "short",
                Box::new(|p: &Path| fs::write(p, b"SQLite format 3\0").unwrap()),
                "not an SQLite database",
            ),
            (
                "foreign",
                Box::new(|p: &Path| sqlite_db(p, "CREATE TABLE foo (x INTEGER);")),
                "another program (tables \"foo\")",
            ),
            (
                "foreign in WAL mode",
                Box::new(|p: &Path| {
                    sqlite_db(
                        p,
                        "PRAGMA journal_mode = WAL; CREATE TABLE foo (x INTEGER);",
                    )
                }),
                "another program (tables \"foo\")",
            ),
            (
                "foreign with an application_id",
                Box::new(|p: &Path| {
                    sqlite_db(
                        p,
                        "PRAGMA application_id = 1234; CREATE TABLE clients (x INTEGER);",
                    )
                }),
                "another program (application_id 0x000004d2)",
            ),
            (
                "schema-less",
                Box::new(|p: &Path| sqlite_db(p, "PRAGMA user_version = 7;")),
                "without tables",
            ),
            (
                "a directory",
                Box::new(|p: &Path| fs::create_dir(p).unwrap()),
                "not a regular file",
            ),
        ]
    }

    #[test]
    fn open_refuses_a_missing_empty_or_foreign_database_and_writes_nothing() {
        for (what, make, why) in broken() {
            let (_t, b) = new_broker();
            b.add_client(&req("alice", ClientKind::Subnet)).unwrap();
            let db = b.paths().database.clone();
            let dir = b.dir().to_owned();
            drop(b);
            remove_database(&db);
            make(&db);
            let before = snapshot(&dir);
            let err = Broker::open(&dir).unwrap_err();
            assert!(
                matches!(err, Error::UnusableDatabase { .. }),
                "{what}: {err:?}"
            );
            assert_eq!(err.kind(), ErrorKind::Database, "{what}");
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("client database {}: ", db.display())),
                "{what}: {msg}"
            );
            assert!(msg.contains(why), "{what}: {msg} lacks {why:?}");
            assert!(msg.contains("restore it from a backup"), "{what}: {msg}");
            assert_eq!(msg.lines().count(), 1, "{what}: {msg}");
            assert_eq!(snapshot(&dir), before, "{what}: the broker changed");
        }
    }

    #[test]
    fn init_marks_its_database_and_an_older_one_is_adopted() {
        let (_t, b) = new_broker();
        b.add_client(&req("alice", ClientKind::Subnet)).unwrap();
        let db = b.paths().database.clone();
        let dir = b.dir().to_owned();
        drop(b);
        assert_eq!(application_id(&db), u32::from_be_bytes(*b"TnBr"));
        // A database made before the broker set its application_id: ours
        // by its tables; opening it marks it.
        sqlite_db(&db, "PRAGMA application_id = 0;");
        assert_eq!(application_id(&db), 0);
        let b = Broker::open(&dir).unwrap();
        assert_eq!(b.clients().unwrap().len(), 1);
        drop(b);
        assert_eq!(application_id(&db), u32::from_be_bytes(*b"TnBr"));
    }

    #[test]
    fn a_database_in_use_is_opened_by_others() {
        let (_t, b) = new_broker();
        b.add_client(&req("alice", ClientKind::Subnet)).unwrap();
        let other = Broker::open(b.dir()).unwrap();
        other.add_client(&req("bob", ClientKind::Hermit)).unwrap();
        assert_eq!(b.clients().unwrap().len(), 2);
    }
}

mod lifetimes {
    use super::*;
    use tunnelbroker_core::broker::ImportedCa;
    use tunnelbroker_core::pki::{Ca, CaParams};

    fn csr() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    /// A broker whose imported CA ends in `days` days.
    fn broker_with_ca_days(store: &TestStore, days: u32) -> (tempfile::TempDir, Broker) {
        let ca = Ca::generate(&CaParams {
            validity_days: days,
            ..CaParams::default()
        })
        .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let settings = Settings::new(
            "2001:db8:0:f100::/56".parse().unwrap(),
            "vpn.example.net".parse().unwrap(),
        );
        let mut options = store.options(settings);
        options.ca = Some(ImportedCa {
            cert_pem: ca.certificate().pem().to_owned(),
            key_pem: ca.key().unwrap().to_pem().to_owned(),
        });
        let b = Broker::init(&tmp.path().join("broker"), &options).unwrap();
        (tmp, b)
    }

    fn renew_server_issues_a_new_certificate_and_re_renders(store: &TestStore) {
        let (_t, b) = new_broker_on(store);
        let alice = b.add_client(&req("alice", ClientKind::Subnet)).unwrap();
        let old = b.server_certificate().unwrap();
        let old_key = b.server_key().unwrap();

        // Nothing rendered: nothing re-rendered, the units are still named.
        let first = b.renew_server().unwrap();
        assert!(first.rendered.is_none());
        assert_eq!(
            first.restart,
            vec![format!("openvpn-server@tb-client-{}", alice.id)]
        );
        assert!(!b.paths().server_dir.exists(), "renew rendered nothing");
        let now = b.server_certificate().unwrap();
        assert_eq!(now, first.certificate);
        assert_ne!(now.serial(), old.serial());
        assert_eq!(first.previous_not_after, Some(old.info().not_after));
        assert!(now.matches_key(&b.server_key().unwrap()));
        assert_ne!(b.server_key().unwrap().to_pem(), old_key.to_pem());
        assert_eq!(now.info().common_name, tunnelbroker_core::broker::SERVER_CN);
        b.ca().verify(&now).unwrap();
        assert!(first.warnings.is_empty(), "{:?}", first.warnings);
        let days = (now.info().not_after - time::OffsetDateTime::now_utc()).whole_days();
        assert!((729..=730).contains(&days), "{days}");
        assert_eq!(
            fs::metadata(&b.paths().server_key)
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );

        // A rendered directory gets the new certificate and key.
        b.render_server(None).unwrap();
        let second = b.renew_server().unwrap();
        let r = second.rendered.expect("re-rendered");
        let dir = fs::canonicalize(&b.paths().server_dir).unwrap();
        assert!(
            r.written.contains(&dir.join("server.crt")),
            "{:?}",
            r.written
        );
        assert!(
            r.written.contains(&dir.join("server.key")),
            "{:?}",
            r.written
        );
        assert_eq!(
            fs::read_to_string(dir.join("server.crt")).unwrap(),
            second.certificate.pem()
        );
        assert_eq!(
            fs::read_to_string(dir.join("server.key")).unwrap(),
            b.server_key().unwrap().to_pem()
        );
    }
    by_store!(renew_server_issues_a_new_certificate_and_re_renders);

    fn no_certificate_outlives_the_ca(store: &TestStore) {
        let (_t, b) = broker_with_ca_days(store, 100);
        let ca_end = b.ca().certificate().info().not_after;
        // init's server certificate, a client's, a CSR client's, a renewal
        // and a server renewal all end with the CA.
        assert_eq!(b.server_certificate().unwrap().info().not_after, ca_end);
        let alice = b.add_client(&req("alice", ClientKind::Subnet)).unwrap();
        assert_eq!(alice.not_after, ca_end);
        let mut bob = req("bob", ClientKind::Hermit);
        bob.csr = Some(csr());
        assert_eq!(b.add_client(&bob).unwrap().not_after, ca_end);
        let renewed = b.renew(&alice.id, None).unwrap();
        assert_eq!(renewed.not_after, ca_end);
        let server = b.renew_server().unwrap();
        assert_eq!(server.certificate.info().not_after, ca_end);
        // ... and the operator is told.
        assert_eq!(server.warnings.len(), 1, "{:?}", server.warnings);
        assert!(server.warnings[0].contains("server certificate of 730 days"));
        let warnings = b.lifetime_warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with("the CA \"tunnelbroker CA\" expires on ")
                && warnings[0].contains("before a client certificate of 365 days would"),
            "{warnings:?}"
        );
        assert_eq!(b.client_lifetime_warning().as_ref(), Some(&warnings[0]));
        // A CA that outlives the defaults warns about nothing.
        let (_t, b) = new_broker_on(store);
        assert!(b.lifetime_warnings().is_empty());
        assert!(b.client_lifetime_warning().is_none());
    }
    by_store!(no_certificate_outlives_the_ca);

    #[test]
    fn a_ca_with_less_than_a_day_left_issues_nothing() {
        let ca = Ca::generate(&CaParams {
            validity_days: 1,
            ..CaParams::default()
        })
        .unwrap();
        let err = ca
            .issue_client(
                &"alice".parse().unwrap(),
                tunnelbroker_core::pki::KeyType::P256,
                365,
            )
            .unwrap_err();
        assert!(matches!(err, Error::CaExpiresSoon { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("too soon to issue a certificate: make a new CA"),
            "{err}"
        );
        assert_eq!(err.kind(), ErrorKind::Crypto);
    }
}

mod crl {
    use super::*;
    use std::time::Instant;

    /// Revokes `n` made-up certificates of client `alice` straight in the
    /// database (the broker would take hours to issue them), each with
    /// `not_after`.
    fn revoke_many(b: &Broker, n: u64, first: u64, not_after: &str) {
        let mut conn = rusqlite::Connection::open(&b.paths().database).unwrap();
        let tx = conn.transaction().unwrap();
        {
            let mut stmt = tx
                .prepare(
                    "INSERT INTO certificates (serial, client_id, pem, key_pem, not_after, state, revoked_at, reason)
                     VALUES (?1, 'alice', 'x', NULL, ?2, 'revoked', '2026-01-01T00:00:00Z', 'superseded')",
                )
                .unwrap();
            for i in first..first + n {
                // 16 bytes, high bit clear, unique.
                stmt.execute(rusqlite::params![format!("4{i:031X}"), not_after])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }

    #[test]
    fn a_crl_of_a_million_entries_is_written_and_read_back() {
        let (_t, b) = new_broker();
        let alice = b.add_client(&req("alice", ClientKind::Subnet)).unwrap();
        b.revoke(&alice.id, Default::default()).unwrap();
        let t = Instant::now();
        revoke_many(&b, 999_999, 0, "2099-01-01T00:00:00Z");
        let inserted = t.elapsed();
        let t = Instant::now();
        let written = b.refresh_crl().unwrap();
        let signed = t.elapsed();
        let t = Instant::now();
        let read = b.crl().unwrap();
        let read_back = t.elapsed();
        eprintln!(
            "1,000,000 entries: insert {inserted:?}, sign and write {signed:?}, read {read_back:?}"
        );
        assert!(written.pem().len() > 50 << 20, "{}", written.pem().len());
        assert_eq!(read.revoked_count(), 1_000_000);
        assert_eq!(read, written);
        assert!(read.is_revoked(&alice.serial));
        assert!(read.is_revoked(&"4000000000000000000000000000ABCD".parse().unwrap()));
        b.ca().check_crl(&read).unwrap();
    }

    #[test]
    fn long_expired_entries_leave_the_crl() {
        let (_t, b) = new_broker();
        let alice = b.add_client(&req("alice", ClientKind::Subnet)).unwrap();
        b.revoke(&alice.id, Default::default()).unwrap();
        let day = |d: i64| {
            (time::OffsetDateTime::now_utc() + time::Duration::days(d))
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        };
        // Expired 29 days ago: listed; 31 days ago: gone.
        revoke_many(&b, 1, 1, &day(-29));
        revoke_many(&b, 1, 2, &day(-31));
        let crl = b.refresh_crl().unwrap();
        assert_eq!(crl.revoked_count(), 2);
        assert!(crl.is_revoked(&alice.serial));
        assert!(crl.is_revoked(&format!("4{:031X}", 1).parse().unwrap()));
        assert!(!crl.is_revoked(&format!("4{:031X}", 2).parse().unwrap()));
    }
}
