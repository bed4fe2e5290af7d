//! The broker: settings, CA, client database and the subscription
//! lifecycle, composed behind one facade, [`Broker`].
//!
//! A broker lives in one directory:
//!
//! ```text
//! tunnelbroker.toml   settings (commented TOML)
//! ca.crt              the CA certificate
//! server.crt          the OpenVPN server's certificate
//! crl.pem             the current CRL (also copied to the rendered server directory)
//! clients.db          the client database (SQLite, mode 0600: it holds client keys)
//! private/            mode 0700: ca.key, server.key, tls-crypt.key (each 0600)
//! ```
//!
//! OpenVPN reads nothing here at run time: `server render` writes what it
//! needs into the rendered directory (see [`Broker::render_server_with`]),
//! so the broker directory may be private (0700).
//!
//! Every change is atomic: a subscription either fully happens (assignment,
//! certificate, record) or leaves no trace, also when the process is killed
//! half way; files are written under a temporary name and renamed.

mod client;
mod import;
mod imported_ca;
mod lifetime;
mod ownership;
mod render;
mod settings;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use client::{Client, ClientOs, ClientState, NewClient};
pub use import::{ImportReport, RowError};
pub use lifetime::ServerRenewal;
pub(crate) use render::ServerFilesState;
pub use render::{RenderOptions, RenderReport, Revocation, SessionEnd};
pub use settings::{Endpoint, ServerMode, ServerSettings, Settings, ValiditySettings};

use crate::client_id::ClientId;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::pki::{Ca, CaParams, Certificate, Crl, PrivateKey, RevocationReason, TlsCryptKey};
use crate::plan::{Allocator, Assignment, Pool, RangeSet};
use crate::store::{
    Allocation, CertRecord, CertState, ClientRecord, SqliteStore, Store, Transaction,
};

/// The common name of the broker's OpenVPN server certificate. No client may
/// take it as its ID.
pub const SERVER_CN: &str = "tunnelbroker-server";

/// Where a broker keeps its files.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerPaths {
    /// The broker directory.
    pub dir: PathBuf,
    /// `tunnelbroker.toml`.
    pub settings: PathBuf,
    /// The CA certificate.
    pub ca_cert: PathBuf,
    /// The directory of secrets (mode 0700).
    pub private_dir: PathBuf,
    /// The CA key.
    pub ca_key: PathBuf,
    /// The server certificate.
    pub server_cert: PathBuf,
    /// The server key.
    pub server_key: PathBuf,
    /// The tls-crypt key.
    pub tls_crypt_key: PathBuf,
    /// The current CRL.
    pub crl: PathBuf,
    /// The client database.
    pub database: PathBuf,
    /// Default output directory of rendered server files (when no
    /// rendering recorded another).
    pub server_dir: PathBuf,
}

impl BrokerPaths {
    /// The layout of a broker in `dir`.
    pub fn new(dir: &Path) -> Self {
        let private_dir = dir.join("private");
        BrokerPaths {
            dir: dir.to_owned(),
            settings: dir.join("tunnelbroker.toml"),
            ca_cert: dir.join("ca.crt"),
            ca_key: private_dir.join("ca.key"),
            server_cert: dir.join("server.crt"),
            server_key: private_dir.join("server.key"),
            tls_crypt_key: private_dir.join("tls-crypt.key"),
            private_dir,
            crl: dir.join("crl.pem"),
            database: dir.join("clients.db"),
            server_dir: dir.join("server"),
        }
    }
}

/// An existing CA to use instead of generating one. `Debug` prints the
/// key as `[redacted]`.
#[derive(Clone)]
pub struct ImportedCa {
    /// The CA certificate, PEM; for an intermediate CA followed by its
    /// issuers up to the root (see [`Ca::from_pem`]). The broker keeps
    /// the whole chain and records the CA's own subject in the settings.
    pub cert_pem: String,
    /// The CA key, PEM (secret).
    pub key_pem: String,
}

impl std::fmt::Debug for ImportedCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportedCa")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

