//! Issue 12, the broker's side: the client database that the settings name
//! (SQLite `clients.db`, or PostgreSQL), the shared values in it (settings
//! every host must agree on, the CA certificate) that win over a stale file,
//! several broker directories on one PostgreSQL database, and moving a
//! SQLite broker into PostgreSQL. Each test runs on SQLite, and on
//! PostgreSQL where `TUNNELBROKER_TEST_POSTGRES` names a cluster (see
//! `pg`).

use std::fs;
use std::path::{Path, PathBuf};

use tunnelbroker_core::pki::RevocationReason;
use tunnelbroker_core::store::{DatabaseUrl, PostgresStore, SqliteStore, Store};
use tunnelbroker_core::{Broker, ClientKind, ErrorKind, InitOptions, NewClient, Settings};

use crate::pg;

/// Where a test's broker keeps its clients.
enum Db {
    /// `clients.db` in the broker directory.
    Sqlite,
    /// A database of its own in the test cluster.
    Pg(pg::TestDb),
}

impl Db {
    /// SQLite, and PostgreSQL when the tests have a cluster.
    fn all() -> Vec<Db> {
        let mut all = vec![Db::Sqlite];
        all.extend(pg::database().map(Db::Pg));
        all
    }

    fn name(&self) -> &'static str {
        match self {
            Db::Sqlite => "sqlite",
            Db::Pg(_) => "postgresql",
        }
    }

    fn options(&self, s: Settings) -> InitOptions {
        let mut o = InitOptions::new(s);
        if let Db::Pg(db) = self {
            o.database = Some(db.url().clone());
        }
        o
    }

    /// The store of the broker in `dir`, opened beside the broker's.
    fn store(&self, dir: &Path) -> Box<dyn Store> {
        let pool = POOL.parse().unwrap();
        match self {
            Db::Sqlite => Box::new(SqliteStore::open(&dir.join("clients.db"), pool).unwrap()),
            Db::Pg(db) => Box::new(PostgresStore::open(db.url(), pool).unwrap()),
        }
    }

    fn shared(&self, dir: &Path) -> Vec<(String, String)> {
        self.store(dir).read_with(|tx| tx.shared_values()).unwrap()
    }

    /// Runs one SQL statement (no parameters) on the broker's database.
    fn sql(&self, dir: &Path, statement: &str) {
        match self {
            Db::Sqlite => {
                let conn = rusqlite::Connection::open(dir.join("clients.db")).unwrap();
                conn.execute_batch(statement).unwrap();
            }
            Db::Pg(db) => db.admin().batch_execute(statement).unwrap(),
        }
    }
}

/// `text` as an SQL string literal.
fn lit(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

const POOL: &str = "2001:db8:0:f100::/56";
const OTHER_POOL: &str = "2001:db8:0:e000::/56";

fn settings(pool: &str) -> Settings {
    Settings::new(pool.parse().unwrap(), "vpn.example.net".parse().unwrap())
}

fn req(id: &str, kind: ClientKind) -> NewClient {
    NewClient::new(id.parse().unwrap(), kind)
}

/// Replaces `from` by `to` in the file at `path` (which must hold `from`).
fn edit(path: &Path, from: &str, to: &str) {
    let text = fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "no {from:?} in {text}");
    fs::write(path, text.replace(from, to)).unwrap();
}

fn new_broker(tmp: &Path, options: &InitOptions) -> (PathBuf, Broker) {
    let dir = tmp.join("broker");
    let b = Broker::init(&dir, options).unwrap();
    (dir, b)
}

/// Copies the broker directory `from` to `to`, as an operator copies it to
/// a second host.
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

/// The shared values, clients and certificates in a test database, as
/// text.
fn pg_rows(db: &pg::TestDb) -> Vec<String> {
    let mut c = db.admin();
    let mut out = Vec::new();
    for q in [
        "SELECT key || '=' || value FROM shared ORDER BY key",
        "SELECT id || ' ' || prefix FROM clients ORDER BY id",
        "SELECT serial || ' ' || state FROM certificates ORDER BY serial",
    ] {
        for row in c.query(q, &[]).unwrap() {
            out.push(row.get::<_, String>(0));
        }
    }
    out
}

/// The names in `dir`, sorted.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A PostgreSQL URL where nothing listens (a closed port on this host).
fn unreachable() -> DatabaseUrl {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("postgresql://tb@127.0.0.1:{port}/tunnelbroker")
        .parse()
        .unwrap()
}

