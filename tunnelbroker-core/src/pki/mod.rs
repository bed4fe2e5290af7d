//! The broker's certificate authority (DESIGN.md §1 jobs 2 and 3, §4, §6).
//!
//! `rcgen` issues, `x509-parser` reads back; neither crate's types appear in
//! this module's public API.
//!
//! What the CA makes, and what the tests check with `openssl` and `pkilint`:
//!
//! * a self-signed CA: basicConstraints `CA:TRUE, pathlen:0` (critical),
//!   keyUsage keyCertSign + cRLSign (critical), a Subject Key Identifier;
//! * leaves (server, client): basicConstraints `CA:FALSE`, keyUsage fitting
//!   the key (digitalSignature; plus keyEncipherment for RSA), one EKU
//!   (serverAuth or clientAuth), Subject and Authority Key Identifiers, a
//!   random positive 128-bit serial (first bit cleared, first byte non-zero);
//! * CRLs carrying an Authority Key Identifier equal to the CA certificate's
//!   own Subject Key Identifier, for generated and imported CAs alike:
//!   OpenVPN silently ignores a CRL whose AKI does not match (DESIGN.md §6).
//!
//! An imported CA may be an intermediate: [`Ca::from_pem`] then takes it
//! followed by its issuers up to a self-signed root, checks that chain, and
//! [`Ca::chain_pem`] gives it back for `ca.crt` and every `<ca>`. Leaves and
//! CRLs are signed by the intermediate; OpenVPN needs no CRL of the root.
//!
//! No function here panics on any input; every parser bounds its input.
//!
//! ```
//! use tunnelbroker_core::ClientId;
//! use tunnelbroker_core::pki::{Ca, CaParams, KeyType};
//!
//! let ca = Ca::generate(&CaParams::default())?;
//! let alice: ClientId = "alice".parse()?;
//! let issued = ca.issue_client(&alice, KeyType::P256, 365)?;
//! assert_eq!(issued.certificate.info().common_name, "alice");
//! ca.verify(&issued.certificate)?;
//! assert!(issued.certificate.matches_key(&issued.key));
//!
//! let other = Ca::generate(&CaParams::default())?;
//! assert!(other.verify(&issued.certificate).is_err());
//! # Ok::<(), tunnelbroker_core::Error>(())
//! ```

mod ca;
mod cert;
mod crl;
mod csr;
mod key;
mod subject;
mod tls_crypt;
mod tls_crypt_v2;

pub use ca::{Ca, CaParams, MAX_CA_CHAIN};
pub(crate) use cert::pem_carries_key;
pub use cert::{CertInfo, Certificate, Issued, Purpose, Serial};
pub use crl::{Crl, RevocationReason, RevokedCert};
pub use key::{KeyType, PrivateKey};
pub use subject::Subject;
pub use tls_crypt::TlsCryptKey;
pub use tls_crypt_v2::{
    CLIENT_KEY_LABEL, ClientBinding, MAX_METADATA, METADATA_TIMESTAMP, METADATA_USER,
    SERVER_KEY_LABEL, TlsCryptV2ClientKey, TlsCryptV2ServerKey,
};

use time::{Duration, OffsetDateTime};

use crate::error::{Error, Result};

/// The longest validity the CA hands out (100 years), in days.
const MAX_DAYS: u32 = 36_525;

/// How far back `notBefore` is set, so that clients with a slightly slow
/// clock accept a certificate made a moment ago.
const BACKDATE: Duration = Duration::minutes(5);

/// Largest PEM input the parsers of certificates, keys and requests accept.
const MAX_PEM: usize = 1 << 20;

/// Largest CRL (PEM) the broker reads (see [`crate::fsutil::MAX_CRL_PEM`]).
pub(crate) use crate::fsutil::MAX_CRL_PEM;

/// `notBefore` and `notAfter` for a certificate valid `days` days from now.
fn validity_window(what: &'static str, days: u32) -> Result<(OffsetDateTime, OffsetDateTime)> {
    let now = OffsetDateTime::now_utc();
    let end = days_from(now, what, days)?;
    Ok((now - BACKDATE, end))
}

/// The one rule for validity periods (certificates, CRLs, and the settings
/// that ask for them): 1 day to 100 years.
pub(crate) fn check_days(what: &'static str, days: u32) -> Result<()> {
    let bad = |reason| Error::InvalidValidity { what, days, reason };
    if days == 0 {
        return Err(bad("it must be at least 1 day"));
    }
    if days > MAX_DAYS {
        return Err(bad("it must be at most 36525 days (100 years)"));
    }
    Ok(())
}

/// `start` plus `days` days, refusing zero and absurd spans.
fn days_from(start: OffsetDateTime, what: &'static str, days: u32) -> Result<OffsetDateTime> {
    check_days(what, days)?;
    let bad = |reason| Error::InvalidValidity { what, days, reason };
    start
        .checked_add(Duration::days(i64::from(days)))
        .ok_or_else(|| bad("the end date is out of range"))
}

/// A time as RFC 3339 text, for messages.
fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// Fills `buf` from the OS random number generator.
fn random_bytes(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::Pki {
        reason: format!("the OS random number generator failed: {e}"),
    })
}

/// Maps a failure inside `rcgen` or `aws-lc-rs` to our error.
fn pki_err(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Pki {
        reason: format!("{context}: {}", crate::error::one_line(e)),
    }
}

/// Decodes every PEM block of `text`, refusing oversized input.
fn pem_blocks(text: &str, what: &str) -> std::result::Result<Vec<pem::Pem>, String> {
    pem_blocks_max(text, what, MAX_PEM)
}

/// [`pem_blocks`] of a text of at most `max` bytes.
pub(super) fn pem_blocks_max(
    text: &str,
    what: &str,
    max: usize,
) -> std::result::Result<Vec<pem::Pem>, String> {
    if text.len() > max {
        return Err(format!("the {what} text is longer than {max} bytes"));
    }
    let blocks =
        pem::parse_many(text).map_err(|e| format!("not PEM: {}", crate::error::one_line(e)))?;
    if blocks.is_empty() {
        return Err(format!("no PEM block found (expected a {what})"));
    }
    Ok(blocks)
}

/// PEM text with LF line endings.
fn pem_encode(tag: &str, der: &[u8]) -> String {
    let block = pem::Pem::new(tag, der.to_vec());
    pem::encode_config(
        &block,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}