/// What `init` needs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InitOptions {
    /// The settings to write.
    pub settings: Settings,
    /// An existing CA, or `None` to generate one.
    pub ca: Option<ImportedCa>,
}

impl InitOptions {
    /// Options that generate a new CA.
    pub fn new(settings: Settings) -> Self {
        InitOptions { settings, ca: None }
    }
}

/// A client's certificate and, unless it sent a CSR, its key.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    /// The client's current certificate.
    pub certificate: Certificate,
    /// Its key; `None` when the client made its own.
    pub key: Option<PrivateKey>,
}

/// A tunnel broker in a directory. See the [module docs](self).
///
/// ```
/// use tunnelbroker_core::{Broker, ClientKind, InitOptions, NewClient, Settings};
/// let dir = tempfile::tempdir().unwrap();
/// let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
/// let broker = Broker::init(&dir.path().join("broker"), &InitOptions::new(settings))?;
/// let alice = broker.add_client(&NewClient::new("alice".parse()?, ClientKind::Subnet))?;
/// assert_eq!(alice.assignment.to_string(), "2001:db8:0:f101::/64");
/// assert_eq!(alice.port, Some(5000));
///
/// // The same ID twice is refused, and nothing changes.
/// assert!(broker.add_client(&NewClient::new("alice".parse()?, ClientKind::Hermit)).is_err());
/// assert_eq!(broker.clients()?.len(), 1);
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Broker {
    paths: BrokerPaths,
    settings: Settings,
    ca: Ca,
    /// The client database: SQLite unless [`with_store`](Self::with_store)
    /// was given another.
    store: Box<dyn Store>,
}

/// What a write transaction knows about the assignments and ports in use.
///
/// It starts from the saved runs (the `plan_state` of the database, which
/// every change rewrites), so a subscription costs the same with ten clients
/// or a million; without a saved state, or with one that does not match the
/// client rows, it is rebuilt from the rows. IDs and owners are looked up by
/// index, plus those reserved earlier in the same transaction (an import).
struct Taken {
    plan: Allocator,
    ports: RangeSet,
    /// Read from the saved state: what it calls free is checked against the
    /// rows before it is handed out, and a mismatch rebuilds it.
    saved: bool,
    /// Assignments reserved in this transaction, by prefix.
    new_owners: HashMap<Ipv6Net, ClientId>,
    /// IDs reserved in this transaction.
    new_ids: HashSet<ClientId>,
}

/// The saved allocation state: runs of taken assignments and ports.
#[derive(Serialize, Deserialize)]
struct SavedPlan {
    plan: Allocator,
    ports: Vec<(u16, u16)>,
}

impl Taken {
    /// The saved state if there is one that fits, else a rebuild from rows.
    fn load(tx: &mut dyn Transaction, pool: Pool) -> Result<Taken> {
        let mut taken = Taken {
            plan: Allocator::new(pool),
            ports: RangeSet::default(),
            saved: false,
            new_owners: HashMap::new(),
            new_ids: HashSet::new(),
        };
        if !taken.load_saved(tx)? {
            taken.rebuild(tx)?;
        }
        Ok(taken)
    }

    fn load_saved(&mut self, tx: &mut dyn Transaction) -> Result<bool> {
        let Some(text) = tx.plan_state()? else {
            return Ok(false);
        };
        let Ok(saved) = serde_json::from_str::<SavedPlan>(&text) else {
            return Ok(false);
        };
        if saved.plan.pool() != self.plan.pool() {
            return Ok(false);
        }
        let mut ports = RangeSet::default();
        for (s, e) in saved.ports {
            let (s, e) = (u64::from(s), u64::from(e));
            if s > e || !ports.is_free(s, e) {
                return Ok(false);
            }
            ports.insert_run(s, e);
        }
        let counts = saved.plan.counts();
        if counts.subnets_used + counts.hermits_used != tx.client_count()? {
            return Ok(false);
        }
        self.plan = saved.plan;
        self.ports = ports;
        self.saved = true;
        Ok(true)
    }

