//! The client database: client records and certificate records behind a
//! small storage trait.
//!
//! [`Store`] is what the broker needs from a database: one write
//! transaction at a time in which everything happens or nothing does. The
//! embedded default is SQLite ([`SqliteStore`]); a PostgreSQL store for
//! brokers that run several servers implements the same two traits.
//!
//! # Implementing a store
//!
//! This module is for store implementers; a broker's users never need it
//! ([`Broker`](crate::Broker) picks the store).
//!
//! - [`Store`] opens transactions: [`write`](Store::write) runs a closure in
//!   one serialised write transaction, committed when the closure returns
//!   `Ok` and rolled back otherwise; [`read`](Store::read) runs one on a
//!   consistent snapshot. Both take `&mut dyn FnMut` so that the trait stays
//!   object-safe (the broker holds a `Box<dyn Store>`); the broker calls
//!   them through `write_with` and `read_with`, provided on `dyn Store` for
//!   every store, which return the closure's value.
//! - [`Transaction`] reads and writes the rows: [`ClientRecord`] (a client,
//!   its [`Assignment`] and port), [`CertRecord`] (every certificate issued,
//!   kept after a purge for the CRL, in [`CertState`]), [`Allocation`] (the
//!   part of a client row that allocation reads) and the opaque plan state
//!   and CRL number.
//!
//! The broker checks that an ID, assignment, port or serial is unused
//! before it inserts one, inside the same write transaction; every method
//! reports a failure of the database as an [`Error`](crate::Error).

mod copy;
mod passfile;

/// The password of the first line of a libpq password file's `text` that
/// matches host, socket, port, database and user, as the PostgreSQL store
/// looks it up. For the fuzz targets only.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn passfile_lookup(
    text: &[u8],
    host: &str,
    socket: bool,
    port: u16,
    database: &str,
    user: &str,
) -> Option<Vec<u8>> {
    passfile::lookup(
        text,
        passfile::Target {
            host,
            socket,
            port,
            database,
            user,
        },
    )
}
mod postgres;
mod session;
mod sqlite;
mod url;

pub use copy::{CopyReport, copy};
pub use postgres::PostgresStore;
pub use session::{AssignmentSpan, Session, SessionAddresses, SessionFilter};
pub use sqlite::SqliteStore;
pub use url::DatabaseUrl;
/// The schema versions of this tunnelbroker (an opened store is at it:
/// opening migrates forward), for `db status`.
pub(crate) use {
    postgres::SCHEMA_VERSION as POSTGRES_SCHEMA, sqlite::SCHEMA_VERSION as SQLITE_SCHEMA,
};

use std::collections::HashSet;

use ipnet::Ipv6Net;
use time::OffsetDateTime;

use crate::client_id::ClientId;
use crate::error::Result;
use crate::pki::{RevocationReason, RevokedCert, Serial};
use crate::plan::{Assignment, Pool};
use crate::words::{ClientOs, ClientState, ServerMode};

/// The name of the server every broker has: `init` makes it from its own
/// settings, and a broker made before servers existed has it from them.
pub const MAIN_SERVER: &str = "main";

/// A client row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    /// The ID.
    pub id: ClientId,
    /// The OS.
    pub os: ClientOs,
    /// The assignment (its kind is the client's kind).
    pub assignment: Assignment,
    /// The UDP port (per-client mode).
    pub port: Option<u16>,
    /// Active or revoked.
    pub state: ClientState,
    /// Contact e-mail.
    pub email: Option<String>,
    /// Contact name.
    pub name: Option<String>,
    /// Subscription time.
    pub created_at: OffsetDateTime,
    /// Revocation time.
    pub revoked_at: Option<OffsetDateTime>,
    /// The server it belongs to (its assignment lies in that server's pool).
    pub server: String,
}

/// A server row: one OpenVPN server of the broker, with its own endpoint,
/// mode, port and pool. `Debug` prints the key as `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerRecord {
    /// The name (unique).
    pub name: String,
    /// The host its clients connect to.
    pub endpoint: String,
    /// Per-client or shared.
    pub mode: ServerMode,
    /// The shared server's UDP port, or the first port of its per-client instances.
    pub port: u16,
    /// Its pool (no two servers' pools overlap).
    pub pool: Pool,
    /// Its certificate, PEM; `None` for a server that uses the broker's
    /// `server.crt` (`main`).
    pub cert_pem: Option<String>,
    /// Its key, PEM; `None` with `cert_pem`.
    pub key_pem: Option<String>,
    /// When it was added.
    pub created_at: OffsetDateTime,
}

