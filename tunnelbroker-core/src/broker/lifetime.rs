//! Certificate lifetimes (issue 18): renewing the server certificate, and
//! what the operator is told when a certificate would outlive the CA.

use time::OffsetDateTime;

use super::{Broker, RenderReport, SERVER_CN};
use crate::error::Result;
use crate::fsutil;
use crate::pki::Certificate;

/// What [`Broker::renew_server`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerRenewal {
    /// The new server certificate (in `server.crt`, its key in
    /// `private/server.key`).
    pub certificate: Certificate,
    /// When the certificate it replaced ended, if it could be read.
    pub previous_not_after: Option<OffsetDateTime>,
    /// The re-rendered server directory, when one had been rendered.
    pub rendered: Option<RenderReport>,
    /// The systemd units to restart so that OpenVPN loads the new
    /// certificate (`openvpn-server@NAME`).
    pub restart: Vec<String>,
    /// Things the operator should know (the certificate was cut short to
    /// end with the CA).
    pub warnings: Vec<String>,
}

impl Broker {
    /// Issues the OpenVPN server a new certificate and key (the settings'
    /// key type and `server_days`, never past the CA's notAfter), replaces
    /// `server.crt` and `private/server.key` (each atomically: the key
    /// first, then the certificate; if interrupted between the two, run it
    /// again), re-renders the rendered server directory if there is one,
    /// and says which instances to restart. The old certificate is not
    /// revoked: it was superseded, not compromised, and OpenVPN clients do
    /// not check a CRL.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::ErrorKind;
    /// let old = broker.server_certificate()?;
    /// let done = broker.renew_server()?;
    /// assert_ne!(done.certificate.serial(), old.serial());
    /// assert_eq!(broker.server_certificate()?, done.certificate);
    /// assert!(done.rendered.is_none(), "nothing was rendered yet");
    ///
    /// // When the key cannot be written, the certificate stays as it was.
    /// let key = &broker.paths().server_key;
    /// std::fs::remove_file(key).unwrap();
    /// std::fs::create_dir(key).unwrap();
    /// assert_eq!(broker.renew_server().unwrap_err().kind(), ErrorKind::Io);
    /// assert_eq!(broker.server_certificate()?, done.certificate);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn renew_server(&self) -> Result<ServerRenewal> {
        let settings = &self.settings;
        let days = settings.validity.server_days;
        let previous_not_after = self.server_certificate().ok().map(|c| c.info().not_after);
        let issued = self.ca.issue_server(SERVER_CN, settings.key_type, days)?;
        let mut warnings: Vec<String> = self
            .ca
            .clamp_warning("server certificate", days)
            .into_iter()
            .collect();
        issued.key.write(&self.paths.server_key)?;
        fsutil::write_public(&self.paths.server_cert, issued.certificate.pem().as_bytes())?;
        let rendered = self.rerender_server()?;
        let instances = match &rendered {
            Some(r) => {
                warnings.extend(r.warnings.iter().cloned());
                r.instances.clone()
            }
            None => self.instances()?,
        };
        Ok(ServerRenewal {
            certificate: issued.certificate,
            previous_not_after,
            rendered,
            restart: instances
                .iter()
                .map(|i| format!("openvpn-server@{i}"))
                .collect(),
            warnings,
        })
    }

    /// Re-renders the server directory after its key material changed, if
    /// one was rendered; `None` when there is none.
    ///
    /// The one place that decides which directory that is: the one the
    /// last rendering recorded, else the broker's `server/` when it exists.
    fn rerender_server(&self) -> Result<Option<RenderReport>> {
        if self.recorded_server()?.dir.is_none() && !self.paths.server_dir.is_dir() {
            return Ok(None);
        }
        self.render_server(None).map(Some)
    }

    /// Warnings about the CA's own end: one per kind of certificate
    /// (client, server) that, issued now with the settings' validity, would
    /// be cut short to end with the CA. `init` reports them (an imported CA
    /// may expire soon).
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// assert!(broker.lifetime_warnings().is_empty());
    ///
    /// // A CA of 100 days cuts client (365) and server (730) certificates short.
    /// let mut short = broker.settings().clone();
    /// short.validity.ca_days = 100;
    /// let short = Broker::init(&tmp.path().join("short"), &InitOptions::new(short))?;
    /// assert_eq!(short.lifetime_warnings().len(), 2);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn lifetime_warnings(&self) -> Vec<String> {
        let v = &self.settings.validity;
        [
            ("client certificate", v.client_days),
            ("server certificate", v.server_days),
        ]
        .into_iter()
        .filter_map(|(what, days)| self.ca.clamp_warning(what, days))
        .collect()
    }

    /// The one of [`lifetime_warnings`](Self::lifetime_warnings) about
    /// client certificates: what to tell after issuing one (subscribing,
    /// importing, renewing); `None` when they get their full validity.
    pub fn client_lifetime_warning(&self) -> Option<String> {
        self.ca
            .clamp_warning("client certificate", self.settings.validity.client_days)
    }
}
