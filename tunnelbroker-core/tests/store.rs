//! The store conformance suite: the same cases against `SqliteStore` and
//! `PostgresStore` (in a database of its own, see `pg`), and what only
//! PostgreSQL has: schema refusals, writers on several connections, a
//! connection killed in the middle of a write, TLS.

use std::sync::Arc;

use time::OffsetDateTime;
use tunnelbroker_core::broker::{ClientOs, ClientState};
use tunnelbroker_core::pki::{RevocationReason, Serial};
use tunnelbroker_core::store::{
    CertRecord, CertState, ClientRecord, DatabaseUrl, PostgresStore, SqliteStore, Store, copy,
};
use tunnelbroker_core::{Assignment, ClientId, ClientKind, ErrorKind, Pool};

use crate::pg;

fn pool() -> Pool {
    "2001:db8::/48".parse().unwrap()
}

fn client(i: u32) -> ClientRecord {
    ClientRecord {
        id: ClientId::new(&format!("c{i}")).unwrap(),
        os: ClientOs::Linux,
        assignment: Assignment::parse_in(
            &pool(),
            ClientKind::Subnet,
            &format!("2001:db8:0:{:x}::/64", 0x100 + i),
        )
        .unwrap(),
        port: Some(5000 + u16::try_from(i).unwrap()),
        state: ClientState::Active,
        email: Some(format!("c{i}@example.org")),
        name: Some("Ünïcode ‘name’".into()),
        created_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        revoked_at: None,
        server: "main".into(),
    }
}

fn cert(serial: &str, client: u32, state: CertState) -> CertRecord {
    let at = OffsetDateTime::from_unix_timestamp(1_700_000_100).unwrap();
    CertRecord {
        serial: serial.parse::<Serial>().unwrap(),
        client_id: ClientId::new(&format!("c{client}")).unwrap(),
        pem: format!("-----BEGIN CERTIFICATE-----\n{serial}\n"),
        key_pem: Some("key".into()),
        not_after: at,
        state,
        revoked: (state == CertState::Revoked).then_some((at, RevocationReason::KeyCompromise)),
    }
}

/// A store under test and what keeps it alive.
struct Subject {
    store: Box<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    db: Option<pg::TestDb>,
}

fn sqlite() -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::create(&dir.path().join("clients.db"), pool()).unwrap();
    Subject {
        store: Box::new(store),
        _dir: Some(dir),
        db: None,
    }
}

fn postgres() -> Option<Subject> {
    let db = pg::database()?;
    let store = PostgresStore::create(db.url(), pool()).unwrap();
    Some(Subject {
        store: Box::new(store),
        _dir: None,
        db: Some(db),
    })
}

/// Runs `case` on a SQLite store and, when a cluster is there, on a
/// PostgreSQL one.
fn both(case: impl Fn(&Subject)) {
    case(&sqlite());
    if let Some(s) = postgres() {
        case(&s);
    }
}

fn count(s: &dyn Store) -> u64 {
    s.read_with(|tx| tx.client_count()).unwrap()
}

#[test]
fn a_transaction_commits_whole_or_not_at_all() {
    both(|s| {
        let st = s.store.as_ref();
        let e = st
            .write_with(|tx| {
                tx.insert_client(&client(1))?;
                tx.insert_certificate(&cert("0A01", 1, CertState::Current))?;
                tx.set_shared("k", "v")?;
                tx.set_crl_number(7)?;
                Err::<(), _>(tunnelbroker_core::Error::UnknownClient { id: "x".into() })
            })
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let (n, certs, shared, crl) = st
            .read_with(|tx| {
                Ok((
                    tx.client_count()?,
                    tx.certificates()?,
                    tx.shared("k")?,
                    tx.crl_number()?,
                ))
            })
            .unwrap();
        assert_eq!((n, certs.len(), shared, crl), (0, 0, None, 0));
        st.write_with(|tx| {
            tx.insert_client(&client(1))?;
            tx.insert_certificate(&cert("0A01", 1, CertState::Current))
        })
        .unwrap();
        let (c, latest) = st
            .read_with(|tx| {
                let id = ClientId::new("c1")?;
                Ok((tx.client(&id)?, tx.latest_certificate(&id)?))
            })
            .unwrap();
        assert_eq!(c, Some(client(1)));
        assert_eq!(latest, Some(cert("0A01", 1, CertState::Current)));
    });
}

