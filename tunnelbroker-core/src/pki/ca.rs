//! The CA: generate or import, issue, verify (requests are signed in
//! `csr.rs`, CRLs in `crl.rs`).

use std::fmt;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SerialNumber,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;

use super::subject::check_name_field;
use super::{
    Certificate, Issued, KeyType, PrivateKey, Serial, Subject, pki_err, rfc3339, validity_window,
};
use crate::client_id::ClientId;
use crate::error::{Error, Result, shown};

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

/// The broker's certificate authority: its certificate and key.
///
/// A CA loaded with [`Ca::certificate_only`] (a server host, which never
/// holds the CA key) verifies and names the CA but signs nothing: issuing
/// and signing CRLs fail with [`Error::Pki`].
#[derive(Clone)]
pub struct Ca {
    pub(super) certificate: Certificate,
    /// The issuers of an imported intermediate CA, nearest first, up to the
    /// root; empty for a self-signed CA.
    issuers: Vec<Certificate>,
    key: Option<PrivateKey>,
    signer: Option<Arc<Signer>>,
    /// The CA certificate's Subject Key Identifier, if it has one.
    pub(super) ski: Option<Vec<u8>>,
}

/// What signing needs, prepared once: the issuer (name, key identifier, key).
pub(super) struct Signer {
    pub(super) issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("common_name", &self.certificate.info().common_name)
            .field("serial", self.certificate.serial())
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Which leaf to make.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Leaf {
    Server,
    Client,
}

impl Ca {
    /// Makes a new self-signed CA.
    ///
    /// ```
    /// use tunnelbroker_core::pki::{Ca, CaParams, KeyType, Purpose};
    /// let ca = Ca::generate(&CaParams { key_type: KeyType::P384, ..CaParams::default() })?;
    /// assert_eq!(ca.certificate().info().purpose, Purpose::Ca);
    /// assert_eq!(ca.key().unwrap().key_type(), KeyType::P384);
    /// let bad = CaParams { validity_days: 0, ..CaParams::default() };
    /// assert!(Ca::generate(&bad).is_err());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn generate(params: &CaParams) -> Result<Ca> {
        let dn = params.subject.distinguished_name()?;
        let (not_before, not_after) = validity_window("CA", params.validity_days)?;
        let pair = params.key_type.generate_pair()?;
        let mut cp = CertificateParams::default();
        cp.distinguished_name = dn;
        cp.not_before = not_before;
        cp.not_after = not_after;
        cp.serial_number = Some(SerialNumber::from_slice(Serial::random()?.as_bytes()));
        cp.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        cp.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        cp.key_identifier_method = KeyIdMethod::Sha256;
        let cert = cp
            .self_signed(&pair)
            .map_err(|e| pki_err("signing the CA certificate", e))?;
        let certificate = Certificate::from_der(cert.der())?;
        let key = PrivateKey::from_pair(&pair, params.key_type)?;
        Ca::assemble(certificate, Vec::new(), key, pair)
    }

    /// Loads an existing CA; refuses a non-CA certificate, a key that does not
    /// match it, or an expired CA.
    ///
    /// `cert_pem` holds the issuing CA (the one whose key is `key_pem`),
    /// followed, for an intermediate CA, by its issuers up to a self-signed
    /// root: the form CAs hand out. The chain is checked: each certificate
    /// is signed by the next, each issuer is a valid CA whose path length
    /// allows the certificates below it, the last is a self-signed root, and
    /// there are at most [`MAX_CA_CHAIN`] certificates. An intermediate
    /// without its issuers is refused ([`Error::CaIssuerMissing`]), as is a
    /// chain in another order ([`Error::InvalidCaChain`]).
    ///
    /// ```
    /// use tunnelbroker_core::Error;
    /// use tunnelbroker_core::pki::{Ca, CaParams};
    /// let ca = Ca::generate(&CaParams::default())?;
    /// let again = Ca::from_pem(ca.certificate().pem(), ca.key().unwrap().to_pem())?;
    /// assert_eq!(again.certificate(), ca.certificate());
    /// let other = Ca::generate(&CaParams::default())?;
    /// let err = Ca::from_pem(ca.certificate().pem(), other.key().unwrap().to_pem()).unwrap_err();
    /// assert!(matches!(err, Error::CaKeyMismatch { .. }));
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca> {
        Ca::load(cert_pem, Some(key_pem))
    }

