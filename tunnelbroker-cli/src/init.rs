//! `tunnelbroker init` and `tunnelbroker crl`.

use std::fmt;
use std::path::Path;

use serde::Serialize;
use tunnelbroker_core::broker::ImportedCa;
use tunnelbroker_core::pki::KeyType;
use tunnelbroker_core::{Broker, Error, InitOptions, Settings};

use crate::args::{CrlArgs, InitArgs};
use crate::output::{Failure, Output};

/// Creates a broker in `dir`.
pub fn init(out: &Output, dir: &Path, a: &InitArgs) -> Result<(), Failure> {
    let mut settings = Settings::new(a.pool.parse()?, a.endpoint.parse()?);
    if let Some(v) = &a.tls_crypt {
        settings.tls_crypt = v.parse()?;
    }
    if let Some(m) = &a.mode {
        settings.mode = m.parse()?;
    }
    if let Some(p) = a.port {
        settings.port = p;
    }
    if let Some(k) = &a.key_type {
        settings.key_type = k.parse()?;
    }
    if let Some(l) = &a.lan_interface {
        settings.lan_interface = l.clone();
    }
    if let Some(c) = &a.country {
        settings.subject.country = Some(c.clone());
    }
    if let Some(o) = &a.organization {
        settings.subject.organization = Some(o.clone());
    }
    if let Some(u) = &a.unit {
        settings.subject.organizational_unit = Some(u.clone());
    }
    if let Some(n) = &a.ca_name {
        settings.subject.common_name = n.clone();
    }
    let mut options = InitOptions::new(settings);
    if let Some(url) = &a.database {
        options.database = Some(url.parse()?);
    }
    if let Some(parent) = &a.parent {
        options.parent = Some(tunnelbroker_core::plan::parse_prefix(parent)?);
    }
    // A file named on the command line: whatever is wrong with it is bad
    // input (exit 2).
    options.ca = ImportedCa::read(a.ca_cert.as_deref(), a.ca_key.as_deref())
        .map_err(|e| Failure::invalid_input(e.to_string()))?;
    if options.ca.is_some() {
        // An imported CA keeps its own subject: refuse the options that
        // would describe a CA that is not the one in use.
        for (flag, given) in [
            ("--ca-name", a.ca_name.is_some()),
            ("--country", a.country.is_some()),
            ("--organization", a.organization.is_some()),
            ("--unit", a.unit.is_some()),
        ] {
            if given {
                return Err(Failure::invalid_input(format!(
                    "{flag} describes a CA for init to make; an imported CA (--ca-cert) keeps its own subject: leave {flag} out"
                )));
            }
        }
    }
    let broker = Broker::init(dir, &options).map_err(|e| import_failure(e, a))?;
    out.show(&InitView::of(&broker))
}

/// An error about the imported CA, prefixed with the file it concerns.
fn import_failure(e: Error, a: &InitArgs) -> Failure {
    let file = match (&e, &a.ca_cert, &a.ca_key) {
        (Error::InvalidKey { .. } | Error::UnsupportedKey { .. }, _, Some(key)) => key,
        (
            Error::InvalidCertificate { .. }
            | Error::NotACa { .. }
            | Error::CaKeyMismatch { .. }
            | Error::CaExpired { .. }
            | Error::CertificateNotYetValid { .. }
            | Error::CaIssuerMissing { .. }
            | Error::InvalidCaChain { .. },
            Some(cert),
            _,
        ) => cert,
        _ => return e.into(),
    };
    let status = Failure::from(e);
    status.with_prefix(&file.display().to_string())
}

/// Signs a fresh CRL and writes it to the broker (and to `-o FILE`, or stdout).
pub fn crl(out: &Output, dir: &Path, a: &CrlArgs) -> Result<(), Failure> {
    let broker = crate::output::open_broker(dir)?;
    let crl = broker.refresh_crl()?;
    match &a.output {
        Some(path) => {
            crl.write_to(path)?;
            out.show(&CrlView {
                path: path.display().to_string(),
                number: crl.number(),
                revoked: crl.revoked_serials().len(),
                pem: None,
            })
        }
        None if out.is_json() => out.show(&CrlView {
            path: broker.paths().crl.display().to_string(),
            number: crl.number(),
            revoked: crl.revoked_serials().len(),
            pem: Some(crl.pem().to_owned()),
        }),
        None => {
            out.print(crl.pem());
            Ok(())
        }
    }
}

#[derive(Serialize)]
struct CrlView {
    path: String,
    number: u64,
    revoked: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pem: Option<String>,
}

impl fmt::Display for CrlView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "wrote CRL number {} ({} revoked) to {}",
            self.number, self.revoked, self.path
        )
    }
}

#[derive(Serialize)]
struct InitView {
    dir: String,
    settings: Settings,
    ca: String,
    /// Certificates that would end with the CA, shorter than the settings
    /// ask for (an imported CA that expires soon).
    warnings: Vec<String>,
    /// The CA's own key type (`settings.key_type` is for new keys).
    ca_key_type: KeyType,
    /// Where the clients are: the SQLite file or the PostgreSQL URL (which
    /// never holds a password).
    database: String,
}

impl InitView {
    fn of(b: &Broker) -> Self {
        InitView {
            dir: b.dir().display().to_string(),
            settings: b.settings().clone(),
            ca: b.ca().certificate().info().common_name.clone(),
            warnings: b.lifetime_warnings(),
            ca_key_type: b.ca().key().map_or(b.settings().key_type, |k| k.key_type()),
            database: match &b.settings().database.url {
                Some(url) => url.to_string(),
                None => b.paths().database.display().to_string(),
            },
        }
    }
}

impl fmt::Display for InitView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        writeln!(f, "created broker in {}", self.dir)?;
        writeln!(
            f,
            "pool          {} ({} subnets)",
            s.pool,
            s.pool.subnet_capacity()
        )?;
        writeln!(
            f,
            "endpoint      {} ({} mode, port {})",
            s.endpoint, s.mode, s.port
        )?;
        writeln!(f, "CA            {} ({})", self.ca, self.ca_key_type)?;
        writeln!(f, "keys          {}", s.key_type)?;
        writeln!(f, "tls-crypt     {}", s.tls_crypt)?;
        writeln!(f, "database      {}", self.database)?;
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        writeln!(
            f,
            "next          tunnelbroker --dir {} client add ID --subnet",
            self.dir
        )
    }
}