#[test]
fn ids_prefixes_ports_and_serials_are_unique() {
    both(|s| {
        let st = s.store.as_ref();
        st.write_with(|tx| {
            tx.insert_client(&client(1))?;
            tx.insert_certificate(&cert("0A01", 1, CertState::Current))
        })
        .unwrap();
        let mut same_id = client(2);
        same_id.id = ClientId::new("c1").unwrap();
        let mut same_prefix = client(2);
        same_prefix.assignment = client(1).assignment;
        let mut same_port = client(2);
        same_port.port = client(1).port;
        let cases: [(ClientRecord, ErrorKind); 3] = [
            (same_id, ErrorKind::AlreadyExists),
            (same_prefix, ErrorKind::AlreadyExists),
            (same_port, ErrorKind::Database),
        ];
        for (rec, kind) in cases {
            // Against a committed row, and against one of the same
            // transaction (PostgreSQL buffers inserts).
            for in_tx in [false, true] {
                let e = st
                    .write_with(|tx| {
                        if in_tx {
                            tx.insert_client(&client(3))?;
                            let mut twin = rec.clone();
                            twin.id = client(3).id;
                            if rec.id.as_str() == "c1" {
                                twin = client(3);
                                twin.assignment = client(4).assignment;
                                twin.port = client(4).port;
                            } else if rec.port == client(1).port {
                                twin.port = client(3).port;
                                twin.assignment = client(5).assignment;
                                twin.id = ClientId::new("c5")?;
                            } else {
                                twin.assignment = client(3).assignment;
                                twin.id = ClientId::new("c6")?;
                            }
                            tx.insert_client(&twin)?;
                        } else {
                            tx.insert_client(&rec)?;
                        }
                        tx.client_count()
                    })
                    .unwrap_err();
                assert_eq!(e.kind(), kind, "{in_tx}: {e}");
                assert!(!e.to_string().contains('\n'));
            }
        }
        for in_tx in [false, true] {
            let e = st
                .write_with(|tx| {
                    if in_tx {
                        tx.insert_certificate(&cert("0B02", 2, CertState::Revoked))?;
                        tx.insert_certificate(&cert("0B02", 3, CertState::Revoked))?;
                    } else {
                        tx.insert_certificate(&cert("0A01", 2, CertState::Revoked))?;
                    }
                    tx.client_count()
                })
                .unwrap_err();
            assert!(e.to_string().contains("issued before"), "{e}");
        }
        assert_eq!(count(st), 1);
        let certs = st.read_with(|tx| tx.certificates()).unwrap();
        assert_eq!(certs.len(), 1);
    });
}

#[test]
fn lookups_see_rows_of_their_own_transaction() {
    both(|s| {
        let st = s.store.as_ref();
        st.write_with(|tx| {
            tx.insert_client(&client(1))?;
            let c1 = client(1);
            assert!(tx.has_client(&c1.id)?);
            assert_eq!(tx.port_owner(5001)?, Some(c1.id.clone()));
            assert_eq!(
                tx.prefix_owner(c1.assignment.prefix())?,
                Some(c1.id.clone())
            );
            assert_eq!(tx.client(&c1.id)?, Some(c1.clone()));
            assert_eq!(tx.client_count()?, 1);
            assert_eq!(tx.allocations()?.len(), 1);
            tx.insert_client(&client(2))?;
            assert_eq!(tx.clients()?, vec![client(1), client(2)]);
            tx.set_client_state(&c1.id, ClientState::Revoked, Some(c1.created_at))?;
            tx.insert_client(&client(3))?;
            tx.delete_client(&ClientId::new("c3")?)?;
            Ok(())
        })
        .unwrap();
        let c = st.read_with(|tx| tx.clients()).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].state, ClientState::Revoked);
    });
}

