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
//! private/            mode 0700: ca.key, server.key, tls-crypt.key,
//!                     tls-crypt-v2-server.key (each 0600)
//! ```
//!
//! OpenVPN reads nothing here at run time: `server render` writes what it
//! needs into the rendered directory (see [`Broker::render_server_with`]),
//! so the broker directory may be private (0700).
//!
//! Every change is atomic: a subscription either fully happens (assignment,
//! certificate, record) or leaves no trace, also when the process is killed
//! half way; files are written under a temporary name and renamed.
mod allocation;
mod client;
mod crl;
mod database;
mod import;
mod imported_ca;
mod init;
mod lifecycle;
mod lifetime;
mod ownership;
mod paths;
mod render;
mod servers;
mod sessions;
mod settings;
mod shared;
mod tls_crypt_v2;

use std::path::Path;

pub use client::{Client, ClientOs, ClientState, NewClient};
pub use database::{DatabaseStatus, MigrateReport};
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use import::parse_import_csv;
pub use import::{ImportReport, RowError};
pub use init::{ImportedCa, InitOptions};
pub use lifecycle::ClientCredentials;
pub use lifetime::ServerRenewal;
pub use paths::BrokerPaths;
pub(crate) use render::ServerFilesState;
pub use render::{RenderOptions, RenderReport, Revocation, SessionEnd};
pub use servers::{
    ClientMove, NewServer, Server, server_common_name, server_names, validate_server_name,
};
pub use sessions::{
    AssignmentSpan, Session, SessionAddresses, SessionFilter, SessionSync, Whois, parse_address,
    parse_time,
};
pub use settings::{
    DatabaseSettings, Endpoint, ServerMode, ServerSettings, SessionSettings, Settings,
    TlsCryptVersion, ValiditySettings,
};
pub use tls_crypt_v2::TlsCryptChange;

use crate::error::Result;
use crate::fsutil;
use crate::pki::{Ca, Certificate, PrivateKey, TlsCryptKey};
use crate::store::Store;

/// The common name of the broker's OpenVPN server certificate. No client may
/// take it as its ID.
pub const SERVER_CN: &str = "tunnelbroker-server";

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
    /// was given another (shared with the views of single servers).
    store: std::sync::Arc<dyn Store>,
    /// The server this broker renders for: `None` for `main` (the
    /// settings' server); a view made by `for_server` otherwise.
    scope: Option<crate::store::ServerRecord>,
    /// The directories an agent was told (`-o DIR`, `--run-dir`), which
    /// win over the recorded ones ([`ServerSettings`]); `None`: the
    /// recorded ones.
    dirs: Option<ServerSettings>,
    /// What [`open`](Self::open) found worth saying (a stale cache it could
    /// not refresh).
    warnings: Vec<String>,
}

impl Broker {
    /// The broker's files.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// let paths = broker.paths();
    /// assert_eq!(paths.settings, broker.dir().join("tunnelbroker.toml"));
    /// assert_eq!(paths.ca_key, broker.dir().join("private/ca.key"));
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn paths(&self) -> &BrokerPaths {
        &self.paths
    }

    /// The broker directory.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// assert_eq!(broker.dir(), tmp.path().join("broker").as_path());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn dir(&self) -> &Path {
        &self.paths.dir
    }

    /// The settings.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::broker::ServerMode;
    /// assert_eq!(broker.settings().mode, ServerMode::PerClient);
    /// assert_eq!(broker.settings().port, 5000);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The CA.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// assert_eq!(broker.ca().certificate().info().common_name, "tunnelbroker CA");
    /// broker.ca().verify(&broker.server_certificate()?)?;
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// What opening the broker found worth telling the operator, one line
    /// each: a cached copy of the shared settings (`tunnelbroker.toml`,
    /// `ca.crt`) that differed from the client database's, refreshed or
    /// not. Empty as a rule.
    ///
    /// ```
    /// use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// let tmp = tempfile::tempdir().unwrap();
    /// let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// let dir = tmp.path().join("broker");
    /// assert!(Broker::init(&dir, &InitOptions::new(settings))?.open_warnings().is_empty());
    ///
    /// // A stale copy of the settings names another pool: the database's wins.
    /// let toml = dir.join("tunnelbroker.toml");
    /// let text = std::fs::read_to_string(&toml).unwrap();
    /// std::fs::write(&toml, text.replace("f100::/56", "e000::/56")).unwrap();
    /// let broker = Broker::open(&dir)?;
    /// assert_eq!(broker.settings().pool.to_string(), "2001:db8:0:f100::/56");
    /// assert!(broker.open_warnings()[0].contains("differed from the client database in pool"));
    /// assert!(Broker::open(&dir)?.open_warnings().is_empty());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn open_warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The client database, for the audit.
    pub(crate) fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// The OpenVPN server's certificate.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::ErrorKind;
    /// let cert = broker.server_certificate()?;
    /// assert_eq!(cert.info().common_name, "tunnelbroker-server");
    ///
    /// // A damaged file is refused, naming it.
    /// std::fs::write(&broker.paths().server_cert, "junk").unwrap();
    /// let err = broker.server_certificate().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// assert!(err.to_string().contains("server.crt"), "{err}");
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn server_certificate(&self) -> Result<Certificate> {
        if let Some(pem) = self.scope.as_ref().and_then(|s| s.cert_pem.as_deref()) {
            return Certificate::from_pem(pem);
        }
        Certificate::from_pem(&fsutil::read_to_string(&self.paths.server_cert)?)
            .map_err(|e| e.in_file(&self.paths.server_cert))
    }

    /// The OpenVPN server's key (secret).
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::ErrorKind;
    /// assert!(broker.server_certificate()?.matches_key(&broker.server_key()?));
    ///
    /// // A damaged file is refused, naming it.
    /// std::fs::write(&broker.paths().server_key, "junk").unwrap();
    /// let err = broker.server_key().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// assert!(err.to_string().contains("server.key"), "{err}");
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn server_key(&self) -> Result<PrivateKey> {
        if let Some(pem) = self.scope.as_ref().and_then(|s| s.key_pem.as_deref()) {
            return PrivateKey::from_pem(pem);
        }
        PrivateKey::from_pem(&fsutil::read_to_string(&self.paths.server_key)?)
            .map_err(|e| e.in_file(&self.paths.server_key))
    }

    /// The tls-crypt key (secret).
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::ErrorKind;
    /// let key = broker.tls_crypt_key()?;
    /// assert!(key.to_text().contains("OpenVPN Static key V1"));
    ///
    /// // A damaged file is refused, naming it.
    /// std::fs::write(&broker.paths().tls_crypt_key, "junk").unwrap();
    /// let err = broker.tls_crypt_key().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// assert!(err.to_string().contains("tls-crypt.key"), "{err}");
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn tls_crypt_key(&self) -> Result<TlsCryptKey> {
        TlsCryptKey::parse(&fsutil::read_to_string(&self.paths.tls_crypt_key)?)
            .map_err(|e| e.in_file(&self.paths.tls_crypt_key))
    }
}