#[test]
fn init_writes_the_shared_values_into_the_database() {
    for db in Db::all() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = settings(POOL);
        s.validity.client_days = 42;
        let (dir, b) = new_broker(tmp.path(), &db.options(s));
        assert!(b.open_warnings().is_empty(), "{:?}", b.open_warnings());
        let shared = db.shared(&dir);
        let get = |k: &str| {
            shared
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {k} in {shared:?}"))
        };
        assert_eq!(get("settings.pool"), POOL);
        assert_eq!(get("settings.endpoint"), "vpn.example.net");
        assert_eq!(get("settings.mode"), "per-client");
        assert_eq!(get("settings.port"), "5000");
        assert!(get("settings.validity").contains("client_days = 42"));
        assert_eq!(
            get("ca.chain"),
            fs::read_to_string(dir.join("ca.crt")).unwrap()
        );
        let text = fs::read_to_string(dir.join("tunnelbroker.toml")).unwrap();
        match &db {
            Db::Sqlite => {
                assert!(
                    text.contains("[database]\n# url = \"postgresql://"),
                    "{text}"
                );
                assert_eq!(b.settings().database.url, None);
                assert!(dir.join("clients.db").exists());
            }
            Db::Pg(pg) => {
                let line = format!("[database]\nurl = \"{}\"\n", pg.url());
                assert!(text.contains(&line), "{text}");
                assert_eq!(b.settings().database.url.as_ref(), Some(pg.url()));
                assert!(!dir.join("clients.db").exists());
            }
        }
        // Nothing left beside the broker.
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["broker"], "{}", db.name());
        let status = b.database_status().unwrap();
        assert_eq!(status.engine, db.name());
        assert_eq!(status.clients, 0);
        assert_eq!(status.crl_number, 1);
    }
}

#[test]
fn a_stale_settings_file_does_not_hand_out_addresses_from_its_pool() {
    for db in Db::all() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, b) = new_broker(tmp.path(), &db.options(settings(POOL)));
        drop(b);
        let toml = dir.join("tunnelbroker.toml");
        edit(&toml, POOL, OTHER_POOL);
        edit(&toml, "vpn.example.net", "old.example.net");
        edit(&toml, "# dir = \"\"", "dir = \"/etc/openvpn/server\"");
        let b = Broker::open(&dir).unwrap();
        assert_eq!(b.settings().pool.to_string(), POOL);
        assert_eq!(b.settings().endpoint.as_str(), "vpn.example.net");
        let w = b.open_warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("pool, endpoint"), "{w:?}");
        assert!(w[0].contains("refreshed"), "{w:?}");
        let c = b.add_client(&req("alice", ClientKind::Subnet)).unwrap();
        assert_eq!(c.assignment.to_string(), "2001:db8:0:f101::/64");
        // The cache is refreshed, this host's own sections kept.
        let text = fs::read_to_string(&toml).unwrap();
        assert!(text.contains(POOL) && !text.contains(OTHER_POOL), "{text}");
        assert!(text.contains("vpn.example.net"), "{text}");
        assert!(text.contains("dir = \"/etc/openvpn/server\""), "{text}");
        assert_eq!(
            Broker::open(&dir).unwrap().settings().database.url,
            b.settings().database.url
        );
        let again = Broker::open(&dir).unwrap();
        assert!(again.open_warnings().is_empty());
    }
}

#[test]
fn a_stale_file_that_cannot_be_refreshed_is_said_in_one_warning() {
    for db in Db::all() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, b) = new_broker(tmp.path(), &db.options(settings(POOL)));
        drop(b);
        // A settings file that is a link (to a stale copy): read, never
        // written through.
        let toml = dir.join("tunnelbroker.toml");
        let copy = tmp.path().join("stale.toml");
        fs::rename(&toml, &copy).unwrap();
        edit(&copy, POOL, OTHER_POOL);
        std::os::unix::fs::symlink(&copy, &toml).unwrap();
        let b = Broker::open(&dir).unwrap();
        let w = b.open_warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("could not be refreshed"), "{w:?}");
        assert_eq!(w[0].lines().count(), 1, "{w:?}");
        assert_eq!(b.settings().pool.to_string(), POOL);
        assert!(fs::read_to_string(&copy).unwrap().contains(OTHER_POOL));
    }
}

