//! The embedded client database: SQLite through `rusqlite` (bundled).
//!
//! A versioned schema (`PRAGMA user_version`) with forward migrations, WAL
//! mode and a busy timeout, so that several `tunnelbroker` processes can
//! work on one broker at once: writers take the lock at the start of their
//! transaction (`BEGIN IMMEDIATE`) and wait for each other.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use ipnet::Ipv6Net;

use std::collections::HashMap;

use super::session::{
    from_micros, micros, parse_addresses, parse_endpoints, to_count, virtual_text,
};
use super::{
    Allocation, AssignmentSpan, CertRecord, CertState, ClientRecord, ServerRecord, Session,
    SessionFilter, Store, Transaction,
};
use crate::client_id::ClientId;
use crate::error::{Error, Result};
use crate::pki::{RevocationReason, RevokedCert, Serial};
use crate::plan::{Assignment, ClientKind, Pool};
use crate::words::{ClientOs, ClientState};

/// The schema, one entry per version; entry `i` migrates version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    "CREATE TABLE clients (
        id          TEXT PRIMARY KEY NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN ('hermit', 'subnet')),
        os          TEXT NOT NULL CHECK (os IN ('linux', 'windows')),
        prefix      TEXT NOT NULL UNIQUE,
        port        INTEGER UNIQUE,
        state       TEXT NOT NULL CHECK (state IN ('active', 'revoked')),
        email       TEXT,
        name        TEXT,
        created_at  TEXT NOT NULL,
        revoked_at  TEXT
    ) STRICT;
    CREATE TABLE certificates (
        serial      TEXT PRIMARY KEY NOT NULL,
        client_id   TEXT NOT NULL,
        pem         TEXT NOT NULL,
        key_pem     TEXT,
        not_after   TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('current', 'revoked')),
        revoked_at  TEXT,
        reason      TEXT
    ) STRICT;
    CREATE UNIQUE INDEX one_current_certificate
        ON certificates (client_id) WHERE state = 'current';
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY NOT NULL,
        value INTEGER NOT NULL
    ) STRICT;
    INSERT INTO meta (key, value) VALUES ('crl_number', 0);",
    // 1 -> 2: a client's certificates are looked up by client; without this
    // index `client list` scanned every certificate once per client.
    // Allocation reads kind, prefix and port of every client in each write:
    // a covering index keeps that scan off the wider client rows.
    //
    // Allocation starts from the saved runs of taken assignments and ports
    // (plan_state, one row, written by every change) instead of reading
    // every client; without the row the next writer rebuilds it.
    "CREATE INDEX certificates_by_client ON certificates (client_id);
    CREATE INDEX clients_allocation ON clients (prefix, kind, port, id);
    CREATE TABLE plan_state (
        id     INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
        state  TEXT NOT NULL
    ) STRICT;",
    // 2 -> 3: the values every host of a broker must agree on (settings,
    // the CA certificate), by key; see `Transaction::shared`.
    "CREATE TABLE shared (
        key    TEXT PRIMARY KEY NOT NULL,
        value  TEXT NOT NULL
    ) STRICT;",
    // 3 -> 4: several OpenVPN servers, each with its own pool (issue 13).
    // Every existing client belongs to the one server a broker had so
    // far, `main`, whose row the broker makes from its settings when it
    // opens the database (its certificate stays server.crt: no PEM here).
    "CREATE TABLE servers (
        name        TEXT PRIMARY KEY NOT NULL,
        endpoint    TEXT NOT NULL,
        mode        TEXT NOT NULL CHECK (mode IN ('per-client', 'shared')),
        port        INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
        pool        TEXT NOT NULL UNIQUE,
        cert_pem    TEXT,
        key_pem     TEXT,
        created_at  TEXT NOT NULL
    ) STRICT;
    ALTER TABLE clients ADD COLUMN server TEXT NOT NULL DEFAULT 'main';
    CREATE INDEX clients_by_server ON clients (server);",
    // 4 -> 5: sessions, and the assignment history that answers "who had
    // this address then?" after a purge (see `store::session`). Times are
    // microseconds since the epoch. Triggers keep the history in step with
    // every change of a client row, whoever makes it; a span starts at the
    // client's subscription time (read from its text to the microsecond,
    // rounded down: SQLite's date functions round to milliseconds) and
    // ends at the database's clock.
    "CREATE TABLE sessions (
        id            INTEGER PRIMARY KEY,
        server        TEXT NOT NULL,
        common_name   TEXT NOT NULL,
        real_address  TEXT NOT NULL,
        virtual       TEXT NOT NULL,
        kind          TEXT,
        prefix        TEXT,
        tunnel        TEXT,
        started_at    INTEGER NOT NULL,
        ended_at      INTEGER,
        bytes_in      INTEGER NOT NULL,
        bytes_out     INTEGER NOT NULL,
        UNIQUE (server, common_name, real_address, started_at)
    ) STRICT;
    CREATE INDEX sessions_open ON sessions (server) WHERE ended_at IS NULL;
    CREATE INDEX sessions_by_client ON sessions (common_name, started_at);
    CREATE INDEX sessions_by_prefix ON sessions (prefix, started_at);
    CREATE INDEX sessions_ended ON sessions (ended_at) WHERE ended_at IS NOT NULL;
    CREATE TABLE assignments (
        id         INTEGER PRIMARY KEY,
        client_id  TEXT NOT NULL,
        kind       TEXT NOT NULL,
        prefix     TEXT NOT NULL,
        email      TEXT,
        name       TEXT,
        since      INTEGER NOT NULL,
        until      INTEGER
    ) STRICT;
    CREATE INDEX assignments_by_prefix ON assignments (prefix, since);
    CREATE INDEX assignments_by_client ON assignments (client_id) WHERE until IS NULL;
    INSERT INTO assignments (client_id, kind, prefix, email, name, since)
        SELECT id, kind, prefix, email, name,
               COALESCE(unixepoch(substr(created_at, 1, 19)) * 1000000
                   + CASE substr(created_at, 20, 1) WHEN '.' THEN CAST(substr(
                       replace(substr(created_at, 21), 'Z', '') || '000000', 1, 6) AS INTEGER)
                     ELSE 0 END, 0)
        FROM clients ORDER BY id;
    CREATE TRIGGER clients_assigned AFTER INSERT ON clients BEGIN
        INSERT INTO assignments (client_id, kind, prefix, email, name, since)
        VALUES (NEW.id, NEW.kind, NEW.prefix, NEW.email, NEW.name,
                COALESCE(unixepoch(substr(NEW.created_at, 1, 19)) * 1000000
                    + CASE substr(NEW.created_at, 20, 1) WHEN '.' THEN CAST(substr(
                        replace(substr(NEW.created_at, 21), 'Z', '') || '000000', 1, 6) AS INTEGER)
                      ELSE 0 END,
                         CAST(unixepoch('now', 'subsec') * 1000000 AS INTEGER)));
    END;
    CREATE TRIGGER clients_released AFTER DELETE ON clients BEGIN
        UPDATE assignments SET until = CAST(unixepoch('now', 'subsec') * 1000000 AS INTEGER)
        WHERE client_id = OLD.id AND until IS NULL;
    END;
    CREATE TRIGGER clients_changed AFTER UPDATE OF id, kind, prefix, email, name ON clients
    WHEN OLD.id IS NOT NEW.id OR OLD.kind IS NOT NEW.kind OR OLD.prefix IS NOT NEW.prefix
      OR OLD.email IS NOT NEW.email OR OLD.name IS NOT NEW.name
    BEGIN
        UPDATE assignments SET until = CAST(unixepoch('now', 'subsec') * 1000000 AS INTEGER)
        WHERE client_id = OLD.id AND until IS NULL;
        INSERT INTO assignments (client_id, kind, prefix, email, name, since)
        VALUES (NEW.id, NEW.kind, NEW.prefix, NEW.email, NEW.name,
                CAST(unixepoch('now', 'subsec') * 1000000 AS INTEGER));
    END;",
    // 5 -> 6: the serials of current certificates by client, in an index
    // that answers `current_serials` alone (issue 19: without it, each of
    // 10,000 rows was read from the table, about 3,000 pages, at every
    // rendering and CRL). `IF NOT EXISTS`: a database whose version was
    // set back by hand (as the migration tests do) may have it already.
    "CREATE INDEX IF NOT EXISTS current_serials ON certificates (client_id, serial, state)
        WHERE state = 'current';",
];

