//! The broker's CRL: read, re-signed, written where OpenVPN reads it.

use super::{Broker, shared};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::pki::Crl;
use crate::store::Transaction;

impl Broker {
    /// The CRL as it is on disk.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::ErrorKind;
    /// let crl = broker.crl()?;
    /// assert_eq!(crl.revoked_count(), 0);
    /// broker.ca().check_crl(&crl)?;
    ///
    /// // A damaged file is refused.
    /// std::fs::write(&broker.paths().crl, "junk").unwrap();
    /// assert_eq!(broker.crl().unwrap_err().kind(), ErrorKind::InvalidInput);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn crl(&self) -> Result<Crl> {
        Crl::from_pem(&fsutil::read_crl(&self.paths.crl)?).map_err(|e| e.in_file(&self.paths.crl))
    }

    /// Signs a fresh CRL (next number, new nextUpdate) and writes it, to the
    /// broker and to the recorded server directory.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::ErrorKind;
    /// let before = broker.crl()?;
    /// let after = broker.refresh_crl()?;
    /// assert!(after.number() > before.number());
    /// assert_eq!(broker.crl()?, after);
    ///
    /// // When the CRL cannot be written, nothing changes: the next CRL number is
    /// // not used up.
    /// let path = &broker.paths().crl;
    /// std::fs::remove_file(path).unwrap();
    /// std::fs::create_dir(path).unwrap();
    /// assert_eq!(broker.refresh_crl().unwrap_err().kind(), ErrorKind::Io);
    /// std::fs::remove_dir(path).unwrap();
    /// assert_eq!(broker.refresh_crl()?.number(), after.number() + 1);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn refresh_crl(&self) -> Result<Crl> {
        self.store().write_with(|tx| self.write_crl(tx))
    }

    /// Signs a CRL inside a transaction and writes it, to the broker and to
    /// the recorded server directory's `crl.pem` (where OpenVPN reads it);
    /// if the transaction fails after this, the CRL lists at most a serial
    /// that is revoked again on the next try.
    pub(super) fn write_crl(&self, tx: &mut dyn Transaction) -> Result<Crl> {
        let number = tx.next_crl_number()?;
        let revoked = tx.revoked_certificates()?;
        let crl = self
            .ca
            .crl(&revoked, number, self.settings.validity.crl_days)?;
        tx.set_shared(shared::CRL, crl.pem())?;
        fsutil::write_public(&self.paths.crl, crl.pem().as_bytes())?;
        self.copy_crl(crl.pem())?;
        self.copy_tls_crypt_v2_clients(tx)?;
        Ok(crl)
    }

    /// Brings this host's CRL (`crl.pem` in the broker directory and its
    /// copy in the recorded server directory) in step with the newest one
    /// the database holds, as a server host's agent does: it cannot sign a
    /// CRL, so it takes the one the provisioning host signed last. A CRL in
    /// the database that this CA did not sign is refused; an older one (by
    /// CRL number) than the file's is left alone. Returns the CRL written,
    /// if it changed anything; `None` also when the database holds no CRL
    /// yet (a broker whose last CRL was signed before CRLs were kept there).
    ///
    /// ```
    /// use tunnelbroker_core::{Broker, ClientKind, InitOptions, NewClient, Settings};
    /// let tmp = tempfile::tempdir().unwrap();
    /// let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// let dir = tmp.path().join("broker");
    /// let broker = Broker::init(&dir, &InitOptions::new(settings))?;
    /// let agent = Broker::open_for_agent(&dir)?;
    /// assert!(agent.sync_crl()?.is_none());
    /// let fresh = broker.refresh_crl()?;
    /// // Another host's copy is behind: the agent takes the database's.
    /// std::fs::write(&broker.paths().crl, "stale").unwrap();
    /// assert_eq!(agent.sync_crl()?.map(|c| c.number()), Some(fresh.number()));
    /// assert_eq!(agent.crl()?, fresh);
    /// assert!(agent.sync_crl()?.is_none());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn sync_crl(&self) -> Result<Option<Crl>> {
        let Some(pem) = self.store().read_with(|tx| tx.shared(shared::CRL))? else {
            return Ok(None);
        };
        if fsutil::read_crl(&self.paths.crl).ok().as_deref() == Some(pem.as_str()) {
            return Ok(None);
        }
        let crl = Crl::from_pem(&pem).map_err(|e| Error::Database {
            reason: format!("the shared value {}: {e}", shared::CRL),
        })?;
        self.ca.check_crl(&crl).map_err(|e| Error::Database {
            reason: format!("the shared value {}: {e}", shared::CRL),
        })?;
        if self.crl().is_ok_and(|old| old.number() > crl.number()) {
            return Ok(None);
        }
        fsutil::write_public(&self.paths.crl, pem.as_bytes())?;
        self.copy_crl(&pem)?;
        Ok(Some(crl))
    }
}
