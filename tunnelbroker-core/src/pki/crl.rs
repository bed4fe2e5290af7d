//! Revocation reasons, entries and signed CRLs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::{MAX_CRL_PEM, Serial, pem_blocks_max, pem_encode};
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