impl std::fmt::Debug for ServerRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerRecord")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("mode", &self.mode)
            .field("port", &self.port)
            .field("pool", &self.pool)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &self.key_pem.as_ref().map(|_| "[redacted]"))
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// What one client row holds of the address plan: the part of it that
/// allocation needs, read without the rest of the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// The assignment.
    pub assignment: Assignment,
    /// The UDP port (per-client mode).
    pub port: Option<u16>,
}

/// The state of a certificate record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertState {
    /// The client's current certificate.
    Current,
    /// Revoked (by `revoke`, or superseded by `renew`).
    Revoked,
}

/// A certificate row: every certificate the CA issued to a client.
/// `Debug` prints the key as `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct CertRecord {
    /// Serial, unique in the CA.
    pub serial: Serial,
    /// The client it was issued to.
    pub client_id: ClientId,
    /// The certificate, PEM.
    pub pem: String,
    /// The private key, PEM; `None` when the client sent a CSR.
    pub key_pem: Option<String>,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Current or revoked.
    pub state: CertState,
    /// When and why it was revoked.
    pub revoked: Option<(OffsetDateTime, RevocationReason)>,
}

impl std::fmt::Debug for CertRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertRecord")
            .field("serial", &self.serial)
            .field("client_id", &self.client_id)
            .field("pem", &self.pem)
            .field("key_pem", &self.key_pem.as_ref().map(|_| "[redacted]"))
            .field("not_after", &self.not_after)
            .field("state", &self.state)
            .field("revoked", &self.revoked)
            .finish()
    }
}