#[test]
fn shared_values_certificates_and_the_crl_number() {
    both(|s| {
        let st = s.store.as_ref();
        st.write_with(|tx| {
            assert_eq!(tx.shared("pool")?, None);
            tx.set_shared("pool", "2001:db8::/48")?;
            tx.set_shared("ca", "-----BEGIN CERTIFICATE-----\nx\n")?;
            tx.set_shared("pool", "2001:db8:1::/48")?;
            tx.set_shared("Zeta", "\u{1F600} 'quoted' \"and\" \\ back")?;
            assert_eq!(tx.crl_number()?, 0);
            assert_eq!(tx.next_crl_number()?, 1);
            assert_eq!(tx.crl_number()?, 1);
            tx.set_crl_number(u64::from(u32::MAX) + 5)?;
            assert_eq!(tx.next_crl_number()?, u64::from(u32::MAX) + 6);
            tx.insert_client(&client(1))?;
            // Recorded in this order; serials sort the other way.
            tx.insert_certificate(&cert("7F01", 1, CertState::Revoked))?;
            tx.insert_certificate(&cert("1A02", 1, CertState::Current))?;
            tx.insert_certificate(&cert("0503", 9, CertState::Revoked))
        })
        .unwrap();
        let (shared, pool, certs, latest, revoked) = st
            .read_with(|tx| {
                Ok((
                    tx.shared_values()?,
                    tx.shared("pool")?,
                    tx.certificates()?,
                    tx.latest_certificate(&ClientId::new("c1")?)?,
                    tx.revoked_certificates()?,
                ))
            })
            .unwrap();
        let keys: Vec<&str> = shared.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["Zeta", "ca", "pool"]);
        assert_eq!(shared[0].1, "\u{1F600} 'quoted' \"and\" \\ back");
        assert_eq!(pool.as_deref(), Some("2001:db8:1::/48"));
        let serials: Vec<String> = certs.iter().map(|c| c.serial.to_string()).collect();
        assert_eq!(serials, ["7F01", "1A02", "0503"]);
        assert_eq!(latest.unwrap().serial.to_string(), "1A02");
        let revoked: Vec<String> = revoked.iter().map(|c| c.serial.to_string()).collect();
        assert_eq!(revoked, ["0503", "7F01"]);
        assert_eq!(
            st.write_with(|tx| tx.set_crl_number(u64::MAX)).is_err(),
            // SQLite keeps the number in a signed 64-bit integer.
            s.db.is_none()
        );
    });
}

#[test]
fn copy_from_sqlite_to_postgresql_and_back_loses_nothing() {
    let Some(pg) = postgres() else { return };
    let from = sqlite();
    let now = OffsetDateTime::from_unix_timestamp(1_700_000_500).unwrap();
    from.store
        .write_with(|tx| {
            for i in 1..=50 {
                tx.insert_client(&client(i))?;
                tx.insert_certificate(&cert(
                    &format!("{:04X}", 0x9000 - i),
                    i,
                    CertState::Current,
                ))?;
            }
            for i in (1..=50).step_by(7) {
                tx.set_client_state(&client(i).id, ClientState::Revoked, Some(now))?;
                tx.revoke_certificate(
                    &format!("{:04X}", 0x9000 - i).parse()?,
                    now,
                    RevocationReason::CessationOfOperation,
                )?;
            }
            tx.set_shared("settings", "pool = \"2001:db8::/48\"")?;
            tx.set_crl_number(12)?;
            Ok(())
        })
        .unwrap();
    let dump = |s: &dyn Store| {
        s.read_with(|tx| {
            Ok((
                tx.clients()?,
                tx.certificates()?,
                tx.shared_values()?,
                tx.crl_number()?,
                tx.revoked_certificates()?,
            ))
        })
        .unwrap()
    };
    let report = copy(from.store.as_ref(), pg.store.as_ref()).unwrap();
    assert_eq!((report.clients, report.certificates), (50, 50));
    assert_eq!(dump(from.store.as_ref()), dump(pg.store.as_ref()));
    // A second copy into the same target is refused, and changes nothing.
    let e = copy(from.store.as_ref(), pg.store.as_ref()).unwrap_err();
    assert!(e.to_string().contains("holds 50 clients"), "{e}");
    let back = sqlite();
    copy(pg.store.as_ref(), back.store.as_ref()).unwrap();
    assert_eq!(dump(from.store.as_ref()), dump(back.store.as_ref()));
}

