//! The subscription lifecycle: add, look up, revoke, renew, purge.

use time::OffsetDateTime;

use super::allocation::Reserved;
use super::{Broker, Client, ClientState, NewClient, Revocation, SERVER_CN, SessionEnd};
use crate::client_id::ClientId;
use crate::error::{Error, Result};
use crate::pki::{Certificate, PrivateKey, RevocationReason};
use crate::store::{CertRecord, CertState, ClientRecord, Transaction};

/// A client's certificate and, unless it sent a CSR, its key.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    /// The client's current certificate.
    pub certificate: Certificate,
    /// Its key; `None` when the client made its own.
    pub key: Option<PrivateKey>,
}

impl Broker {
    /// Subscribes a client: checks the request, allocates its assignment
    /// (the lowest free one, or the requested one) and, in per-client mode,
    /// a UDP port, issues its certificate and records it, in one
    /// transaction.
    ///
    /// The key and certificate are made before the transaction starts, so
    /// that key generation (slow for RSA) never holds the database's write
    /// lock; a certificate whose subscription then fails is never recorded
    /// and its key never leaves the process.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::{ClientKind, ErrorKind, NewClient};
    /// let alice = broker.add_client(&NewClient::new("alice".parse()?, ClientKind::Hermit))?;
    /// assert_eq!(alice.kind, ClientKind::Hermit);
    /// assert!(alice.has_key);
    ///
    /// // The same ID twice is refused, and nothing changes.
    /// let err = broker
    ///     .add_client(&NewClient::new("alice".parse()?, ClientKind::Subnet))
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    /// assert_eq!(broker.clients()?, [alice]);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn add_client(&self, req: &NewClient) -> Result<Client> {
        Self::check_request(req)?;
        let cert = self.issue(req)?;
        self.store().write_with(|tx| {
            let mut taken = self.taken(tx)?;
            let reserved = self.reserve(tx, &mut taken, req)?;
            check_key_is_own(tx, &cert, None)?;
            let client = self.record(tx, &reserved, cert.clone())?;
            taken.save(tx)?;
            Ok(client)
        })
    }

    pub(super) fn check_request(req: &NewClient) -> Result<()> {
        req.validate()?;
        if let Some(name) = &req.server {
            super::validate_server_name(name)?;
        }
        if req.id.as_str().eq_ignore_ascii_case(SERVER_CN)
            || req
                .id
                .as_str()
                .to_ascii_lowercase()
                .starts_with(&format!("{SERVER_CN}-"))
        {
            return Err(Error::InvalidClientId {
                input: crate::error::shown(req.id.as_str()),
                reason: "it is the name of the broker's server certificate".into(),
            });
        }
        Ok(())
    }

    /// Issues a client's certificate (and key, unless it sent a CSR).
    pub(super) fn issue(&self, req: &NewClient) -> Result<CertRecord> {
        let days = self.settings.validity.client_days;
        let (certificate, key_pem) = match &req.csr {
            Some(csr) => {
                // The CA's key is refused by the CA, other clients' in the
                // transaction that records the certificate.
                let cert = self.ca.sign_client_csr(&req.id, csr, days)?;
                if cert.public_key_info()? == self.server_certificate()?.public_key_info()? {
                    return Err(Error::CsrKeyInUse {
                        owner: "the server".into(),
                    });
                }
                (cert, None)
            }
            None => {
                let issued = self
                    .ca
                    .issue_client(&req.id, self.settings.key_type, days)?;
                (issued.certificate, Some(issued.key.to_pem().to_owned()))
            }
        };
        Ok(CertRecord {
            serial: certificate.serial().clone(),
            client_id: req.id.clone(),
            not_after: certificate.info().not_after,
            pem: certificate.pem().to_owned(),
            key_pem,
            state: CertState::Current,
            revoked: None,
        })
    }

    pub(super) fn record(
        &self,
        tx: &mut dyn Transaction,
        r: &Reserved<'_>,
        cert: CertRecord,
    ) -> Result<Client> {
        let rec = ClientRecord {
            id: r.req.id.clone(),
            os: r.req.os,
            assignment: r.assignment,
            port: r.port,
            state: ClientState::Active,
            email: r.req.email.clone(),
            name: r.req.name.clone(),
            created_at: OffsetDateTime::now_utc(),
            revoked_at: None,
            server: r.server.clone(),
        };
        tx.insert_client(&rec)?;
        tx.insert_certificate(&cert)?;
        Ok(to_client(rec, &cert))
    }

    /// One client.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::{ClientKind, ErrorKind, NewClient};
    /// let alice = broker.add_client(&NewClient::new("alice".parse()?, ClientKind::Subnet))?;
    /// assert_eq!(broker.client(&alice.id)?, alice);
    ///
    /// let err = broker.client(&"nobody".parse()?).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::NotFound);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn client(&self, id: &ClientId) -> Result<Client> {
        self.store().read_with(|tx| load_client(tx, id))
    }

    /// Every client, in ID order.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::{ClientKind, NewClient};
    /// assert!(broker.clients()?.is_empty());
    /// broker.add_client(&NewClient::new("bob".parse()?, ClientKind::Hermit))?;
    /// broker.add_client(&NewClient::new("alice".parse()?, ClientKind::Subnet))?;
    /// let ids: Vec<String> = broker.clients()?.iter().map(|c| c.id.to_string()).collect();
    /// assert_eq!(ids, ["alice", "bob"]);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn clients(&self) -> Result<Vec<Client>> {
        self.store().read_with(|tx| {
            let mut out = Vec::new();
            for rec in tx.clients()? {
                let cert = tx
                    .latest_certificate(&rec.id)?
                    .ok_or_else(|| missing_cert(&rec.id))?;
                out.push(to_client(rec, &cert));
            }
            Ok(out)
        })
    }

    /// A client's current certificate and, unless it sent a CSR, its key.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::{ClientKind, ErrorKind, NewClient};
    /// let alice = broker.add_client(&NewClient::new("alice".parse()?, ClientKind::Hermit))?;
    /// let creds = broker.client_credentials(&alice.id)?;
    /// assert_eq!(creds.certificate.serial(), &alice.serial);
    /// assert!(creds.certificate.matches_key(creds.key.as_ref().unwrap()));
    ///
    /// let err = broker.client_credentials(&"nobody".parse()?).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::NotFound);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn client_credentials(&self, id: &ClientId) -> Result<ClientCredentials> {
        self.store().read_with(|tx| {
            if tx.client(id)?.is_none() {
                return Err(Error::UnknownClient { id: id.to_string() });
            }
            let cert = tx.latest_certificate(id)?.ok_or_else(|| missing_cert(id))?;
            Ok(ClientCredentials {
                certificate: Certificate::from_pem(&cert.pem)?,
                key: cert
                    .key_pem
                    .as_deref()
                    .map(PrivateKey::from_pem)
                    .transpose()?,
            })
        })
    }

    /// Revokes a client: its certificate goes on the CRL (which is rewritten,
    /// also in the rendered server directory) and it is marked revoked; then
    /// its live session on this host is ended ([`end_session`](Self::end_session);
    /// a failure there is reported in the [`Revocation`], never an error of
    /// the revocation). Its assignment stays reserved for it until
    /// [`purge`](Self::purge).
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::broker::ClientState;
    /// use tunnelbroker_core::pki::RevocationReason;
    /// use tunnelbroker_core::{ClientKind, ErrorKind, NewClient};
    /// let alice = broker.add_client(&NewClient::new("alice".parse()?, ClientKind::Hermit))?;
    /// let done = broker.revoke(&alice.id, RevocationReason::KeyCompromise)?;
    /// assert_eq!(done.client.state, ClientState::Revoked);
    /// assert!(broker.crl()?.is_revoked(&alice.serial));
    ///
    /// // An unknown client is not found; a revoked one is not revoked again.
    /// let err = broker.revoke(&"nobody".parse()?, RevocationReason::Unspecified).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::NotFound);
    /// let err = broker.revoke(&alice.id, RevocationReason::Unspecified).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn revoke(&self, id: &ClientId, reason: RevocationReason) -> Result<Revocation> {
        let client = self.store().write_with(|tx| {
            let client = load_client(tx, id)?;
            require_state(&client, ClientState::Active, "revoke")?;
            let now = OffsetDateTime::now_utc();
            tx.revoke_certificate(&client.serial, now, reason)?;
            tx.set_client_state(id, ClientState::Revoked, Some(now))?;
            self.write_crl(tx)?;
            load_client(tx, id)
        })?;
        let session = self
            .end_session(&client)
            .unwrap_or_else(|e| SessionEnd::Failed(e.to_string()));
        Ok(Revocation { client, session })
    }

    /// Gives an active client a new key and certificate (or, with `csr`, a
    /// certificate for its new request); the assignment and port stay. The
    /// old certificate is revoked as superseded.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::{ClientKind, ErrorKind, NewClient};
    /// let alice = broker.add_client(&NewClient::new("alice".parse()?, ClientKind::Subnet))?;
    /// let renewed = broker.renew(&alice.id, None)?;
    /// assert_ne!(renewed.serial, alice.serial);
    /// assert_eq!(renewed.assignment, alice.assignment);
    /// assert!(broker.crl()?.is_revoked(&alice.serial));
    ///
    /// let err = broker.renew(&"nobody".parse()?, None).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::NotFound);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn renew(&self, id: &ClientId, csr: Option<&str>) -> Result<Client> {
        // Checked again in the transaction; this first look only avoids
        // making a key for a client that cannot be renewed.
        let before = self.client(id)?;
        require_state(&before, ClientState::Active, "renew")?;
        if !before.has_key && csr.is_none() {
            return Err(Error::CsrRequired { id: id.to_string() });
        }
        let mut req = NewClient::new(id.clone(), before.kind);
        req.csr = csr.map(str::to_owned);
        let cert = self.issue(&req)?;
        self.store().write_with(|tx| {
            let client = load_client(tx, id)?;
            require_state(&client, ClientState::Active, "renew")?;
            if !client.has_key && csr.is_none() {
                return Err(Error::CsrRequired { id: id.to_string() });
            }
            tx.revoke_certificate(
                &client.serial,
                OffsetDateTime::now_utc(),
                RevocationReason::Superseded,
            )?;
            // A client may keep its own key; no one else's.
            check_key_is_own(tx, &cert, Some(id))?;
            tx.insert_certificate(&cert)?;
            self.write_crl(tx)?;
            load_client(tx, id)
        })
    }

    /// Removes a revoked client, freeing its assignment and port. Its
    /// certificates stay on the CRL until they expire.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::pki::RevocationReason;
    /// use tunnelbroker_core::{ClientKind, ErrorKind, NewClient};
    /// let alice = broker.add_client(&NewClient::new("alice".parse()?, ClientKind::Subnet))?;
    ///
    /// // Only a revoked client is purged.
    /// let err = broker.purge(&alice.id).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// broker.revoke(&alice.id, RevocationReason::CessationOfOperation)?;
    /// broker.purge(&alice.id)?;
    /// assert_eq!(broker.client(&alice.id).unwrap_err().kind(), ErrorKind::NotFound);
    /// assert_eq!(broker.purge(&alice.id).unwrap_err().kind(), ErrorKind::NotFound);
    ///
    /// // Its /64 is free again: the next subnet client gets it.
    /// let bob = broker.add_client(&NewClient::new("bob".parse()?, ClientKind::Subnet))?;
    /// assert_eq!(bob.assignment, alice.assignment);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn purge(&self, id: &ClientId) -> Result<Client> {
        self.store().write_with(|tx| {
            let client = load_client(tx, id)?;
            require_state(&client, ClientState::Revoked, "purge")?;
            let mut taken = self.taken(tx)?;
            tx.delete_client(id)?;
            let released = taken.release(&client.server, &client.assignment, client.port);
            if released {
                taken.save(tx)?;
            } else {
                tx.set_plan_state(None)?;
            }
            Ok(client)
        })
    }
}

