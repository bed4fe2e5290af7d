//! The broker's CRL: read, re-signed, written where OpenVPN reads it.

use super::Broker;
use crate::error::Result;
use crate::fsutil;
use crate::pki::Crl;
use crate::store::Transaction;

impl Broker {
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
    pub(super) fn write_crl(&self, tx: &mut dyn Transaction) -> Result<Crl> {
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