/// Writers on several connections (threads, a store each) that each read
/// what is taken and take the next free prefix and port: no duplicates,
/// nothing lost.
fn concurrent_writers(open: impl Fn() -> Box<dyn Store> + Sync) {
    const THREADS: u32 = 8;
    const EACH: u32 = 25;
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let open = &open;
            scope.spawn(move || {
                let store = open();
                for k in 0..EACH {
                    store
                        .write_with(|tx| {
                            let taken = tx.allocations()?;
                            let next = u32::try_from(taken.len()).unwrap() + 1;
                            let mut rec = client(next);
                            rec.id = ClientId::new(&format!("t{t}-{k}"))?;
                            assert!(tx.port_owner(rec.port.unwrap())?.is_none());
                            tx.insert_client(&rec)?;
                            tx.insert_certificate(&cert(
                                &format!("{t:X}{k:03X}"),
                                next,
                                CertState::Current,
                            ))
                        })
                        .unwrap();
                }
            });
        }
    });
    let store = open();
    let all = store.read_with(|tx| tx.clients()).unwrap();
    assert_eq!(all.len(), (THREADS * EACH) as usize);
    let mut ports: Vec<u16> = all.iter().map(|c| c.port.unwrap()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), all.len());
}

#[test]
fn concurrent_writers_on_sqlite_never_collide() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clients.db");
    drop(SqliteStore::create(&path, pool()).unwrap());
    concurrent_writers(|| Box::new(SqliteStore::open(&path, pool()).unwrap()));
}

#[test]
fn concurrent_writers_on_postgresql_never_collide() {
    let Some(db) = pg::database() else { return };
    drop(PostgresStore::create(db.url(), pool()).unwrap());
    concurrent_writers(|| Box::new(PostgresStore::open(db.url(), pool()).unwrap()));
}

fn kill_store_connections(db: &pg::TestDb) -> u64 {
    let mut admin = db.admin();
    let rows = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND application_name = 'tunnelbroker'",
            &[&db.name()],
        )
        .unwrap();
    // Wait until they are gone (pg_terminate_backend only signals).
    for _ in 0..500 {
        let left: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'tunnelbroker'",
                &[&db.name()],
            )
            .unwrap()
            .get(0);
        if left == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    rows.len() as u64
}