    /// Loads an existing CA without its key, with the checks of
    /// [`from_pem`](Self::from_pem) that do not need one: what a server
    /// host has. It verifies certificates and CRLs, but issuing and
    /// signing fail with [`Error::Pki`].
    ///
    /// ```
    /// use tunnelbroker_core::{ClientId, Error};
    /// use tunnelbroker_core::pki::{Ca, CaParams, KeyType};
    /// let ca = Ca::generate(&CaParams::default())?;
    /// let public = Ca::certificate_only(&ca.chain_pem())?;
    /// assert!(!public.can_sign() && ca.can_sign());
    /// assert!(public.key().is_none());
    /// let id: ClientId = "alice".parse()?;
    /// public.verify(&ca.issue_client(&id, KeyType::P256, 10)?.certificate)?;
    /// let err = public.issue_client(&id, KeyType::P256, 10).unwrap_err();
    /// assert!(matches!(err, Error::Pki { .. }), "{err}");
    /// // A leaf is not a CA.
    /// let leaf = ca.issue_client(&id, KeyType::P256, 10)?;
    /// assert!(matches!(Ca::certificate_only(leaf.certificate.pem()), Err(Error::NotACa { .. })));
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn certificate_only(cert_pem: &str) -> Result<Ca> {
        Ca::load(cert_pem, None)
    }

    /// Whether this CA holds its key (see [`certificate_only`](Self::certificate_only)).
    pub fn can_sign(&self) -> bool {
        self.signer.is_some()
    }

    /// What signing needs, or why this CA cannot sign.
    pub(super) fn signer(&self) -> Result<&Signer> {
        self.signer.as_deref().ok_or_else(|| Error::Pki {
            reason: "the CA key is not loaded here (a server host never holds it): sign on a provisioning host".into(),
        })
    }

    fn load(cert_pem: &str, key_pem: Option<&str>) -> Result<Ca> {
        let mut certs = Certificate::all_from_pem(cert_pem)?;
        if certs.len() > MAX_CA_CHAIN {
            return Err(Error::InvalidCaChain {
                reason: format!(
                    "the file holds {} certificates; at most {MAX_CA_CHAIN} are accepted (the issuing CA and its issuers up to the root)",
                    certs.len()
                ),
            });
        }
        let issuers = certs.split_off(1);
        let certificate = certs.remove(0);
        let cn = shown(&certificate.info().common_name);
        {
            let x509 = certificate.x509()?;
            let not_a_ca = |reason| Error::NotACa {
                common_name: cn.clone(),
                reason,
            };
            match x509.basic_constraints() {
                Ok(Some(bc)) if bc.value.ca => {}
                Ok(_) => return Err(not_a_ca("it lacks basicConstraints CA:TRUE")),
                Err(_) => return Err(not_a_ca("its basicConstraints extension is malformed")),
            }
            match x509.key_usage() {
                Ok(None) => {}
                Ok(Some(ku)) => {
                    if !ku.value.key_cert_sign() {
                        return Err(not_a_ca("its keyUsage lacks keyCertSign"));
                    }
                    if !ku.value.crl_sign() {
                        return Err(not_a_ca(
                            "its keyUsage lacks cRLSign (the broker signs CRLs with its CA)",
                        ));
                    }
                }
                Err(_) => return Err(not_a_ca("its keyUsage extension is malformed")),
            }
        }
        let key = key_pem.map(PrivateKey::from_pem).transpose()?;
        if let Some(key) = key.as_ref().filter(|k| !certificate.matches_key(k)) {
            if let Some(i) = issuers.iter().position(|c| c.matches_key(key)) {
                return Err(Error::InvalidCaChain {
                    reason: format!(
                        "the key belongs to certificate {} of the file ({}), not to the first: give the issuing CA (the one whose key this is) first, then its issuers up to the root",
                        i + 2,
                        subject_of(&issuers[i])
                    ),
                });
            }
            return Err(Error::CaKeyMismatch { common_name: cn });
        }
        let now = OffsetDateTime::now_utc();
        let info = certificate.info();
        if now > info.not_after {
            return Err(Error::CaExpired {
                common_name: cn,
                not_after: rfc3339(info.not_after),
            });
        }
        if now < info.not_before {
            return Err(Error::CertificateNotYetValid {
                common_name: cn,
                not_before: rfc3339(info.not_before),
            });
        }
        check_chain(&certificate, &issuers, now)?;
        match key {
            Some(key) => {
                let pair = key.pair()?;
                Ca::assemble(certificate, issuers, key, pair)
            }
            None => Ok(Ca {
                ski: subject_key_id_of(&certificate)?,
                certificate,
                issuers,
                key: None,
                signer: None,
            }),
        }
    }

    /// Prepares the signer: the issuer name, key usages and key identifier
    /// come from the CA certificate itself, so that every AKI (leaves and
    /// CRLs) equals the CA's own SKI.
    fn assemble(
        certificate: Certificate,
        issuers: Vec<Certificate>,
        key: PrivateKey,
        pair: KeyPair,
    ) -> Result<Ca> {
        let ski = subject_key_id_of(&certificate)?;
        let issuer = Issuer::from_ca_cert_pem(certificate.pem(), pair).map_err(|e| {
            Error::InvalidCertificate {
                reason: format!("cannot use it as an issuer: {}", crate::error::one_line(e)),
            }
        })?;
        Ok(Ca {
            certificate,
            issuers,
            key: Some(key),
            signer: Some(Arc::new(Signer { issuer })),
            ski,
        })
    }