    /// Reads every client row (including those written earlier in this
    /// transaction).
    fn rebuild(&mut self, tx: &mut dyn Transaction) -> Result<()> {
        self.plan = Allocator::new(self.plan.pool());
        self.ports = RangeSet::default();
        self.saved = false;
        for Allocation { assignment, port } in tx.allocations()? {
            self.plan.insert(&assignment)?;
            if let Some(p) = port {
                self.ports.insert(u64::from(p));
            }
        }
        Ok(())
    }

    fn save(&self, tx: &mut dyn Transaction) -> Result<()> {
        let saved = SavedPlan {
            plan: self.plan.clone(),
            ports: self
                .ports
                .runs()
                .filter_map(|(s, e)| Some((u16::try_from(s).ok()?, u16::try_from(e).ok()?)))
                .collect(),
        };
        let text = serde_json::to_string(&saved).map_err(|e| Error::Database {
            reason: format!("cannot save the allocation state: {e}"),
        })?;
        tx.set_plan_state(Some(&text))
    }
}

/// A client whose assignment and port are reserved.
struct Reserved<'a> {
    req: &'a NewClient,
    assignment: Assignment,
    port: Option<u16>,
}

impl Broker {
    /// Creates a broker in `dir`, which must not exist or be empty: settings,
    /// CA (generated or imported), server certificate, tls-crypt key, client
    /// database and an empty CRL. Everything is built in a temporary
    /// directory and renamed into place, so a failed `init` leaves nothing.
    pub fn init(dir: &Path, options: &InitOptions) -> Result<Broker> {
        let settings = &options.settings;
        settings.validate()?;
        if dir.join("tunnelbroker.toml").exists() {
            return Err(Error::BrokerExists {
                path: dir.to_owned(),
            });
        }
        if let Ok(mut entries) = fs::read_dir(dir) {
            if entries.next().is_some() {
                return Err(Error::DirectoryInUse {
                    path: dir.to_owned(),
                    reason: "the directory is not empty; init needs a new or empty directory"
                        .into(),
                });
            }
        } else if dir.exists() {
            return Err(Error::DirectoryInUse {
                path: dir.to_owned(),
                reason: "it exists and is not a directory".into(),
            });
        }
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = dir.file_name().ok_or_else(|| Error::InvalidField {
            field: "broker directory",
            input: crate::error::shown(&dir.display().to_string()),
            reason: "it does not end in a directory name".into(),
        })?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".init-{}", std::process::id()));
        let tmp = parent.join(tmp_name);
        fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        let _ = fs::remove_dir_all(&tmp);
        let built = Self::build(&tmp, options);
        let result = built.and_then(|()| {
            fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
            Broker::open(dir)
        });
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    fn build(tmp: &Path, options: &InitOptions) -> Result<()> {
        let mut settings = options.settings.clone();
        let settings = &mut settings;
        let paths = BrokerPaths::new(tmp);
        mkdir(tmp, 0o755)?;
        mkdir(&paths.private_dir, 0o700)?;
        let ca = match &options.ca {
            Some(imported) => {
                let ca = Ca::from_pem(&imported.cert_pem, &imported.key_pem)?;
                // The settings name the CA in use, not a CA that was never made.
                settings.subject = ca.subject();
                ca
            }
            None => Ca::generate(&CaParams {
                key_type: settings.key_type,
                subject: settings.subject.clone(),
                validity_days: settings.validity.ca_days,
            })?,
        };
        let server =
            ca.issue_server(SERVER_CN, settings.key_type, settings.validity.server_days)?;
        let tls = TlsCryptKey::generate()?;
        fsutil::write_public(&paths.settings, settings.to_toml().as_bytes())?;
        fsutil::write_public(&paths.ca_cert, ca.chain_pem().as_bytes())?;
        ca.key().write(&paths.ca_key)?;
        fsutil::write_public(&paths.server_cert, server.certificate.pem().as_bytes())?;
        server.key.write(&paths.server_key)?;
        fsutil::write_secret(&paths.tls_crypt_key, tls.to_text().as_bytes())?;
        let store = SqliteStore::create(&paths.database, settings.pool)?;
        let broker = Broker::with_store(paths, settings.clone(), ca, Box::new(store));
        broker.refresh_crl()?;
        Ok(())
    }

    /// Opens the broker in `dir`.
    ///
    /// Its client database must exist: a missing, empty or foreign
    /// `clients.db` is refused with [`Error::UnusableDatabase`] and nothing
    /// is written (only [`init`](Self::init) creates a database).
    pub fn open(dir: &Path) -> Result<Broker> {
        let paths = BrokerPaths::new(dir);
        if !paths.settings.exists() {
            return Err(Error::NotABroker {
                path: dir.to_owned(),
                reason: "no tunnelbroker.toml; create a broker with `tunnelbroker init`".into(),
            });
        }
        let settings = Settings::from_toml(&fsutil::read_to_string(&paths.settings)?).map_err(
            |e| match e {
                Error::InvalidSettings { reason } => Error::InvalidSettings {
                    reason: format!("{}: {reason}", paths.settings.display()),
                },
                other => other,
            },
        )?;
        let ca = Ca::from_pem(
            &fsutil::read_to_string(&paths.ca_cert)?,
            &fsutil::read_to_string(&paths.ca_key)?,
        )
        .map_err(|e| match e {
            // The key is what does not parse or does not fit the certificate.
            Error::InvalidKey { .. }
            | Error::UnsupportedKey { .. }
            | Error::CaKeyMismatch { .. } => e.in_file(&paths.ca_key),
            // An expired CA is not a corrupt file; its message names the CA.
            e @ Error::CaExpired { .. } => e,
            e => e.in_file(&paths.ca_cert),
        })?;
        let store = SqliteStore::open(&paths.database, settings.pool)?;
        Ok(Broker::with_store(paths, settings, ca, Box::new(store)))
    }

    /// A broker over `store`: the seam where a store other than the
    /// embedded SQLite default comes in. The broker logic sees only the
    /// [`Store`] trait; [`init`](Self::init) and [`open`](Self::open) pick
    /// SQLite.
    pub(crate) fn with_store(
        paths: BrokerPaths,
        settings: Settings,
        ca: Ca,
        store: Box<dyn Store>,
    ) -> Broker {
        Broker {
            paths,
            settings,
            ca,
            store,
        }
    }

    /// The broker's files.
    pub fn paths(&self) -> &BrokerPaths {
        &self.paths
    }

    /// The broker directory.
    pub fn dir(&self) -> &Path {
        &self.paths.dir
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The CA.
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// The client database, for the audit.
    pub(crate) fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// The OpenVPN server's certificate.
    pub fn server_certificate(&self) -> Result<Certificate> {
        Certificate::from_pem(&fsutil::read_to_string(&self.paths.server_cert)?)
            .map_err(|e| e.in_file(&self.paths.server_cert))
    }

    /// The OpenVPN server's key (secret).
    pub fn server_key(&self) -> Result<PrivateKey> {
        PrivateKey::from_pem(&fsutil::read_to_string(&self.paths.server_key)?)
            .map_err(|e| e.in_file(&self.paths.server_key))
    }

    /// The tls-crypt key (secret).
    pub fn tls_crypt_key(&self) -> Result<TlsCryptKey> {
        TlsCryptKey::parse(&fsutil::read_to_string(&self.paths.tls_crypt_key)?)
            .map_err(|e| e.in_file(&self.paths.tls_crypt_key))
    }

    /// Subscribes a client: checks the request, allocates its assignment
    /// (the lowest free one, or the requested one) and, in per-client mode,
    /// a UDP port, issues its certificate and records it, in one
    /// transaction.
    ///
    /// The key and certificate are made before the transaction starts, so
    /// that key generation (slow for RSA) never holds the database's write
    /// lock; a certificate whose subscription then fails is never recorded
    /// and its key never leaves the process.
    pub fn add_client(&self, req: &NewClient) -> Result<Client> {
        Self::check_request(req)?;
        let cert = self.issue(req)?;
        self.store().write_with(|tx| {
            let mut taken = Taken::load(tx, self.settings.pool)?;
            let reserved = self.reserve(tx, &mut taken, req)?;
            check_key_is_own(tx, &cert, None)?;
            let client = self.record(tx, &reserved, cert.clone())?;
            taken.save(tx)?;
            Ok(client)
        })
    }

    fn check_request(req: &NewClient) -> Result<()> {
        req.validate()?;
        if req.id.as_str().eq_ignore_ascii_case(SERVER_CN) {
            return Err(Error::InvalidClientId {
                input: crate::error::shown(req.id.as_str()),
                reason: "it is the name of the broker's server certificate".into(),
            });
        }
        Ok(())
    }

    /// Reserves an assignment and a port for `req` in `taken`.
    fn reserve<'a>(
        &self,
        tx: &mut dyn Transaction,
        taken: &mut Taken,
        req: &'a NewClient,
    ) -> Result<Reserved<'a>> {
        if taken.new_ids.contains(&req.id) || tx.has_client(&req.id)? {
            return Err(Error::ClientExists {
                id: req.id.to_string(),
            });
        }
        loop {
            if let Some(r) = self.try_reserve(tx, taken, req)? {
                taken
                    .new_owners
                    .insert(r.assignment.prefix(), req.id.clone());
                taken.new_ids.insert(req.id.clone());
                return Ok(r);
            }
            // The saved state and the rows disagree: trust the rows.
            taken.rebuild(tx)?;
        }
    }

    /// One try of [`reserve`](Self::reserve); `None` when the saved state
    /// turned out stale.
    fn try_reserve<'a>(
        &self,
        tx: &mut dyn Transaction,
        taken: &mut Taken,
        req: &'a NewClient,
    ) -> Result<Option<Reserved<'a>>> {
        let assignment = match req.prefix {
            Some(p) => match taken.plan.request(req.kind, p) {
                Err(Error::AlreadyAssigned { prefix, .. }) => {
                    let owner = match taken.new_owners.get(&prefix) {
                        Some(id) => Some(id.clone()),
                        None => tx.prefix_owner(prefix)?,
                    };
                    if owner.is_none() && taken.saved {
                        return Ok(None);
                    }
                    return Err(Error::AlreadyAssigned {
                        prefix,
                        owner: owner.map(|id| id.to_string()),
                    });
                }
                other => other?,
            },
            None => taken.plan.allocate(req.kind)?,
        };
        // What the saved state calls free must be free in the rows too.
        if taken.saved && tx.prefix_owner(assignment.prefix())?.is_some() {
            return Ok(None);
        }
        let port = match self.settings.mode {
            ServerMode::Shared => None,
            ServerMode::PerClient => {
                let first = self.settings.port;
                let p = taken
                    .ports
                    .first_free(u64::from(first), u64::from(u16::MAX))
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or(Error::PortsExhausted { first })?;
                if taken.saved && tx.port_owner(p)?.is_some() {
                    return Ok(None);
                }
                taken.ports.insert(u64::from(p));
                Some(p)
            }
        };
        Ok(Some(Reserved {
            req,
            assignment,
            port,
        }))
    }

    /// Issues a client's certificate (and key, unless it sent a CSR).
    fn issue(&self, req: &NewClient) -> Result<CertRecord> {
        let days = self.settings.validity.client_days;
        let (certificate, key_pem) = match &req.csr {
            Some(csr) => {
                // The CA's key is refused by the CA, other clients' in the
                // transaction that records the certificate.
                let cert = self.ca.sign_client_csr(&req.id, csr, days)?;
                if cert.public_key_info()? == self.server_certificate()?.public_key_info()? {
                    return Err(Error::CsrKeyInUse {
                        owner: "the server".into(),
                    });
                }
                (cert, None)
            }
            None => {
                let issued = self
                    .ca
                    .issue_client(&req.id, self.settings.key_type, days)?;
                (issued.certificate, Some(issued.key.to_pem().to_owned()))
            }
        };
        Ok(CertRecord {
            serial: certificate.serial().clone(),
            client_id: req.id.clone(),
            not_after: certificate.info().not_after,
            pem: certificate.pem().to_owned(),
            key_pem,
            state: CertState::Current,
            revoked: None,
        })
    }

    fn record(
        &self,
        tx: &mut dyn Transaction,
        r: &Reserved<'_>,
        cert: CertRecord,
    ) -> Result<Client> {
        let rec = ClientRecord {
            id: r.req.id.clone(),
            os: r.req.os,
            assignment: r.assignment,
            port: r.port,
            state: ClientState::Active,
            email: r.req.email.clone(),
            name: r.req.name.clone(),
            created_at: OffsetDateTime::now_utc(),
            revoked_at: None,
        };
        tx.insert_client(&rec)?;
        tx.insert_certificate(&cert)?;
        Ok(to_client(rec, &cert))
    }

    /// One client.
    pub fn client(&self, id: &ClientId) -> Result<Client> {
        self.store().read_with(|tx| load_client(tx, id))
    }

    /// Every client, in ID order.
    pub fn clients(&self) -> Result<Vec<Client>> {
        self.store().read_with(|tx| {
            let mut out = Vec::new();
            for rec in tx.clients()? {
                let cert = tx
                    .latest_certificate(&rec.id)?
                    .ok_or_else(|| missing_cert(&rec.id))?;
                out.push(to_client(rec, &cert));
            }
            Ok(out)
        })
    }

    /// A client's current certificate and, unless it sent a CSR, its key.
    pub fn client_credentials(&self, id: &ClientId) -> Result<ClientCredentials> {
        self.store().read_with(|tx| {
            if tx.client(id)?.is_none() {
                return Err(Error::UnknownClient { id: id.to_string() });
            }
            let cert = tx.latest_certificate(id)?.ok_or_else(|| missing_cert(id))?;
            Ok(ClientCredentials {
                certificate: Certificate::from_pem(&cert.pem)?,
                key: cert
                    .key_pem
                    .as_deref()
                    .map(PrivateKey::from_pem)
                    .transpose()?,
            })
        })
    }

    /// Revokes a client: its certificate goes on the CRL (which is rewritten,
    /// also in the rendered server directory) and it is marked revoked; then
    /// its live session on this host is ended ([`end_session`](Self::end_session);
    /// a failure there is reported in the [`Revocation`], never an error of
    /// the revocation). Its assignment stays reserved for it until
    /// [`purge`](Self::purge).
    pub fn revoke(&self, id: &ClientId, reason: RevocationReason) -> Result<Revocation> {
        let client = self.store().write_with(|tx| {
            let client = load_client(tx, id)?;
            require_state(&client, ClientState::Active, "revoke")?;
            let now = OffsetDateTime::now_utc();
            tx.revoke_certificate(&client.serial, now, reason)?;
            tx.set_client_state(id, ClientState::Revoked, Some(now))?;
            self.write_crl(tx)?;
            load_client(tx, id)
        })?;
        let session = self
            .end_session(&client)
            .unwrap_or_else(|e| SessionEnd::Failed(e.to_string()));
        Ok(Revocation { client, session })
    }

    /// Gives an active client a new key and certificate (or, with `csr`, a
    /// certificate for its new request); the assignment and port stay. The
    /// old certificate is revoked as superseded.
    pub fn renew(&self, id: &ClientId, csr: Option<&str>) -> Result<Client> {
        // Checked again in the transaction; this first look only avoids
        // making a key for a client that cannot be renewed.
        let before = self.client(id)?;
        require_state(&before, ClientState::Active, "renew")?;
        if !before.has_key && csr.is_none() {
            return Err(Error::CsrRequired { id: id.to_string() });
        }
        let mut req = NewClient::new(id.clone(), before.kind);
        req.csr = csr.map(str::to_owned);
        let cert = self.issue(&req)?;
        self.store().write_with(|tx| {
            let client = load_client(tx, id)?;
            require_state(&client, ClientState::Active, "renew")?;
            if !client.has_key && csr.is_none() {
                return Err(Error::CsrRequired { id: id.to_string() });
            }
            tx.revoke_certificate(
                &client.serial,
                OffsetDateTime::now_utc(),
                RevocationReason::Superseded,
            )?;
            // A client may keep its own key; no one else's.
            check_key_is_own(tx, &cert, Some(id))?;
            tx.insert_certificate(&cert)?;
            self.write_crl(tx)?;
            load_client(tx, id)
        })
    }

    /// Removes a revoked client, freeing its assignment and port. Its
    /// certificates stay on the CRL until they expire.
    pub fn purge(&self, id: &ClientId) -> Result<Client> {
        self.store().write_with(|tx| {
            let client = load_client(tx, id)?;
            require_state(&client, ClientState::Revoked, "purge")?;
            let mut taken = Taken::load(tx, self.settings.pool)?;
            tx.delete_client(id)?;
            let released = taken.plan.release(&client.assignment).is_ok()
                && client.port.is_none_or(|p| taken.ports.remove(u64::from(p)));
            if released {
                taken.save(tx)?;
            } else {
                tx.set_plan_state(None)?;
            }
            Ok(client)
        })
    }

    /// The CRL as it is on disk.
    pub fn crl(&self) -> Result<Crl> {
        Crl::from_pem(&fsutil::read_crl(&self.paths.crl)?).map_err(|e| e.in_file(&self.paths.crl))
    }

    /// Signs a fresh CRL (next number, new nextUpdate) and writes it, to the
    /// broker and to the recorded server directory.
    pub fn refresh_crl(&self) -> Result<Crl> {
        self.store().write_with(|tx| self.write_crl(tx))
    }

    /// Signs a CRL inside a transaction and writes it, to the broker and to
    /// the recorded server directory's `crl.pem` (where OpenVPN reads it);
    /// if the transaction fails after this, the CRL lists at most a serial
    /// that is revoked again on the next try.
    fn write_crl(&self, tx: &mut dyn Transaction) -> Result<Crl> {
        let number = tx.next_crl_number()?;
        let revoked = tx.revoked_certificates()?;
        let crl = self
            .ca
            .crl(&revoked, number, self.settings.validity.crl_days)?;
        fsutil::write_public(&self.paths.crl, crl.pem().as_bytes())?;
        self.copy_crl(crl.pem())?;
        Ok(crl)
    }
}