#[test]
fn a_stale_ca_certificate_file_is_refreshed_from_the_database() {
    for db in Db::all() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, b) = new_broker(tmp.path(), &db.options(settings(POOL)));
        let chain = b.ca().chain_pem();
        drop(b);
        fs::write(dir.join("ca.crt"), "not a certificate").unwrap();
        let b = Broker::open(&dir).unwrap();
        assert_eq!(b.open_warnings().len(), 1, "{:?}", b.open_warnings());
        assert_eq!(fs::read_to_string(dir.join("ca.crt")).unwrap(), chain);
    }
}

#[test]
fn a_database_without_shared_values_gets_them_from_the_files_at_open() {
    for db in Db::all() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = settings(POOL);
        s.validity.crl_days = 7;
        let (dir, b) = new_broker(tmp.path(), &db.options(s));
        b.add_client(&req("alice", ClientKind::Hermit)).unwrap();
        drop(b);
        // What a broker made before this change holds: no shared values.
        db.sql(&dir, "DELETE FROM shared");
        assert!(db.shared(&dir).is_empty());
        let b = Broker::open(&dir).unwrap();
        assert!(b.open_warnings().is_empty(), "{:?}", b.open_warnings());
        assert_eq!(b.settings().validity.crl_days, 7);
        let shared = db.shared(&dir);
        assert!(
            shared
                .iter()
                .any(|(k, v)| k == "settings.pool" && v == POOL),
            "{shared:?}"
        );
        assert!(shared.iter().any(|(k, _)| k == "ca.chain"), "{shared:?}");
        assert_eq!(b.clients().unwrap().len(), 1);
    }
}

#[test]
fn a_ca_key_of_another_broker_is_refused_in_one_line() {
    for db in Db::all() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, b) = new_broker(tmp.path(), &db.options(settings(POOL)));
        drop(b);
        let other =
            Broker::init(&tmp.path().join("other"), &InitOptions::new(settings(POOL))).unwrap();
        fs::copy(&other.paths().ca_key, dir.join("private").join("ca.key")).unwrap();
        // Even with the other broker's certificate beside it: the
        // database's CA certificate is the one that counts.
        fs::copy(&other.paths().ca_cert, dir.join("ca.crt")).unwrap();
        let e = Broker::open(&dir).unwrap_err();
        let text = e.to_string();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.starts_with(&format!(
                "{}: the key does not match the CA certificate",
                dir.join("private/ca.key").display()
            )),
            "{text}"
        );
        assert!(text.contains("in the client database"), "{text}");
        assert_eq!(e.kind(), ErrorKind::NotFound, "{text}");
    }
}

#[test]
fn a_corrupt_shared_value_is_a_one_line_database_error() {
    for db in Db::all() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, b) = new_broker(tmp.path(), &db.options(settings(POOL)));
        drop(b);
        let shared = db.shared(&dir);
        for (key, value) in [
            ("settings.pool", "2001:db8::/12"),
            ("settings.mode", "sideways"),
            ("ca.chain", "-----BEGIN CERTIFICATE-----\nAAAA\n"),
        ] {
            let set = |v: &str| {
                db.sql(
                    &dir,
                    &format!(
                        "UPDATE shared SET value = {} WHERE key = {}",
                        lit(v),
                        lit(key)
                    ),
                )
            };
            let old = &shared.iter().find(|(k, _)| k == key).unwrap().1;
            set(value);
            let e = Broker::open(&dir).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Database, "{key}: {e}");
            assert_eq!(e.to_string().lines().count(), 1, "{e}");
            assert!(e.to_string().contains(key), "{e}");
            set(old);
        }
        Broker::open(&dir).unwrap();
    }
}

#[test]
fn the_crl_is_signed_from_the_revocations_in_the_database() {
    for db in Db::all() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, b) = new_broker(tmp.path(), &db.options(settings(POOL)));
        b.add_client(&req("alice", ClientKind::Subnet)).unwrap();
        let r = b
            .revoke(&"alice".parse().unwrap(), RevocationReason::KeyCompromise)
            .unwrap();
        drop(b);
        // crl.pem is a cache too: without it the next CRL still lists alice.
        fs::remove_file(dir.join("crl.pem")).unwrap();
        let b = Broker::open(&dir).unwrap();
        let crl = b.refresh_crl().unwrap();
        assert!(crl.revoked_serials().contains(&r.client.serial));
    }
}

// ----- PostgreSQL only ------------------------------------------------------

