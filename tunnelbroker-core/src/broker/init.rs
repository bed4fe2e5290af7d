//! Making a broker (`init`, from generated or imported CA) and opening one.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::shared::{self, SharedValues};
use super::{Broker, BrokerPaths, SERVER_CN, Settings};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::pki::{Ca, CaParams, TlsCryptKey, TlsCryptV2ServerKey};
use crate::plan::Pool;
use crate::store::{DatabaseUrl, PostgresStore, SqliteStore, Store};

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
    /// A PostgreSQL database for the clients, which must hold no broker
    /// yet; `None`: the one `settings.database` names, if any, else SQLite
    /// (`clients.db` in the broker directory).
    pub database: Option<DatabaseUrl>,
    /// The broker's parent prefix (the institution's space, e.g. a /48),
    /// which must hold the pool: later servers take their pools from it.
    pub parent: Option<ipnet::Ipv6Net>,
}

impl InitOptions {
    /// Options that generate a new CA and keep the clients in SQLite.
    pub fn new(settings: Settings) -> Self {
        InitOptions {
            settings,
            ca: None,
            database: None,
            parent: None,
        }
    }
}

impl Broker {
    /// Creates a broker in `dir`, which must not exist or be empty: settings,
    /// CA (generated or imported), server certificate, tls-crypt key, client
    /// database and an empty CRL. Everything is built in a temporary
    /// directory and renamed into place, so a failed `init` leaves nothing.
    ///
    /// ```
    /// use tunnelbroker_core::{Broker, ErrorKind, InitOptions, Settings};
    /// let tmp = tempfile::tempdir().unwrap();
    /// let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// let dir = tmp.path().join("broker");
    /// let broker = Broker::init(&dir, &InitOptions::new(settings.clone()))?;
    /// assert!(broker.paths().ca_key.exists());
    ///
    /// // A second init in the same place is refused, and the broker is untouched.
    /// let err = Broker::init(&dir, &InitOptions::new(settings)).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    /// assert!(Broker::open(&dir).is_ok());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn init(dir: &Path, options: &InitOptions) -> Result<Broker> {
        let settings = &options.settings;
        settings.validate()?;
        if let Some(parent) = options.parent {
            super::servers::check_parent(parent)?;
            if !parent.contains(&settings.pool.net()) {
                return Err(Error::OutsideParent {
                    pool: settings.pool.net(),
                    parent,
                });
            }
        }
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
        let result = Self::build(&tmp, dir, options).and_then(|()| Broker::open(dir));
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    /// Builds the broker in `tmp` and renames it to `dir`: every local
    /// file first, the client database last (SQLite in `tmp`, or the
    /// PostgreSQL schema), with the shared values and the first CRL in one
    /// transaction.
    ///
    /// PostgreSQL is outside `tmp`, so `tmp` is renamed into place inside
    /// that transaction, before it commits: if the rename fails the
    /// database is left with an empty schema, and if the commit fails the
    /// renamed directory is removed. An empty schema (no shared values, no
    /// clients) is what the next `init` on that database takes as its own.
    fn build(tmp: &Path, dir: &Path, options: &InitOptions) -> Result<()> {
        let mut settings = options.settings.clone();
        let settings = &mut settings;
        if options.database.is_some() {
            settings.database.url.clone_from(&options.database);
        }
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
        // Both keys, whichever version the settings name: moving between
        // them later needs no new secret.
        let tls_v2 = TlsCryptV2ServerKey::generate()?;
        fsutil::write_public(&paths.settings, settings.to_toml().as_bytes())?;
        fsutil::write_public(&paths.ca_cert, ca.chain_pem().as_bytes())?;
        ca.key()
            .ok_or_else(|| Error::Pki {
                reason: "the CA has no key to write".into(),
            })?
            .write(&paths.ca_key)?;
        fsutil::write_public(&paths.server_cert, server.certificate.pem().as_bytes())?;
        server.key.write(&paths.server_key)?;
        fsutil::write_secret(&paths.tls_crypt_key, tls.to_text().as_bytes())?;
        tls_v2.write(&paths.tls_crypt_v2_server_key)?;
        let store = create_store(&paths, settings)?;
        let chain = ca.chain_pem();
        let broker = Broker::with_store(paths, settings.clone(), ca, store);
        let on_postgres = settings.database.url.is_some();
        let mut renamed = false;
        let written = broker.store().write_with(|tx| {
            shared::write(tx, &broker.settings, &chain)?;
            tx.insert_server(&broker.main_record())?;
            if let Some(parent) = options.parent {
                super::servers::write_parent(tx, parent)?;
            }
            broker.write_crl(tx)?;
            if on_postgres && !renamed {
                fs::rename(tmp, dir).map_err(|e| Error::io(dir, e))?;
                renamed = true;
            }
            Ok(())
        });
        drop(broker);
        match written {
            Err(e) => {
                if renamed {
                    let _ = fs::remove_dir_all(dir);
                }
                Err(e)
            }
            // SQLite is in `tmp`, closed now: all of it moves at once.
            Ok(()) if !renamed => fs::rename(tmp, dir).map_err(|e| Error::io(dir, e)),
            Ok(()) => Ok(()),
        }
    }

