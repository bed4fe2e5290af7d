//! Revocation reasons, entries and signed CRLs: read back here, and
//! signed by the CA ([`Ca::crl`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::SubjectPublicKeyInfo;

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};

use super::{Ca, MAX_CRL_PEM, Serial, days_from, pem_blocks_max, pem_encode, pki_err};
use crate::error::{Error, Result};

/// Why a certificate was revoked (RFC 5280 CRLReason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevocationReason {
    /// No reason given.
    #[default]
    Unspecified,
    /// The client's key was compromised.
    KeyCompromise,
    /// The client changed affiliation.
    AffiliationChanged,
    /// Replaced by a new certificate.
    Superseded,
    /// The client no longer uses the service.
    CessationOfOperation,
}

impl RevocationReason {
    /// The words `FromStr` accepts.
    pub const CHOICES: &'static str =
        "unspecified, key-compromise, affiliation-changed, superseded, cessation-of-operation";
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "key-compromise",
            RevocationReason::AffiliationChanged => "affiliation-changed",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessation-of-operation",
        })
    }
}

impl FromStr for RevocationReason {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(
            match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
                "unspecified" => RevocationReason::Unspecified,
                "key-compromise" => RevocationReason::KeyCompromise,
                "affiliation-changed" => RevocationReason::AffiliationChanged,
                "superseded" => RevocationReason::Superseded,
                "cessation-of-operation" => RevocationReason::CessationOfOperation,
                _ => {
                    return Err(Error::InvalidChoice {
                        what: "revocation reason",
                        input: crate::error::shown(s),
                        expected: RevocationReason::CHOICES,
                    });
                }
            },
        )
    }
}

/// One entry of a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedCert {
    /// The revoked serial.
    pub serial: Serial,
    /// When it was revoked.
    pub revoked_at: OffsetDateTime,
    /// Why.
    pub reason: RevocationReason,
    /// When the certificate expires anyway (its entry leaves the CRL
    /// [`Ca::CRL_KEEP_EXPIRED_DAYS`](super::Ca::CRL_KEEP_EXPIRED_DAYS) days later).
    pub not_after: OffsetDateTime,
}

/// A signed certificate revocation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crl {
    pem: String,
    der: Vec<u8>,
    number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    revoked: Vec<Serial>,
    issuer: String,
    authority_key_id: Option<Vec<u8>>,
}

impl Crl {
    /// Parses a PEM CRL.
    ///
    /// A CRL without a CRL number or a nextUpdate is refused (RFC 5280
    /// requires both, and OpenVPN needs nextUpdate to know when it is stale).
    /// Up to 256 MiB of text is read: more than three million entries, far
    /// more than the broker ever writes.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidCrl { reason };
        let blocks = pem_blocks_max(pem, "crl", MAX_CRL_PEM).map_err(invalid)?;
        let mut crls = blocks.iter().filter(|b| b.tag() == "X509 CRL");
        match (crls.next(), crls.next()) {
            (Some(b), None) => Crl::from_der(b.contents()),
            (None, _) => Err(invalid("no X509 CRL block found".into())),
            (Some(_), Some(_)) => Err(invalid("more than one crl in the text".into())),
        }
    }

    /// Parses a DER CRL.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidCrl { reason };
        let crl = parse(der)?;
        let number = match crl.crl_number() {
            Some(n) => {
                let bytes = n.to_bytes_be();
                let bytes = Serial::from_be(&bytes);
                if bytes.as_bytes().len() > 8 {
                    return Err(invalid("its crl number does not fit in 64 bits".into()));
                }
                bytes
                    .as_bytes()
                    .iter()
                    .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
            }
            None => return Err(invalid("it has no crl number".into())),
        };
        let next_update = match crl.next_update() {
            Some(t) => t.to_datetime(),
            None => return Err(invalid("it has no nextUpdate".into())),
        };
        let authority_key_id =
            crl.extensions()
                .iter()
                .find_map(|ext| match ext.parsed_extension() {
                    ParsedExtension::AuthorityKeyIdentifier(aki) => {
                        aki.key_identifier.as_ref().map(|id| id.0.to_vec())
                    }
                    _ => None,
                });
        Ok(Crl {
            pem: pem_encode("X509 CRL", der),
            der: der.to_vec(),
            number,
            this_update: crl.last_update().to_datetime(),
            next_update,
            revoked: {
                let mut serials: Vec<Serial> = crl
                    .iter_revoked_certificates()
                    .map(|r| Serial::from_be(r.raw_serial()))
                    .collect();
                serials.sort_unstable();
                serials
            },
            issuer: crl.issuer().to_string(),
            authority_key_id,
        })
    }

    /// The PEM text.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Writes the PEM text to `path` for OpenVPN's `crl-verify`: atomically
    /// (a fresh file renamed over the old one, so a reader never sees half a
    /// CRL), with mode 0644 whatever the umask. A symbolic link at `path` is
    /// refused ([`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput)),
    /// its target left untouched.
    pub fn write_to(&self, path: &std::path::Path) -> Result<()> {
        crate::fsutil::write_public(path, self.pem.as_bytes())
    }

    /// The CRL number.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// When this CRL was issued.
    pub fn this_update(&self) -> OffsetDateTime {
        self.this_update
    }

    /// When the next CRL is due.
    pub fn next_update(&self) -> OffsetDateTime {
        self.next_update
    }

    /// The serials it lists, in ascending order.
    pub fn revoked_serials(&self) -> Vec<Serial> {
        self.revoked.clone()
    }

    /// How many serials it lists.
    pub fn revoked_count(&self) -> usize {
        self.revoked.len()
    }

    /// Whether it lists `serial` (a binary search: the audit asks this of
    /// every certificate).
    pub fn is_revoked(&self, serial: &Serial) -> bool {
        self.revoked.binary_search(serial).is_ok()
    }

    /// The issuer's distinguished name, as text.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Its Authority Key Identifier, which must equal the CA's Subject Key
    /// Identifier for OpenVPN to use it.
    pub fn authority_key_id(&self) -> Option<&[u8]> {
        self.authority_key_id.as_deref()
    }

    /// Checks the signature with the issuer's public key.
    pub(super) fn verify_signature(
        &self,
        key: &SubjectPublicKeyInfo<'_>,
    ) -> std::result::Result<(), String> {
        let crl = parse(&self.der).map_err(|e| e.to_string())?;
        crl.verify_signature(key)
            .map_err(|_| "its signature does not verify with the CA's key".to_string())
    }
}

