//! The broker's certificate authority (DESIGN.md §1 jobs 2 and 3, §4, §6).
//!
//! `rcgen` issues, `x509-parser` reads back; neither crate's types appear in
//! this module's public API.
//!
//! API CONTRACT (pinned; the broker codes against these signatures).
//! Bodies marked `todo!` are to be implemented by the PKI work (issue 3).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::client_id::ClientId;
use crate::error::{Error, Result};

/// Key algorithms the CA offers. P-256 is the default; RSA only for old clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// EC P-256 with SHA-256 (default).
    #[default]
    P256,
    /// EC P-384 with SHA-384.
    P384,
    /// Ed25519.
    Ed25519,
    /// RSA 2048 with SHA-256, for old clients.
    Rsa2048,
    /// RSA 3072 with SHA-256.
    Rsa3072,
    /// RSA 4096 with SHA-256.
    Rsa4096,
}

impl KeyType {
    /// The words `FromStr` accepts, comma separated.
    pub const CHOICES: &'static str = "p256, p384, ed25519, rsa2048, rsa3072, rsa4096";
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::P256 => "p256",
            KeyType::P384 => "p384",
            KeyType::Ed25519 => "ed25519",
            KeyType::Rsa2048 => "rsa2048",
            KeyType::Rsa3072 => "rsa3072",
            KeyType::Rsa4096 => "rsa4096",
        })
    }
}

impl FromStr for KeyType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "p256" | "p-256" | "ec" | "ecdsa" => KeyType::P256,
            "p384" | "p-384" => KeyType::P384,
            "ed25519" => KeyType::Ed25519,
            "rsa2048" => KeyType::Rsa2048,
            "rsa3072" => KeyType::Rsa3072,
            "rsa4096" => KeyType::Rsa4096,
            _ => {
                return Err(Error::InvalidChoice {
                    what: "key type",
                    input: crate::error::shown(s),
                    expected: KeyType::CHOICES,
                });
            }
        })
    }
}

/// A private key. Its `Debug` never shows key material.
#[derive(Clone)]
pub struct PrivateKey {
    pem: String,
    key_type: KeyType,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, [redacted])", self.key_type)
    }
}

impl PrivateKey {
    /// Generates a fresh key.
    pub fn generate(key_type: KeyType) -> Result<Self> {
        let _ = key_type;
        todo!()
    }
    /// Reads a PKCS#8 (or SEC1/PKCS#1) PEM key.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let _ = pem;
        todo!()
    }
    /// The key as PKCS#8 PEM. This is secret material.
    pub fn to_pem(&self) -> &str {
        &self.pem
    }
    /// The algorithm.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }
    /// Writes the key atomically with mode 0600.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::fsutil::write_secret(path, self.pem.as_bytes())
    }
}

/// Distinguished-name fields of the CA (and defaults for other certificates).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// Two-letter country code, if any.
    pub country: Option<String>,
    /// Organisation.
    pub organization: Option<String>,
    /// Organisational unit.
    pub organizational_unit: Option<String>,
    /// Common name.
    pub common_name: String,
}

impl Default for Subject {
    fn default() -> Self {
        Subject {
            country: None,
            organization: Some("tunnelbroker".into()),
            organizational_unit: None,
            common_name: "tunnelbroker CA".into(),
        }
    }
}

/// How to make a CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaParams {
    /// Key algorithm.
    pub key_type: KeyType,
    /// Subject.
    pub subject: Subject,
    /// Validity in days (default 3650).
    pub validity_days: u32,
}

impl Default for CaParams {
    fn default() -> Self {
        CaParams {
            key_type: KeyType::P256,
            subject: Subject::default(),
            validity_days: 3650,
        }
    }
}

/// A certificate serial number (at least 64 random bits), shown as upper-case hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Serial(Vec<u8>);

impl Serial {
    /// The big-endian bytes, without leading zeros.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl FromStr for Serial {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let _ = s;
        todo!()
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
}