    /// The CA certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// The issuers of an imported intermediate CA, nearest first, ending
    /// with the root; empty for a self-signed CA.
    pub fn issuers(&self) -> &[Certificate] {
        &self.issuers
    }

    /// The whole chain as PEM: the CA certificate, then its issuers up to
    /// the root. This is what `ca.crt`, the server's `ca` file and every
    /// bundle's `<ca>` hold: OpenVPN needs the root to trust a server or
    /// client certificate issued by an intermediate.
    ///
    /// ```
    /// use tunnelbroker_core::pki::{Ca, CaParams};
    /// let ca = Ca::generate(&CaParams::default())?;
    /// assert_eq!(ca.chain_pem(), ca.certificate().pem());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn chain_pem(&self) -> String {
        let mut pem = self.certificate.pem().to_owned();
        for c in &self.issuers {
            pem.push_str(c.pem());
        }
        pem
    }

    /// The CA certificate's subject as [`Subject`] fields (the first
    /// country, organisation, organisational unit and common name), each
    /// kept only where [`Subject::validate`] accepts it; a CA without a
    /// usable common name gets the default one. `init` records this for an
    /// imported CA, so that the settings name the CA the broker really uses.
    ///
    /// ```
    /// use tunnelbroker_core::pki::{Ca, CaParams, Subject};
    /// let subject = Subject { country: Some("DE".into()), ..Subject::default() };
    /// let ca = Ca::generate(&CaParams { subject: subject.clone(), ..CaParams::default() })?;
    /// assert_eq!(ca.subject(), subject);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn subject(&self) -> Subject {
        let Ok(x) = self.certificate.x509() else {
            return Subject::default();
        };
        let name = x.subject();
        fn first<'a>(
            field: &'static str,
            mut values: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
        ) -> Option<String> {
            let v = values.next()?.as_str().ok()?;
            check_name_field(field, v).ok()?;
            Some(v.to_owned())
        }
        let country = first("country", name.iter_country())
            .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()));
        Subject {
            country,
            organization: first("organization", name.iter_organization()),
            organizational_unit: first("organizational unit", name.iter_organizational_unit()),
            common_name: first("common name", name.iter_common_name())
                .unwrap_or_else(|| Subject::default().common_name),
        }
    }

    /// The CA key (secret); `None` for a CA loaded with
    /// [`certificate_only`](Self::certificate_only).
    pub fn key(&self) -> Option<&PrivateKey> {
        self.key.as_ref()
    }

    /// The CA's Subject Key Identifier, if its certificate has one (every
    /// generated CA does). CRLs and leaves carry it as their AKI.
    pub fn subject_key_id(&self) -> Option<&[u8]> {
        self.ski.as_deref()
    }

    /// When a certificate issued now for `days` days ends: `days` from now,
    /// but never after the CA's own notAfter (a certificate that outlives
    /// its CA fails verification from the CA's last day on anyway, and
    /// silently). A CA with less than [`MIN_LEAF_DAYS`](Self::MIN_LEAF_DAYS)
    /// left issues nothing: [`Error::CaExpiresSoon`].
    ///
    /// ```
    /// use tunnelbroker_core::pki::{Ca, CaParams};
    /// let ca = Ca::generate(&CaParams { validity_days: 100, ..CaParams::default() })?;
    /// let end = ca.leaf_not_after("client certificate", 365)?;
    /// assert_eq!(end, ca.certificate().info().not_after);
    /// assert!(ca.clamp_warning("client certificate", 365).is_some());
    /// assert!(ca.clamp_warning("client certificate", 30).is_none());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn leaf_not_after(&self, what: &'static str, days: u32) -> Result<OffsetDateTime> {
        let (_, wanted) = validity_window(what, days)?;
        let (_, first) = self.first_to_end();
        let ca_end = first.info().not_after;
        if ca_end - OffsetDateTime::now_utc() < time::Duration::days(Self::MIN_LEAF_DAYS) {
            return Err(Error::CaExpiresSoon {
                common_name: shown(&first.info().common_name),
                not_after: rfc3339(ca_end),
            });
        }
        Ok(wanted.min(ca_end))
    }

    /// The certificate of the chain (this CA's own, or one of its issuers
    /// up to the root) that ends first, with its place in the chain (0:
    /// the CA's own): nothing it issues is valid past that one's end.
    pub(crate) fn first_to_end(&self) -> (usize, &Certificate) {
        std::iter::once(&self.certificate)
            .chain(&self.issuers)
            .enumerate()
            .min_by_key(|(_, c)| c.info().not_after)
            .unwrap_or((0, &self.certificate))
    }

    /// The least validity the CA must have left to issue a certificate, in
    /// days: a certificate cut to less would need renewing again at once.
    pub const MIN_LEAF_DAYS: i64 = 1;

    /// A one-line warning when a `what` issued now for `days` days would be
    /// cut short to end with the CA; `None` when it gets its full validity.
    pub fn clamp_warning(&self, what: &str, days: u32) -> Option<String> {
        let (_, first) = self.first_to_end();
        let ca_end = first.info().not_after;
        let wanted =
            OffsetDateTime::now_utc().checked_add(time::Duration::days(i64::from(days)))?;
        (wanted > ca_end).then(|| {
            format!(
                "the CA {} expires on {}, before a {what} of {days} days would: it ends with the CA; make a new CA before then",
                shown(&first.info().common_name),
                rfc3339(ca_end)
            )
        })
    }

    /// Leaf parameters: CN only, CA:FALSE, key usage fitting the key, one
    /// EKU, AKI, a fresh random serial.
    pub(super) fn leaf_params(
        &self,
        cn: &str,
        leaf: Leaf,
        rsa: bool,
        days: u32,
    ) -> Result<CertificateParams> {
        let what = match leaf {
            Leaf::Server => "server certificate",
            Leaf::Client => "client certificate",
        };
        let (not_before, _) = validity_window(what, days)?;
        let not_after = self.leaf_not_after(what, days)?;
        let mut cp = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        cp.distinguished_name = dn;
        cp.not_before = not_before;
        cp.not_after = not_after;
        cp.serial_number = Some(SerialNumber::from_slice(Serial::random()?.as_bytes()));
        cp.is_ca = IsCa::ExplicitNoCa;
        cp.key_usages = if rsa {
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ]
        } else {
            vec![KeyUsagePurpose::DigitalSignature]
        };
        cp.extended_key_usages = vec![match leaf {
            Leaf::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Leaf::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        cp.use_authority_key_identifier_extension = true;
        cp.key_identifier_method = KeyIdMethod::Sha256;
        Ok(cp)
    }

    fn issue(&self, cn: &str, leaf: Leaf, key_type: KeyType, days: u32) -> Result<Issued> {
        let cp = self.leaf_params(cn, leaf, key_type.is_rsa(), days)?;
        let pair = key_type.generate_pair()?;
        let cert = cp
            .signed_by(&pair, &self.signer()?.issuer)
            .map_err(|e| pki_err("signing a certificate", e))?;
        Ok(Issued {
            certificate: Certificate::from_der(cert.der())?,
            key: PrivateKey::from_pair(&pair, key_type)?,
        })
    }

    /// Issues a server certificate (EKU serverAuth).
    ///
    /// ```
    /// use tunnelbroker_core::pki::{Ca, CaParams, KeyType, Purpose};
    /// let ca = Ca::generate(&CaParams::default())?;
    /// let server = ca.issue_server("vpn.example.net", KeyType::P256, 730)?;
    /// assert_eq!(server.certificate.info().purpose, Purpose::Server);
    /// assert!(ca.issue_server("", KeyType::P256, 730).is_err());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn issue_server(&self, common_name: &str, key_type: KeyType, days: u32) -> Result<Issued> {
        check_name_field("common name", common_name)?;
        self.issue(common_name, Leaf::Server, key_type, days)
    }

    /// Issues a client certificate (EKU clientAuth, CN = client ID) with a new key.
    ///
    /// Renewing is issuing again: a new key and serial, the same CN.
    pub fn issue_client(&self, id: &ClientId, key_type: KeyType, days: u32) -> Result<Issued> {
        self.issue(id.as_str(), Leaf::Client, key_type, days)
    }

    /// Checks that `cert` was signed by this CA and is within validity now.
    ///
    /// ```
    /// use tunnelbroker_core::{ClientId, Error};
    /// use tunnelbroker_core::pki::{Ca, CaParams, KeyType};
    /// let ca = Ca::generate(&CaParams::default())?;
    /// let other = Ca::generate(&CaParams::default())?;
    /// let id: ClientId = "carol".parse()?;
    /// let theirs = other.issue_client(&id, KeyType::P256, 10)?;
    /// let err = ca.verify(&theirs.certificate).unwrap_err();
    /// assert!(matches!(err, Error::NotIssuedByCa { .. }));
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn verify(&self, cert: &Certificate) -> Result<()> {
        let cn = shown(&cert.info().common_name);
        let ca = self.certificate.x509()?;
        let x509 = cert.x509()?;
        let not_ours = |reason: String| Error::NotIssuedByCa {
            common_name: cn.clone(),
            reason,
        };
        if x509.issuer().as_raw() != ca.subject().as_raw()
            && x509.issuer().to_string() != ca.subject().to_string()
        {
            return Err(not_ours(format!(
                "its issuer is {}, this CA is {}",
                shown(&x509.issuer().to_string()),
                shown(&ca.subject().to_string())
            )));
        }
        x509.verify_signature(Some(ca.public_key()))
            .map_err(|_| not_ours("its signature does not verify with this CA's key".into()))?;
        let now = OffsetDateTime::now_utc();
        let info = cert.info();
        if now < info.not_before {
            return Err(Error::CertificateNotYetValid {
                common_name: cn,
                not_before: rfc3339(info.not_before),
            });
        }
        if now > info.not_after {
            return Err(Error::CertificateExpired {
                common_name: cn,
                not_after: rfc3339(info.not_after),
            });
        }
        Ok(())
    }
}

