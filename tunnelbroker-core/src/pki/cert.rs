//! Certificates read back with `x509-parser`, and serial numbers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::{PrivateKey, pem_blocks, pem_encode, random_bytes};
use crate::error::{Error, Result, shown};

/// A certificate serial number (at least 64 random bits), shown as upper-case hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Serial(Vec<u8>);

impl Serial {
    /// Longest serial accepted when parsing text, in bytes. RFC 5280 allows
    /// 20; some old CAs wrote more, so reading back is a little lenient.
    pub const MAX_LEN: usize = 32;

    /// The big-endian bytes, without leading zeros.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A fresh random serial: 16 bytes from the OS random number generator,
    /// the top bit cleared (so it is positive in 16 DER bytes) and the first
    /// byte non-zero (so it always has 121 or more random bits and 16 bytes).
    pub fn random() -> Result<Serial> {
        let mut bytes = [0u8; 16];
        loop {
            random_bytes(&mut bytes)?;
            bytes[0] &= 0x7f;
            if bytes[0] != 0 {
                return Ok(Serial(bytes.to_vec()));
            }
        }
    }

    /// From big-endian bytes as found in a certificate or CRL (leading zeros
    /// are dropped; zero is kept as one zero byte).
    pub(super) fn from_be(bytes: &[u8]) -> Serial {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        let trimmed = &bytes[start..];
        if trimmed.is_empty() {
            Serial(vec![0])
        } else {
            Serial(trimmed.to_vec())
        }
    }
}

impl fmt::Display for Serial {
    /// Upper-case hex, two digits per byte, written at once (issue 19: a
    /// rendering formats 10,000 serials; `{:02X}` per byte cost a quarter
    /// of it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut buf = [0u8; 2 * Serial::MAX_LEN];
        // In pieces: a serial read from a certificate may be longer.
        for chunk in self.0.chunks(Serial::MAX_LEN) {
            for (i, &b) in chunk.iter().enumerate() {
                buf[2 * i] = HEX[usize::from(b >> 4)];
                buf[2 * i + 1] = HEX[usize::from(b & 0xf)];
            }
            let text = std::str::from_utf8(&buf[..2 * chunk.len()]).map_err(|_| fmt::Error)?;
            f.write_str(text)?;
        }
        Ok(())
    }
}

impl FromStr for Serial {
    type Err = Error;

    /// Parses hex, upper or lower case, optionally with `:` between bytes
    /// (as `openssl` prints serials).
    ///
    /// ```
    /// use tunnelbroker_core::pki::Serial;
    /// let s: Serial = "0a:ff:01".parse()?;
    /// assert_eq!(s.to_string(), "0AFF01");
    /// assert_eq!(s.as_bytes(), &[0x0a, 0xff, 0x01]);
    /// assert!("xyz".parse::<Serial>().is_err());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason| Error::InvalidSerial {
            input: shown(s),
            reason,
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(bad("it is empty"));
        }
        if t.len() > 3 * Serial::MAX_LEN {
            return Err(bad("it is longer than 32 bytes"));
        }
        let digits: String = t.chars().filter(|c| *c != ':').collect();
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad(
                "expected hexadecimal digits, optionally separated by ':'",
            ));
        }
        let padded = if digits.len() % 2 == 1 {
            format!("0{digits}")
        } else {
            digits
        };
        // Every digit is a hex digit (checked above), in pairs.
        let nibble = |c: u8| char::from(c).to_digit(16).map_or(0, |d| d as u8);
        let bytes: Vec<u8> = padded
            .as_bytes()
            .chunks(2)
            .map(|pair| (nibble(pair[0]) << 4) | nibble(pair[1]))
            .collect();
        let serial = Serial::from_be(&bytes);
        if serial.0.len() > Serial::MAX_LEN {
            return Err(bad("it is longer than 32 bytes"));
        }
        Ok(serial)
    }
}

impl TryFrom<String> for Serial {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Serial> for String {
    fn from(s: Serial) -> String {
        s.to_string()
    }
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// A CA certificate.
    Ca,
    /// A TLS server (EKU serverAuth).
    Server,
    /// A TLS client (EKU clientAuth).
    Client,
    /// Anything else.
    Other,
}

/// What a certificate says, read back with `x509-parser`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// Subject common name.
    pub common_name: String,
    /// Serial number.
    pub serial: Serial,
    /// Issuer distinguished name, as text.
    pub issuer: String,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// What it is for.
    pub purpose: Purpose,
}

/// A parsed certificate with its PEM text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pem: String,
    info: CertInfo,
    der: Vec<u8>,
}