#[test]
fn a_connection_killed_in_a_write_leaves_nothing_and_the_next_reconnects() {
    let Some(db) = pg::database() else { return };
    let store = PostgresStore::create(db.url(), pool()).unwrap();
    let st: &dyn Store = &store;
    st.write_with(|tx| tx.insert_client(&client(1))).unwrap();
    let e = st
        .write_with(|tx| {
            for i in 2..40 {
                tx.insert_client(&client(i))?;
                tx.insert_certificate(&cert(&format!("{i:04X}"), i, CertState::Current))?;
            }
            tx.set_shared("k", "v")?;
            // The rows are on the server now; kill the connection.
            assert_eq!(tx.client_count()?, 39);
            assert_eq!(kill_store_connections(&db), 1);
            tx.insert_client(&client(99))?;
            tx.set_crl_number(5)
        })
        .unwrap_err();
    let text = e.to_string();
    assert_eq!(e.kind(), ErrorKind::Database);
    assert!(
        text.contains("was lost in a transaction, which was not written"),
        "{text}"
    );
    assert!(!text.contains('\n'), "{text}");
    // Nothing of it; and the next transaction reconnects.
    let (n, certs, shared, crl) = st
        .read_with(|tx| {
            Ok((
                tx.client_count()?,
                tx.certificates()?.len(),
                tx.shared_values()?,
                tx.crl_number()?,
            ))
        })
        .unwrap();
    assert_eq!((n, certs, shared.len(), crl), (1, 0, 0, 0));
    st.write_with(|tx| tx.insert_client(&client(2))).unwrap();
    // A connection killed while idle is replaced without an error.
    assert_eq!(kill_store_connections(&db), 1);
    st.write_with(|tx| tx.insert_client(&client(3))).unwrap();
    assert_eq!(count(st), 3);
}

#[test]
fn postgresql_schema_refusals_write_nothing() {
    let Some(db) = pg::database() else { return };
    let url = db.url();
    let tables = |db: &pg::TestDb| -> Vec<String> {
        db.admin()
            .query(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    // Empty: open refuses, and creates nothing.
    let e = PostgresStore::open(url, pool()).unwrap_err();
    assert!(e.to_string().contains("no tunnelbroker schema"), "{e}");
    assert!(tables(&db).is_empty());
    // Another program's tables: both refuse.
    db.admin()
        .batch_execute("CREATE TABLE meta (key TEXT, value TEXT); CREATE TABLE orders (id INT);")
        .unwrap();
    for e in [
        PostgresStore::open(url, pool()).unwrap_err(),
        PostgresStore::create(url, pool()).unwrap_err(),
    ] {
        let text = e.to_string();
        assert!(text.contains("another program"), "{text}");
        assert!(text.contains("\"orders\""), "{text}");
        assert!(!text.contains('\n'));
    }
    assert_eq!(tables(&db), ["meta", "orders"]);
    db.admin().batch_execute("DROP TABLE meta, orders").unwrap();
    // Ours: create refuses a second broker; a newer schema is refused.
    drop(PostgresStore::create(url, pool()).unwrap());
    let e = PostgresStore::create(url, pool()).unwrap_err();
    assert!(e.to_string().contains("holds a broker already"), "{e}");
    db.admin()
        .batch_execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        .unwrap();
    let e = PostgresStore::open(url, pool()).unwrap_err();
    assert!(e.to_string().contains("schema version 99, newer"), "{e}");
    assert_eq!(e.kind(), ErrorKind::Database);
    let version: String = db
        .admin()
        .query_one("SELECT value FROM meta WHERE key = 'schema_version'", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, "99");
    db.admin()
        .batch_execute("UPDATE meta SET value = 'tunnelbroker' WHERE key = 'schema_version'; UPDATE meta SET value = 'else' WHERE key = 'application'")
        .unwrap();
    let e = PostgresStore::open(url, pool()).unwrap_err();
    assert!(e.to_string().contains("another program"), "{e}");
}

#[test]
fn an_unreachable_server_and_a_missing_database_are_one_line() {
    let Some(db) = pg::database() else { return };
    let other: DatabaseUrl = db
        .url()
        .as_str()
        .replace(db.name(), "tb_does_not_exist")
        .parse()
        .unwrap();
    let e = PostgresStore::open(&other, pool()).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("cannot connect") && text.contains("tb_does_not_exist"),
        "{text}"
    );
    assert!(!text.contains('\n'));
    let closed: DatabaseUrl = "postgresql://postgres@127.0.0.1:1/tb".parse().unwrap();
    let text = PostgresStore::open(&closed, pool())
        .unwrap_err()
        .to_string();
    assert!(text.contains("cannot connect"), "{text}");
}

#[test]
fn tls_to_the_test_cluster_is_verified() {
    let Some(db) = pg::database() else { return };
    let Ok(ca) = std::env::var("TUNNELBROKER_TEST_POSTGRES_CA") else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI=true and TUNNELBROKER_TEST_POSTGRES_CA is not set (scripts/lib/postgres.sh sets it when openssl is there)"
        );
        eprintln!("note: TUNNELBROKER_TEST_POSTGRES_CA is not set: the cluster has no TLS");
        return;
    };
    let port = db.url().port();
    let name = db.name();
    let url: DatabaseUrl = format!(
        "postgresql://postgres@localhost:{port}/{name}?sslmode=verify-full&sslrootcert={ca}"
    )
    .parse()
    .unwrap();
    let store = PostgresStore::create(&url, pool()).unwrap();
    let st: &dyn Store = &store;
    st.write_with(|tx| tx.insert_client(&client(1))).unwrap();
    let ssl: bool = db
        .admin()
        .query_one(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.datname = $1 AND a.application_name = 'tunnelbroker'",
            &[&name],
        )
        .unwrap()
        .get(0);
    assert!(ssl);
    // Without our CA (the system's roots), the certificate is refused.
    let url: DatabaseUrl = format!("postgresql://postgres@localhost:{port}/{name}?sslmode=require")
        .parse()
        .unwrap();
    let text = PostgresStore::open(&url, pool()).unwrap_err().to_string();
    assert!(text.contains("cannot connect"), "{text}");
    assert!(!text.contains('\n'));
    // Nor is plain text offered when TLS is asked for: the error names
    // the server's certificate, not a fallback.
    assert!(
        text.contains("certificate") || text.contains("TLS") || text.contains("tls"),
        "{text}"
    );
}

