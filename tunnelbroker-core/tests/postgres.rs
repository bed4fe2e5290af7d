//! Issue 12, the broker's side: the client database that the settings name
//! (SQLite `clients.db`, or PostgreSQL), the shared values in it (settings
//! every host must agree on, the CA certificate) that win over a stale file,
//! several broker directories on one PostgreSQL database, and moving a
//! SQLite broker into PostgreSQL. Each test runs on SQLite, and on
//! PostgreSQL where `TUNNELBROKER_TEST_POSTGRES` names a cluster (see
//! `pg`).

use std::fs;
use std::path::{Path, PathBuf};

use tunnelbroker_core::store::{SqliteStore, Store};
use tunnelbroker_core::{
    Broker, ClientKind, ErrorKind, InitOptions, NewClient, RevocationReason, Settings,
};

const POOL: &str = "2001:db8:0:f100::/56";
const OTHER_POOL: &str = "2001:db8:0:e000::/56";

fn settings(pool: &str) -> Settings {
    Settings::new(pool.parse().unwrap(), "vpn.example.net".parse().unwrap())
}

fn req(id: &str, kind: ClientKind) -> NewClient {
    NewClient::new(id.parse().unwrap(), kind)
}

/// The shared values of the broker in `dir` (SQLite).
fn sqlite_shared(dir: &Path, pool: &str) -> Vec<(String, String)> {
    let store = SqliteStore::open(&dir.join("clients.db"), pool.parse().unwrap()).unwrap();
    let store: &dyn Store = &store;
    store.read_with(|tx| tx.shared_values()).unwrap()
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

#[test]
fn init_writes_the_shared_values_into_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = settings(POOL);
    s.validity.client_days = 42;
    let (dir, b) = new_broker(tmp.path(), &InitOptions::new(s));
    assert!(b.open_warnings().is_empty(), "{:?}", b.open_warnings());
    let shared = sqlite_shared(&dir, POOL);
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
    assert!(
        text.contains("[database]\n# url = \"postgresql://"),
        "{text}"
    );
    assert_eq!(b.settings().database.url, None);
}

#[test]
fn a_stale_settings_file_does_not_hand_out_addresses_from_its_pool() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, b) = new_broker(tmp.path(), &InitOptions::new(settings(POOL)));
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
    // The cache is refreshed, this host's own section kept.
    let text = fs::read_to_string(&toml).unwrap();
    assert!(text.contains(POOL) && !text.contains(OTHER_POOL), "{text}");
    assert!(text.contains("vpn.example.net"), "{text}");
    assert!(text.contains("dir = \"/etc/openvpn/server\""), "{text}");
    let again = Broker::open(&dir).unwrap();
    assert!(again.open_warnings().is_empty());
}

#[test]
fn a_stale_file_that_cannot_be_refreshed_is_said_in_one_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, b) = new_broker(tmp.path(), &InitOptions::new(settings(POOL)));
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

#[test]
fn a_stale_ca_certificate_file_is_refreshed_from_the_database() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, b) = new_broker(tmp.path(), &InitOptions::new(settings(POOL)));
    let chain = b.ca().chain_pem();
    drop(b);
    fs::write(dir.join("ca.crt"), "not a certificate").unwrap();
    let b = Broker::open(&dir).unwrap();
    assert_eq!(b.open_warnings().len(), 1, "{:?}", b.open_warnings());
    assert_eq!(fs::read_to_string(dir.join("ca.crt")).unwrap(), chain);
}

#[test]
fn a_database_without_shared_values_gets_them_from_the_files_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = settings(POOL);
    s.validity.crl_days = 7;
    let (dir, b) = new_broker(tmp.path(), &InitOptions::new(s));
    b.add_client(&req("alice", ClientKind::Hermit)).unwrap();
    drop(b);
    // What a broker made before this change holds: no shared values.
    let conn = rusqlite::Connection::open(dir.join("clients.db")).unwrap();
    conn.execute("DELETE FROM shared", []).unwrap();
    drop(conn);
    assert!(sqlite_shared(&dir, POOL).is_empty());
    let b = Broker::open(&dir).unwrap();
    assert!(b.open_warnings().is_empty(), "{:?}", b.open_warnings());
    assert_eq!(b.settings().validity.crl_days, 7);
    let shared = sqlite_shared(&dir, POOL);
    assert!(
        shared
            .iter()
            .any(|(k, v)| k == "settings.pool" && v == POOL),
        "{shared:?}"
    );
    assert!(shared.iter().any(|(k, _)| k == "ca.chain"), "{shared:?}");
    assert_eq!(b.clients().unwrap().len(), 1);
}

#[test]
fn a_ca_key_of_another_broker_is_refused_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, b) = new_broker(tmp.path(), &InitOptions::new(settings(POOL)));
    drop(b);
    let other = Broker::init(&tmp.path().join("other"), &InitOptions::new(settings(POOL))).unwrap();
    fs::copy(
        other.paths().ca_key.clone(),
        dir.join("private").join("ca.key"),
    )
    .unwrap();
    // Even with the other broker's certificate beside it: the database's
    // CA certificate is the one that counts.
    fs::copy(other.paths().ca_cert.clone(), dir.join("ca.crt")).unwrap();
    let e = Broker::open(&dir).unwrap_err();
    let text = e.to_string();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("private/ca.key does not belong"), "{text}");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{text}");
}

#[test]
fn a_corrupt_shared_value_is_a_one_line_database_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, b) = new_broker(tmp.path(), &InitOptions::new(settings(POOL)));
    drop(b);
    let conn = rusqlite::Connection::open(dir.join("clients.db")).unwrap();
    for (key, value) in [
        ("settings.pool", "2001:db8::/12"),
        ("settings.mode", "sideways"),
        ("ca.chain", "-----BEGIN CERTIFICATE-----\nAAAA\n"),
    ] {
        let old: String = conn
            .query_row("SELECT value FROM shared WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .unwrap();
        conn.execute("UPDATE shared SET value = ?2 WHERE key = ?1", [key, value])
            .unwrap();
        let e = Broker::open(&dir).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Database, "{key}: {e}");
        assert_eq!(e.to_string().lines().count(), 1, "{e}");
        assert!(e.to_string().contains(key), "{e}");
        conn.execute("UPDATE shared SET value = ?2 WHERE key = ?1", [key, &old])
            .unwrap();
    }
    Broker::open(&dir).unwrap();
}

#[test]
fn the_crl_is_signed_from_the_revocations_in_the_database() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, b) = new_broker(tmp.path(), &InitOptions::new(settings(POOL)));
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