fn parse(der: &[u8]) -> Result<CertificateRevocationList<'_>> {
    let (rest, crl) = CertificateRevocationList::from_der(der).map_err(|e| Error::InvalidCrl {
        reason: format!("not an X.509 crl: {}", crate::error::one_line(e)),
    })?;
    if !rest.is_empty() {
        return Err(Error::InvalidCrl {
            reason: "trailing bytes after the crl".into(),
        });
    }
    Ok(crl)
}

impl Ca {
    /// How long an entry stays on the CRL after its certificate expired, at
    /// least (days): RFC 5280 §3.3 lets an entry leave only after it
    /// appeared on one regularly scheduled CRL issued after the
    /// certificate's validity ended. The broker keeps it for this many days
    /// or the CRL's own validity (`crl_days`), whichever is longer, so any
    /// schedule that re-signs the CRL before it goes stale lists it at least
    /// once after the expiry; then it leaves, and the CRL stops growing with
    /// every certificate ever revoked or superseded.
    pub const CRL_KEEP_EXPIRED_DAYS: u32 = 30;

    /// Signs a CRL with number `number` listing the entries whose
    /// certificate is unexpired or expired less than
    /// [`CRL_KEEP_EXPIRED_DAYS`](Self::CRL_KEEP_EXPIRED_DAYS) (or
    /// `next_update_days`, if longer) ago.
    ///
    /// ```
    /// use tunnelbroker_core::ClientId;
    /// use tunnelbroker_core::pki::{Ca, CaParams, KeyType, RevocationReason, RevokedCert};
    /// use time::OffsetDateTime;
    /// let ca = Ca::generate(&CaParams::default())?;
    /// let dave = ca.issue_client(&"dave".parse::<ClientId>()?, KeyType::P256, 365)?;
    /// let entry = RevokedCert {
    ///     serial: dave.certificate.serial().clone(),
    ///     revoked_at: OffsetDateTime::now_utc(),
    ///     reason: RevocationReason::KeyCompromise,
    ///     not_after: dave.certificate.info().not_after,
    /// };
    /// let crl = ca.crl(&[entry], 7, 30)?;
    /// assert_eq!(crl.number(), 7);
    /// assert_eq!(crl.revoked_serials(), vec![dave.certificate.serial().clone()]);
    /// ca.check_crl(&crl)?;
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn crl(&self, revoked: &[RevokedCert], number: u64, next_update_days: u32) -> Result<Crl> {
        let now = OffsetDateTime::now_utc();
        let next_update = days_from(now, "crl", next_update_days)?;
        self.crl_at(revoked, number, now, next_update)
    }