/// The current schema version.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The SQLite client database.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    pool: Pool,
    path: PathBuf,
}

/// The text in column `i` of `r`, borrowed from the row.
fn text_at<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r str> {
    r.get_ref(i)
        .map_err(db_err)?
        .as_str()
        .map_err(|e| db_err(e.into()))
}

/// The UDP port in column `i` of client `id`'s row `r`, if any.
fn port_at(r: &rusqlite::Row<'_>, i: usize, id: &ClientId) -> Result<Option<u16>> {
    let port: Option<i64> = r.get(i).map_err(db_err)?;
    port.map(|p| {
        u16::try_from(p).map_err(|_| Error::Database {
            reason: format!("port {p} of client {id} is out of range"),
        })
    })
    .transpose()
}

fn db_err(e: rusqlite::Error) -> Error {
    Error::Database {
        reason: e.to_string(),
    }
}

pub(super) fn ts(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

pub(super) fn parse_ts(s: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| Error::Database {
        reason: format!("bad time {s:?} in the database: {e}"),
    })
}

/// The `application_id` in the header of every database the broker creates
/// (`TnBr`): it tells a tunnelbroker database from another program's.
const APPLICATION_ID: u32 = u32::from_be_bytes(*b"TnBr");

/// The tables every tunnelbroker database has had since schema version 1.
const OUR_TABLES: [&str; 3] = ["certificates", "clients", "meta"];

impl SqliteStore {
    /// Creates a new database at `path` (which must not exist) with mode
    /// 0600, whose assignments belong to `pool`. Only `init` creates a
    /// database; everything else [`open`](Self::open)s an existing one.
    pub fn create(path: &Path, pool: Pool) -> Result<Self> {
        // The database holds client keys: create it private before SQLite
        // touches it (its -wal and -shm files take the same mode).
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let conn = Connection::open(path).map_err(db_err)?;
        // Written before WAL mode, straight into the file's header, where
        // `open` reads it without SQLite.
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(db_err)?;
        Self::connect(conn, path, pool)
    }

