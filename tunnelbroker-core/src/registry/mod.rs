//! The client database: client records and certificate records behind a
//! small storage trait.
//!
//! [`Store`] is what the broker needs from a database: one write
//! transaction at a time in which everything happens or nothing does. The
//! embedded default is SQLite ([`SqliteStore`]); a PostgreSQL store for
//! brokers that run several servers implements the same two traits.

mod sqlite;

pub use sqlite::SqliteStore;

use ipnet::Ipv6Net;
use time::OffsetDateTime;

use crate::client_id::ClientId;
use crate::error::Result;
use crate::pki::{RevocationReason, RevokedCert, Serial};
use crate::plan::Assignment;
use crate::words::{ClientOs, ClientState};

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
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// What one write transaction can do. Everything done through one
/// `Transaction` is committed together or not at all.
pub trait Transaction {
    /// All client rows, in ID order.
    fn clients(&mut self) -> Result<Vec<ClientRecord>>;
    /// The assignment and port of every client row (cheaper than
    /// [`clients`](Self::clients): allocation reads this in every write).
    fn allocations(&mut self) -> Result<Vec<Allocation>>;
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
}

/// A client database.
pub trait Store: Send + Sync {
    /// Runs `f` in one write transaction, which is committed when `f`
    /// returns `Ok` and rolled back otherwise. Writers are serialised, also
    /// across processes.
    fn write(&self, f: &mut dyn FnMut(&mut dyn Transaction) -> Result<()>) -> Result<()>;
    /// Runs `f` in a read transaction: a consistent snapshot.
    fn read(&self, f: &mut dyn FnMut(&mut dyn Transaction) -> Result<()>) -> Result<()>;
}