    /// Opens the broker in `dir`, on the client database its settings name
    /// (`[database] url`, else SQLite `clients.db`).
    ///
    /// Its client database must exist: a missing, empty or foreign
    /// `clients.db` (or PostgreSQL database) is refused with
    /// [`Error::UnusableDatabase`] and nothing is written (only
    /// [`init`](Self::init) creates a database).
    ///
    /// The shared settings and the CA certificate are read from the
    /// database and win over `tunnelbroker.toml` and `ca.crt`, which are
    /// written again from it where they differ (see
    /// [`open_warnings`](Self::open_warnings)); a database that holds none
    /// yet (a broker made before they were kept there) gets them from the
    /// files. A CA key that does not belong to the database's CA
    /// certificate is refused ([`Error::NotABroker`], naming the key file).
    ///
    /// ```
    /// use tunnelbroker_core::{Broker, ErrorKind, InitOptions, Settings};
    /// let tmp = tempfile::tempdir().unwrap();
    /// let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// let dir = tmp.path().join("broker");
    /// Broker::init(&dir, &InitOptions::new(settings))?;
    /// let broker = Broker::open(&dir)?;
    /// assert_eq!(broker.dir(), dir.as_path());
    ///
    /// // A directory without a broker is refused.
    /// let err = Broker::open(tmp.path()).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::NotFound);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn open(dir: &Path) -> Result<Broker> {
        Broker::open_keyed(dir, true)
    }

    /// Opens a broker on a server host, as the agent does: everything
    /// [`open`](Self::open) does except reading the CA key
    /// (`private/ca.key`), which a server host never holds. The CA is
    /// loaded from its certificate only ([`Ca::certificate_only`]): what
    /// signs (subscribing, renewing, revoking, a fresh CRL) fails with
    /// [`Error::Pki`] and changes nothing; reading, rendering the server
    /// side and ending sessions work.
    ///
    /// ```
    /// use tunnelbroker_core::{Broker, ClientKind, Error, InitOptions, NewClient, Settings};
    /// let tmp = tempfile::tempdir().unwrap();
    /// let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// let dir = tmp.path().join("broker");
    /// let broker = Broker::init(&dir, &InitOptions::new(settings))?;
    /// broker.add_client(&NewClient::new("alice".parse()?, ClientKind::Hermit))?;
    /// std::fs::remove_file(&broker.paths().ca_key).unwrap();
    /// assert!(Broker::open(&dir).is_err());
    /// let agent = Broker::open_for_agent(&dir)?;
    /// assert_eq!(agent.clients()?.len(), 1);
    /// assert!(!agent.ca().can_sign());
    /// let err = agent.add_client(&NewClient::new("bob".parse()?, ClientKind::Hermit)).unwrap_err();
    /// assert!(matches!(err, Error::Pki { .. }), "{err}");
    /// assert_eq!(agent.clients()?.len(), 1);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn open_for_agent(dir: &Path) -> Result<Broker> {
        Broker::open_keyed(dir, false)
    }

    fn open_keyed(dir: &Path, with_key: bool) -> Result<Broker> {
        let paths = BrokerPaths::new(dir);
        if !paths.settings.exists() {
            return Err(Error::NotABroker {
                path: dir.to_owned(),
                reason: "no tunnelbroker.toml; create a broker with `tunnelbroker init`".into(),
            });
        }
        let local = Settings::from_toml(&fsutil::read_to_string(&paths.settings)?).map_err(
            |e| match e {
                Error::InvalidSettings { reason } => Error::InvalidSettings {
                    reason: format!("{}: {reason}", paths.settings.display()),
                },
                other => other,
            },
        )?;
        let key_pem = match with_key {
            true => Some(fsutil::read_to_string(&paths.ca_key)?),
            false => None,
        };
        let mut store = open_store(&paths, &local, local.pool)?;
        let mut values = store.read_with(SharedValues::read)?;
        if !values.has_settings() {
            // A broker made before the database held the shared values: its
            // files are what it has agreed on so far. Written once, by the
            // first process that gets here.
            let ca = match &key_pem {
                Some(key_pem) => ca_from_files(&paths, key_pem)?,
                None => Ca::certificate_only(&fsutil::read_to_string(&paths.ca_cert)?)
                    .map_err(|e| e.in_file(&paths.ca_cert))?,
            };
            values = store.write_with(|tx| {
                if !SharedValues::read(tx)?.has_settings() {
                    shared::write(tx, &local, &ca.chain_pem())?;
                }
                SharedValues::read(tx)
            })?;
        }
        let settings = values.settings(&local)?;
        let chain = values.ca_chain()?;
        let ca = match &key_pem {
            Some(key_pem) => Ca::from_pem(chain, key_pem),
            None => Ca::certificate_only(chain),
        };
        let ca = ca.map_err(|e| match e {
            Error::CaKeyMismatch { common_name } => Error::NotABroker {
                path: paths.ca_key.clone(),
                reason: format!(
                    "the key does not match the CA certificate {common_name} in the client database: this directory is not a copy of that broker's (copy its broker directory)"
                ),
            },
            e @ (Error::InvalidKey { .. } | Error::UnsupportedKey { .. }) => {
                e.in_file(&paths.ca_key)
            }
            e @ Error::CaExpired { .. } => e,
            e => Error::Database {
                reason: format!("the shared value {}: {e}", shared::CA_CHAIN),
            },
        })?;
        if settings.pool != local.pool {
            // The file named a stale pool: its assignments are read in the
            // database's.
            store = open_store(&paths, &settings, settings.pool)?;
        }
        let warnings = refresh_caches(&paths, &local, &settings, chain);
        let mut broker = Broker::with_store(paths, settings, ca, store);
        broker.warnings = warnings;
        broker.ensure_main()?;
        Ok(broker)
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
            store: store.into(),
            scope: None,
            dirs: None,
            warnings: Vec::new(),
        }
    }
}