impl Certificate {
    /// Parses one PEM certificate.
    ///
    /// Text around the PEM block (such as `openssl x509 -text` output) is
    /// ignored; a file with more than one certificate is refused.
    ///
    /// ```
    /// use tunnelbroker_core::pki::{Ca, CaParams, Certificate, Purpose};
    /// let ca = Ca::generate(&CaParams::default())?;
    /// let cert = Certificate::from_pem(ca.certificate().pem())?;
    /// assert_eq!(cert.info().purpose, Purpose::Ca);
    /// assert!(Certificate::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn from_pem(pem: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidCertificate { reason };
        let blocks = pem_blocks(pem, "certificate").map_err(invalid)?;
        let mut certs = blocks.iter().filter(|b| b.tag() == "CERTIFICATE");
        match (certs.next(), certs.next()) {
            (Some(b), None) => Certificate::from_der(b.contents()),
            (None, _) => Err(invalid("no CERTIFICATE block found".into())),
            (Some(_), Some(_)) => Err(invalid(
                "more than one certificate in the text; give one".into(),
            )),
        }
    }

    /// Parses every certificate of a PEM text, in order (a CA file holding
    /// the issuing CA followed by its issuers). Text around the PEM blocks
    /// and blocks of other types are ignored; a damaged block is refused.
    ///
    /// ```
    /// use tunnelbroker_core::pki::{Ca, CaParams, Certificate};
    /// let a = Ca::generate(&CaParams::default())?;
    /// let b = Ca::generate(&CaParams::default())?;
    /// let text = format!("{}junk\n{}", a.certificate().pem(), b.certificate().pem());
    /// let certs = Certificate::all_from_pem(&text)?;
    /// assert_eq!(certs, [a.certificate().clone(), b.certificate().clone()]);
    /// assert!(Certificate::all_from_pem("junk").is_err());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn all_from_pem(pem: &str) -> Result<Vec<Self>> {
        let invalid = |reason: String| Error::InvalidCertificate { reason };
        let blocks = pem_blocks(pem, "certificate").map_err(invalid)?;
        let certs = blocks
            .iter()
            .filter(|b| b.tag() == "CERTIFICATE")
            .map(|b| Certificate::from_der(b.contents()))
            .collect::<Result<Vec<_>>>()?;
        if certs.is_empty() {
            return Err(invalid("no CERTIFICATE block found".into()));
        }
        Ok(certs)
    }

    /// Parses one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let x509 = parse_x509(der)?;
        let info = cert_info(&x509);
        Ok(Certificate {
            pem: pem_encode("CERTIFICATE", der),
            info,
            der: der.to_vec(),
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

    /// What it says.
    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    /// Its serial.
    pub fn serial(&self) -> &Serial {
        &self.info.serial
    }

    /// Whether `key` is the private key of this certificate (their public
    /// keys are equal). `doctor` uses this to catch swapped files.
    ///
    /// ```
    /// use tunnelbroker_core::ClientId;
    /// use tunnelbroker_core::pki::{Ca, CaParams, KeyType, PrivateKey};
    /// let ca = Ca::generate(&CaParams::default())?;
    /// let issued = ca.issue_client(&"bob".parse::<ClientId>()?, KeyType::P256, 30)?;
    /// assert!(issued.certificate.matches_key(&issued.key));
    /// assert!(!issued.certificate.matches_key(&PrivateKey::generate(KeyType::P256)?));
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn matches_key(&self, key: &PrivateKey) -> bool {
        let Ok(raw) = key.public_key_raw() else {
            return false;
        };
        match parse_x509(&self.der) {
            Ok(x509) => x509.public_key().subject_public_key.data.as_ref() == raw.as_slice(),
            Err(_) => false,
        }
    }

    /// Checks that `issuer` signed this certificate (issuer name and
    /// signature; validity is not looked at). Unlike [`Ca::verify`] this needs
    /// only the CA certificate, not its key: `doctor` uses it on a client's
    /// bundle.
    ///
    /// ```
    /// use tunnelbroker_core::ClientId;
    /// use tunnelbroker_core::pki::{Ca, CaParams, KeyType};
    /// let ca = Ca::generate(&CaParams::default())?;
    /// let other = Ca::generate(&CaParams::default())?;
    /// let issued = ca.issue_client(&"erin".parse::<ClientId>()?, KeyType::P256, 30)?;
    /// issued.certificate.check_issued_by(ca.certificate())?;
    /// assert!(issued.certificate.check_issued_by(other.certificate()).is_err());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    ///
    /// [`Ca::verify`]: crate::pki::Ca::verify
    pub fn check_issued_by(&self, issuer: &Certificate) -> Result<()> {
        let ca = issuer.x509()?;
        let x509 = self.x509()?;
        let not_ours = |reason: String| Error::NotIssuedByCa {
            common_name: shown(&self.info.common_name),
            reason,
        };
        if x509.issuer().as_raw() != ca.subject().as_raw()
            && x509.issuer().to_string() != ca.subject().to_string()
        {
            return Err(not_ours(format!(
                "its issuer is {}, the CA is {}",
                shown(&x509.issuer().to_string()),
                shown(&ca.subject().to_string())
            )));
        }
        x509.verify_signature(Some(ca.public_key()))
            .map_err(|_| not_ours("its signature does not verify with the CA's key".into()))
    }

    /// The certificate's SubjectPublicKeyInfo (DER): its public key with
    /// the key's algorithm.
    pub(crate) fn public_key_info(&self) -> Result<Vec<u8>> {
        Ok(self.x509()?.public_key().raw.to_vec())
    }

    /// The parsed form, for checks inside the module.
    pub(super) fn x509(&self) -> Result<X509Certificate<'_>> {
        parse_x509(&self.der)
    }
}

