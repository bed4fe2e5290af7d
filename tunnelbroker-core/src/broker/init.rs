//! Making a broker (`init`, from generated or imported CA) and opening one.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Broker, BrokerPaths, SERVER_CN, Settings};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::pki::{Ca, CaParams, TlsCryptKey};
use crate::store::{SqliteStore, Store};

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
}

fn mkdir(path: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .map_err(|e| Error::io(path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| Error::io(path, e))
}