/// The most certificates a CA file may hold: the issuing CA and up to seven
/// issuers above it. Real hierarchies have two or three.
pub const MAX_CA_CHAIN: usize = 8;

/// A certificate's subject, quoted for messages.
fn subject_of(c: &Certificate) -> String {
    match c.x509() {
        Ok(x) => shown(&x.subject().to_string()),
        Err(_) => shown(&c.info().common_name),
    }
}

/// Checks that `issuers` carry `ca` up to a self-signed root: each
/// certificate is signed by the next, which is a CA valid `now` whose path
/// length allows the CAs below it, and the last is self-signed.
fn check_chain(ca: &Certificate, issuers: &[Certificate], now: OffsetDateTime) -> Result<()> {
    let invalid = |reason: String| Err(Error::InvalidCaChain { reason });
    let all: Vec<&Certificate> = std::iter::once(ca).chain(issuers).collect();
    for (i, cert) in all.iter().enumerate() {
        let x = cert.x509()?;
        let name = subject_of(cert);
        let self_issued = x.issuer().as_raw() == x.subject().as_raw();
        if self_issued {
            if x.verify_signature(None).is_err() {
                return invalid(format!(
                    "{name} names itself as its issuer, but its signature does not verify with its own key"
                ));
            }
            if let Some(next) = all.get(i + 1) {
                return invalid(format!(
                    "{name} is a self-signed root, but {} follows it: end the file with the root",
                    subject_of(next)
                ));
            }
            return Ok(());
        }
        let issuer = shown(&x.issuer().to_string());
        let names_issuer = |c: &&Certificate| {
            c.x509()
                .is_ok_and(|cx| cx.subject().as_raw() == x.issuer().as_raw())
        };
        let next = match all.get(i + 1) {
            Some(next) if names_issuer(next) => next,
            _ if all.iter().any(names_issuer) => {
                return invalid(format!(
                    "the certificates are out of order: {name} is issued by {issuer}, which must come right after it; give the issuing CA first, then each issuer, up to the root"
                ));
            }
            _ => {
                return Err(Error::CaIssuerMissing {
                    subject: name,
                    issuer,
                });
            }
        };
        let nx = next.x509()?;
        if x.verify_signature(Some(nx.public_key())).is_err() {
            return invalid(format!(
                "the signature of {name} does not verify with the key of {issuer}, the certificate that follows it"
            ));
        }
        match nx.basic_constraints() {
            Ok(Some(bc)) if bc.value.ca => {
                // certs 0..=i are CAs below `next`: i + 1 intermediates.
                if let Some(len) = bc.value.path_len_constraint
                    && (len as usize) < i + 1
                {
                    return invalid(format!(
                        "{issuer} allows {len} intermediate CA certificate(s) below it (pathLenConstraint), but the chain has {}",
                        i + 1
                    ));
                }
            }
            _ => {
                return invalid(format!(
                    "{issuer}, the issuer of {name}, is not a CA (it lacks basicConstraints CA:TRUE)"
                ));
            }
        }
        match nx.key_usage() {
            Ok(Some(ku)) if !ku.value.key_cert_sign() => {
                return invalid(format!(
                    "{issuer}, the issuer of {name}, is not a CA (its keyUsage lacks keyCertSign)"
                ));
            }
            Err(_) => {
                return invalid(format!("{issuer} has a malformed keyUsage extension"));
            }
            _ => {}
        }
        let info = next.info();
        if now > info.not_after {
            return invalid(format!(
                "{issuer}, the issuer of {name}, expired on {}",
                rfc3339(info.not_after)
            ));
        }
        if now < info.not_before {
            return invalid(format!(
                "{issuer}, the issuer of {name}, is not valid before {}",
                rfc3339(info.not_before)
            ));
        }
    }
    Ok(())
}