    /// Opens the existing database at `path`, whose assignments belong to
    /// `pool`, and migrates it to the current schema.
    ///
    /// A missing file, an empty one, a file that is not SQLite or an SQLite
    /// database of another program is refused with
    /// [`Error::UnusableDatabase`], and nothing is written: no database is
    /// created in its place, and no `-wal` or `-shm` file is left behind.
    pub fn open(path: &Path, pool: Pool) -> Result<Self> {
        check_existing(path)?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db_err)?;
        Self::connect(conn, path, pool)
    }

    fn connect(mut conn: Connection, path: &Path, pool: Pool) -> Result<Self> {
        conn.busy_timeout(Duration::from_secs(60)).map_err(db_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(db_err)?;
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            pool,
            path: path.to_owned(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn run(
        &self,
        behavior: TransactionBehavior,
        f: &mut dyn FnMut(&mut dyn Transaction) -> Result<()>,
    ) -> Result<()> {
        let mut conn = self.conn.lock().map_err(|_| Error::Database {
            reason: "the database connection was poisoned by an earlier panic".into(),
        })?;
        let tx = conn.transaction_with_behavior(behavior).map_err(db_err)?;
        let pools = server_pools(&tx)?;
        let mut t = SqliteTx {
            tx: &tx,
            pool: self.pool,
            pools,
        };
        f(&mut t)?;
        tx.commit().map_err(db_err)
    }
}

/// Refuses, before SQLite opens it for writing, a database file that is
/// missing, empty, not SQLite, or an SQLite database of another program.
///
/// The header's `application_id` names a database made by `init`; one made
/// before the broker set it (0) is ours when it has our tables, which a
/// read-only look tells (`migrate` then sets the id). That look opens the
/// file `immutable` unless a `-wal` file exists already, so that it leaves
/// no `-wal` or `-shm` file behind.
fn check_existing(path: &Path) -> Result<()> {
    let unusable = |reason: String| Error::UnusableDatabase {
        path: path.to_owned(),
        reason,
    };
    const RESTORE: &str = "restore it from a backup (only `tunnelbroker init` creates a database)";
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(unusable(format!("it is missing; {RESTORE}")));
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    if !meta.is_file() {
        return Err(unusable(format!("not a regular file; {RESTORE}")));
    }
    if meta.len() == 0 {
        return Err(unusable(format!("it is empty (0 bytes); {RESTORE}")));
    }
    let mut header = [0u8; 100];
    let read = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => None,
            _ => Some(Error::io(path, e)),
        });
    match read {
        Ok(()) if header.starts_with(b"SQLite format 3\0") => {}
        Err(Some(e)) => return Err(e),
        _ => return Err(unusable(format!("not an SQLite database; {RESTORE}"))),
    }
    let id = u32::from_be_bytes([header[68], header[69], header[70], header[71]]);
    if id == APPLICATION_ID {
        return Ok(());
    }
    if id != 0 {
        return Err(unusable(format!(
            "an SQLite database of another program (application_id {id:#010x}), not a tunnelbroker client database; {RESTORE}"
        )));
    }
    let tables = table_names(path).map_err(|e| {
        unusable(format!(
            "cannot read it as SQLite ({}); {RESTORE}",
            crate::error::one_line(e)
        ))
    })?;
    if OUR_TABLES.iter().all(|t| tables.iter().any(|n| n == t)) {
        return Ok(());
    }
    let what = if tables.is_empty() {
        "an SQLite database without tables".to_owned()
    } else {
        let mut names: Vec<String> = tables
            .iter()
            .take(5)
            .map(|t| crate::error::shown(t))
            .collect();
        if tables.len() > 5 {
            names.push("…".into());
        }
        format!(
            "an SQLite database of another program (tables {})",
            names.join(", ")
        )
    };
    Err(unusable(format!(
        "{what}, not a tunnelbroker client database; {RESTORE}"
    )))
}

/// The tables of the database at `path`, read without writing anything.
fn table_names(path: &Path) -> rusqlite::Result<Vec<String>> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let mut uri = String::from("file:");
    for &b in std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()) {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str(if Path::new(&wal).exists() {
        "?mode=ro"
    } else {
        "?mode=ro&immutable=1"
    });
    let conn = Connection::open_with_flags(
        &uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let mut stmt =
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(names)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    // Opening a current database takes no write lock, so that readers are
    // never queued behind a long writer (an import).
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_err)?;
    let id: u32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(db_err)?;
    if version == SCHEMA_VERSION && id == APPLICATION_ID {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let version: u32 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_err)?;
    if version > SCHEMA_VERSION {
        return Err(Error::Database {
            reason: format!(
                "the database has schema version {version}, newer than this tunnelbroker knows ({SCHEMA_VERSION}); upgrade tunnelbroker"
            ),
        });
    }
    for (v, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql).map_err(db_err)?;
        tx.pragma_update(None, "user_version", v as u32 + 1)
            .map_err(db_err)?;
    }
    // A database made before the broker set its application_id.
    tx.pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(db_err)?;
    tx.commit().map_err(db_err)
}

impl Store for SqliteStore {
    fn write(&self, f: &mut dyn FnMut(&mut dyn Transaction) -> Result<()>) -> Result<()> {
        self.run(TransactionBehavior::Immediate, f)
    }

    fn read(&self, f: &mut dyn FnMut(&mut dyn Transaction) -> Result<()>) -> Result<()> {
        self.run(TransactionBehavior::Deferred, f)
    }

    fn change_marker(&self) -> Result<String> {
        let conn = self.conn.lock().map_err(|_| Error::Database {
            reason: "the database connection was poisoned by an earlier panic".into(),
        })?;
        let v: i64 = conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(db_err)?;
        Ok(v.to_string())
    }
}

struct SqliteTx<'a> {
    tx: &'a rusqlite::Transaction<'a>,
    /// The pool of `main` until its server row exists.
    pool: Pool,
    /// Every server's pool, by name.
    pools: HashMap<String, Pool>,
}

/// Every server's pool, by name, read at the start of a transaction.
fn server_pools(tx: &rusqlite::Transaction<'_>) -> Result<HashMap<String, Pool>> {
    let mut stmt = tx
        .prepare_cached("SELECT name, pool FROM servers")
        .map_err(db_err)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(db_err)?;
    rows.into_iter()
        .map(|(name, pool)| {
            let pool = pool.parse().map_err(|e| Error::Database {
                reason: format!("the pool of server {name:?} does not parse: {e}"),
            })?;
            Ok((name, pool))
        })
        .collect()
}

/// The pool of `server`: its row's, or for `main` before its row exists,
/// the broker's.
pub(super) fn pool_of(
    pools: &HashMap<String, Pool>,
    fallback: &Pool,
    server: &str,
) -> Result<Pool> {
    match pools.get(server) {
        Some(p) => Ok(*p),
        None if server == super::MAIN_SERVER => Ok(*fallback),
        None => Err(Error::Database {
            reason: format!(
                "a client belongs to server {}, which has no row",
                crate::error::shown(server)
            ),
        }),
    }
}

const CLIENT_COLUMNS: &str =
    "id, kind, os, prefix, port, state, email, name, created_at, revoked_at, server";

const SERVER_COLUMNS: &str = "name, endpoint, mode, port, pool, cert_pem, key_pem, created_at";