/// The CA from the broker's files (`ca.crt` and the key read from
/// `private/ca.key`).
fn ca_from_files(paths: &BrokerPaths, key_pem: &str) -> Result<Ca> {
    Ca::from_pem(&fsutil::read_to_string(&paths.ca_cert)?, key_pem).map_err(|e| match e {
        // The key is what does not parse or does not fit the certificate.
        Error::InvalidKey { .. } | Error::UnsupportedKey { .. } | Error::CaKeyMismatch { .. } => {
            e.in_file(&paths.ca_key)
        }
        // An expired CA is not a corrupt file; its message names the CA.
        e @ Error::CaExpired { .. } => e,
        e => e.in_file(&paths.ca_cert),
    })
}

/// Opens the client database that `settings` name, reading assignments in
/// `pool`.
pub(super) fn open_store(
    paths: &BrokerPaths,
    settings: &Settings,
    pool: Pool,
) -> Result<Box<dyn Store>> {
    match &settings.database.url {
        None => Ok(Box::new(SqliteStore::open(&paths.database, pool)?)),
        Some(url) => postgres_open(url, pool),
    }
}

/// Creates the client database that `settings` name (in `paths`, for
/// SQLite), which must hold no broker yet.
pub(super) fn create_store(paths: &BrokerPaths, settings: &Settings) -> Result<Box<dyn Store>> {
    match &settings.database.url {
        None => Ok(Box::new(SqliteStore::create(
            &paths.database,
            settings.pool,
        )?)),
        Some(url) => postgres_create(url, settings.pool),
    }
}