/// Refuses a certificate made for a client's own key (from its request)
/// when another client's recorded certificate carries that key; `except`
/// may keep its own. A key the broker made itself is new by construction.
fn check_key_is_own(
    tx: &mut dyn Transaction,
    cert: &CertRecord,
    except: Option<&ClientId>,
) -> Result<()> {
    if cert.key_pem.is_some() {
        return Ok(());
    }
    let spki = Certificate::from_pem(&cert.pem)?.public_key_info()?;
    match tx.key_owner(&spki, except)? {
        Some(owner) => Err(Error::CsrKeyInUse {
            owner: format!("client {owner}"),
        }),
        None => Ok(()),
    }
}

/// Refuses `action` on a client that is not in state `needed`.
pub(super) fn require_state(
    client: &Client,
    needed: ClientState,
    action: &'static str,
) -> Result<()> {
    if client.state == needed {
        return Ok(());
    }
    Err(Error::ClientState {
        id: client.id.to_string(),
        state: client.state,
        action,
    })
}

pub(super) fn load_client(tx: &mut dyn Transaction, id: &ClientId) -> Result<Client> {
    let rec = tx
        .client(id)?
        .ok_or_else(|| Error::UnknownClient { id: id.to_string() })?;
    let cert = tx.latest_certificate(id)?.ok_or_else(|| missing_cert(id))?;
    Ok(to_client(rec, &cert))
}

fn to_client(rec: ClientRecord, cert: &CertRecord) -> Client {
    Client {
        kind: rec.assignment.kind(),
        id: rec.id,
        os: rec.os,
        assignment: rec.assignment,
        port: rec.port,
        serial: cert.serial.clone(),
        state: rec.state,
        email: rec.email,
        name: rec.name,
        created_at: rec.created_at,
        revoked_at: rec.revoked_at,
        not_after: cert.not_after,
        has_key: cert.key_pem.is_some(),
        server: rec.server,
    }
}

fn missing_cert(id: &ClientId) -> Error {
    Error::Database {
        reason: format!("client {id} has no certificate record"),
    }
}