/// Whether the PEM certificate `pem` carries the SubjectPublicKeyInfo
/// `spki` (DER). Cheaper than [`Certificate::from_pem`]: it is called for
/// every certificate of the database when a request is signed. A text that
/// does not parse carries no key.
pub(crate) fn pem_carries_key(pem: &str, spki: &[u8]) -> bool {
    let Ok(block) = pem::parse(pem) else {
        return false;
    };
    match X509Certificate::from_der(block.contents()) {
        Ok((_, x509)) => x509.public_key().raw == spki,
        Err(_) => false,
    }
}

/// Parses DER into an `x509-parser` certificate, refusing trailing bytes.
pub(super) fn parse_x509(der: &[u8]) -> Result<X509Certificate<'_>> {
    let (rest, x509) = X509Certificate::from_der(der).map_err(|e| Error::InvalidCertificate {
        reason: format!("not an X.509 certificate: {}", crate::error::one_line(e)),
    })?;
    if !rest.is_empty() {
        return Err(Error::InvalidCertificate {
            reason: "trailing bytes after the certificate".into(),
        });
    }
    Ok(x509)
}

/// The first common name of a name, or an empty string.
pub(super) fn common_name_of(name: &x509_parser::x509::X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .map(|cn| match cn.as_str() {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(cn.as_slice()).into_owned(),
        })
        .unwrap_or_default()
}

fn cert_info(x509: &X509Certificate<'_>) -> CertInfo {
    let is_ca = matches!(x509.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    let purpose = if is_ca {
        Purpose::Ca
    } else {
        match x509.extended_key_usage() {
            Ok(Some(eku)) => match (eku.value.server_auth, eku.value.client_auth) {
                (true, false) => Purpose::Server,
                (false, true) => Purpose::Client,
                _ => Purpose::Other,
            },
            _ => Purpose::Other,
        }
    };
    CertInfo {
        common_name: common_name_of(x509.subject()),
        serial: Serial::from_be(x509.raw_serial()),
        issuer: x509.issuer().to_string(),
        not_before: x509.validity().not_before.to_datetime(),
        not_after: x509.validity().not_after.to_datetime(),
        purpose,
    }
}

impl CertInfo {
    /// Whether the certificate is within its validity at `now`.
    pub fn valid_at(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// A freshly issued certificate and its key.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub certificate: Certificate,
    /// Its private key.
    pub key: PrivateKey,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn random_serials_are_positive_16_bytes_and_unique() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let s = Serial::random().unwrap();
            assert_eq!(s.as_bytes().len(), 16);
            assert!(s.as_bytes()[0] != 0 && s.as_bytes()[0] < 0x80);
            assert!(seen.insert(s));
        }
    }

    #[test]
    fn serial_text_is_two_upper_case_hex_digits_per_byte() {
        let slow = |b: &[u8]| b.iter().map(|b| format!("{b:02X}")).collect::<String>();
        // Every byte value, and lengths past MAX_LEN (a serial read from a
        // certificate is not cut).
        let all: Vec<u8> = (1..=255).collect();
        for len in [1, 2, 16, 20, Serial::MAX_LEN, Serial::MAX_LEN + 1, 255] {
            let s = Serial::from_be(&all[..len]);
            assert_eq!(s.to_string(), slow(&all[..len]));
        }
        assert_eq!(Serial::from_be(&[0, 0]).to_string(), "00");
        assert_eq!(Serial::from_be(&[0x0a, 0xff, 0x01]).to_string(), "0AFF01");
    }

    #[test]
    fn serial_text_round_trips() {
        for _ in 0..100 {
            let s = Serial::random().unwrap();
            assert_eq!(s.to_string().parse::<Serial>().unwrap(), s);
            let lower = s.to_string().to_lowercase();
            assert_eq!(lower.parse::<Serial>().unwrap(), s);
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(serde_json::from_str::<Serial>(&json).unwrap(), s);
        }
        assert_eq!("000102".parse::<Serial>().unwrap().as_bytes(), &[1, 2]);
        assert_eq!("0".parse::<Serial>().unwrap().as_bytes(), &[0]);
        assert_eq!("abc".parse::<Serial>().unwrap().as_bytes(), &[0x0a, 0xbc]);
    }

    #[test]
    fn hostile_serial_text_is_refused() {
        let long = "f".repeat(200);
        for input in [
            "",
            " ",
            ":",
            "0x12",
            "12 34",
            "g1",
            "../../etc",
            "1;rm -rf /",
            "é1",
            long.as_str(),
        ] {
            let err = input.parse::<Serial>().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{input}: {err}");
        }
    }

    #[test]
    fn hostile_certificate_text_is_refused() {
        for input in [
            "",
            "hello",
            "-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE-----\nAAAAAAAAAAAA\n-----END CERTIFICATE-----\n",
        ] {
            assert!(Certificate::from_pem(input).is_err(), "{input}");
        }
        assert!(Certificate::from_der(&[0x30, 0x82, 0xff, 0xff]).is_err());
        assert!(Certificate::from_der(&[]).is_err());
    }
}
