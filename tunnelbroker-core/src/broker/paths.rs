//! Where a broker keeps its files.

use std::path::{Path, PathBuf};

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
    /// The tls-crypt-v2 server key.
    pub tls_crypt_v2_server_key: PathBuf,
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
            tls_crypt_v2_server_key: private_dir.join("tls-crypt-v2-server.key"),
            private_dir,
            crl: dir.join("crl.pem"),
            database: dir.join("clients.db"),
            server_dir: dir.join("server"),
        }
    }
}
