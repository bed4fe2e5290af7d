//! Key algorithms and private keys.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use aws_lc_rs::encoding::AsDer;
use rcgen::{
    KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256,
    PublicKeyData, RsaKeySize,
};
use serde::{Deserialize, Serialize};

use super::{pem_blocks, pem_encode, pki_err};
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

impl KeyType {
    /// Whether this is one of the RSA sizes (they need keyEncipherment).
    pub fn is_rsa(self) -> bool {
        matches!(self, KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096)
    }

    /// A fresh `rcgen` key pair of this type.
    pub(super) fn generate_pair(self) -> Result<KeyPair> {
        let rsa = |size| KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, size);
        match self {
            KeyType::P256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
            KeyType::P384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
            KeyType::Ed25519 => KeyPair::generate_for(&PKCS_ED25519),
            KeyType::Rsa2048 => rsa(RsaKeySize::_2048),
            KeyType::Rsa3072 => rsa(RsaKeySize::_3072),
            KeyType::Rsa4096 => rsa(RsaKeySize::_4096),
        }
        .map_err(|e| pki_err(&format!("generating a {self} key"), e))
    }

    /// The RSA type for a modulus of `bits` bits.
    pub(super) fn rsa_of_bits(bits: usize) -> Result<KeyType> {
        match bits {
            2048 => Ok(KeyType::Rsa2048),
            3072 => Ok(KeyType::Rsa3072),
            4096 => Ok(KeyType::Rsa4096),
            _ => Err(Error::UnsupportedKey {
                reason: format!("an RSA key of {bits} bits"),
            }),
        }
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
    ///
    /// ```
    /// use tunnelbroker_core::pki::{KeyType, PrivateKey};
    /// let key = PrivateKey::generate(KeyType::Ed25519)?;
    /// assert_eq!(key.key_type(), KeyType::Ed25519);
    /// assert!(key.to_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
    /// assert_eq!(format!("{key:?}"), "PrivateKey(ed25519, [redacted])");
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn generate(key_type: KeyType) -> Result<Self> {
        let pair = key_type.generate_pair()?;
        Self::from_pair(&pair, key_type)
    }

    /// Wraps an `rcgen` key pair, as PKCS#8 v1.
    ///
    /// aws-lc writes Ed25519 keys as PKCS#8 v2 (with the public key), which
    /// OpenSSL 3.0, and so OpenVPN, cannot read: they are rewritten as v1.
    pub(super) fn from_pair(pair: &KeyPair, key_type: KeyType) -> Result<Self> {
        let der = pair.serialized_der();
        let pem = if key_type == KeyType::Ed25519 {
            let ed = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map_err(|e| pki_err("reading an Ed25519 key", e))?;
            let v1 = ed
                .to_pkcs8v1()
                .map_err(|e| pki_err("encoding an Ed25519 key", e))?;
            pem_encode("PRIVATE KEY", v1.as_ref())
        } else {
            pem_encode("PRIVATE KEY", der)
        };
        Ok(PrivateKey { pem, key_type })
    }

    /// Reads a PKCS#8 (or SEC1/PKCS#1) PEM key.
    ///
    /// The key is kept (and written) as PKCS#8. Encrypted keys, other curves
    /// and RSA keys other than 2048, 3072 or 4096 bits are refused.
    ///
    /// ```
    /// use tunnelbroker_core::ErrorKind;
    /// use tunnelbroker_core::pki::{KeyType, PrivateKey};
    /// let key = PrivateKey::generate(KeyType::P256)?;
    /// let again = PrivateKey::from_pem(key.to_pem())?;
    /// assert_eq!(again.key_type(), KeyType::P256);
    /// let err = PrivateKey::from_pem("not a key").unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn from_pem(pem: &str) -> Result<Self> {
        let (pair, key_type) = load_pair(pem)?;
        Self::from_pair(&pair, key_type)
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

    /// The public key as `SubjectPublicKeyInfo` PEM (safe to show).
    pub fn public_key_pem(&self) -> Result<String> {
        Ok(self.pair()?.public_key_pem())
    }

    /// The raw public key (the bit string inside `SubjectPublicKeyInfo`).
    pub(super) fn public_key_raw(&self) -> Result<Vec<u8>> {
        Ok(self.pair()?.der_bytes().to_vec())
    }

    /// The `rcgen` key pair, for signing.
    pub(super) fn pair(&self) -> Result<KeyPair> {
        load_pair(&self.pem).map(|(pair, _)| pair)
    }
}

