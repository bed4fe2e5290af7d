//! The client database of a broker with several provisioning hosts:
//! PostgreSQL through the synchronous `postgres` crate, with TLS through
//! rustls for servers that are not local (see [`DatabaseUrl`]).
//!
//! # Concurrency
//!
//! Every write transaction takes one transaction-scoped advisory lock
//! (`pg_advisory_xact_lock`) before its first statement, so writers are
//! serialised across all hosts and processes, exactly as SQLite's
//! `BEGIN IMMEDIATE` serialises them on one host. A writer therefore sees
//! everything committed before it got the lock, and `READ COMMITTED` is
//! enough: no two writers can interleave, so no serialisation failure can
//! occur and nothing needs retrying. Readers run in `REPEATABLE READ READ
//! ONLY`: one consistent snapshot, and they never wait for a writer. The
//! lock is released by the commit or rollback, also when the connection
//! dies (the server ends the session and its locks). The operator guide
//! says why this was chosen over serializable transactions with retry.
//!
//! # Failures
//!
//! A transaction that fails (a statement, the closure, the connection) is
//! rolled back, and nothing of it is written. A connection found dead is
//! replaced by the next transaction; one that dies inside a transaction
//! fails that transaction with one line. A connection that dies while the
//! commit is under way leaves the outcome unknown, and the error says so.
//!
//! # Speed
//!
//! Statements are prepared once per connection. Inserted client and
//! certificate rows are buffered in the transaction and sent together (one
//! `INSERT ... SELECT FROM unnest(...)` per table) before any read that
//! could see them and before the commit; point lookups by ID, prefix and
//! port consult the buffer first and do not flush it. An import thus costs
//! about one round trip per client instead of three.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::Ipv6Net;
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Config, IsolationLevel, NoTls, Statement};
use time::OffsetDateTime;

use super::session::{
    from_micros, micros, parse_addresses, parse_endpoints, to_count, virtual_text,
};
use super::sqlite::{parse_stored_id, parse_ts, pool_of, ts};
use super::url::{DbHost, Tls};
use super::{
    Allocation, AssignmentSpan, CertRecord, CertState, ClientRecord, DatabaseUrl, ServerRecord,
    Session, SessionFilter, Store, Transaction, passfile,
};
use crate::client_id::ClientId;
use crate::error::{Error, Result, one_line};
use crate::pki::{RevocationReason, RevokedCert, Serial};
use crate::plan::{Assignment, ClientKind, Pool};
use crate::words::{ClientOs, ClientState};

/// The schema, one entry per version; entry `i` migrates version `i` to
/// `i + 1`. The version and the application marker live in `meta`.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: what SQLite's schema 3 holds. Certificates keep the order in
    // which they were recorded (seq): a client's latest is its last.
    "CREATE TABLE clients (
        id          TEXT PRIMARY KEY,
        kind        TEXT NOT NULL CHECK (kind IN ('hermit', 'subnet')),
        os          TEXT NOT NULL CHECK (os IN ('linux', 'windows')),
        prefix      TEXT NOT NULL UNIQUE,
        port        INTEGER UNIQUE CHECK (port BETWEEN 1 AND 65535),
        state       TEXT NOT NULL CHECK (state IN ('active', 'revoked')),
        email       TEXT,
        name        TEXT,
        created_at  TEXT NOT NULL,
        revoked_at  TEXT
    );
    CREATE INDEX clients_allocation ON clients (prefix, kind, port, id);
    CREATE TABLE certificates (
        seq         BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
        serial      TEXT PRIMARY KEY,
        client_id   TEXT NOT NULL,
        pem         TEXT NOT NULL,
        key_pem     TEXT,
        not_after   TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('current', 'revoked')),
        revoked_at  TEXT,
        reason      TEXT
    );
    CREATE UNIQUE INDEX one_current_certificate
        ON certificates (client_id) WHERE state = 'current';
    CREATE INDEX certificates_by_client ON certificates (client_id, seq);
    CREATE TABLE plan_state (
        id     INTEGER PRIMARY KEY CHECK (id = 1),
        state  TEXT NOT NULL
    );
    CREATE TABLE shared (
        key    TEXT PRIMARY KEY,
        value  TEXT NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('crl_number', '0');",
    // 1 -> 2: several OpenVPN servers, each with its own pool (issue 13).
    // Every existing client belongs to `main`, whose row the broker makes
    // from its settings when it opens the database.
    "CREATE TABLE servers (
        name        TEXT PRIMARY KEY,
        endpoint    TEXT NOT NULL,
        mode        TEXT NOT NULL CHECK (mode IN ('per-client', 'shared')),
        port        INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
        pool        TEXT NOT NULL UNIQUE,
        cert_pem    TEXT,
        key_pem     TEXT,
        created_at  TEXT NOT NULL
    );
    ALTER TABLE clients ADD COLUMN server TEXT NOT NULL DEFAULT 'main';
    CREATE INDEX clients_by_server ON clients (server);",
    // 2 -> 3: sessions and the assignment history, as SQLite's 4 -> 5
    // (times in microseconds since the epoch; triggers keep the history).
    "CREATE TABLE sessions (
        id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        server        TEXT NOT NULL,
        common_name   TEXT NOT NULL,
        real_address  TEXT NOT NULL,
        virtual       TEXT NOT NULL,
        kind          TEXT,
        prefix        TEXT,
        tunnel        TEXT,
        started_at    BIGINT NOT NULL,
        ended_at      BIGINT,
        bytes_in      BIGINT NOT NULL,
        bytes_out     BIGINT NOT NULL,
        UNIQUE (server, common_name, real_address, started_at)
    );
    CREATE INDEX sessions_open ON sessions (server) WHERE ended_at IS NULL;
    CREATE INDEX sessions_by_client ON sessions (common_name, started_at);
    CREATE INDEX sessions_by_prefix ON sessions (prefix, started_at);
    CREATE INDEX sessions_ended ON sessions (ended_at) WHERE ended_at IS NOT NULL;
    CREATE TABLE assignments (
        id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        client_id  TEXT NOT NULL,
        kind       TEXT NOT NULL,
        prefix     TEXT NOT NULL,
        email      TEXT,
        name       TEXT,
        since      BIGINT NOT NULL,
        until      BIGINT
    );
    CREATE INDEX assignments_by_prefix ON assignments (prefix, since);
    CREATE INDEX assignments_by_client ON assignments (client_id) WHERE until IS NULL;
    INSERT INTO assignments (client_id, kind, prefix, email, name, since)
        SELECT id, kind, prefix, email, name,
               (extract(epoch FROM created_at::timestamptz) * 1000000)::bigint
        FROM clients ORDER BY id COLLATE \"C\";
    CREATE FUNCTION tunnelbroker_assignments() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        now_us BIGINT := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    BEGIN
        IF TG_OP <> 'INSERT' THEN
            UPDATE assignments SET until = now_us WHERE client_id = OLD.id AND until IS NULL;
        END IF;
        IF TG_OP = 'INSERT' THEN
            INSERT INTO assignments (client_id, kind, prefix, email, name, since)
            VALUES (NEW.id, NEW.kind, NEW.prefix, NEW.email, NEW.name,
                    (extract(epoch FROM NEW.created_at::timestamptz) * 1000000)::bigint);
        ELSIF TG_OP = 'UPDATE' THEN
            INSERT INTO assignments (client_id, kind, prefix, email, name, since)
            VALUES (NEW.id, NEW.kind, NEW.prefix, NEW.email, NEW.name, now_us);
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER clients_assigned AFTER INSERT OR DELETE ON clients
        FOR EACH ROW EXECUTE FUNCTION tunnelbroker_assignments();
    CREATE TRIGGER clients_changed AFTER UPDATE OF id, kind, prefix, email, name ON clients
        FOR EACH ROW
        WHEN ((OLD.id, OLD.kind, OLD.prefix, OLD.email, OLD.name)
              IS DISTINCT FROM (NEW.id, NEW.kind, NEW.prefix, NEW.email, NEW.name))
        EXECUTE FUNCTION tunnelbroker_assignments();",
    // 3 -> 4: a counter of writes that change what a server renders, for
    // the agents' change marker. Every statement that writes clients (a
    // move, a new port or prefix, a state) or servers (add, remove, a new
    // certificate, endpoint or mode) bumps it, in its own transaction: an
    // agent that sees the new value sees the write. Sessions (which the
    // agents write every poll) do not bump it. Writers are serialized by
    // the advisory lock, so the one row is no contention.
    "INSERT INTO meta (key, value) VALUES ('changes', '0');
    CREATE FUNCTION tunnelbroker_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'changes';
        RETURN NULL;
    END $$;
    CREATE TRIGGER clients_bump_changes AFTER INSERT OR UPDATE OR DELETE ON clients
        FOR EACH STATEMENT EXECUTE FUNCTION tunnelbroker_changed();
    CREATE TRIGGER servers_bump_changes AFTER INSERT OR UPDATE OR DELETE ON servers
        FOR EACH STATEMENT EXECUTE FUNCTION tunnelbroker_changed();",
];