fn postgres_open(url: &DatabaseUrl, pool: Pool) -> Result<Box<dyn Store>> {
    Ok(Box::new(PostgresStore::open(url, pool)?))
}

/// What `init` says of a database that holds a broker.
pub(super) const COPY_THE_DIRECTORY: &str = "to provision from another host, copy that broker's directory there (its settings and CA key) instead of running init; a new broker needs a new, empty database";

/// Creates the schema in the PostgreSQL database `url`. A database that
/// holds our schema but nothing else (an `init` that failed after creating
/// it: no shared values, no clients, no certificates) is taken as it is; one
/// that holds a broker is refused ([`Error::DatabaseInUse`]).
fn postgres_create(url: &DatabaseUrl, pool: Pool) -> Result<Box<dyn Store>> {
    let refusal = match PostgresStore::create(url, pool) {
        Ok(store) => return Ok(Box::new(store)),
        Err(e @ Error::UnusableDatabase { .. }) => e,
        Err(e) => return Err(e),
    };
    // Ours, or another program's? Only ours opens.
    let Ok(store) = PostgresStore::open(url, pool) else {
        return Err(refusal);
    };
    let store: Box<dyn Store> = Box::new(store);
    let unclaimed = store.read_with(|tx| {
        Ok(!SharedValues::read(tx)?.has_settings()
            && tx.client_count()? == 0
            && tx.certificates()?.is_empty())
    })?;
    if unclaimed {
        Ok(store)
    } else {
        Err(Error::DatabaseInUse {
            url: url.to_string(),
            hint: COPY_THE_DIRECTORY,
        })
    }
}

/// Brings this host's caches of the shared values (`tunnelbroker.toml`
/// outside `[server]` and `[database]`, and `ca.crt`) in step with the
/// database's, where they differ. Returns one warning per cache that
/// differed: refreshed, or why not.
fn refresh_caches(
    paths: &BrokerPaths,
    local: &Settings,
    settings: &Settings,
    chain: &str,
) -> Vec<String> {
    let mut warnings = Vec::new();
    let stale = shared::differences(local, settings);
    if !stale.is_empty() {
        let what = format!(
            "{} differed from the client database in {}",
            paths.settings.display(),
            stale.join(", ")
        );
        warnings.push(
            match fsutil::write_public(&paths.settings, settings.to_toml().as_bytes()) {
                Ok(()) => format!(
                    "{what}: refreshed it from the database, whose settings are the broker's"
                ),
                Err(e) => format!(
                    "{what}, and it could not be refreshed ({e}): the database's settings are used"
                ),
            },
        );
    }
    if fsutil::read_to_string(&paths.ca_cert).ok().as_deref() != Some(chain) {
        let what = format!(
            "{} differed from the CA certificate in the client database",
            paths.ca_cert.display()
        );
        warnings.push(
            match fsutil::write_public(&paths.ca_cert, chain.as_bytes()) {
                Ok(()) => format!("{what}: refreshed it from the database"),
                Err(e) => {
                    format!("{what}, and it could not be refreshed ({e}): the database's is used")
                }
            },
        );
    }
    warnings
}

fn mkdir(path: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .map_err(|e| Error::io(path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| Error::io(path, e))
}