/// The Subject Key Identifier of a CA certificate, if it has one.
fn subject_key_id_of(certificate: &Certificate) -> Result<Option<Vec<u8>>> {
    let x509 = certificate.x509()?;
    Ok(x509
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn id(s: &str) -> ClientId {
        s.parse().unwrap()
    }

    /// A CA certificate made directly with rcgen, for the refusal tests.
    fn raw_cert(is_ca: bool, not_after_year: i32) -> (String, String) {
        let pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut cp = CertificateParams::default();
        cp.distinguished_name = DistinguishedName::new();
        cp.distinguished_name.push(DnType::CommonName, "old ca");
        cp.not_before = rcgen::date_time_ymd(2000, 1, 1);
        cp.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
        cp.is_ca = if is_ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        let cert = cp.self_signed(&pair).unwrap();
        (cert.pem(), pair.serialize_pem())
    }

    /// One certificate of a test hierarchy made with rcgen.
    struct Made {
        pem: String,
        key: KeyPair,
        params: CertificateParams,
    }

    impl Made {
        fn issuer(&self) -> Issuer<'static, KeyPair> {
            let key = KeyPair::from_pem(&self.key.serialize_pem()).unwrap();
            Issuer::new(self.params.clone(), key)
        }
        fn key_pem(&self) -> String {
            self.key.serialize_pem()
        }
    }

    /// A CA certificate (or, with `is_ca` not a CA, a leaf) named `cn`,
    /// signed by `by` or self-signed.
    fn made(cn: &str, by: Option<&Made>, is_ca: IsCa, not_after_year: i32) -> Made {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut cp = CertificateParams::default();
        cp.distinguished_name = DistinguishedName::new();
        cp.distinguished_name.push(DnType::CommonName, cn);
        cp.not_before = rcgen::date_time_ymd(2000, 1, 1);
        cp.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
        if matches!(is_ca, IsCa::Ca(_)) {
            cp.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        }
        cp.is_ca = is_ca;
        cp.key_identifier_method = KeyIdMethod::Sha256;
        cp.use_authority_key_identifier_extension = by.is_some();
        let cert = match by {
            Some(issuer) => cp.signed_by(&key, &issuer.issuer()).unwrap(),
            None => cp.self_signed(&key).unwrap(),
        };
        Made {
            pem: cert.pem(),
            key,
            params: cp,
        }
    }

    fn ca_cert(cn: &str, by: Option<&Made>) -> Made {
        made(cn, by, IsCa::Ca(BasicConstraints::Unconstrained), 2099)
    }

    fn pems(certs: &[&Made]) -> String {
        certs.iter().map(|c| c.pem.as_str()).collect()
    }

    #[test]
    fn an_intermediate_with_its_issuers_loads_and_keeps_the_chain() {
        let root = ca_cert("Test Root", None);
        let int = ca_cert("VPN Issuing CA", Some(&root));
        let ca = Ca::from_pem(&pems(&[&int, &root]), &int.key_pem()).unwrap();
        assert_eq!(ca.certificate().info().common_name, "VPN Issuing CA");
        assert_eq!(ca.issuers().len(), 1);
        assert_eq!(ca.issuers()[0].info().common_name, "Test Root");
        let chain = Certificate::all_from_pem(&ca.chain_pem()).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0], *ca.certificate());
        // Loads back from what it writes (ca.crt).
        let again = Ca::from_pem(&ca.chain_pem(), ca.key().unwrap().to_pem()).unwrap();
        assert_eq!(again.chain_pem(), ca.chain_pem());

        // Leaves and the CRL come from the intermediate, with its key identifier.
        let alice = ca.issue_client(&id("alice"), KeyType::P256, 30).unwrap();
        alice.certificate.check_issued_by(ca.certificate()).unwrap();
        let crl = ca.crl(&[], 1, 30).unwrap();
        ca.check_crl(&crl).unwrap();
        assert!(crl.issuer().contains("VPN Issuing CA"), "{}", crl.issuer());
        assert_eq!(crl.authority_key_id(), ca.subject_key_id());

        // Three levels.
        let upper = ca_cert("Upper CA", Some(&root));
        let lower = ca_cert("Lower CA", Some(&upper));
        let ca = Ca::from_pem(&pems(&[&lower, &upper, &root]), &lower.key_pem()).unwrap();
        assert_eq!(ca.issuers().len(), 2);
    }

    #[test]
    fn an_intermediate_without_its_issuers_is_refused_saying_what_to_add() {
        let root = ca_cert("Test Root", None);
        let upper = ca_cert("Upper CA", Some(&root));
        let int = ca_cert("VPN Issuing CA", Some(&upper));
        for (text, missing) in [
            (pems(&[&int]), "Upper CA"),
            (pems(&[&int, &upper]), "Test Root"),
        ] {
            let err = Ca::from_pem(&text, &int.key_pem()).unwrap_err();
            assert!(matches!(err, Error::CaIssuerMissing { .. }), "{err}");
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
            let msg = err.to_string();
            assert!(
                msg.contains(&format!(
                    "is issued by \"CN={missing}\", which is not in the file"
                )) && msg.ends_with("append the issuing CA's certificates up to the root")
                    && !msg.contains('\n'),
                "{msg}"
            );
        }
        // Another CA's root is no help.
        let other = ca_cert("Other Root", None);
        let err = Ca::from_pem(&pems(&[&int, &upper, &other]), &int.key_pem()).unwrap_err();
        assert!(matches!(err, Error::CaIssuerMissing { .. }), "{err}");
    }

    #[test]
    fn a_chain_out_of_order_is_refused_saying_the_order() {
        let root = ca_cert("Test Root", None);
        let upper = ca_cert("Upper CA", Some(&root));
        let int = ca_cert("VPN Issuing CA", Some(&upper));
        let err = Ca::from_pem(&pems(&[&int, &root, &upper]), &int.key_pem()).unwrap_err();
        assert!(matches!(err, Error::InvalidCaChain { .. }), "{err}");
        assert!(err.to_string().contains("out of order"), "{err}");
        // Root first, with the intermediate's key: the key is not for the first.
        let err = Ca::from_pem(&pems(&[&root, &upper, &int]), &int.key_pem()).unwrap_err();
        assert!(matches!(err, Error::InvalidCaChain { .. }), "{err}");
        assert!(
            err.to_string().contains("certificate 3 of the file")
                && err.to_string().contains("issuing CA"),
            "{err}"
        );
        // Root first with the root's key: the rest is left over.
        let err = Ca::from_pem(&pems(&[&root, &upper]), &root.key_pem()).unwrap_err();
        assert!(
            err.to_string().contains("end the file with the root"),
            "{err}"
        );
        // The root twice.
        let err = Ca::from_pem(&pems(&[&upper, &root, &root]), &upper.key_pem()).unwrap_err();
        assert!(matches!(err, Error::InvalidCaChain { .. }), "{err}");
    }

    #[test]
    fn a_key_for_another_certificate_of_the_chain_is_refused() {
        let root = ca_cert("Test Root", None);
        let int = ca_cert("VPN Issuing CA", Some(&root));
        let err = Ca::from_pem(&pems(&[&int, &root]), &root.key_pem()).unwrap_err();
        assert!(matches!(err, Error::InvalidCaChain { .. }), "{err}");
        assert!(
            err.to_string().contains("certificate 2 of the file"),
            "{err}"
        );
        let stranger = ca_cert("Stranger", None);
        let err = Ca::from_pem(&pems(&[&int, &root]), &stranger.key_pem()).unwrap_err();
        assert!(matches!(err, Error::CaKeyMismatch { .. }), "{err}");
    }

    #[test]
    fn a_non_ca_or_a_bad_signature_in_the_chain_is_refused() {
        // The "root" is not a CA.
        let fake_root = made("Fake Root", None, IsCa::ExplicitNoCa, 2099);
        let int = ca_cert("VPN Issuing CA", Some(&fake_root));
        let err = Ca::from_pem(&pems(&[&int, &fake_root]), &int.key_pem()).unwrap_err();
        assert!(matches!(err, Error::InvalidCaChain { .. }), "{err}");
        assert!(err.to_string().contains("is not a CA"), "{err}");
        // A root whose keyUsage lacks keyCertSign.
        let mut no_kcs = ca_cert("No Sign Root", None);
        no_kcs.params.key_usages = vec![KeyUsagePurpose::CrlSign];
        no_kcs.pem = no_kcs.params.self_signed(&no_kcs.key).unwrap().pem();
        let int = ca_cert("VPN Issuing CA", Some(&no_kcs));
        let err = Ca::from_pem(&pems(&[&int, &no_kcs]), &int.key_pem()).unwrap_err();
        assert!(err.to_string().contains("keyCertSign"), "{err}");
        // A root that allows no intermediate (pathlen 0).
        let strict = made(
            "Strict Root",
            None,
            IsCa::Ca(BasicConstraints::Constrained(0)),
            2099,
        );
        let int = ca_cert("VPN Issuing CA", Some(&strict));
        let err = Ca::from_pem(&pems(&[&int, &strict]), &int.key_pem()).unwrap_err();
        assert!(err.to_string().contains("pathLenConstraint"), "{err}");
        // An expired root.
        let old_root = made(
            "Old Root",
            None,
            IsCa::Ca(BasicConstraints::Unconstrained),
            2001,
        );
        let int = ca_cert("VPN Issuing CA", Some(&old_root));
        let err = Ca::from_pem(&pems(&[&int, &old_root]), &int.key_pem()).unwrap_err();
        assert!(err.to_string().contains("expired on 2001-01-01"), "{err}");
        // A root of the same name but another key: the signature fails.
        let root = ca_cert("Test Root", None);
        let int = ca_cert("VPN Issuing CA", Some(&root));
        let twin = ca_cert("Test Root", None);
        let err = Ca::from_pem(&pems(&[&int, &twin]), &int.key_pem()).unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err}");
    }

    #[test]
    fn text_between_certificates_is_ignored_and_a_damaged_block_refused() {
        let root = ca_cert("Test Root", None);
        let int = ca_cert("VPN Issuing CA", Some(&root));
        let text = format!(
            "subject=CN=VPN Issuing CA\n{}\n# junk between\nissuer=CN=Test Root\n{}trailing words\n",
            int.pem, root.pem
        );
        let ca = Ca::from_pem(&text, &int.key_pem()).unwrap();
        assert_eq!(ca.chain_pem(), pems(&[&int, &root]).replace("\r\n", "\n"));
        assert!(!ca.chain_pem().contains("junk"));
        let damaged = format!(
            "{}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n{}",
            int.pem, root.pem
        );
        let err = Ca::from_pem(&damaged, &int.key_pem()).unwrap_err();
        assert!(matches!(err, Error::InvalidCertificate { .. }), "{err}");
    }

    #[test]
    fn an_overlong_chain_is_refused() {
        let mut chain = vec![ca_cert("CA 0", None)];
        for i in 1..=MAX_CA_CHAIN {
            let next = ca_cert(&format!("CA {i}"), chain.last());
            chain.push(next);
        }
        chain.reverse();
        // MAX_CA_CHAIN certificates load.
        let ok: Vec<&Made> = chain[1..].iter().collect();
        Ca::from_pem(&pems(&ok), &ok[0].key_pem()).unwrap();
        let all: Vec<&Made> = chain.iter().collect();
        let err = Ca::from_pem(&pems(&all), &all[0].key_pem()).unwrap_err();
        assert!(matches!(err, Error::InvalidCaChain { .. }), "{err}");
        assert!(err.to_string().contains("at most 8"), "{err}");
    }

    #[test]
    fn generated_ca_has_ski_and_loads_back() {
        for kt in [
            KeyType::P256,
            KeyType::P384,
            KeyType::Ed25519,
            KeyType::Rsa2048,
        ] {
            let ca = Ca::generate(&CaParams {
                key_type: kt,
                ..CaParams::default()
            })
            .unwrap();
            assert_eq!(ca.subject_key_id().map(<[u8]>::len), Some(20));
            let again = Ca::from_pem(ca.certificate().pem(), ca.key().unwrap().to_pem()).unwrap();
            assert_eq!(again.subject_key_id(), ca.subject_key_id());
            let c = again.issue_client(&id("alice"), kt, 1).unwrap();
            ca.verify(&c.certificate).unwrap();
        }
    }

    #[test]
    fn non_ca_mismatched_key_and_expired_ca_have_their_own_errors() {
        let (leaf, leaf_key) = raw_cert(false, 2099);
        let err = Ca::from_pem(&leaf, &leaf_key).unwrap_err();
        assert!(matches!(err, Error::NotACa { .. }), "{err}");

        let ca = Ca::generate(&CaParams::default()).unwrap();
        let issued = ca.issue_client(&id("mallory"), KeyType::P256, 30).unwrap();
        let err = Ca::from_pem(issued.certificate.pem(), issued.key.to_pem()).unwrap_err();
        assert!(matches!(err, Error::NotACa { .. }), "{err}");

        let other = PrivateKey::generate(KeyType::P256).unwrap();
        let err = Ca::from_pem(ca.certificate().pem(), other.to_pem()).unwrap_err();
        assert!(matches!(err, Error::CaKeyMismatch { .. }), "{err}");
        assert_eq!(err.kind(), ErrorKind::Crypto);

        let (old, old_key) = raw_cert(true, 2001);
        let err = Ca::from_pem(&old, &old_key).unwrap_err();
        assert!(matches!(err, Error::CaExpired { .. }), "{err}");
        assert!(err.to_string().contains("2001-01-01"), "{err}");

        let (good, good_key) = raw_cert(true, 2099);
        Ca::from_pem(&good, &good_key).unwrap();
        assert!(matches!(
            Ca::from_pem(&good, "junk").unwrap_err(),
            Error::InvalidKey { .. }
        ));
        assert!(matches!(
            Ca::from_pem("junk", &good_key).unwrap_err(),
            Error::InvalidCertificate { .. }
        ));
    }

    #[test]
    fn leaves_carry_the_ca_ski_as_aki() {
        let ca = Ca::generate(&CaParams::default()).unwrap();
        let server = ca
            .issue_server("vpn.example.net", KeyType::P256, 730)
            .unwrap();
        let x509 = server.certificate.x509().unwrap();
        let aki = x509
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(Some(aki.as_slice()), ca.subject_key_id());
        let bc = x509.basic_constraints().unwrap().unwrap();
        assert!(!bc.value.ca);
        let ku = x509.key_usage().unwrap().unwrap();
        assert!(ku.value.digital_signature() && !ku.value.key_encipherment());
    }

    #[test]
    fn bad_names_and_validities_are_refused() {
        let ca = Ca::generate(&CaParams::default()).unwrap();
        for cn in ["", " x", "a\nb", &"x".repeat(65)] {
            let err = ca.issue_server(cn, KeyType::P256, 1).unwrap_err();
            assert!(matches!(err, Error::InvalidSubject { .. }), "{err}");
        }
        for days in [0, u32::MAX] {
            let err = ca.issue_client(&id("a"), KeyType::P256, days).unwrap_err();
            assert!(matches!(err, Error::InvalidValidity { .. }), "{err}");
        }
        let subject = Subject {
            country: Some("de".into()),
            ..Subject::default()
        };
        let err = Ca::generate(&CaParams {
            subject,
            ..CaParams::default()
        })
        .unwrap_err();
        assert!(matches!(err, Error::InvalidSubject { .. }), "{err}");
    }

    #[test]
    fn debug_of_ca_shows_no_key_material() {
        let ca = Ca::generate(&CaParams::default()).unwrap();
        let shown = format!("{ca:?} {ca:#?}");
        assert!(shown.contains("[redacted]"), "{shown}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        let body: String = ca
            .key()
            .unwrap()
            .to_pem()
            .lines()
            .nth(1)
            .unwrap()
            .chars()
            .take(16)
            .collect();
        assert!(!shown.contains(&body), "{shown}");
    }
}