/// The current schema version.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The value of the `application` row of `meta`: it tells a tunnelbroker
/// database from another program's.
const APPLICATION: &str = "tunnelbroker";

/// The key of the advisory lock every writer takes (`TnBr`).
const LOCK_KEY: i64 = u32::from_be_bytes(*b"TnBr") as i64;

/// How many buffered rows are sent at once at most.
const FLUSH_AT: usize = 1000;

/// The PostgreSQL client database. `Debug` prints no password.
pub struct PostgresStore {
    url: DatabaseUrl,
    pool: Pool,
    password: Option<Vec<u8>>,
    tls: Option<Arc<rustls::ClientConfig>>,
    conn: Mutex<Option<Conn>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.url.as_str())
            .field("pool", &self.pool)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// One connection and the statements prepared on it.
struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

fn pg_err(e: postgres::Error) -> Error {
    let reason = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    };
    Error::Database {
        reason: one_line(reason),
    }
}

/// What the schema of a database is.
#[derive(Debug, PartialEq, Eq)]
enum Schema {
    /// No tables at all.
    Empty,
    /// Ours, at this version.
    Ours(u32),
    /// Another program's (some of its tables).
    Foreign(Vec<String>),
}

impl PostgresStore {
    /// Creates the schema in a database that holds no tables (a new,
    /// empty database owned by the broker's user), whose assignments
    /// belong to `pool`. A database with a broker or another program's
    /// tables is refused ([`Error::UnusableDatabase`]), and nothing is
    /// written.
    pub fn create(url: &DatabaseUrl, pool: Pool) -> Result<Self> {
        let store = Self::connect_to(url, pool)?;
        store.with_conn(|conn| {
            let mut tx = conn.client.transaction().map_err(pg_err)?;
            lock(&mut tx)?;
            match inspect(&mut tx)? {
                Schema::Empty => {}
                Schema::Ours(_) => {
                    return Err(store.unusable(
                        "it holds a broker already; open it, or create a new database for a new broker",
                    ));
                }
                Schema::Foreign(tables) => return Err(store.foreign(&tables)),
            }
            tx.batch_execute(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
            )
            .map_err(pg_err)?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('application', $1), ('schema_version', '0')",
                &[&APPLICATION],
            )
            .map_err(pg_err)?;
            migrate(&mut tx, 0)?;
            tx.commit().map_err(pg_err)
        })?;
        Ok(store)
    }

    /// Opens a database with our schema, whose assignments belong to
    /// `pool`, migrating it forward. A database without our schema (empty,
    /// or another program's) and one with a newer schema version are
    /// refused ([`Error::UnusableDatabase`]), and nothing is written.
    pub fn open(url: &DatabaseUrl, pool: Pool) -> Result<Self> {
        let store = Self::connect_to(url, pool)?;
        store.with_conn(|conn| {
            // A look on a snapshot first: opening a current database takes
            // no lock, so that it never waits for a long writer.
            let mut tx = conn
                .client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(pg_err)?;
            let schema = inspect(&mut tx)?;
            tx.commit().map_err(pg_err)?;
            match schema {
                Schema::Ours(v) if v == SCHEMA_VERSION => return Ok(()),
                Schema::Ours(v) if v > SCHEMA_VERSION => return Err(store.newer(v)),
                Schema::Ours(_) => {}
                Schema::Empty => {
                    return Err(store.unusable(
                        "it holds no tunnelbroker schema (only `tunnelbroker init` creates one)",
                    ));
                }
                Schema::Foreign(tables) => return Err(store.foreign(&tables)),
            }
            let mut tx = conn.client.transaction().map_err(pg_err)?;
            lock(&mut tx)?;
            match inspect(&mut tx)? {
                Schema::Ours(v) if v > SCHEMA_VERSION => return Err(store.newer(v)),
                Schema::Ours(v) => migrate(&mut tx, v)?,
                _ => return Err(store.unusable("its schema changed while it was being opened")),
            }
            tx.commit().map_err(pg_err)
        })?;
        Ok(store)
    }

    /// Where the database is.
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    fn connect_to(url: &DatabaseUrl, pool: Pool) -> Result<Self> {
        let (host, socket) = match url.host() {
            DbHost::Tcp(h) => (h.clone(), false),
            DbHost::Socket(dir) => (dir.display().to_string(), true),
        };
        let pgpassword = std::env::var_os("PGPASSWORD");
        let pgpassfile = std::env::var_os("PGPASSFILE").map(PathBuf::from);
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let password = passfile::password(
            passfile::Target {
                host: &host,
                socket,
                port: url.port(),
                database: url.database(),
                user: url.user(),
            },
            pgpassword
                .as_ref()
                .map(|p| std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str())),
            pgpassfile.as_deref(),
            home.as_deref(),
        )?;
        let tls = match url.tls() {
            Tls::Off => None,
            Tls::Verified => Some(Arc::new(tls_config(url.sslrootcert())?)),
        };
        let store = PostgresStore {
            url: url.clone(),
            pool,
            password,
            tls,
            conn: Mutex::new(None),
        };
        let conn = store.connect()?;
        *store.lock_conn()? = Some(conn);
        Ok(store)
    }

    fn config(&self) -> Config {
        let mut cfg = Config::new();
        cfg.user(self.url.user())
            .dbname(self.url.database())
            .port(self.url.port())
            .application_name("tunnelbroker")
            .connect_timeout(Duration::from_secs(10))
            .keepalives_idle(Duration::from_secs(60));
        match self.url.host() {
            DbHost::Tcp(h) => cfg.host(h),
            DbHost::Socket(dir) => cfg.host_path(dir),
        };
        if let Some(pw) = &self.password {
            cfg.password(pw);
        }
        cfg
    }

    fn connect(&self) -> Result<Conn> {
        let mut cfg = self.config();
        let client = match &self.tls {
            None => cfg
                .ssl_mode(postgres::config::SslMode::Disable)
                .connect(NoTls),
            Some(tls) => cfg.ssl_mode(postgres::config::SslMode::Require).connect(
                tokio_postgres_rustls::MakeRustlsConnect::new(tls.as_ref().clone()),
            ),
        }
        .map_err(|e| Error::Database {
            reason: format!(
                "cannot connect to {}: {}",
                self.url,
                one_line(connect_failure(&e, self.password.is_some()))
            ),
        })?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    fn lock_conn(&self) -> Result<std::sync::MutexGuard<'_, Option<Conn>>> {
        self.conn.lock().map_err(|_| Error::Database {
            reason: "the database connection was poisoned by an earlier panic".into(),
        })
    }

    /// Runs `f` on the connection, replacing a dead one first, and drops
    /// the connection when `f` leaves it dead.
    fn with_conn<T>(&self, mut f: impl FnMut(&mut Conn) -> Result<T>) -> Result<T> {
        let mut guard = self.lock_conn()?;
        if guard.as_ref().is_none_or(|c| c.client.is_closed()) {
            *guard = None;
            *guard = Some(self.connect()?);
        }
        let Some(conn) = guard.as_mut() else {
            return Err(Error::Database {
                reason: "no connection".into(),
            });
        };
        let out = f(conn);
        // After a failure, a connection that the server ended (its FATAL
        // error may come before the client sees the socket close) is
        // dropped, so that the next transaction starts on a new one.
        if out.is_err()
            && (conn.client.is_closed() || conn.client.is_valid(Duration::from_secs(5)).is_err())
        {
            *guard = None;
        }
        out
    }

    fn run(
        &self,
        write: bool,
        f: &mut dyn FnMut(&mut dyn Transaction) -> Result<()>,
    ) -> Result<()> {
        let pool = self.pool;
        let url = &self.url;
        let mut retried = false;
        loop {
            let mut started = false;
            let out = self.with_conn(|conn| {
                let Conn { client, statements } = conn;
                let mut tx = if write {
                    let mut tx = client.transaction().map_err(pg_err)?;
                    lock(&mut tx)?;
                    tx
                } else {
                    client
                        .build_transaction()
                        .isolation_level(IsolationLevel::RepeatableRead)
                        .read_only(true)
                        .start()
                        .map_err(pg_err)?
                };
                started = true;
                let pools = server_pools(&mut tx)?;
                let mut t = PgTx {
                    tx: &mut tx,
                    statements,
                    pool,
                    pools,
                    new_clients: Vec::new(),
                    new_certs: Vec::new(),
                };
                f(&mut t)?;
                t.flush()?;
                tx.commit().map_err(|e| {
                    if e.is_closed() || e.as_db_error().is_none() {
                        Error::Database {
                            reason: format!(
                                "the connection to {url} was lost while committing; the change may or may not have been written ({})",
                                one_line(&e)
                            ),
                        }
                    } else {
                        pg_err(e)
                    }
                })
            });
            match out {
                // A connection that died while idle (a server restart, a
                // failover) fails the BEGIN: nothing ran, so try once more
                // on a new connection.
                Err(_) if !started && !retried && self.lock_conn()?.is_none() => {
                    retried = true;
                }
                Err(e) if started && self.lock_conn()?.is_none() => {
                    return Err(match e {
                        Error::Database { reason } => Error::Database {
                            reason: format!(
                                "the connection to {url} was lost in a transaction, which was not written: {reason}"
                            ),
                        },
                        other => other,
                    });
                }
                other => return other,
            }
        }
    }

    fn unusable(&self, reason: &str) -> Error {
        Error::UnusableDatabase {
            path: PathBuf::from(self.url.as_str()),
            reason: reason.to_owned(),
        }
    }

    fn newer(&self, v: u32) -> Error {
        self.unusable(&format!(
            "it has schema version {v}, newer than this tunnelbroker knows ({SCHEMA_VERSION}); upgrade tunnelbroker"
        ))
    }

    fn foreign(&self, tables: &[String]) -> Error {
        let mut names: Vec<String> = tables
            .iter()
            .take(5)
            .map(|t| crate::error::shown(t))
            .collect();
        if tables.len() > 5 {
            names.push("…".into());
        }
        self.unusable(&format!(
            "a database of another program (tables {}), not a tunnelbroker client database; give the broker a database of its own",
            names.join(", ")
        ))
    }
}