/// What one write transaction can do. Everything done through one
/// `Transaction` is committed together or not at all.
pub trait Transaction {
    /// All client rows, in ID order.
    fn clients(&mut self) -> Result<Vec<ClientRecord>>;
    /// The assignment and port of every client row (cheaper than
    /// [`clients`](Self::clients): allocation reads this in every write).
    fn allocations(&mut self) -> Result<Vec<Allocation>>;
    /// The ID, assignment and UDP port of every active client of `server`,
    /// in ID order: what a rendering of its files needs (issue 19: 10,000
    /// clients at every rendering). The default reads
    /// [`clients`](Self::clients).
    fn rendered_clients(
        &mut self,
        server: &str,
    ) -> Result<Vec<(ClientId, Assignment, Option<u16>)>> {
        Ok(self
            .clients()?
            .into_iter()
            .filter(|c| c.server == server && c.state == ClientState::Active)
            .map(|c| (c.id, c.assignment, c.port))
            .collect())
    }
    /// How many client rows there are.
    fn client_count(&mut self) -> Result<u64>;
    /// The client that holds this UDP port, if any.
    fn port_owner(&mut self, port: u16) -> Result<Option<ClientId>>;
    /// The saved allocation state (opaque text the broker wrote with
    /// [`set_plan_state`](Self::set_plan_state)), if any.
    fn plan_state(&mut self) -> Result<Option<String>>;
    /// Saves the allocation state, or forgets it (`None`) so that the next
    /// writer rebuilds it from the client rows.
    fn set_plan_state(&mut self, state: Option<&str>) -> Result<()>;
    /// Whether a client with this ID exists.
    fn has_client(&mut self, id: &ClientId) -> Result<bool>;
    /// The client that holds this prefix, if any.
    fn prefix_owner(&mut self, prefix: Ipv6Net) -> Result<Option<ClientId>>;
    /// Which of `ids` have a client row: an import asks for its batch in
    /// one go (one round trip on PostgreSQL; the default asks
    /// [`has_client`](Self::has_client) for each).
    fn existing_ids(&mut self, ids: &[ClientId]) -> Result<HashSet<ClientId>> {
        let mut out = HashSet::new();
        for id in ids {
            if self.has_client(id)? {
                out.insert(id.clone());
            }
        }
        Ok(out)
    }
    /// Whether a client row holds one of `prefixes` or one of `ports`: an
    /// import checks its batch against the rows in one go (one round trip
    /// on PostgreSQL; the default asks [`prefix_owner`](Self::prefix_owner)
    /// and [`port_owner`](Self::port_owner) for each).
    fn holds_any(&mut self, prefixes: &[Ipv6Net], ports: &[u16]) -> Result<bool> {
        for p in prefixes {
            if self.prefix_owner(*p)?.is_some() {
                return Ok(true);
            }
        }
        for p in ports {
            if self.port_owner(*p)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }
    /// One client row.
    fn client(&mut self, id: &ClientId) -> Result<Option<ClientRecord>>;
    /// Adds a client row (the ID, the assignment and the port must be unused).
    fn insert_client(&mut self, c: &ClientRecord) -> Result<()>;
    /// Changes a client's state.
    fn set_client_state(
        &mut self,
        id: &ClientId,
        state: ClientState,
        at: Option<OffsetDateTime>,
    ) -> Result<()>;
    /// Deletes a client row (its certificate rows stay, for the CRL).
    fn delete_client(&mut self, id: &ClientId) -> Result<()>;
    /// Adds a certificate row (the serial must be unused).
    fn insert_certificate(&mut self, c: &CertRecord) -> Result<()>;
    /// The certificate issued last to a client (current, or revoked with it).
    fn latest_certificate(&mut self, id: &ClientId) -> Result<Option<CertRecord>>;
    /// The serial of every active client of `server` whose latest
    /// certificate ([`latest_certificate`](Self::latest_certificate)) is
    /// current, in client ID order: what `tls-crypt-v2` accepts, listed at
    /// every rendering and CRL. One query on SQLite (issue 19: 10,000
    /// clients); the default asks [`clients`](Self::clients) and
    /// `latest_certificate` for each.
    fn current_serials(&mut self, server: &str) -> Result<Vec<(ClientId, Serial)>> {
        current_serials_by_rows(self, server)
    }
    /// An opaque value that is the same in two transactions of this store
    /// only if nothing was committed to the database in between, by this
    /// store or any other; `None` where the store cannot tell cheaply (the
    /// default, and PostgreSQL). Read it after a first query, so that a
    /// read transaction's snapshot has begun. A rendering uses it to keep
    /// what it read in a read transaction instead of reading it again under
    /// the write lock (issue 19).
    fn data_stamp(&mut self) -> Result<Option<String>> {
        Ok(None)
    }
    /// Marks a certificate revoked.
    fn revoke_certificate(
        &mut self,
        serial: &Serial,
        at: OffsetDateTime,
        reason: RevocationReason,
    ) -> Result<()>;
    /// The client (other than `except`) to which any recorded certificate
    /// (current, revoked or superseded, also of a purged client) was issued
    /// with the public key `spki` (SubjectPublicKeyInfo, DER), if any.
    fn key_owner(&mut self, spki: &[u8], except: Option<&ClientId>) -> Result<Option<ClientId>>;
    /// Every revoked certificate, for the CRL.
    fn revoked_certificates(&mut self) -> Result<Vec<RevokedCert>>;
    /// Increments and returns the CRL number.
    fn next_crl_number(&mut self) -> Result<u64>;
    /// The shared value under `key`, if any: text that every host of a
    /// broker must agree on (settings, the CA certificate), kept in the
    /// database rather than in a file on one host.
    fn shared(&mut self, key: &str) -> Result<Option<String>>;
    /// Sets the shared value under `key`, replacing any earlier one.
    fn set_shared(&mut self, key: &str, value: &str) -> Result<()>;
    /// Every shared value, by key.
    fn shared_values(&mut self) -> Result<Vec<(String, String)>>;
    /// Every certificate row (current, revoked and superseded, also those
    /// of purged clients), in the order they were recorded: inserting them
    /// in this order into another store keeps
    /// [`latest_certificate`](Self::latest_certificate) true there.
    fn certificates(&mut self) -> Result<Vec<CertRecord>>;
    /// The CRL number last handed out by
    /// [`next_crl_number`](Self::next_crl_number), without incrementing it.
    fn crl_number(&mut self) -> Result<u64>;
    /// Sets the CRL number (when a broker moves to another store: CRL
    /// numbers must keep growing).
    fn set_crl_number(&mut self, n: u64) -> Result<()>;

    /// The live (not ended) sessions of `server`.
    fn open_sessions(&mut self, server: &str) -> Result<Vec<Session>>;
    /// Records a session; its [`id`](Session::id) is ignored. A session
    /// recorded before (same server, client, real address and start) is
    /// opened again with the new byte counts instead: returns whether the
    /// row is new.
    fn insert_session(&mut self, s: &Session) -> Result<bool>;
    /// Sets the byte counts (in, out) of the sessions with these row
    /// numbers.
    fn update_session_bytes(&mut self, updates: &[(i64, u64, u64)]) -> Result<()>;
    /// Ends the sessions with these row numbers at `at`.
    fn end_sessions(&mut self, ids: &[i64], at: OffsetDateTime) -> Result<()>;
    /// The sessions `filter` picks, oldest first (latest first with a limit).
    fn sessions(&mut self, filter: &SessionFilter) -> Result<Vec<Session>>;
    /// Deletes the sessions that ended before `before`, and the assignment
    /// spans that ended before it; returns how many sessions went.
    fn prune_sessions(&mut self, before: OffsetDateTime) -> Result<u64>;
    /// The assignment history of these prefixes (every span, oldest first);
    /// all of it when `prefixes` is `None`.
    fn assignment_history(&mut self, prefixes: Option<&[Ipv6Net]>) -> Result<Vec<AssignmentSpan>>;
    /// Replaces the whole assignment history with `spans` (when a broker
    /// moves to another store).
    fn replace_assignment_history(&mut self, spans: &[AssignmentSpan]) -> Result<()>;
    /// Every server row, in name order.
    fn servers(&mut self) -> Result<Vec<ServerRecord>>;
    /// Adds a server row (the name and the pool must be unused).
    fn insert_server(&mut self, s: &ServerRecord) -> Result<()>;
    /// Replaces a server's certificate and key.
    fn set_server_certificate(&mut self, name: &str, cert_pem: &str, key_pem: &str) -> Result<()>;
    /// Deletes a server row.
    fn delete_server(&mut self, name: &str) -> Result<()>;
    /// Moves a client to `server`, with its new assignment and port there.
    fn move_client(
        &mut self,
        id: &ClientId,
        server: &str,
        assignment: &Assignment,
        port: Option<u16>,
    ) -> Result<()>;
}

/// A client database.
///
/// `Send + Sync` because a [`Broker`](crate::Broker) is shared between
/// threads (also Python's); `Debug` so that the broker's is derived.
pub trait Store: std::fmt::Debug + Send + Sync {
    /// Runs `f` in one write transaction, which is committed when `f`
    /// returns `Ok` and rolled back otherwise. Writers are serialised, also
    /// across processes.
    fn write(&self, f: &mut dyn FnMut(&mut dyn Transaction) -> Result<()>) -> Result<()>;
    /// Runs `f` in a read transaction: a consistent snapshot.
    fn read(&self, f: &mut dyn FnMut(&mut dyn Transaction) -> Result<()>) -> Result<()>;
    /// An opaque value that changes when another process commits a change
    /// that a server host's files may depend on (clients, certificates,
    /// the CRL, shared settings), and stays the same otherwise as far as it
    /// can: the agent asks for it several times a second and renders again
    /// only when it changes. It may change more often than needed (never
    /// less): SQLite's is `PRAGMA data_version`, which any commit by another
    /// connection moves; PostgreSQL's is read from the certificate sequence,
    /// the CRL number and the shared values in one cheap query.
    fn change_marker(&self) -> Result<String>;
}

impl dyn Store + '_ {
    /// Runs `f` in one write transaction, like [`Store::write`], and
    /// returns what it returned. An implementer writes only `write`; this
    /// is provided for every store. A store whose `write` returns `Ok`
    /// without running `f` breaks its contract: that is an
    /// [`Error::Database`](crate::Error::Database), never a panic.
    pub fn write_with<T>(&self, mut f: impl FnMut(&mut dyn Transaction) -> Result<T>) -> Result<T> {
        let mut out = None;
        self.write(&mut |tx| {
            out = Some(f(tx)?);
            Ok(())
        })?;
        out.ok_or_else(|| not_run("write"))
    }

    /// Runs `f` in a read transaction, like [`Store::read`], and returns
    /// what it returned.
    pub fn read_with<T>(&self, mut f: impl FnMut(&mut dyn Transaction) -> Result<T>) -> Result<T> {
        let mut out = None;
        self.read(&mut |tx| {
            out = Some(f(tx)?);
            Ok(())
        })?;
        out.ok_or_else(|| not_run("read"))
    }
}

/// The error of a store that returned `Ok` without running the transaction.
fn not_run(what: &str) -> crate::Error {
    crate::Error::Database {
        reason: format!("the store's {what} returned without running the transaction"),
    }
}

/// [`Transaction::current_serials`] from the rows: each active client of
/// `server` and its latest certificate, asked one by one.
pub(crate) fn current_serials_by_rows<T: Transaction + ?Sized>(
    tx: &mut T,
    server: &str,
) -> Result<Vec<(ClientId, Serial)>> {
    let mut out = Vec::new();
    for rec in tx.clients()? {
        if rec.state != ClientState::Active || rec.server != server {
            continue;
        }
        if let Some(cert) = tx.latest_certificate(&rec.id)?
            && cert.state == CertState::Current
        {
            out.push((rec.id, cert.serial));
        }
    }
    Ok(out)
}