    /// Signs a CRL as [`crl`](Self::crl) does, with explicit thisUpdate and
    /// nextUpdate (for a CRL that is stale or nearly so, in tests and
    /// checks); entries whose certificate expired more than
    /// [`CRL_KEEP_EXPIRED_DAYS`](Self::CRL_KEEP_EXPIRED_DAYS) (or the CRL's own
    /// lifetime, if longer) before `this_update` are left out.
    ///
    /// ```
    /// use tunnelbroker_core::pki::{Ca, CaParams};
    /// use time::{Duration, OffsetDateTime};
    /// let ca = Ca::generate(&CaParams::default())?;
    /// let then = OffsetDateTime::now_utc() - Duration::days(40);
    /// let stale = ca.crl_at(&[], 1, then, then + Duration::days(30))?;
    /// assert!(stale.next_update() < OffsetDateTime::now_utc());
    /// assert!(ca.crl_at(&[], 1, then, then).is_err());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn crl_at(
        &self,
        revoked: &[RevokedCert],
        number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Crl> {
        if next_update <= this_update {
            return Err(Error::InvalidValidity {
                what: "crl",
                days: 0,
                reason: "its nextUpdate must come after its thisUpdate",
            });
        }
        let now = this_update;
        let lifetime = u32::try_from((next_update - this_update).whole_days()).unwrap_or(u32::MAX);
        let keep = Self::CRL_KEEP_EXPIRED_DAYS.max(lifetime);
        let expired_long_ago = now - time::Duration::days(i64::from(keep));
        let mut seen = std::collections::HashSet::new();
        let revoked_certs = revoked
            .iter()
            .filter(|r| r.not_after > expired_long_ago && seen.insert(r.serial.clone()))
            .map(|r| RevokedCertParams {
                serial_number: SerialNumber::from_slice(r.serial.as_bytes()),
                revocation_time: r.revoked_at,
                reason_code: Some(reason_code(r.reason)),
                invalidity_date: None,
            })
            .collect();
        let number_bytes = number.to_be_bytes();
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update,
            crl_number: SerialNumber::from_slice(Serial::from_be(&number_bytes).as_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            // The CA certificate's own SKI, never one recomputed from the key:
            // an imported CA may use another method, and OpenVPN ignores a CRL
            // whose AKI does not match (DESIGN.md §6).
            key_identifier_method: match &self.ski {
                Some(ski) => KeyIdMethod::PreSpecified(ski.clone()),
                None => KeyIdMethod::Sha256,
            },
        };
        let crl = params
            .signed_by(&self.signer()?.issuer)
            .map_err(|e| pki_err("signing the crl", e))?;
        Crl::from_der(crl.der())
    }

    /// Checks that `crl` was signed by this CA and that its Authority Key
    /// Identifier equals this CA's Subject Key Identifier (OpenVPN ignores
    /// the CRL otherwise).
    pub fn check_crl(&self, crl: &Crl) -> Result<()> {
        let ca = self.certificate.x509()?;
        crl.verify_signature(ca.public_key())
            .map_err(|reason| Error::CrlNotFromCa { reason })?;
        match (crl.authority_key_id(), self.subject_key_id()) {
            (Some(aki), Some(ski)) if aki != ski => Err(Error::CrlNotFromCa {
                reason: "its authority key identifier differs from the CA's subject key identifier; OpenVPN would ignore it".into(),
            }),
            _ => Ok(()),
        }
    }
}

fn reason_code(r: RevocationReason) -> rcgen::RevocationReason {
    match r {
        RevocationReason::Unspecified => rcgen::RevocationReason::Unspecified,
        RevocationReason::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
        RevocationReason::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
        RevocationReason::Superseded => rcgen::RevocationReason::Superseded,
        RevocationReason::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::CaParams;

    #[test]
    fn crl_keeps_entries_30_days_past_expiry_and_matches_the_ca() {
        let ca = Ca::generate(&CaParams::default()).unwrap();
        let now = OffsetDateTime::now_utc();
        let live = Serial::random().unwrap();
        let just_expired = Serial::random().unwrap();
        let expired = Serial::random().unwrap();
        let entry = |serial: &Serial, not_after_days: i64| RevokedCert {
            serial: serial.clone(),
            revoked_at: now - time::Duration::days(400),
            reason: RevocationReason::KeyCompromise,
            not_after: now + time::Duration::days(not_after_days),
        };
        let entries = [
            entry(&live, 10),
            entry(&just_expired, -29),
            entry(&expired, -31),
        ];
        let crl = ca.crl(&entries, 42, 30).unwrap();
        assert_eq!(crl.number(), 42);
        let mut want = vec![live.clone(), just_expired.clone()];
        want.sort();
        assert_eq!(crl.revoked_serials(), want);
        assert!(crl.is_revoked(&live) && crl.is_revoked(&just_expired));
        assert!(!crl.is_revoked(&expired));
        // A CRL valid longer than 30 days keeps them as long as it is valid.
        let long = ca.crl(&entries, 43, 60).unwrap();
        assert!(long.is_revoked(&expired));
        let crl = ca
            .crl(&[entry(&live, 10), entry(&expired, -31)], 42, 30)
            .unwrap();
        assert_eq!(crl.authority_key_id(), ca.subject_key_id());
        let days = (crl.next_update() - crl.this_update()).whole_days();
        assert_eq!(days, 30);
        ca.check_crl(&crl).unwrap();
        assert_eq!(Crl::from_pem(crl.pem()).unwrap(), crl);

        let other = Ca::generate(&CaParams::default()).unwrap();
        assert!(matches!(
            other.check_crl(&crl).unwrap_err(),
            Error::CrlNotFromCa { .. }
        ));
        assert!(ca.crl(&[], 0, 0).is_err());
        assert!(ca.crl(&[], u64::MAX, u32::MAX).is_err());
        assert_eq!(ca.crl(&[], u64::MAX, 1).unwrap().number(), u64::MAX);
        assert_eq!(ca.crl(&[], 0, 1).unwrap().number(), 0);
    }
}