/// The TLS settings: the server's certificate is verified against the
/// host name, by the certificates in `root` or else the system's roots.
fn tls_config(root: Option<&Path>) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let tls_err = |reason: String| Error::Database {
        reason: format!("TLS: {reason}"),
    };
    match root {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| {
                    tls_err(format!(
                        "sslrootcert {}: {}",
                        crate::error::shown_path(path),
                        one_line(e)
                    ))
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(tls_err(format!(
                    "sslrootcert {} holds no usable certificate",
                    crate::error::shown_path(path)
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(tls_err(
                    "no trusted root certificates on this system (install ca-certificates, or give sslrootcert=/path in the URL)".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(one_line(e)))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Takes the writers' lock: the first statement of every write.
fn lock(tx: &mut postgres::Transaction<'_>) -> Result<()> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .map_err(pg_err)?;
    Ok(())
}

/// What the current schema of the connected database holds.
fn inspect(tx: &mut postgres::Transaction<'_>) -> Result<Schema> {
    let rows = tx
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename",
            &[],
        )
        .map_err(pg_err)?;
    let tables: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    if tables.is_empty() {
        return Ok(Schema::Empty);
    }
    if !tables.iter().any(|t| t == "meta") {
        return Ok(Schema::Foreign(tables));
    }
    let rows = tx
        .query(
            "SELECT key, value FROM meta WHERE key IN ('application', 'schema_version')",
            &[],
        )
        .map_err(|_| ())
        .unwrap_or_default();
    let get = |k: &str| {
        rows.iter()
            .find(|r| r.get::<_, &str>(0) == k)
            .map(|r| r.get::<_, String>(1))
    };
    if get("application").as_deref() != Some(APPLICATION) {
        return Ok(Schema::Foreign(tables));
    }
    let version = get("schema_version")
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(|| Error::Database {
            reason: "the schema version in meta is missing or does not parse".into(),
        })?;
    Ok(Schema::Ours(version))
}

/// Migrates from version `from` to the current one (the lock is held).
fn migrate(tx: &mut postgres::Transaction<'_>, from: u32) -> Result<()> {
    for sql in MIGRATIONS.iter().skip(from as usize) {
        tx.batch_execute(sql).map_err(pg_err)?;
    }
    tx.execute(
        "UPDATE meta SET value = $1 WHERE key = 'schema_version'",
        &[&SCHEMA_VERSION.to_string()],
    )
    .map_err(pg_err)?;
    Ok(())
}

impl Store for PostgresStore {
    fn write(&self, f: &mut dyn FnMut(&mut dyn Transaction) -> Result<()>) -> Result<()> {
        self.run(true, f)
    }

    fn read(&self, f: &mut dyn FnMut(&mut dyn Transaction) -> Result<()>) -> Result<()> {
        self.run(false, f)
    }

    fn change_marker(&self) -> Result<String> {
        // Every issued certificate moves seq, every revocation and CRL the
        // CRL number, every write of clients or servers (a move, a server
        // added, removed or given a new certificate) the `changes` counter
        // (triggers, migration 4), every settings change the shared values
        // (the CRL, which follows the CRL number, aside). Index-only work.
        const MARKER: &str = "SELECT concat_ws(' ',
                (SELECT coalesce(max(seq), 0) FROM certificates),
                (SELECT value FROM meta WHERE key = 'crl_number'),
                (SELECT value FROM meta WHERE key = 'changes'),
                (SELECT md5(coalesce(string_agg(key || '=' || value, ',' ORDER BY key), ''))
                   FROM shared WHERE key <> 'crl'))";
        self.with_conn(|conn| {
            let row = conn.client.query_one(MARKER, &[]).map_err(pg_err)?;
            row.try_get::<_, String>(0).map_err(pg_err)
        })
    }
}

struct PgTx<'a, 'c> {
    tx: &'a mut postgres::Transaction<'c>,
    statements: &'a mut HashMap<&'static str, Statement>,
    /// The pool of `main` until its server row exists.
    pool: Pool,
    /// Every server's pool, by name.
    pools: HashMap<String, Pool>,
    /// Client rows inserted and not sent yet.
    new_clients: Vec<ClientRecord>,
    /// Certificate rows inserted and not sent yet.
    new_certs: Vec<CertRecord>,
}

/// Every server's pool, by name, read at the start of a transaction.
fn server_pools(tx: &mut postgres::Transaction<'_>) -> Result<HashMap<String, Pool>> {
    let rows = tx
        .query("SELECT name, pool FROM servers", &[])
        .map_err(pg_err)?;
    rows.iter()
        .map(|r| {
            let name: String = r.try_get(0).map_err(pg_err)?;
            let pool: &str = r.try_get(1).map_err(pg_err)?;
            let pool = pool.parse().map_err(|e| Error::Database {
                reason: format!("the pool of server {name:?} does not parse: {e}"),
            })?;
            Ok((name, pool))
        })
        .collect()
}

const SERVER_COLUMNS: &str = "name, endpoint, mode, port, pool, cert_pem, key_pem, created_at";

fn server_from_row(r: &postgres::Row) -> Result<ServerRecord> {
    let text = |i: usize| -> Result<String> { r.try_get::<_, String>(i).map_err(pg_err) };
    let name = text(0)?;
    let corrupt = |e: Error| Error::Database {
        reason: format!("the row of server {name:?} does not parse: {e}"),
    };
    let port: i32 = r.try_get(3).map_err(pg_err)?;
    Ok(ServerRecord {
        endpoint: text(1)?,
        mode: text(2)?.parse().map_err(corrupt)?,
        port: u16::try_from(port).map_err(|_| Error::Database {
            reason: format!("port {port} of server {name:?} is out of range"),
        })?,
        pool: text(4)?.parse().map_err(corrupt)?,
        cert_pem: r.try_get(5).map_err(pg_err)?,
        key_pem: r.try_get(6).map_err(pg_err)?,
        created_at: parse_ts(&text(7)?)?,
        name,
    })
}

const CLIENT_COLUMNS: &str =
    "id, kind, os, prefix, port, state, email, name, created_at, revoked_at, server";
const CERT_COLUMNS: &str = "serial, client_id, pem, key_pem, not_after, state, revoked_at, reason";

const INSERT_CLIENTS: &str = "INSERT INTO clients (id, kind, os, prefix, port, state, email, name, created_at, revoked_at, server)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])";
const INSERT_CERTS: &str = "INSERT INTO certificates (serial, client_id, pem, key_pem, not_after, state, revoked_at, reason)
     SELECT a, b, c, d, e, f, g, h
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
          WITH ORDINALITY AS t(a, b, c, d, e, f, g, h, n)
     ORDER BY n";

fn cert_state(s: CertState) -> &'static str {
    match s {
        CertState::Current => "current",
        CertState::Revoked => "revoked",
    }
}

/// Turns a violated constraint into the error a person needs.
fn constraint_err(e: postgres::Error) -> Error {
    let Some(db) = e.as_db_error() else {
        return pg_err(e);
    };
    if db.code() != &SqlState::UNIQUE_VIOLATION {
        return pg_err(e);
    }
    // "Key (id)=(alice) already exists."
    let value = db
        .detail()
        .and_then(|d| d.split_once(")=("))
        .and_then(|(_, v)| v.rsplit_once(") already exists"))
        .map(|(v, _)| v.to_owned())
        .unwrap_or_default();
    match db.constraint() {
        Some("clients_pkey") => Error::ClientExists { id: value },
        Some("clients_prefix_key") => match crate::plan::parse_prefix(&value) {
            Ok(prefix) => Error::AlreadyAssigned {
                prefix,
                owner: None,
            },
            Err(_) => pg_err(e),
        },
        Some("clients_port_key") => Error::Database {
            reason: format!("port {value} is taken"),
        },
        Some("certificates_pkey") => Error::Database {
            reason: format!("serial {value} was issued before"),
        },
        _ => pg_err(e),
    }
}

impl PgTx<'_, '_> {
    fn statement(&mut self, sql: &'static str) -> Result<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.prepare(sql).map_err(pg_err)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>> {
        self.flush()?;
        self.query_unflushed(sql, params)
    }

    /// A query that need not see the buffered rows (the caller consults
    /// them itself).
    fn query_unflushed(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>> {
        let stmt = self.statement(sql)?;
        self.tx.query(&stmt, params).map_err(pg_err)
    }

    fn execute(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        self.flush()?;
        let stmt = self.statement(sql)?;
        self.tx.execute(&stmt, params).map_err(pg_err)
    }

    /// Sends the buffered rows.
    fn flush(&mut self) -> Result<()> {
        if !self.new_clients.is_empty() {
            let rows = std::mem::take(&mut self.new_clients);
            let col = |f: &dyn Fn(&ClientRecord) -> Option<String>| -> Vec<Option<String>> {
                rows.iter().map(f).collect()
            };
            let ids = col(&|c| Some(c.id.to_string()));
            let kinds = col(&|c| Some(c.assignment.kind().to_string()));
            let oses = col(&|c| Some(c.os.to_string()));
            let prefixes = col(&|c| Some(c.assignment.prefix().to_string()));
            let ports: Vec<Option<i32>> = rows.iter().map(|c| c.port.map(i32::from)).collect();
            let states = col(&|c| Some(c.state.to_string()));
            let emails = col(&|c| c.email.clone());
            let names = col(&|c| c.name.clone());
            let created = col(&|c| Some(ts(c.created_at)));
            let revoked = col(&|c| c.revoked_at.map(ts));
            let servers = col(&|c| Some(c.server.clone()));
            let stmt = self.statement(INSERT_CLIENTS)?;
            self.tx
                .execute(
                    &stmt,
                    &[
                        &ids, &kinds, &oses, &prefixes, &ports, &states, &emails, &names, &created,
                        &revoked, &servers,
                    ],
                )
                .map_err(constraint_err)?;
        }
        if !self.new_certs.is_empty() {
            let rows = std::mem::take(&mut self.new_certs);
            let col = |f: &dyn Fn(&CertRecord) -> Option<String>| -> Vec<Option<String>> {
                rows.iter().map(f).collect()
            };
            let serials = col(&|c| Some(c.serial.to_string()));
            let ids = col(&|c| Some(c.client_id.to_string()));
            let pems = col(&|c| Some(c.pem.clone()));
            let keys = col(&|c| c.key_pem.clone());
            let not_after = col(&|c| Some(ts(c.not_after)));
            let states = col(&|c| Some(cert_state(c.state).to_owned()));
            let revoked_at = col(&|c| c.revoked.map(|(at, _)| ts(at)));
            let reasons = col(&|c| c.revoked.map(|(_, r)| r.to_string()));
            let stmt = self.statement(INSERT_CERTS)?;
            self.tx
                .execute(
                    &stmt,
                    &[
                        &serials,
                        &ids,
                        &pems,
                        &keys,
                        &not_after,
                        &states,
                        &revoked_at,
                        &reasons,
                    ],
                )
                .map_err(constraint_err)?;
        }
        Ok(())
    }

    fn client_from_row(&self, r: &postgres::Row) -> Result<ClientRecord> {
        let text = |i: usize| -> Result<String> { r.try_get::<_, String>(i).map_err(pg_err) };
        let opt = |i: usize| -> Result<Option<String>> { r.try_get(i).map_err(pg_err) };
        let corrupt = |e: Error| Error::Database {
            reason: format!("a client row does not parse: {e}"),
        };
        let id = ClientId::new(&text(0)?).map_err(corrupt)?;
        let kind: ClientKind = text(1)?.parse().map_err(corrupt)?;
        let os: ClientOs = text(2)?.parse().map_err(corrupt)?;
        let server = text(10)?;
        let pool = pool_of(&self.pools, &self.pool, &server)?;
        let assignment = Assignment::parse_in(&pool, kind, &text(3)?).map_err(corrupt)?;
        let port = port_of(&id, r.try_get(4).map_err(pg_err)?)?;
        let state: ClientState = text(5)?.parse().map_err(corrupt)?;
        Ok(ClientRecord {
            id,
            os,
            assignment,
            port,
            state,
            email: opt(6)?,
            name: opt(7)?,
            created_at: parse_ts(&text(8)?)?,
            revoked_at: opt(9)?.as_deref().map(parse_ts).transpose()?,
            server,
        })
    }

    fn cert_from_row(r: &postgres::Row) -> Result<CertRecord> {
        let text = |i: usize| -> Result<String> { r.try_get::<_, String>(i).map_err(pg_err) };
        let opt = |i: usize| -> Result<Option<String>> { r.try_get(i).map_err(pg_err) };
        let corrupt = |e: Error| Error::Database {
            reason: format!("a certificate row does not parse: {e}"),
        };
        let state = match text(5)?.as_str() {
            "current" => CertState::Current,
            _ => CertState::Revoked,
        };
        let revoked = match (opt(6)?, opt(7)?) {
            (Some(at), Some(reason)) => Some((parse_ts(&at)?, reason.parse().map_err(corrupt)?)),
            _ => None,
        };
        Ok(CertRecord {
            serial: text(0)?.parse().map_err(corrupt)?,
            client_id: ClientId::new(&text(1)?).map_err(corrupt)?,
            pem: text(2)?,
            key_pem: opt(3)?,
            not_after: parse_ts(&text(4)?)?,
            state,
            revoked,
        })
    }

    fn buffer_client(&mut self, c: &ClientRecord) -> Result<()> {
        self.new_clients.push(c.clone());
        if self.new_clients.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    fn meta_number(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let rows = self.query(sql, params)?;
        let text: String = rows
            .first()
            .ok_or_else(|| Error::Database {
                reason: "the crl_number counter is missing".into(),
            })?
            .try_get(0)
            .map_err(pg_err)?;
        text.parse().map_err(|_| Error::Database {
            reason: format!(
                "the crl_number counter {} does not parse",
                crate::error::shown(&text)
            ),
        })
    }
}

fn port_of(id: &impl std::fmt::Display, port: Option<i32>) -> Result<Option<u16>> {
    port.map(|p| {
        u16::try_from(p).map_err(|_| Error::Database {
            reason: format!("port {p} of client {id} is out of range"),
        })
    })
    .transpose()
}

impl Transaction for PgTx<'_, '_> {
    fn clients(&mut self) -> Result<Vec<ClientRecord>> {
        const SQL: &str = "SELECT id, kind, os, prefix, port, state, email, name, created_at, revoked_at, server FROM clients ORDER BY id COLLATE \"C\"";
        debug_assert!(SQL.contains(CLIENT_COLUMNS));
        let rows = self.query(SQL, &[])?;
        rows.iter().map(|r| self.client_from_row(r)).collect()
    }

    fn rendered_clients(
        &mut self,
        server: &str,
    ) -> Result<Vec<(ClientId, Assignment, Option<u16>)>> {
        // Four columns of the active clients (issue 19), in the order of
        // `clients`.
        let rows = self.query(
            "SELECT id, kind, prefix, port FROM clients
             WHERE state = 'active' AND server = $1 ORDER BY id COLLATE \"C\"",
            &[&server],
        )?;
        let corrupt = |e: Error| Error::Database {
            reason: format!("a client row does not parse: {e}"),
        };
        // Asked at the first row: a server without clients needs no row.
        let mut pool = None;
        rows.iter()
            .map(|r| {
                let id = ClientId::new(r.try_get(0).map_err(pg_err)?).map_err(corrupt)?;
                let kind: ClientKind = r
                    .try_get::<_, &str>(1)
                    .map_err(pg_err)?
                    .parse()
                    .map_err(corrupt)?;
                let pool = match pool {
                    Some(p) => p,
                    None => *pool.insert(pool_of(&self.pools, &self.pool, server)?),
                };
                let assignment = Assignment::parse_in(&pool, kind, r.try_get(2).map_err(pg_err)?)
                    .map_err(corrupt)?;
                let port = port_of(&id, r.try_get(3).map_err(pg_err)?)?;
                Ok((id, assignment, port))
            })
            .collect()
    }

    fn current_serials(&mut self, server: &str) -> Result<Vec<(ClientId, Serial)>> {
        // One query (issue 19: the default asks once per client, 10,000
        // round trips): each active client's latest certificate (highest
        // seq, through certificates_by_client) when it is current.
        let rows = self.query(
            "SELECT c.id, k.serial FROM clients c
             CROSS JOIN LATERAL (SELECT serial, state FROM certificates
                                 WHERE client_id = c.id ORDER BY seq DESC LIMIT 1) k
             WHERE c.state = 'active' AND c.server = $1 AND k.state = 'current'
             ORDER BY c.id COLLATE \"C\"",
            &[&server],
        )?;
        let corrupt = |e: Error| Error::Database {
            reason: format!("a certificate row does not parse: {e}"),
        };
        rows.iter()
            .map(|r| {
                let id = ClientId::new(r.try_get(0).map_err(pg_err)?).map_err(corrupt)?;
                let serial: Serial = r
                    .try_get::<_, &str>(1)
                    .map_err(pg_err)?
                    .parse()
                    .map_err(corrupt)?;
                Ok((id, serial))
            })
            .collect()
    }

    fn allocations(&mut self) -> Result<Vec<Allocation>> {
        let rows = self.query("SELECT id, kind, prefix, port, server FROM clients", &[])?;
        rows.iter()
            .map(|r| {
                let id: &str = r.try_get(0).map_err(pg_err)?;
                let corrupt = |e: Error| Error::Database {
                    reason: format!("the row of client {id:?} does not parse: {e}"),
                };
                let kind: ClientKind = r
                    .try_get::<_, &str>(1)
                    .map_err(pg_err)?
                    .parse()
                    .map_err(corrupt)?;
                let prefix: &str = r.try_get(2).map_err(pg_err)?;
                let pool = pool_of(&self.pools, &self.pool, r.try_get(4).map_err(pg_err)?)?;
                let assignment = Assignment::parse_in(&pool, kind, prefix).map_err(corrupt)?;
                let port = port_of(&format!("{id:?}"), r.try_get(3).map_err(pg_err)?)?;
                Ok(Allocation { assignment, port })
            })
            .collect()
    }

    fn client_count(&mut self) -> Result<u64> {
        let rows = self.query("SELECT COUNT(*) FROM clients", &[])?;
        let n: i64 = rows
            .first()
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(pg_err)?
            .unwrap_or(0);
        Ok(n.unsigned_abs())
    }

    fn port_owner(&mut self, port: u16) -> Result<Option<ClientId>> {
        if let Some(c) = self.new_clients.iter().find(|c| c.port == Some(port)) {
            return Ok(Some(c.id.clone()));
        }
        let rows = self.query_unflushed(
            "SELECT id FROM clients WHERE port = $1",
            &[&i32::from(port)],
        )?;
        rows.first().map(|r| parse_stored_id(r.get(0))).transpose()
    }

    fn plan_state(&mut self) -> Result<Option<String>> {
        let rows = self.query("SELECT state FROM plan_state WHERE id = 1", &[])?;
        rows.first()
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(pg_err)
    }

    fn set_plan_state(&mut self, state: Option<&str>) -> Result<()> {
        match state {
            Some(text) => self.execute(
                "INSERT INTO plan_state (id, state) VALUES (1, $1)
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state",
                &[&text],
            ),
            None => self.execute("DELETE FROM plan_state", &[]),
        }?;
        Ok(())
    }

    fn has_client(&mut self, id: &ClientId) -> Result<bool> {
        if self.new_clients.iter().any(|c| &c.id == id) {
            return Ok(true);
        }
        let rows = self.query_unflushed("SELECT 1 FROM clients WHERE id = $1", &[&id.as_str()])?;
        Ok(!rows.is_empty())
    }

    fn prefix_owner(&mut self, prefix: Ipv6Net) -> Result<Option<ClientId>> {
        if let Some(c) = self
            .new_clients
            .iter()
            .find(|c| c.assignment.prefix() == prefix)
        {
            return Ok(Some(c.id.clone()));
        }
        let rows = self.query_unflushed(
            "SELECT id FROM clients WHERE prefix = $1",
            &[&prefix.to_string()],
        )?;
        rows.first().map(|r| parse_stored_id(r.get(0))).transpose()
    }

    fn existing_ids(&mut self, ids: &[ClientId]) -> Result<HashSet<ClientId>> {
        let mut out: HashSet<ClientId> = self
            .new_clients
            .iter()
            .filter(|c| ids.contains(&c.id))
            .map(|c| c.id.clone())
            .collect();
        let texts: Vec<&str> = ids.iter().map(ClientId::as_str).collect();
        let rows = self.query_unflushed("SELECT id FROM clients WHERE id = ANY($1)", &[&texts])?;
        for r in &rows {
            out.insert(parse_stored_id(r.get(0))?);
        }
        Ok(out)
    }

    fn holds_any(&mut self, prefixes: &[Ipv6Net], ports: &[u16]) -> Result<bool> {
        if self.new_clients.iter().any(|c| {
            prefixes.contains(&c.assignment.prefix()) || c.port.is_some_and(|p| ports.contains(&p))
        }) {
            return Ok(true);
        }
        let texts: Vec<String> = prefixes.iter().map(ToString::to_string).collect();
        let ports: Vec<i32> = ports.iter().map(|&p| i32::from(p)).collect();
        // Two EXISTS, each on its unique index: one WHERE with OR scans
        // the whole table (30 to 80 ms a batch at 10,000 clients).
        let rows = self.query_unflushed(
            "SELECT EXISTS (SELECT 1 FROM clients WHERE prefix = ANY($1))
                 OR EXISTS (SELECT 1 FROM clients WHERE port = ANY($2))",
            &[&texts, &ports],
        )?;
        rows.first()
            .map_or(Ok(false), |r| r.try_get(0).map_err(pg_err))
    }

    fn client(&mut self, id: &ClientId) -> Result<Option<ClientRecord>> {
        if let Some(c) = self.new_clients.iter().find(|c| &c.id == id) {
            return Ok(Some(c.clone()));
        }
        let rows = self.query_unflushed(
            "SELECT id, kind, os, prefix, port, state, email, name, created_at, revoked_at, server FROM clients WHERE id = $1",
            &[&id.as_str()],
        )?;
        rows.first().map(|r| self.client_from_row(r)).transpose()
    }

    fn insert_client(&mut self, c: &ClientRecord) -> Result<()> {
        // The buffer holds no duplicate (the database is checked at the
        // flush): a second row with a buffered ID, prefix or port is
        // refused here, as the database would refuse it.
        if self.new_clients.iter().any(|n| n.id == c.id) {
            return Err(Error::ClientExists {
                id: c.id.to_string(),
            });
        }
        if self
            .new_clients
            .iter()
            .any(|n| n.assignment.prefix() == c.assignment.prefix())
        {
            return Err(Error::AlreadyAssigned {
                prefix: c.assignment.prefix(),
                owner: None,
            });
        }
        if c.port.is_some() && self.new_clients.iter().any(|n| n.port == c.port) {
            return Err(Error::Database {
                reason: format!("port {:?} is taken", c.port),
            });
        }
        self.buffer_client(c)
    }

    fn set_client_state(
        &mut self,
        id: &ClientId,
        state: ClientState,
        at: Option<OffsetDateTime>,
    ) -> Result<()> {
        let n = self.execute(
            "UPDATE clients SET state = $2, revoked_at = $3 WHERE id = $1",
            &[&id.as_str(), &state.to_string(), &at.map(ts)],
        )?;
        if n == 0 {
            return Err(Error::UnknownClient { id: id.to_string() });
        }
        Ok(())
    }

    fn delete_client(&mut self, id: &ClientId) -> Result<()> {
        let n = self.execute("DELETE FROM clients WHERE id = $1", &[&id.as_str()])?;
        if n == 0 {
            return Err(Error::UnknownClient { id: id.to_string() });
        }
        Ok(())
    }

    fn insert_certificate(&mut self, c: &CertRecord) -> Result<()> {
        if self.new_certs.iter().any(|n| n.serial == c.serial) {
            return Err(Error::Database {
                reason: format!("serial {} was issued before", c.serial),
            });
        }
        self.new_certs.push(c.clone());
        if self.new_certs.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    fn latest_certificate(&mut self, id: &ClientId) -> Result<Option<CertRecord>> {
        const SQL: &str =
            "SELECT serial, client_id, pem, key_pem, not_after, state, revoked_at, reason
             FROM certificates WHERE client_id = $1 ORDER BY seq DESC LIMIT 1";
        debug_assert!(SQL.contains(CERT_COLUMNS));
        let rows = self.query(SQL, &[&id.as_str()])?;
        rows.first().map(Self::cert_from_row).transpose()
    }

    fn revoke_certificate(
        &mut self,
        serial: &Serial,
        at: OffsetDateTime,
        reason: RevocationReason,
    ) -> Result<()> {
        let n = self.execute(
            "UPDATE certificates SET state = 'revoked', revoked_at = $2, reason = $3
             WHERE serial = $1 AND state = 'current'",
            &[&serial.to_string(), &ts(at), &reason.to_string()],
        )?;
        if n == 0 {
            return Err(Error::Database {
                reason: format!("no current certificate with serial {serial}"),
            });
        }
        Ok(())
    }

    fn key_owner(&mut self, spki: &[u8], except: Option<&ClientId>) -> Result<Option<ClientId>> {
        let rows = self.query(
            "SELECT client_id, pem FROM certificates WHERE client_id IS DISTINCT FROM $1",
            &[&except.map(ClientId::as_str)],
        )?;
        for r in &rows {
            let pem: &str = r.try_get(1).map_err(pg_err)?;
            if crate::pki::pem_carries_key(pem, spki) {
                return parse_stored_id(r.try_get(0).map_err(pg_err)?).map(Some);
            }
        }
        Ok(None)
    }

    fn revoked_certificates(&mut self) -> Result<Vec<RevokedCert>> {
        let rows = self.query(
            "SELECT serial, not_after, revoked_at, reason
             FROM certificates WHERE state = 'revoked' ORDER BY serial COLLATE \"C\"",
            &[],
        )?;
        let corrupt = |e: Error| Error::Database {
            reason: format!("a certificate row does not parse: {e}"),
        };
        rows.iter()
            .map(|r| {
                let serial: &str = r.try_get(0).map_err(pg_err)?;
                let not_after = parse_ts(r.try_get(1).map_err(pg_err)?)?;
                let revoked_at: Option<&str> = r.try_get(2).map_err(pg_err)?;
                let reason: Option<&str> = r.try_get(3).map_err(pg_err)?;
                let (revoked_at, reason) = match (revoked_at, reason) {
                    (Some(at), Some(reason)) => (parse_ts(at)?, reason.parse().map_err(corrupt)?),
                    _ => (not_after, RevocationReason::Unspecified),
                };
                Ok(RevokedCert {
                    serial: serial.parse().map_err(corrupt)?,
                    revoked_at,
                    reason,
                    not_after,
                })
            })
            .collect()
    }

    fn next_crl_number(&mut self) -> Result<u64> {
        self.meta_number(
            "UPDATE meta SET value = (value::numeric + 1)::text WHERE key = 'crl_number' RETURNING value",
            &[],
        )
    }

    fn shared(&mut self, key: &str) -> Result<Option<String>> {
        let rows = self.query("SELECT value FROM shared WHERE key = $1", &[&key])?;
        rows.first()
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(pg_err)
    }

    fn set_shared(&mut self, key: &str, value: &str) -> Result<()> {
        self.execute(
            "INSERT INTO shared (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )?;
        Ok(())
    }

    fn shared_values(&mut self) -> Result<Vec<(String, String)>> {
        let rows = self.query(
            "SELECT key, value FROM shared ORDER BY key COLLATE \"C\"",
            &[],
        )?;
        rows.iter()
            .map(|r| Ok((r.try_get(0).map_err(pg_err)?, r.try_get(1).map_err(pg_err)?)))
            .collect()
    }

    fn certificates(&mut self) -> Result<Vec<CertRecord>> {
        let rows = self.query(
            "SELECT serial, client_id, pem, key_pem, not_after, state, revoked_at, reason
             FROM certificates ORDER BY seq",
            &[],
        )?;
        rows.iter().map(Self::cert_from_row).collect()
    }

    fn crl_number(&mut self) -> Result<u64> {
        self.meta_number("SELECT value FROM meta WHERE key = 'crl_number'", &[])
    }

    fn set_crl_number(&mut self, n: u64) -> Result<()> {
        let changed = self.execute(
            "UPDATE meta SET value = $1 WHERE key = 'crl_number'",
            &[&n.to_string()],
        )?;
        if changed == 0 {
            return Err(Error::Database {
                reason: "the crl_number counter is missing".into(),
            });
        }
        Ok(())
    }

    fn open_sessions(&mut self, server: &str) -> Result<Vec<Session>> {
        self.sessions(&SessionFilter {
            server: Some(server.to_owned()),
            open_only: true,
            ..SessionFilter::default()
        })
    }

    fn insert_session(&mut self, s: &Session) -> Result<bool> {
        let a = s.addresses.as_ref();
        // xmax = 0: the row was inserted, not updated.
        let rows = self.query(
            "INSERT INTO sessions (server, common_name, real_address, virtual, kind, prefix,
                 tunnel, started_at, ended_at, bytes_in, bytes_out)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (server, common_name, real_address, started_at) DO UPDATE
                 SET ended_at = NULL, bytes_in = excluded.bytes_in, bytes_out = excluded.bytes_out
             RETURNING (xmax = 0)",
            &[
                &s.server,
                &s.client_id,
                &s.real_address.to_string(),
                &virtual_text(&s.virtual_addresses),
                &a.map(|a| a.kind.to_string()),
                &a.map(|a| a.prefix.to_string()),
                &a.and_then(|a| a.tunnel_address).map(|t| t.to_string()),
                &micros(s.started_at),
                &s.ended_at.map(micros),
                &to_count(s.bytes_in),
                &to_count(s.bytes_out),
            ],
        )?;
        rows.first()
            .map_or(Ok(true), |r| r.try_get(0).map_err(pg_err))
    }

    fn update_session_bytes(&mut self, updates: &[(i64, u64, u64)]) -> Result<()> {
        if updates.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = updates.iter().map(|u| u.0).collect();
        let ins: Vec<i64> = updates.iter().map(|u| to_count(u.1)).collect();
        let outs: Vec<i64> = updates.iter().map(|u| to_count(u.2)).collect();
        self.execute(
            "UPDATE sessions SET bytes_in = u.i, bytes_out = u.o
             FROM unnest($1::int8[], $2::int8[], $3::int8[]) AS u(id, i, o)
             WHERE sessions.id = u.id",
            &[&ids, &ins, &outs],
        )?;
        Ok(())
    }

    fn end_sessions(&mut self, ids: &[i64], at: OffsetDateTime) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.execute(
            "UPDATE sessions SET ended_at = $2 WHERE id = ANY($1) AND ended_at IS NULL",
            &[&ids, &micros(at)],
        )?;
        Ok(())
    }

    fn sessions(&mut self, f: &SessionFilter) -> Result<Vec<Session>> {
        let prefixes: Option<Vec<String>> = f
            .prefixes
            .as_ref()
            .map(|p| p.iter().map(ToString::to_string).collect());
        let limit: Option<i64> = f.limit.map(i64::from);
        let params: [&(dyn ToSql + Sync); 7] = [
            &f.server,
            &f.client_id,
            &prefixes,
            &f.open_only,
            &f.from.map(micros),
            &f.to.map(micros),
            &limit,
        ];
        let rows = if f.limit.is_some() {
            self.query(
                "SELECT id, server, common_name, real_address, virtual, kind, prefix, tunnel,
                        started_at, ended_at, bytes_in, bytes_out
                 FROM sessions
                 WHERE ($1::text IS NULL OR server = $1)
                   AND ($2::text IS NULL OR common_name = $2)
                   AND ($3::text[] IS NULL OR prefix = ANY($3))
                   AND (NOT $4 OR ended_at IS NULL)
                   AND ($5::int8 IS NULL OR ended_at IS NULL OR ended_at >= $5)
                   AND ($6::int8 IS NULL OR started_at <= $6)
                 ORDER BY started_at DESC, id DESC
                 LIMIT $7",
                &params,
            )?
        } else {
            self.query(
                "SELECT id, server, common_name, real_address, virtual, kind, prefix, tunnel,
                        started_at, ended_at, bytes_in, bytes_out
                 FROM sessions
                 WHERE ($1::text IS NULL OR server = $1)
                   AND ($2::text IS NULL OR common_name = $2)
                   AND ($3::text[] IS NULL OR prefix = ANY($3))
                   AND (NOT $4 OR ended_at IS NULL)
                   AND ($5::int8 IS NULL OR ended_at IS NULL OR ended_at >= $5)
                   AND ($6::int8 IS NULL OR started_at <= $6)
                   AND ($7::int8 IS NULL OR TRUE)
                 ORDER BY started_at, id",
                &params,
            )?
        };
        rows.iter()
            .map(|r| {
                let text = |i: usize| -> Result<&str> { r.try_get(i).map_err(pg_err) };
                let opt = |i: usize| -> Result<Option<&str>> { r.try_get(i).map_err(pg_err) };
                let num = |i: usize| -> Result<i64> { r.try_get(i).map_err(pg_err) };
                let (real_address, virtual_addresses) = parse_endpoints(text(3)?, text(4)?)?;
                let ended: Option<i64> = r.try_get(9).map_err(pg_err)?;
                Ok(Session {
                    id: num(0)?,
                    server: text(1)?.to_owned(),
                    client_id: text(2)?.to_owned(),
                    real_address,
                    virtual_addresses,
                    addresses: parse_addresses(opt(5)?, opt(6)?, opt(7)?)?,
                    started_at: from_micros(num(8)?)?,
                    ended_at: ended.map(from_micros).transpose()?,
                    bytes_in: num(10)?.unsigned_abs(),
                    bytes_out: num(11)?.unsigned_abs(),
                })
            })
            .collect()
    }

    fn prune_sessions(&mut self, before: OffsetDateTime) -> Result<u64> {
        let n = self.execute(
            "DELETE FROM sessions WHERE ended_at < $1",
            &[&micros(before)],
        )?;
        self.execute(
            "DELETE FROM assignments WHERE until < $1",
            &[&micros(before)],
        )?;
        Ok(n)
    }

    fn assignment_history(&mut self, prefixes: Option<&[Ipv6Net]>) -> Result<Vec<AssignmentSpan>> {
        let prefixes: Option<Vec<String>> =
            prefixes.map(|p| p.iter().map(ToString::to_string).collect());
        let rows = self.query(
            "SELECT client_id, kind, prefix, email, name, since, until FROM assignments
             WHERE $1::text[] IS NULL OR prefix = ANY($1)
             ORDER BY since, id",
            &[&prefixes],
        )?;
        rows.iter()
            .map(|r| {
                let text = |i: usize| -> Result<String> { r.try_get(i).map_err(pg_err) };
                let corrupt = |v: String| Error::Database {
                    reason: format!(
                        "an assignment history row's {} does not parse",
                        crate::error::shown(&v)
                    ),
                };
                let until: Option<i64> = r.try_get(6).map_err(pg_err)?;
                let (kind, prefix) = (text(1)?, text(2)?);
                Ok(AssignmentSpan {
                    client_id: text(0)?,
                    kind: kind.parse().map_err(|_| corrupt(kind))?,
                    prefix: prefix.parse().map_err(|_| corrupt(prefix))?,
                    email: r.try_get(3).map_err(pg_err)?,
                    name: r.try_get(4).map_err(pg_err)?,
                    since: from_micros(r.try_get(5).map_err(pg_err)?)?,
                    until: until.map(from_micros).transpose()?,
                })
            })
            .collect()
    }

    fn replace_assignment_history(&mut self, spans: &[AssignmentSpan]) -> Result<()> {
        self.execute("DELETE FROM assignments", &[])?;
        if spans.is_empty() {
            return Ok(());
        }
        let col = |f: &dyn Fn(&AssignmentSpan) -> Option<String>| -> Vec<Option<String>> {
            spans.iter().map(f).collect()
        };
        let ids = col(&|a| Some(a.client_id.clone()));
        let kinds = col(&|a| Some(a.kind.to_string()));
        let prefixes = col(&|a| Some(a.prefix.to_string()));
        let emails = col(&|a| a.email.clone());
        let names = col(&|a| a.name.clone());
        let since: Vec<i64> = spans.iter().map(|a| micros(a.since)).collect();
        let until: Vec<Option<i64>> = spans.iter().map(|a| a.until.map(micros)).collect();
        self.execute(
            "INSERT INTO assignments (client_id, kind, prefix, email, name, since, until)
             SELECT a, b, c, d, e, f, g
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::int8[])
                  WITH ORDINALITY AS t(a, b, c, d, e, f, g, n)
             ORDER BY n",
            &[&ids, &kinds, &prefixes, &emails, &names, &since, &until],
        )?;
        Ok(())
    }

    fn servers(&mut self) -> Result<Vec<ServerRecord>> {
        const SQL: &str = "SELECT name, endpoint, mode, port, pool, cert_pem, key_pem, created_at FROM servers ORDER BY name COLLATE \"C\"";
        debug_assert!(SQL.contains(SERVER_COLUMNS));
        let rows = self.query(SQL, &[])?;
        rows.iter().map(server_from_row).collect()
    }

    fn insert_server(&mut self, s: &ServerRecord) -> Result<()> {
        self.flush()?;
        let stmt = self.statement(
            "INSERT INTO servers (name, endpoint, mode, port, pool, cert_pem, key_pem, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )?;
        self.tx
            .execute(
                &stmt,
                &[
                    &s.name,
                    &s.endpoint,
                    &s.mode.to_string(),
                    &i32::from(s.port),
                    &s.pool.to_string(),
                    &s.cert_pem,
                    &s.key_pem,
                    &ts(s.created_at),
                ],
            )
            .map_err(|e| match e.as_db_error().and_then(|d| d.constraint()) {
                Some("servers_pkey") => Error::ServerExists {
                    name: s.name.clone(),
                },
                Some("servers_pool_key") => Error::PoolsOverlap {
                    pool: s.pool.net(),
                    server: None,
                },
                _ => pg_err(e),
            })?;
        self.pools.insert(s.name.clone(), s.pool);
        Ok(())
    }

    fn set_server_certificate(&mut self, name: &str, cert_pem: &str, key_pem: &str) -> Result<()> {
        let n = self.execute(
            "UPDATE servers SET cert_pem = $2, key_pem = $3 WHERE name = $1",
            &[&name, &cert_pem, &key_pem],
        )?;
        if n == 0 {
            return Err(Error::UnknownServer { name: name.into() });
        }
        Ok(())
    }

    fn delete_server(&mut self, name: &str) -> Result<()> {
        let n = self.execute("DELETE FROM servers WHERE name = $1", &[&name])?;
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
        let n = self.execute(
            "UPDATE clients SET server = $2, prefix = $3, port = $4 WHERE id = $1",
            &[
                &id.as_str(),
                &server,
                &assignment.prefix().to_string(),
                &port.map(i32::from),
            ],
        )?;
        if n == 0 {
            return Err(Error::UnknownClient { id: id.to_string() });
        }
        Ok(())
    }
}

/// Why a connection failed, in words an operator can act on: the server's
/// own message, or the client's error with its cause (tokio-postgres says
/// only "invalid configuration" when the server asks for a password that
/// nobody gave).
fn connect_failure(e: &postgres::Error, have_password: bool) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_owned();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !have_password && cause_text.contains("password missing") {
            return "the server asks for a password and none was given: set PGPASSWORD, or \
                    put it in a passfile (PGPASSFILE or ~/.pgpass, mode 0600); it is never \
                    written to the settings"
                .into();
        }
        text.push_str(": ");
        text.push_str(&cause_text);
        source = cause.source();
    }
    text
}