/// Refuses a certificate made for a client's own key (from its request)
/// when another client's recorded certificate carries that key; `except`
/// may keep its own. A key the broker made itself is new by construction.
fn check_key_is_own(
    tx: &mut dyn Transaction,
    cert: &CertRecord,
    except: Option<&ClientId>,
) -> Result<()> {
    if cert.key_pem.is_some() {
        return Ok(());
    }
    let spki = Certificate::from_pem(&cert.pem)?.public_key_info()?;
    match tx.key_owner(&spki, except)? {
        Some(owner) => Err(Error::CsrKeyInUse {
            owner: format!("client {owner}"),
        }),
        None => Ok(()),
    }
}

fn mkdir(path: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .map_err(|e| Error::io(path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| Error::io(path, e))
}

/// Refuses `action` on a client that is not in state `needed`.
fn require_state(client: &Client, needed: ClientState, action: &'static str) -> Result<()> {
    if client.state == needed {
        return Ok(());
    }
    Err(Error::ClientState {
        id: client.id.to_string(),
        state: client.state,
        action,
    })
}

fn load_client(tx: &mut dyn Transaction, id: &ClientId) -> Result<Client> {
    let rec = tx
        .client(id)?
        .ok_or_else(|| Error::UnknownClient { id: id.to_string() })?;
    let cert = tx.latest_certificate(id)?.ok_or_else(|| missing_cert(id))?;
    Ok(to_client(rec, &cert))
}

fn to_client(rec: ClientRecord, cert: &CertRecord) -> Client {
    Client {
        kind: rec.assignment.kind(),
        id: rec.id,
        os: rec.os,
        assignment: rec.assignment,
        port: rec.port,
        serial: cert.serial.clone(),
        state: rec.state,
        email: rec.email,
        name: rec.name,
        created_at: rec.created_at,
        revoked_at: rec.revoked_at,
        not_after: cert.not_after,
        has_key: cert.key_pem.is_some(),
    }
}

fn missing_cert(id: &ClientId) -> Error {
    Error::Database {
        reason: format!("client {id} has no certificate record"),
    }
}