#[test]
fn a_store_is_shared_between_threads() {
    let Some(pg) = postgres() else { return };
    let st: Arc<Box<dyn Store>> = Arc::new(pg.store);
    std::thread::scope(|scope| {
        for t in 0..4u32 {
            let st = Arc::clone(&st);
            scope.spawn(move || {
                for k in 0..10u32 {
                    st.write_with(|tx| {
                        let n = u32::try_from(tx.client_count()?).unwrap() + 1;
                        let mut rec = client(n);
                        rec.id = ClientId::new(&format!("s{t}-{k}"))?;
                        tx.insert_client(&rec)
                    })
                    .unwrap();
                }
            });
        }
    });
    assert_eq!(count(st.as_ref().as_ref()), 40);
    let debug = format!("{:?}", st);
    assert!(debug.contains("PostgresStore") && debug.contains(pg.db.as_ref().unwrap().name()));
}

/// The data stamp a rendering keeps from its plan (issue 19): the same in
/// the next transaction when nothing was committed in between, also after a
/// write transaction that changed nothing, and moved by every commit, by
/// this store or by another connection to the database. PostgreSQL cannot
/// tell cheaply and says so (`None`): a rendering then reads again.
#[test]
fn the_data_stamp_moves_with_every_commit_and_only_then() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clients.db");
    let a: Box<dyn Store> = Box::new(SqliteStore::create(&path, pool()).unwrap());
    let b: Box<dyn Store> = Box::new(SqliteStore::open(&path, pool()).unwrap());
    let stamp = |s: &dyn Store| {
        s.read_with(|tx| {
            tx.client_count()?;
            tx.data_stamp()
        })
        .unwrap()
    };
    let first = stamp(a.as_ref());
    assert!(first.is_some());
    assert_eq!(stamp(a.as_ref()), first);
    a.write_with(|tx| tx.client_count().map(drop)).unwrap();
    assert_eq!(stamp(a.as_ref()), first, "a write of nothing");
    // Inside a write transaction, before it writes, as a rendering asks.
    let inside = a
        .write_with(|tx| {
            tx.client_count()?;
            tx.data_stamp()
        })
        .unwrap();
    assert_eq!(inside, first);
    b.write_with(|tx| tx.insert_client(&client(1))).unwrap();
    let second = stamp(a.as_ref());
    assert_ne!(second, first, "another connection committed");
    a.write_with(|tx| tx.insert_client(&client(2))).unwrap();
    let third = stamp(a.as_ref());
    assert_ne!(third, second, "this store committed");
    assert_ne!(third, first);
    if let Some(s) = postgres() {
        assert_eq!(stamp(s.store.as_ref()), None);
    }
}