#[test]
fn two_broker_directories_share_one_database() {
    let Some(db) = pg::database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut options = InitOptions::new(settings(POOL));
    options.database = Some(db.url().clone());
    let (one_dir, one) = new_broker(tmp.path(), &options);
    let two_dir = tmp.path().join("second-host");
    copy_dir(&one_dir, &two_dir);
    // The second host's copy is older: it names another pool.
    edit(&two_dir.join("tunnelbroker.toml"), POOL, OTHER_POOL);
    let two = Broker::open(&two_dir).unwrap();
    assert_eq!(two.open_warnings().len(), 1, "{:?}", two.open_warnings());
    let a = one.add_client(&req("alice", ClientKind::Subnet)).unwrap();
    let b = two.add_client(&req("bob", ClientKind::Subnet)).unwrap();
    assert_ne!(a.assignment, b.assignment);
    assert_ne!(a.port, b.port);
    assert_ne!(a.serial, b.serial);
    assert_eq!(b.assignment.to_string(), "2001:db8:0:f102::/64");
    // The same ID from the other host is refused.
    let e = one.add_client(&req("bob", ClientKind::Hermit)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    // A revocation through one directory is in the CRL signed through the
    // other.
    two.revoke(&"alice".parse().unwrap(), RevocationReason::KeyCompromise)
        .unwrap();
    let crl = one.refresh_crl().unwrap();
    assert!(crl.revoked_serials().contains(&a.serial));
    // CRL numbers keep growing across hosts.
    let next = two.refresh_crl().unwrap();
    assert!(next.number() > crl.number());
    assert_eq!(one.clients().unwrap().len(), 2);
}

#[test]
fn init_refuses_a_database_that_holds_a_broker_and_leaves_nothing() {
    let Some(db) = pg::database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut options = InitOptions::new(settings(POOL));
    options.database = Some(db.url().clone());
    let (_dir, b) = new_broker(tmp.path(), &options);
    b.add_client(&req("alice", ClientKind::Hermit)).unwrap();
    let before = pg_rows(&db);
    let second = tmp.path().join("second");
    let mut again = options.clone();
    again.settings = settings(OTHER_POOL);
    let e = Broker::init(&second, &again).unwrap_err();
    let text = e.to_string();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("holds a broker already"), "{text}");
    assert!(text.contains("copy that broker's directory"), "{text}");
    assert!(!second.exists());
    assert_eq!(leftovers(tmp.path()), ["broker"]);
    assert_eq!(pg_rows(&db), before);
    assert_eq!(b.clients().unwrap().len(), 1);
}

#[test]
fn init_takes_the_empty_schema_of_an_init_that_failed_half_way() {
    let Some(db) = pg::database() else { return };
    // What a failed init leaves: our schema, and nothing in it.
    PostgresStore::create(db.url(), POOL.parse().unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut options = InitOptions::new(settings(POOL));
    options.database = Some(db.url().clone());
    let (_dir, b) = new_broker(tmp.path(), &options);
    b.add_client(&req("alice", ClientKind::Hermit)).unwrap();
    assert!(pg_rows(&db).iter().any(|r| r.starts_with("settings.pool=")));
}

#[test]
fn init_on_a_database_it_cannot_use_leaves_nothing() {
    let Some(db) = pg::database() else { return };
    db.admin()
        .batch_execute("CREATE TABLE invoices (id INT)")
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for url in [db.url().clone(), unreachable()] {
        let mut options = InitOptions::new(settings(POOL));
        options.database = Some(url.clone());
        let dir = tmp.path().join("broker");
        let e = Broker::init(&dir, &options).unwrap_err();
        let text = e.to_string();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert_eq!(e.kind(), ErrorKind::Database, "{text}");
        assert!(leftovers(tmp.path()).is_empty(), "{url}: {text}");
    }
    let mut c = db.admin();
    let tables: i64 = c
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 1);
}

/// A SQLite broker with `n` clients (every tenth revoked, one purged), and
/// the serials its CRL lists.
fn sqlite_broker(tmp: &Path, n: usize) -> (PathBuf, Broker, Vec<String>) {
    let (dir, b) = new_broker(tmp, &InitOptions::new(settings(POOL)));
    let csv: String = (0..n)
        .map(|i| {
            format!(
                "c{i},{},linux,,\n",
                if i % 10 == 5 { "subnet" } else { "hermit" }
            )
        })
        .collect();
    let report = b.import_csv(&csv, &mut |_, _| {}).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors.first());
    for i in (0..n).step_by(10) {
        b.revoke(
            &format!("c{i}").parse().unwrap(),
            RevocationReason::Superseded,
        )
        .unwrap();
    }
    b.purge(&"c0".parse().unwrap()).unwrap();
    b.renew(&"c1".parse().unwrap(), None).unwrap();
    let crl = b.refresh_crl().unwrap();
    let mut serials: Vec<String> = crl
        .revoked_serials()
        .iter()
        .map(ToString::to_string)
        .collect();
    serials.sort();
    (dir, b, serials)
}