fn server_from_row(r: &rusqlite::Row<'_>) -> Result<ServerRecord> {
    let get_s = |i: usize| -> Result<String> { r.get::<_, String>(i).map_err(db_err) };
    let name = get_s(0)?;
    let corrupt = |e: Error| Error::Database {
        reason: format!("the row of server {name:?} does not parse: {e}"),
    };
    let port: i64 = r.get(3).map_err(db_err)?;
    Ok(ServerRecord {
        endpoint: get_s(1)?,
        mode: get_s(2)?.parse().map_err(corrupt)?,
        port: u16::try_from(port).map_err(|_| Error::Database {
            reason: format!("port {port} of server {name:?} is out of range"),
        })?,
        pool: get_s(4)?.parse().map_err(corrupt)?,
        cert_pem: r.get(5).map_err(db_err)?,
        key_pem: r.get(6).map_err(db_err)?,
        created_at: parse_ts(&get_s(7)?)?,
        name,
    })
}

impl SqliteTx<'_> {
    fn client_from_row(&self, r: &rusqlite::Row<'_>) -> Result<ClientRecord> {
        // Text borrowed from the row where it is parsed (issue 19: every
        // rendering reads all 10,000 rows).
        let get_s = |i: usize| text_at(r, i);
        let corrupt = |e: Error| Error::Database {
            reason: format!("a client row does not parse: {e}"),
        };
        let id = ClientId::new(get_s(0)?).map_err(corrupt)?;
        let kind: ClientKind = get_s(1)?.parse().map_err(corrupt)?;
        let os: ClientOs = get_s(2)?.parse().map_err(corrupt)?;
        let server = get_s(10)?.to_owned();
        let pool = pool_of(&self.pools, &self.pool, &server)?;
        let assignment = Assignment::parse_in(&pool, kind, get_s(3)?).map_err(corrupt)?;
        let port = port_at(r, 4, &id)?;
        let state: ClientState = get_s(5)?.parse().map_err(corrupt)?;
        let revoked_at: Option<String> = r.get(9).map_err(db_err)?;
        Ok(ClientRecord {
            id,
            os,
            assignment,
            port,
            state,
            email: r.get(6).map_err(db_err)?,
            name: r.get(7).map_err(db_err)?,
            created_at: parse_ts(get_s(8)?)?,
            revoked_at: revoked_at.as_deref().map(parse_ts).transpose()?,
            server,
        })
    }

    fn cert_from_row(r: &rusqlite::Row<'_>) -> Result<CertRecord> {
        let get_s = |i: usize| -> Result<String> { r.get::<_, String>(i).map_err(db_err) };
        let corrupt = |e: Error| Error::Database {
            reason: format!("a certificate row does not parse: {e}"),
        };
        let state = match get_s(5)?.as_str() {
            "current" => CertState::Current,
            _ => CertState::Revoked,
        };
        let revoked_at: Option<String> = r.get(6).map_err(db_err)?;
        let reason: Option<String> = r.get(7).map_err(db_err)?;
        let revoked = match (revoked_at, reason) {
            (Some(at), Some(reason)) => Some((parse_ts(&at)?, reason.parse().map_err(corrupt)?)),
            _ => None,
        };
        Ok(CertRecord {
            serial: get_s(0)?.parse().map_err(corrupt)?,
            client_id: ClientId::new(&get_s(1)?).map_err(corrupt)?,
            pem: get_s(2)?,
            key_pem: r.get(3).map_err(db_err)?,
            not_after: parse_ts(&get_s(4)?)?,
            state,
            revoked,
        })
    }
}

pub(super) fn parse_stored_id(id: &str) -> Result<ClientId> {
    ClientId::new(id).map_err(|e| Error::Database {
        reason: format!("a client ID in the database does not parse: {e}"),
    })
}

/// Turns a constraint violation into the error a person needs.
fn insert_err(e: rusqlite::Error, c: &ClientRecord) -> Error {
    let text = e.to_string();
    if text.contains("clients.id") {
        Error::ClientExists {
            id: c.id.to_string(),
        }
    } else if text.contains("clients.prefix") {
        Error::AlreadyAssigned {
            prefix: c.assignment.prefix(),
            owner: None,
        }
    } else if text.contains("clients.port") {
        Error::Database {
            reason: format!("port {:?} is taken", c.port),
        }
    } else {
        db_err(e)
    }
}