impl Certificate {
    /// Parses one PEM certificate.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let _ = pem;
        todo!()
    }
    /// The PEM text.
    pub fn pem(&self) -> &str {
        &self.pem
    }
    /// What it says.
    pub fn info(&self) -> &CertInfo {
        &self.info
    }
    /// Its serial.
    pub fn serial(&self) -> &Serial {
        &self.info.serial
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
    /// When the certificate expires anyway (expired entries are left out of CRLs).
    pub not_after: OffsetDateTime,
}

/// A signed certificate revocation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crl {
    pem: String,
}

impl Crl {
    /// Parses a PEM CRL.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let _ = pem;
        todo!()
    }
    /// The PEM text.
    pub fn pem(&self) -> &str {
        &self.pem
    }
    /// The CRL number.
    pub fn number(&self) -> u64 {
        todo!()
    }
    /// When the next CRL is due.
    pub fn next_update(&self) -> OffsetDateTime {
        todo!()
    }
    /// The serials it lists.
    pub fn revoked_serials(&self) -> Vec<Serial> {
        todo!()
    }
}

/// Validity and CRL settings for issuing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    /// Server certificates, days (default 730).
    pub server_days: u32,
    /// Client certificates, days (default 365).
    pub client_days: u32,
    /// CRL nextUpdate, days from now (default 30).
    pub crl_days: u32,
}

impl Default for Validity {
    fn default() -> Self {
        Validity {
            server_days: 730,
            client_days: 365,
            crl_days: 30,
        }
    }
}

/// The broker's certificate authority: its certificate and key.
#[derive(Debug, Clone)]
pub struct Ca {
    certificate: Certificate,
    key: PrivateKey,
}

impl Ca {
    /// Makes a new self-signed CA.
    pub fn generate(params: &CaParams) -> Result<Ca> {
        let _ = params;
        todo!()
    }
    /// Loads an existing CA; refuses a non-CA certificate, a key that does not
    /// match it, or an expired CA.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca> {
        let _ = (cert_pem, key_pem);
        todo!()
    }
    /// The CA certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }
    /// The CA key (secret).
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }
    /// Issues a server certificate (EKU serverAuth).
    pub fn issue_server(&self, common_name: &str, key_type: KeyType, days: u32) -> Result<Issued> {
        let _ = (common_name, key_type, days);
        todo!()
    }
    /// Issues a client certificate (EKU clientAuth, CN = client ID) with a new key.
    pub fn issue_client(&self, id: &ClientId, key_type: KeyType, days: u32) -> Result<Issued> {
        let _ = (id, key_type, days);
        todo!()
    }
    /// Issues a client certificate (CN = `id`) for a PEM CSR made by the
    /// client; refuses a CSR whose signature does not verify.
    pub fn sign_client_csr(&self, id: &ClientId, csr_pem: &str, days: u32) -> Result<Certificate> {
        let _ = (id, csr_pem, days);
        todo!()
    }
    /// Checks that `cert` was signed by this CA and is within validity now.
    pub fn verify(&self, cert: &Certificate) -> Result<()> {
        let _ = cert;
        todo!()
    }
    /// Signs a CRL with number `number` listing the unexpired entries.
    pub fn crl(&self, revoked: &[RevokedCert], number: u64, next_update_days: u32) -> Result<Crl> {
        let _ = (revoked, number, next_update_days);
        todo!()
    }
}

/// An OpenVPN static key for `tls-crypt` (2048 random bits). `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsCryptKey {
    text: String,
}

impl fmt::Debug for TlsCryptKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsCryptKey([redacted])")
    }
}

impl TlsCryptKey {
    /// 2048 bits from the OS RNG.
    pub fn generate() -> Result<Self> {
        todo!()
    }
    /// Parses the `-----BEGIN OpenVPN Static key V1-----` form.
    pub fn parse(text: &str) -> Result<Self> {
        let _ = text;
        todo!()
    }
    /// The text form (secret).
    pub fn to_text(&self) -> &str {
        &self.text
    }
}