/// A database of schema 5 gains the index of current serials when opened
/// (migration 6), and the list of current clients is read through it.
#[test]
fn opening_a_schema_5_database_adds_the_index_of_current_serials() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clients.db");
    {
        let s: Box<dyn Store> = Box::new(SqliteStore::create(&path, pool()).unwrap());
        s.write_with(|tx| {
            tx.insert_client(&client(1))?;
            tx.insert_certificate(&cert("0A01", 1, CertState::Current))
        })
        .unwrap();
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("DROP INDEX current_serials; PRAGMA user_version = 5;")
        .unwrap();
    drop(conn);
    let s: Box<dyn Store> = Box::new(SqliteStore::open(&path, pool()).unwrap());
    let serials = s.read_with(|tx| tx.current_serials("main")).unwrap();
    assert_eq!(
        serials,
        vec![(ClientId::new("c1").unwrap(), "0A01".parse().unwrap())]
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let (version, index): (u32, i64) = conn
        .query_row(
            "SELECT (SELECT user_version FROM pragma_user_version),
                    (SELECT count(*) FROM sqlite_master WHERE name = 'current_serials')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((version, index), (6, 1));
}

/// What a rendering reads, on both stores (issue 19: one query each): the
/// active clients of `main` with assignment and port, in ID order (byte
/// order: `c10` before `c2`), and the serial of each one's latest
/// certificate when that is current. A revoked client, one whose latest
/// certificate is revoked (a current one before it does not count), one
/// without a certificate, and a server without clients (or without a row).
#[test]
fn the_rows_a_rendering_reads_are_those_of_the_whole_rows() {
    both(|s| {
        let st = s.store.as_ref();
        st.write_with(|tx| {
            for i in [2, 10, 1, 3, 4, 5] {
                let mut c = client(i);
                if i == 3 {
                    c.state = ClientState::Revoked;
                    c.revoked_at = Some(c.created_at);
                }
                tx.insert_client(&c)?;
            }
            tx.insert_certificate(&cert("0A02", 2, CertState::Current))?;
            tx.insert_certificate(&cert("0A10", 10, CertState::Current))?;
            tx.insert_certificate(&cert("0A01", 1, CertState::Revoked))?;
            tx.insert_certificate(&cert("0B01", 1, CertState::Current))?;
            tx.insert_certificate(&cert("0A03", 3, CertState::Revoked))?;
            tx.insert_certificate(&cert("0A04", 4, CertState::Current))?;
            tx.insert_certificate(&cert("0B04", 4, CertState::Revoked))
        })
        .unwrap();
        let (rendered, serials, nowhere) = st
            .read_with(|tx| {
                Ok((
                    tx.rendered_clients("main")?,
                    tx.current_serials("main")?,
                    (
                        tx.rendered_clients("nowhere")?,
                        tx.current_serials("nowhere")?,
                    ),
                ))
            })
            .unwrap();
        let want: Vec<_> = [1, 10, 2, 4, 5]
            .into_iter()
            .map(|i| {
                let c = client(i);
                (c.id, c.assignment, c.port)
            })
            .collect();
        assert_eq!(rendered, want);
        let id = |s: &str| ClientId::new(s).unwrap();
        let serial = |s: &str| s.parse::<Serial>().unwrap();
        assert_eq!(
            serials,
            vec![
                (id("c1"), serial("0B01")),
                (id("c10"), serial("0A10")),
                (id("c2"), serial("0A02")),
            ]
        );
        assert_eq!(nowhere, (vec![], vec![]));
    });
}