/// Reads a private key of any of the three PEM forms as an `rcgen` key pair.
fn load_pair(text: &str) -> Result<(KeyPair, KeyType)> {
    let invalid = |reason: String| Error::InvalidKey { reason };
    let blocks = pem_blocks(text, "private key").map_err(invalid)?;
    let mut keys = blocks.iter().filter(|b| b.tag().ends_with("PRIVATE KEY"));
    let block = match (keys.next(), keys.next()) {
        (Some(b), None) => b,
        (None, _) => {
            let tags: Vec<_> = blocks.iter().map(|b| b.tag().to_owned()).collect();
            return Err(invalid(format!(
                "no PRIVATE KEY block (found {})",
                crate::error::shown(&tags.join(", "))
            )));
        }
        (Some(_), Some(_)) => return Err(invalid("more than one private key in the file".into())),
    };
    let pkcs8: Vec<u8> = match block.tag() {
        "PRIVATE KEY" => block.contents().to_vec(),
        "EC PRIVATE KEY" => sec1_to_pkcs8(block.contents())?,
        "RSA PRIVATE KEY" => {
            let pair = aws_lc_rs::rsa::KeyPair::from_der(block.contents())
                .map_err(|e| invalid(format!("not an RSA key: {}", crate::error::one_line(e))))?;
            let doc: aws_lc_rs::encoding::Pkcs8V1Der<'static> = pair
                .as_der()
                .map_err(|e| pki_err("encoding an RSA key", e))?;
            doc.as_ref().to_vec()
        }
        "ENCRYPTED PRIVATE KEY" => {
            return Err(invalid(
                "the key is encrypted; decrypt it first (openssl pkey -in key.pem -out plain.pem)"
                    .into(),
            ));
        }
        other => {
            return Err(invalid(format!(
                "unknown key format {}",
                crate::error::shown(other)
            )));
        }
    };
    let pair = KeyPair::try_from(pkcs8.as_slice()).map_err(|_| Error::UnsupportedKey {
        reason: "a key that is not P-256, P-384, Ed25519 or RSA, or is malformed".into(),
    })?;
    let alg = pair.algorithm();
    let key_type = if alg == &PKCS_ECDSA_P256_SHA256 {
        KeyType::P256
    } else if alg == &PKCS_ECDSA_P384_SHA384 {
        KeyType::P384
    } else if alg == &PKCS_ED25519 {
        KeyType::Ed25519
    } else if alg == &PKCS_RSA_SHA256 {
        let rsa = aws_lc_rs::rsa::KeyPair::from_pkcs8(&pkcs8)
            .map_err(|e| invalid(format!("not an RSA key: {}", crate::error::one_line(e))))?;
        KeyType::rsa_of_bits(rsa.public_modulus_len() * 8)?
    } else {
        return Err(Error::UnsupportedKey {
            reason: format!("a key for {alg:?}"),
        });
    };
    Ok((pair, key_type))
}

/// Converts a SEC1 `EC PRIVATE KEY` (P-256 or P-384) to PKCS#8.
fn sec1_to_pkcs8(der: &[u8]) -> Result<Vec<u8>> {
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair,
    };
    for alg in [
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        &ECDSA_P384_SHA384_ASN1_SIGNING,
    ] {
        if let Ok(pair) = EcdsaKeyPair::from_private_key_der(alg, der) {
            let doc = pair
                .to_pkcs8v1()
                .map_err(|e| pki_err("encoding an EC key", e))?;
            return Ok(doc.as_ref().to_vec());
        }
    }
    Err(Error::UnsupportedKey {
        reason: "an EC key that is not on P-256 or P-384, or is malformed".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn every_type_generates_and_round_trips() {
        for kt in [
            KeyType::P256,
            KeyType::P384,
            KeyType::Ed25519,
            KeyType::Rsa2048,
        ] {
            let key = PrivateKey::generate(kt).unwrap();
            assert_eq!(key.key_type(), kt);
            let again = PrivateKey::from_pem(key.to_pem()).unwrap();
            assert_eq!(again.key_type(), kt);
            assert_eq!(again.to_pem(), key.to_pem());
            assert_eq!(kt.to_string().parse::<KeyType>().unwrap(), kt);
        }
    }

    #[test]
    fn ed25519_keys_are_pkcs8_v1_for_openssl_3_0() {
        let key = PrivateKey::generate(KeyType::Ed25519).unwrap();
        let der = pem::parse(key.to_pem()).unwrap().into_contents();
        // SEQUENCE(46) { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING(34) }
        assert_eq!(der.len(), 48);
        assert_eq!(
            &der[..16],
            b"\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20"
        );
    }

    #[test]
    fn debug_is_redacted() {
        let key = PrivateKey::generate(KeyType::P256).unwrap();
        let shown = format!("{key:?} {key:#?}");
        assert!(shown.contains("[redacted]"), "{shown}");
        let body: String = key
            .to_pem()
            .lines()
            .nth(1)
            .unwrap()
            .chars()
            .take(12)
            .collect();
        assert!(!shown.contains(&body), "{shown}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
    }

    #[test]
    fn key_files_are_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.key");
        let key = PrivateKey::generate(KeyType::P256).unwrap();
        key.write(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = PrivateKey::from_pem(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back.to_pem(), key.to_pem());
    }

    #[test]
    fn hostile_key_text_is_refused() {
        let long = "A".repeat(2 << 20);
        for input in [
            "",
            "garbage",
            "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "-----BEGIN PRIVATE KEY-----\n$(rm -rf /)\n-----END PRIVATE KEY-----\n",
            "\u{1F600}\u{0}",
            long.as_str(),
        ] {
            let err = PrivateKey::from_pem(input).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{err}");
            assert!(!err.to_string().contains('\n'), "{err}");
        }
    }

    #[test]
    fn two_keys_in_one_file_are_refused() {
        let a = PrivateKey::generate(KeyType::P256).unwrap();
        let b = PrivateKey::generate(KeyType::P256).unwrap();
        let both = format!("{}{}", a.to_pem(), b.to_pem());
        assert!(PrivateKey::from_pem(&both).is_err());
    }
}
