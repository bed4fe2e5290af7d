//! The broker's CRL: read, re-signed, written where OpenVPN reads it.

use super::Broker;
use crate::error::Result;
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
        fsutil::write_public(&self.paths.crl, crl.pem().as_bytes())?;
        self.copy_crl(crl.pem())?;
        self.copy_tls_crypt_v2_clients(tx)?;
        Ok(crl)
    }
}
