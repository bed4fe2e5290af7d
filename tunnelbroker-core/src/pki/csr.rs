//! Signing a client's own certificate request (PKCS#10).

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use super::ca::Leaf;
use super::{Ca, Certificate, KeyType, pem_blocks, pki_err};
use crate::client_id::ClientId;
use crate::error::{Error, Result};

impl Ca {
    /// Issues a client certificate (CN = `id`) for a PEM CSR made by the
    /// client; refuses a CSR whose signature does not verify, and one that
    /// carries this CA's own public key.
    ///
    /// Only the request's public key is used: its subject and requested
    /// extensions are ignored, the CN is forced to `id` and the EKU to
    /// clientAuth.
    pub fn sign_client_csr(&self, id: &ClientId, csr_pem: &str, days: u32) -> Result<Certificate> {
        let invalid = |reason: String| Error::InvalidCsr { reason };
        let blocks = pem_blocks(csr_pem, "certificate request").map_err(invalid)?;
        let mut csrs = blocks
            .iter()
            .filter(|b| matches!(b.tag(), "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST"));
        let der = match (csrs.next(), csrs.next()) {
            (Some(b), None) => b.contents(),
            (None, _) => return Err(invalid("no CERTIFICATE REQUEST block found".into())),
            (Some(_), Some(_)) => return Err(invalid("more than one request in the text".into())),
        };
        let (rest, csr) = X509CertificationRequest::from_der(der).map_err(|e| {
            invalid(format!(
                "not a PKCS#10 request: {}",
                crate::error::one_line(e)
            ))
        })?;
        if !rest.is_empty() {
            return Err(invalid("trailing bytes after the request".into()));
        }
        csr.verify_signature()
            .map_err(|_| Error::CsrSignatureInvalid)?;
        let spki = &csr.certification_request_info.subject_pki;
        if spki.raw == self.certificate.x509()?.public_key().raw {
            return Err(Error::CsrKeyInUse {
                owner: "the CA".into(),
            });
        }
        let rsa = match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => {
                KeyType::rsa_of_bits(rsa.key_size())?;
                true
            }
            Ok(PublicKey::EC(_)) => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok());
                let ok = curve.is_some_and(|c| {
                    c == x509_parser::oid_registry::OID_EC_P256
                        || c == x509_parser::oid_registry::OID_NIST_EC_P384
                });
                if !ok {
                    return Err(Error::UnsupportedKey {
                        reason: "an EC key on a curve other than P-256 or P-384".into(),
                    });
                }
                false
            }
            _ if spki.algorithm.algorithm == x509_parser::oid_registry::OID_SIG_ED25519 => false,
            _ => {
                return Err(Error::UnsupportedKey {
                    reason: format!("a request for a key of type {}", spki.algorithm.algorithm),
                });
            }
        };
        let public =
            rcgen::SubjectPublicKeyInfo::from_der(spki.raw).map_err(|_| Error::UnsupportedKey {
                reason: "a request whose public key rcgen cannot use".into(),
            })?;
        let cp = self.leaf_params(id.as_str(), Leaf::Client, rsa, days)?;
        let cert = cp
            .signed_by(&public, &self.signer()?.issuer)
            .map_err(|e| pki_err("signing a certificate", e))?;
        Certificate::from_der(cert.der())
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    use super::*;
    use crate::pki::{CaParams, PrivateKey};

    fn id(s: &str) -> ClientId {
        s.parse().unwrap()
    }

    #[test]
    fn csr_is_signed_with_forced_cn_and_bad_signature_is_refused() {
        let ca = Ca::generate(&CaParams::default()).unwrap();
        let client_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut cp = CertificateParams::default();
        cp.distinguished_name = DistinguishedName::new();
        cp.distinguished_name.push(DnType::CommonName, "root");
        let csr = cp.serialize_request(&client_key).unwrap();
        let pem = csr.pem().unwrap();
        let cert = ca.sign_client_csr(&id("erin"), &pem, 365).unwrap();
        assert_eq!(cert.info().common_name, "erin");
        assert_eq!(cert.info().purpose, crate::pki::Purpose::Client);
        ca.verify(&cert).unwrap();
        let key = PrivateKey::from_pem(&client_key.serialize_pem()).unwrap();
        assert!(cert.matches_key(&key));

        // Flip one bit in the signature (the last byte of the DER).
        let mut der = csr.der().to_vec();
        let last = der.len() - 1;
        der[last] ^= 0x01;
        let forged = super::super::pem_encode("CERTIFICATE REQUEST", &der);
        let err = ca.sign_client_csr(&id("erin"), &forged, 365).unwrap_err();
        assert!(matches!(err, Error::CsrSignatureInvalid), "{err}");

        // Flip a bit in the subject: the signature no longer covers it.
        let mut der = csr.der().to_vec();
        let pos = der.windows(4).position(|w| w == b"root").unwrap();
        der[pos] = b'R';
        let forged = super::super::pem_encode("CERTIFICATE REQUEST", &der);
        let err = ca.sign_client_csr(&id("erin"), &forged, 365).unwrap_err();
        assert!(matches!(err, Error::CsrSignatureInvalid), "{err}");

        for junk in [
            "",
            "junk",
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        ] {
            let err = ca.sign_client_csr(&id("erin"), junk, 365).unwrap_err();
            assert!(matches!(err, Error::InvalidCsr { .. }), "{err}");
        }
    }
}