impl Transaction for SqliteTx<'_> {
    fn allocations(&mut self) -> Result<Vec<Allocation>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT id, kind, prefix, port, server FROM clients")
            .map_err(db_err)?;
        let mut rows = stmt.query([]).map_err(db_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(db_err)? {
            let text = |i: usize| r.get_ref(i).and_then(|v| Ok(v.as_str()?)).map_err(db_err);
            let corrupt = |e: Error| Error::Database {
                reason: format!(
                    "the row of client {:?} does not parse: {e}",
                    text(0).unwrap_or_default()
                ),
            };
            let kind: ClientKind = text(1)?.parse().map_err(corrupt)?;
            let pool = pool_of(&self.pools, &self.pool, text(4)?)?;
            let assignment = Assignment::parse_in(&pool, kind, text(2)?).map_err(corrupt)?;
            let port: Option<i64> = r.get(3).map_err(db_err)?;
            let port = port
                .map(|p| {
                    u16::try_from(p).map_err(|_| Error::Database {
                        reason: format!("port {p} of client {:?} is out of range", text(0)),
                    })
                })
                .transpose()?;
            out.push(Allocation { assignment, port });
        }
        Ok(out)
    }

    fn client_count(&mut self) -> Result<u64> {
        let n: i64 = self
            .tx
            .query_row("SELECT COUNT(*) FROM clients", [], |r| r.get(0))
            .map_err(db_err)?;
        Ok(n.unsigned_abs())
    }

    fn port_owner(&mut self, port: u16) -> Result<Option<ClientId>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT id FROM clients WHERE port = ?1")
            .map_err(db_err)?;
        let id: Option<String> = stmt
            .query_row([i64::from(port)], |r| r.get(0))
            .optional()
            .map_err(db_err)?;
        id.as_deref().map(parse_stored_id).transpose()
    }

    fn plan_state(&mut self) -> Result<Option<String>> {
        self.tx
            .query_row("SELECT state FROM plan_state WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_err)
    }

    fn set_plan_state(&mut self, state: Option<&str>) -> Result<()> {
        match state {
            Some(text) => self.tx.execute(
                "INSERT INTO plan_state (id, state) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state",
                [text],
            ),
            None => self.tx.execute("DELETE FROM plan_state", []),
        }
        .map_err(db_err)?;
        Ok(())
    }

    fn has_client(&mut self, id: &ClientId) -> Result<bool> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT 1 FROM clients WHERE id = ?1")
            .map_err(db_err)?;
        stmt.exists([id.as_str()]).map_err(db_err)
    }

    fn prefix_owner(&mut self, prefix: Ipv6Net) -> Result<Option<ClientId>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT id FROM clients WHERE prefix = ?1")
            .map_err(db_err)?;
        let id: Option<String> = stmt
            .query_row([prefix.to_string()], |r| r.get(0))
            .optional()
            .map_err(db_err)?;
        id.as_deref().map(parse_stored_id).transpose()
    }

    fn clients(&mut self) -> Result<Vec<ClientRecord>> {
        let mut stmt = self
            .tx
            .prepare_cached(&format!("SELECT {CLIENT_COLUMNS} FROM clients ORDER BY id"))
            .map_err(db_err)?;
        let mut rows = stmt.query([]).map_err(db_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(db_err)? {
            out.push(self.client_from_row(r)?);
        }
        Ok(out)
    }

    fn rendered_clients(
        &mut self,
        server: &str,
    ) -> Result<Vec<(ClientId, Assignment, Option<u16>)>> {
        // Four columns of the active clients, not every column of every
        // client parsed (times, e-mail, name).
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT id, kind, prefix, port FROM clients
                 WHERE state = 'active' AND server = ?1 ORDER BY id",
            )
            .map_err(db_err)?;
        // Asked at the first row: a server without clients needs no row.
        let mut pool = None;
        let mut rows = stmt.query([server]).map_err(db_err)?;
        let corrupt = |e: Error| Error::Database {
            reason: format!("a client row does not parse: {e}"),
        };
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(db_err)? {
            let get_s = |i: usize| text_at(r, i);
            let id = ClientId::new(get_s(0)?).map_err(corrupt)?;
            let kind: ClientKind = get_s(1)?.parse().map_err(corrupt)?;
            let pool = match pool {
                Some(p) => p,
                None => *pool.insert(pool_of(&self.pools, &self.pool, server)?),
            };
            let assignment = Assignment::parse_in(&pool, kind, get_s(2)?).map_err(corrupt)?;
            let port = port_at(r, 3, &id)?;
            out.push((id, assignment, port));
        }
        Ok(out)
    }

    fn client(&mut self, id: &ClientId) -> Result<Option<ClientRecord>> {
        let mut stmt = self
            .tx
            .prepare_cached(&format!(
                "SELECT {CLIENT_COLUMNS} FROM clients WHERE id = ?1"
            ))
            .map_err(db_err)?;
        let mut rows = stmt.query([id.as_str()]).map_err(db_err)?;
        match rows.next().map_err(db_err)? {
            Some(r) => Ok(Some(self.client_from_row(r)?)),
            None => Ok(None),
        }
    }

    fn insert_client(&mut self, c: &ClientRecord) -> Result<()> {
        let mut stmt = self
            .tx
            .prepare_cached(&format!(
                "INSERT INTO clients ({CLIENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ))
            .map_err(db_err)?;
        stmt.execute(params![
            c.id.as_str(),
            c.assignment.kind().to_string(),
            c.os.to_string(),
            c.assignment.prefix().to_string(),
            c.port.map(i64::from),
            c.state.to_string(),
            c.email,
            c.name,
            ts(c.created_at),
            c.revoked_at.map(ts),
            c.server,
        ])
        .map_err(|e| insert_err(e, c))?;
        Ok(())
    }

    fn set_client_state(
        &mut self,
        id: &ClientId,
        state: ClientState,
        at: Option<OffsetDateTime>,
    ) -> Result<()> {
        let n = self
            .tx
            .execute(
                "UPDATE clients SET state = ?2, revoked_at = ?3 WHERE id = ?1",
                params![id.as_str(), state.to_string(), at.map(ts)],
            )
            .map_err(db_err)?;
        if n == 0 {
            return Err(Error::UnknownClient { id: id.to_string() });
        }
        Ok(())
    }

    fn delete_client(&mut self, id: &ClientId) -> Result<()> {
        let n = self
            .tx
            .execute("DELETE FROM clients WHERE id = ?1", [id.as_str()])
            .map_err(db_err)?;
        if n == 0 {
            return Err(Error::UnknownClient { id: id.to_string() });
        }
        Ok(())
    }

    fn insert_certificate(&mut self, c: &CertRecord) -> Result<()> {
        let (revoked_at, reason) = match c.revoked {
            Some((at, r)) => (Some(ts(at)), Some(r.to_string())),
            None => (None, None),
        };
        let mut stmt = self
            .tx
            .prepare_cached(
                "INSERT INTO certificates (serial, client_id, pem, key_pem, not_after, state, revoked_at, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(db_err)?;
        stmt.execute(params![
            c.serial.to_string(),
            c.client_id.as_str(),
            c.pem,
            c.key_pem,
            ts(c.not_after),
            match c.state {
                CertState::Current => "current",
                CertState::Revoked => "revoked",
            },
            revoked_at,
            reason,
        ])
        .map_err(|e| {
            if e.to_string().contains("certificates.serial") {
                Error::Database {
                    reason: format!("serial {} was issued before", c.serial),
                }
            } else {
                db_err(e)
            }
        })?;
        Ok(())
    }

    fn latest_certificate(&mut self, id: &ClientId) -> Result<Option<CertRecord>> {
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT serial, client_id, pem, key_pem, not_after, state, revoked_at, reason
                 FROM certificates WHERE client_id = ?1 ORDER BY rowid DESC LIMIT 1",
            )
            .map_err(db_err)?;
        let mut rows = stmt.query([id.as_str()]).map_err(db_err)?;
        match rows.next().map_err(db_err)? {
            Some(r) => Ok(Some(Self::cert_from_row(r)?)),
            None => Ok(None),
        }
    }

    fn data_stamp(&mut self) -> Result<Option<String>> {
        // `data_version` moves when another connection has committed since
        // this one's last transaction began; `total_changes`, with every
        // row this connection (and so this store, whose one connection it
        // is) inserted, updated or deleted, also in a rolled-back
        // transaction.
        let version: i64 = self
            .tx
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(db_err)?;
        Ok(Some(format!("{version} {}", self.tx.total_changes())))
    }

    fn current_serials(&mut self, server: &str) -> Result<Vec<(ClientId, Serial)>> {
        // The latest certificate is the one with the highest rowid, as in
        // `latest_certificate`: a current one with no later one. Only
        // through the index of current serials (migration 6), so that no
        // certificate row is read (about 3 rows of PEMs to a page: 3,000
        // pages for 10,000 clients); one statement, bound once (with STAT4,
        // a statement bound again is prepared again). `INDEXED BY`: the
        // planner, without statistics of the new index, would take the
        // older one that does not hold the serial.
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT c.id, k.serial FROM clients c
                 JOIN certificates k INDEXED BY current_serials
                   ON k.client_id = c.id AND k.state = 'current'
                 WHERE c.state = 'active' AND c.server = ?1
                   AND NOT EXISTS (SELECT 1 FROM certificates l
                                   WHERE l.client_id = c.id AND l.rowid > k.rowid)
                 ORDER BY c.id",
            )
            .map_err(db_err)?;
        let mut rows = stmt.query([server]).map_err(db_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(db_err)? {
            let id = parse_stored_id(&r.get::<_, String>(0).map_err(db_err)?)?;
            let serial: Serial = r
                .get::<_, String>(1)
                .map_err(db_err)?
                .parse()
                .map_err(|e| Error::Database {
                    reason: format!("a certificate row does not parse: {e}"),
                })?;
            out.push((id, serial));
        }
        Ok(out)
    }

    fn revoke_certificate(
        &mut self,
        serial: &Serial,
        at: OffsetDateTime,
        reason: RevocationReason,
    ) -> Result<()> {
        let n = self
            .tx
            .execute(
                "UPDATE certificates SET state = 'revoked', revoked_at = ?2, reason = ?3
                 WHERE serial = ?1 AND state = 'current'",
                params![serial.to_string(), ts(at), reason.to_string()],
            )
            .map_err(db_err)?;
        if n == 0 {
            return Err(Error::Database {
                reason: format!("no current certificate with serial {serial}"),
            });
        }
        Ok(())
    }

    /// A scan of the certificates table, parsing each certificate: 100 to
    /// 200 ms with 10,000 clients in a debug build on a busy two-core
    /// machine (the broker test `csr_key_check_cost_at_10000_clients`;
    /// the add itself takes 15 to 30 ms), paid only when a client's
    /// own request is signed (add or renew with a CSR). Should brokers grow
    /// far beyond that, a key-hash column with an index makes it a lookup.
    fn key_owner(&mut self, spki: &[u8], except: Option<&ClientId>) -> Result<Option<ClientId>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT client_id, pem FROM certificates WHERE client_id IS NOT ?1")
            .map_err(db_err)?;
        let mut rows = stmt.query([except.map(ClientId::as_str)]).map_err(db_err)?;
        while let Some(r) = rows.next().map_err(db_err)? {
            let pem = r.get_ref(1).and_then(|v| Ok(v.as_str()?)).map_err(db_err)?;
            if crate::pki::pem_carries_key(pem, spki) {
                let id: String = r.get(0).map_err(db_err)?;
                return parse_stored_id(&id).map(Some);
            }
        }
        Ok(None)
    }

    fn revoked_certificates(&mut self) -> Result<Vec<RevokedCert>> {
        // Only the columns a CRL entry needs: a million revoked rows are
        // read without their certificates and keys.
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT serial, not_after, revoked_at, reason
                 FROM certificates WHERE state = 'revoked' ORDER BY serial",
            )
            .map_err(db_err)?;
        let corrupt = |e: Error| Error::Database {
            reason: format!("a certificate row does not parse: {e}"),
        };
        let mut rows = stmt.query([]).map_err(db_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(db_err)? {
            let serial: String = r.get(0).map_err(db_err)?;
            let not_after = parse_ts(&r.get::<_, String>(1).map_err(db_err)?)?;
            let revoked_at: Option<String> = r.get(2).map_err(db_err)?;
            let reason: Option<String> = r.get(3).map_err(db_err)?;
            let (revoked_at, reason) = match (revoked_at, reason) {
                (Some(at), Some(reason)) => (parse_ts(&at)?, reason.parse().map_err(corrupt)?),
                _ => (not_after, RevocationReason::Unspecified),
            };
            out.push(RevokedCert {
                serial: serial.parse().map_err(corrupt)?,
                revoked_at,
                reason,
                not_after,
            });
        }
        Ok(out)
    }

    fn shared(&mut self, key: &str) -> Result<Option<String>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT value FROM shared WHERE key = ?1")
            .map_err(db_err)?;
        stmt.query_row([key], |r| r.get(0))
            .optional()
            .map_err(db_err)
    }

    fn set_shared(&mut self, key: &str, value: &str) -> Result<()> {
        let mut stmt = self
            .tx
            .prepare_cached(
                "INSERT INTO shared (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .map_err(db_err)?;
        stmt.execute([key, value]).map_err(db_err)?;
        Ok(())
    }

    fn shared_values(&mut self) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT key, value FROM shared ORDER BY key")
            .map_err(db_err)?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(db_err)
    }

    fn certificates(&mut self) -> Result<Vec<CertRecord>> {
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT serial, client_id, pem, key_pem, not_after, state, revoked_at, reason
                 FROM certificates ORDER BY rowid",
            )
            .map_err(db_err)?;
        let mut rows = stmt.query([]).map_err(db_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(db_err)? {
            out.push(Self::cert_from_row(r)?);
        }
        Ok(out)
    }

    fn crl_number(&mut self) -> Result<u64> {
        let n: i64 = self
            .tx
            .query_row("SELECT value FROM meta WHERE key = 'crl_number'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_err)?
            .ok_or_else(|| Error::Database {
                reason: "the crl_number counter is missing".into(),
            })?;
        Ok(n.unsigned_abs())
    }

    fn set_crl_number(&mut self, n: u64) -> Result<()> {
        let n = i64::try_from(n).map_err(|_| Error::Database {
            reason: format!("CRL number {n} is out of range"),
        })?;
        let changed = self
            .tx
            .execute("UPDATE meta SET value = ?1 WHERE key = 'crl_number'", [n])
            .map_err(db_err)?;
        if changed == 0 {
            return Err(Error::Database {
                reason: "the crl_number counter is missing".into(),
            });
        }
        Ok(())
    }

    fn next_crl_number(&mut self) -> Result<u64> {
        let n: i64 = self
            .tx
            .query_row(
                "UPDATE meta SET value = value + 1 WHERE key = 'crl_number' RETURNING value",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?
            .ok_or_else(|| Error::Database {
                reason: "the crl_number counter is missing".into(),
            })?;
        Ok(n as u64)
    }

    fn open_sessions(&mut self, server: &str) -> Result<Vec<Session>> {
        self.sessions(&SessionFilter {
            server: Some(server.to_owned()),
            open_only: true,
            ..SessionFilter::default()
        })
    }

    fn insert_session(&mut self, s: &Session) -> Result<bool> {
        let mut find = self
            .tx
            .prepare_cached(
                "SELECT id FROM sessions
                 WHERE server = ?1 AND common_name = ?2 AND real_address = ?3 AND started_at = ?4",
            )
            .map_err(db_err)?;
        let key = params![
            s.server,
            s.client_id,
            s.real_address.to_string(),
            micros(s.started_at)
        ];
        let old: Option<i64> = find
            .query_row(key, |r| r.get(0))
            .optional()
            .map_err(db_err)?;
        if let Some(id) = old {
            self.tx
                .prepare_cached(
                    "UPDATE sessions SET ended_at = NULL, bytes_in = ?2, bytes_out = ?3 WHERE id = ?1",
                )
                .map_err(db_err)?
                .execute(params![id, to_count(s.bytes_in), to_count(s.bytes_out)])
                .map_err(db_err)?;
            return Ok(false);
        }
        let a = s.addresses.as_ref();
        self.tx
            .prepare_cached(
                "INSERT INTO sessions (server, common_name, real_address, virtual, kind, prefix,
                     tunnel, started_at, ended_at, bytes_in, bytes_out)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .map_err(db_err)?
            .execute(params![
                s.server,
                s.client_id,
                s.real_address.to_string(),
                virtual_text(&s.virtual_addresses),
                a.map(|a| a.kind.to_string()),
                a.map(|a| a.prefix.to_string()),
                a.and_then(|a| a.tunnel_address).map(|t| t.to_string()),
                micros(s.started_at),
                s.ended_at.map(micros),
                to_count(s.bytes_in),
                to_count(s.bytes_out),
            ])
            .map_err(db_err)?;
        Ok(true)
    }

    fn update_session_bytes(&mut self, updates: &[(i64, u64, u64)]) -> Result<()> {
        let mut stmt = self
            .tx
            .prepare_cached("UPDATE sessions SET bytes_in = ?2, bytes_out = ?3 WHERE id = ?1")
            .map_err(db_err)?;
        for &(id, i, o) in updates {
            stmt.execute(params![id, to_count(i), to_count(o)])
                .map_err(db_err)?;
        }
        Ok(())
    }

    fn end_sessions(&mut self, ids: &[i64], at: OffsetDateTime) -> Result<()> {
        let mut stmt = self
            .tx
            .prepare_cached("UPDATE sessions SET ended_at = ?2 WHERE id = ?1 AND ended_at IS NULL")
            .map_err(db_err)?;
        for &id in ids {
            stmt.execute(params![id, micros(at)]).map_err(db_err)?;
        }
        Ok(())
    }

    fn sessions(&mut self, f: &SessionFilter) -> Result<Vec<Session>> {
        let prefixes = f.prefixes.as_ref().map(|p| {
            serde_json::to_string(&p.iter().map(ToString::to_string).collect::<Vec<_>>())
                .unwrap_or_default()
        });
        let order = if f.limit.is_some() { "DESC" } else { "ASC" };
        let mut stmt = self
            .tx
            .prepare_cached(&format!(
                "SELECT id, server, common_name, real_address, virtual, kind, prefix, tunnel,
                        started_at, ended_at, bytes_in, bytes_out
                 FROM sessions
                 WHERE (?1 IS NULL OR server = ?1)
                   AND (?2 IS NULL OR common_name = ?2)
                   AND (?3 IS NULL OR prefix IN (SELECT value FROM json_each(?3)))
                   AND (?4 = 0 OR ended_at IS NULL)
                   AND (?5 IS NULL OR ended_at IS NULL OR ended_at >= ?5)
                   AND (?6 IS NULL OR started_at <= ?6)
                 ORDER BY started_at {order}, id {order}
                 LIMIT ?7"
            ))
            .map_err(db_err)?;
        let mut rows = stmt
            .query(params![
                f.server,
                f.client_id,
                prefixes,
                f.open_only,
                f.from.map(micros),
                f.to.map(micros),
                f.limit.map_or(-1, i64::from),
            ])
            .map_err(db_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(db_err)? {
            let text = |i: usize| r.get_ref(i).and_then(|v| Ok(v.as_str()?)).map_err(db_err);
            let opt = |i: usize| {
                r.get_ref(i)
                    .and_then(|v| Ok(v.as_str_or_null()?))
                    .map_err(db_err)
            };
            let (real_address, virtual_addresses) = parse_endpoints(text(3)?, text(4)?)?;
            let ended: Option<i64> = r.get(9).map_err(db_err)?;
            out.push(Session {
                id: r.get(0).map_err(db_err)?,
                server: text(1)?.to_owned(),
                client_id: text(2)?.to_owned(),
                real_address,
                virtual_addresses,
                addresses: parse_addresses(opt(5)?, opt(6)?, opt(7)?)?,
                started_at: from_micros(r.get(8).map_err(db_err)?)?,
                ended_at: ended.map(from_micros).transpose()?,
                bytes_in: r.get::<_, i64>(10).map_err(db_err)?.unsigned_abs(),
                bytes_out: r.get::<_, i64>(11).map_err(db_err)?.unsigned_abs(),
            });
        }
        Ok(out)
    }

    fn servers(&mut self) -> Result<Vec<ServerRecord>> {
        let mut stmt = self
            .tx
            .prepare_cached(&format!(
                "SELECT {SERVER_COLUMNS} FROM servers ORDER BY name"
            ))
            .map_err(db_err)?;
        let mut rows = stmt.query([]).map_err(db_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(db_err)? {
            out.push(server_from_row(r)?);
        }
        Ok(out)
    }

    fn prune_sessions(&mut self, before: OffsetDateTime) -> Result<u64> {
        let n = self
            .tx
            .execute("DELETE FROM sessions WHERE ended_at < ?1", [micros(before)])
            .map_err(db_err)?;
        self.tx
            .execute("DELETE FROM assignments WHERE until < ?1", [micros(before)])
            .map_err(db_err)?;
        Ok(n as u64)
    }

    fn assignment_history(&mut self, prefixes: Option<&[Ipv6Net]>) -> Result<Vec<AssignmentSpan>> {
        let prefixes = prefixes.map(|p| {
            serde_json::to_string(&p.iter().map(ToString::to_string).collect::<Vec<_>>())
                .unwrap_or_default()
        });
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT client_id, kind, prefix, email, name, since, until FROM assignments
                 WHERE ?1 IS NULL OR prefix IN (SELECT value FROM json_each(?1))
                 ORDER BY since, id",
            )
            .map_err(db_err)?;
        let mut rows = stmt.query([prefixes]).map_err(db_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(db_err)? {
            let text = |i: usize| r.get::<_, String>(i).map_err(db_err);
            let corrupt = |v: String| Error::Database {
                reason: format!(
                    "an assignment history row's {} does not parse",
                    crate::error::shown(&v)
                ),
            };
            let until: Option<i64> = r.get(6).map_err(db_err)?;
            let (kind, prefix) = (text(1)?, text(2)?);
            out.push(AssignmentSpan {
                client_id: text(0)?,
                kind: kind.parse().map_err(|_| corrupt(kind))?,
                prefix: prefix.parse().map_err(|_| corrupt(prefix))?,
                email: r.get(3).map_err(db_err)?,
                name: r.get(4).map_err(db_err)?,
                since: from_micros(r.get(5).map_err(db_err)?)?,
                until: until.map(from_micros).transpose()?,
            });
        }
        Ok(out)
    }

    fn replace_assignment_history(&mut self, spans: &[AssignmentSpan]) -> Result<()> {
        self.tx
            .execute("DELETE FROM assignments", [])
            .map_err(db_err)?;
        let mut stmt = self
            .tx
            .prepare_cached(
                "INSERT INTO assignments (client_id, kind, prefix, email, name, since, until)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(db_err)?;
        for a in spans {
            stmt.execute(params![
                a.client_id,
                a.kind.to_string(),
                a.prefix.to_string(),
                a.email,
                a.name,
                micros(a.since),
                a.until.map(micros),
            ])
            .map_err(db_err)?;
        }
        Ok(())
    }

    fn insert_server(&mut self, s: &ServerRecord) -> Result<()> {
        self.tx
            .execute(
                &format!(
                    "INSERT INTO servers ({SERVER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ),
                params![
                    s.name,
                    s.endpoint,
                    s.mode.to_string(),
                    i64::from(s.port),
                    s.pool.to_string(),
                    s.cert_pem,
                    s.key_pem,
                    ts(s.created_at),
                ],
            )
            .map_err(|e| {
                let text = e.to_string();
                if text.contains("servers.name") {
                    Error::ServerExists {
                        name: s.name.clone(),
                    }
                } else if text.contains("servers.pool") {
                    Error::PoolsOverlap {
                        pool: s.pool.net(),
                        server: None,
                    }
                } else {
                    db_err(e)
                }
            })?;
        self.pools.insert(s.name.clone(), s.pool);
        Ok(())
    }

    fn set_server_certificate(&mut self, name: &str, cert_pem: &str, key_pem: &str) -> Result<()> {
        let n = self
            .tx
            .execute(
                "UPDATE servers SET cert_pem = ?2, key_pem = ?3 WHERE name = ?1",
                params![name, cert_pem, key_pem],
            )
            .map_err(db_err)?;
        if n == 0 {
            return Err(Error::UnknownServer { name: name.into() });
        }
        Ok(())
    }

    fn delete_server(&mut self, name: &str) -> Result<()> {
        let n = self
            .tx
            .execute("DELETE FROM servers WHERE name = ?1", [name])
            .map_err(db_err)?;
        if n == 0 {
            return Err(Error::UnknownServer { name: name.into() });
        }
        self.pools.remove(name);
        Ok(())
    }

    fn move_client(
        &mut self,
        id: &ClientId,
        server: &str,
        assignment: &Assignment,
        port: Option<u16>,
    ) -> Result<()> {
        let n = self
            .tx
            .execute(
                "UPDATE clients SET server = ?2, prefix = ?3, port = ?4 WHERE id = ?1",
                params![
                    id.as_str(),
                    server,
                    assignment.prefix().to_string(),
                    port.map(i64::from)
                ],
            )
            .map_err(db_err)?;
        if n == 0 {
            return Err(Error::UnknownClient { id: id.to_string() });
        }
        Ok(())
    }
}