#[test]
fn a_sqlite_broker_moves_to_postgresql_and_loses_nothing() {
    let Some(db) = pg::database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (dir, mut b, serials) = sqlite_broker(tmp.path(), 1000);
    let clients = b.clients().unwrap();
    assert_eq!(clients.len(), 999);
    assert_eq!(serials.len(), 100 + 1);
    let crl_before = b.crl().unwrap().number();
    let report = b.migrate_to(db.url()).unwrap();
    assert_eq!(report.clients, 999);
    assert_eq!(report.certificates, 1001);
    assert_eq!(report.database, *db.url());
    assert_eq!(report.kept, dir.join("clients.db.migrated"));
    assert!(report.kept.exists());
    assert!(!dir.join("clients.db").exists());
    let text = fs::read_to_string(dir.join("tunnelbroker.toml")).unwrap();
    assert!(text.contains(&format!("url = \"{}\"", db.url())), "{text}");
    // The broker in hand and a freshly opened one both use PostgreSQL.
    assert_eq!(b.database_status().unwrap().engine, "postgresql");
    let b = Broker::open(&dir).unwrap();
    assert!(b.open_warnings().is_empty(), "{:?}", b.open_warnings());
    let status = b.database_status().unwrap();
    assert_eq!((status.engine, status.clients), ("postgresql", 999));
    assert_eq!(b.clients().unwrap(), clients);
    let crl = b.refresh_crl().unwrap();
    assert!(crl.number() > crl_before);
    let mut after: Vec<String> = crl
        .revoked_serials()
        .iter()
        .map(ToString::to_string)
        .collect();
    after.sort();
    assert_eq!(after, serials);
    // And it goes on: a new client gets a free assignment and port.
    let c = b.add_client(&req("newcomer", ClientKind::Subnet)).unwrap();
    assert!(
        clients
            .iter()
            .all(|o| o.assignment != c.assignment && o.port != c.port)
    );
}

#[test]
fn migrate_refuses_and_changes_nothing() {
    let Some(db) = pg::database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // A target that holds a broker.
    let mut options = InitOptions::new(settings(OTHER_POOL));
    options.database = Some(db.url().clone());
    let (_pg_dir, pg_broker) = new_broker(&tmp.path().join("pg"), &options);
    pg_broker
        .add_client(&req("someone", ClientKind::Hermit))
        .unwrap();
    let before_pg = pg_rows(&db);
    let local = tmp.path().join("local");
    fs::create_dir(&local).unwrap();
    let (dir, mut b, _) = sqlite_broker(&local, 20);
    let before = snapshot(&dir);
    let e = b.migrate_to(db.url()).unwrap_err();
    let text = e.to_string();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{text}");
    assert!(text.contains("holds a broker already"), "{text}");
    assert_eq!(pg_rows(&db), before_pg);
    // Unreachable.
    let e = b.migrate_to(&unreachable()).unwrap_err();
    assert_eq!(e.to_string().lines().count(), 1, "{e}");
    assert_eq!(e.kind(), ErrorKind::Database, "{e}");
    assert_eq!(snapshot(&dir), before);
    // The broker still works on SQLite.
    b.add_client(&req("after", ClientKind::Hermit)).unwrap();
    assert_eq!(b.database_status().unwrap().engine, "sqlite");
    // A broker on PostgreSQL already.
    let Some(other) = pg::database() else { return };
    let mut pg_broker = Broker::open(&tmp.path().join("pg").join("broker")).unwrap();
    let e = pg_broker.migrate_to(other.url()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("PostgreSQL already"), "{e}");
}

#[test]
fn migrate_refuses_when_an_earlier_migration_kept_its_database() {
    let Some(db) = pg::database() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (dir, mut b, _) = sqlite_broker(tmp.path(), 3);
    fs::write(dir.join("clients.db.migrated"), "earlier").unwrap();
    let e = b.migrate_to(db.url()).unwrap_err();
    assert!(e.to_string().contains("clients.db.migrated exists"), "{e}");
    assert_eq!(e.to_string().lines().count(), 1, "{e}");
    let tables: i64 = db
        .admin()
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "the target was touched");
    assert_eq!(b.database_status().unwrap().engine, "sqlite");
}

/// Every file of a directory tree with its contents (SQLite's -shm aside,
/// which readers write).
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
