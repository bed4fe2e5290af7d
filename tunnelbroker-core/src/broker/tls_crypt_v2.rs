//! Per-client control channel keys (`tls-crypt-v2`, issue 15): the server
//! key, each client's key, the list of current clients the server's verify
//! program reads, and moving a broker between v1 and v2.
//!
//! A client's key is made when its bundle is made (see
//! [`Broker::tls_crypt_v2_client_key`]): nothing secret is stored for it,
//! and its metadata binds it to the client's current certificate
//! ([`ClientBinding`]), so renewing or revoking the client ends every key
//! made for it before, and a new bundle carries a new key.

use super::{Broker, ClientState, TlsCryptVersion, shared};
use crate::client_id::ClientId;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::openvpn::{ServerFiles, TlsCryptV2Clients};
use crate::pki::{ClientBinding, Serial, TlsCryptV2ClientKey, TlsCryptV2ServerKey};
use crate::store::Transaction;

/// What [`Broker::set_tls_crypt`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsCryptChange {
    /// The version before.
    pub from: TlsCryptVersion,
    /// The version now.
    pub to: TlsCryptVersion,
    /// Whether a `tls-crypt-v2` server key was made (a broker made before
    /// v2 has none).
    pub made_server_key: bool,
}

impl TlsCryptChange {
    /// Whether the version changed.
    pub fn changed(&self) -> bool {
        self.from != self.to
    }
}

impl Broker {
    /// The `tls-crypt-v2` server key (secret).
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::ErrorKind;
    /// let key = broker.tls_crypt_v2_server_key()?;
    /// assert!(key.to_pem().contains("OpenVPN tls-crypt-v2 server key"));
    ///
    /// // A damaged file is refused, naming it.
    /// std::fs::write(&broker.paths().tls_crypt_v2_server_key, "junk").unwrap();
    /// let err = broker.tls_crypt_v2_server_key().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// assert!(err.to_string().contains("tls-crypt-v2-server.key"), "{err}");
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn tls_crypt_v2_server_key(&self) -> Result<TlsCryptV2ServerKey> {
        let path = &self.paths.tls_crypt_v2_server_key;
        TlsCryptV2ServerKey::parse(&fsutil::read_to_string(path)?).map_err(|e| e.in_file(path))
    }

    /// A new `tls-crypt-v2` key for an active client, bound to its current
    /// certificate (metadata `tunnelbroker-1 SERIAL ID`). Every call makes
    /// another key; all of them are accepted while the certificate is the
    /// client's current one, and none after it is renewed or revoked.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::pki::{ClientBinding, RevocationReason};
    /// use tunnelbroker_core::{ClientKind, ErrorKind, NewClient};
    /// let alice = broker.add_client(&NewClient::new("alice".parse()?, ClientKind::Hermit))?;
    /// let key = broker.tls_crypt_v2_client_key(&alice.id)?;
    /// let meta = key.unwrap_with(&broker.tls_crypt_v2_server_key()?)?;
    /// assert_eq!(ClientBinding::from_metadata(&meta)?, ClientBinding::new(alice.id.clone(), alice.serial));
    ///
    /// broker.revoke(&alice.id, RevocationReason::Unspecified)?;
    /// let err = broker.tls_crypt_v2_client_key(&alice.id).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn tls_crypt_v2_client_key(&self, id: &ClientId) -> Result<TlsCryptV2ClientKey> {
        let client = self.client(id)?;
        if client.state != ClientState::Active {
            return Err(Error::ClientState {
                id: id.to_string(),
                state: client.state,
                action: "make a tls-crypt-v2 key for",
            });
        }
        let binding = ClientBinding::new(client.id, client.serial);
        self.tls_crypt_v2_server_key()?
            .client_key(&binding.metadata())
    }

    /// The list of current clients of `serials` (as
    /// [`Transaction::current_serials`] gives them): the bindings the
    /// server accepts, the current certificate of every active client of
    /// this broker's server (a client of another server is refused here
    /// before TLS, as its certificate name is by the other server's
    /// `verify-x509-name`).
    pub(crate) fn tls_crypt_v2_clients_of(
        &self,
        serials: Vec<(ClientId, Serial)>,
    ) -> TlsCryptV2Clients {
        TlsCryptV2Clients::new(
            serials
                .into_iter()
                .map(|(id, serial)| ClientBinding::new(id, serial))
                .collect(),
        )
    }

    /// The text of the list of current clients, as the database `tx` has
    /// them.
    pub(crate) fn tls_crypt_v2_clients_text(&self, tx: &mut dyn Transaction) -> Result<String> {
        let serials = tx.current_serials(self.server_name())?;
        Ok(self.tls_crypt_v2_clients_of(serials).to_string())
    }

    /// Writes the list of current clients to the recorded server
    /// directory, beside the CRL copy, when this broker uses v2 and a
    /// rendering recorded a directory. Called with every CRL, inside the
    /// transaction that changed the clients.
    pub(super) fn copy_tls_crypt_v2_clients(&self, tx: &mut dyn Transaction) -> Result<()> {
        if self.settings.tls_crypt != TlsCryptVersion::V2 {
            return Ok(());
        }
        if let Some(dir) = self.recorded_server()?.dir {
            let text = self.tls_crypt_v2_clients_text(tx)?;
            fsutil::write_public(
                &dir.join(ServerFiles::TLS_CRYPT_V2_CLIENTS),
                text.as_bytes(),
            )?;
        }
        Ok(())
    }

    /// Moves the broker to `version` of control channel protection (a
    /// shared setting: the database and this host's settings file), making
    /// the `tls-crypt-v2` server key first if the broker has none.
    ///
    /// Nothing else changes until the server side is rendered again and
    /// clients get new bundles: one OpenVPN server accepts either v1 or v2
    /// clients, never both (docs/openvpn.md, "Moving to tls-crypt-v2").
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let mut settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// use tunnelbroker_core::broker::TlsCryptVersion;
    /// settings.tls_crypt = TlsCryptVersion::V1;
    /// let dir = tmp.path().join("broker");
    /// let mut broker = Broker::init(&dir, &InitOptions::new(settings))?;
    /// let change = broker.set_tls_crypt(TlsCryptVersion::V2)?;
    /// assert!(change.changed());
    /// assert_eq!(broker.settings().tls_crypt, TlsCryptVersion::V2);
    /// assert_eq!(Broker::open(&dir)?.settings().tls_crypt, TlsCryptVersion::V2);
    /// // Again: nothing to do.
    /// assert!(!broker.set_tls_crypt(TlsCryptVersion::V2)?.changed());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn set_tls_crypt(&mut self, version: TlsCryptVersion) -> Result<TlsCryptChange> {
        let mut made_server_key = false;
        if version == TlsCryptVersion::V2 && !self.paths.tls_crypt_v2_server_key.exists() {
            TlsCryptV2ServerKey::generate()?.write(&self.paths.tls_crypt_v2_server_key)?;
            made_server_key = true;
        }
        if version == TlsCryptVersion::V2 {
            // A damaged key is refused before anything changes.
            self.tls_crypt_v2_server_key()?;
        }
        let from = self.store().write_with(|tx| {
            let values = shared::SharedValues::read(tx)?;
            let from = values.settings(&self.settings)?.tls_crypt;
            shared::set_tls_crypt(tx, version)?;
            Ok(from)
        })?;
        self.settings.tls_crypt = version;
        let text = fsutil::read_to_string(&self.paths.settings)?;
        let mut file = super::Settings::from_toml(&text)?;
        if file.tls_crypt != version {
            file.tls_crypt = version;
            fsutil::write_public(&self.paths.settings, file.to_toml().as_bytes())?;
        }
        Ok(TlsCryptChange {
            from,
            to: version,
            made_server_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::render::V2Plan;
    use crate::broker::{InitOptions, NewServer, Settings};
    use crate::pki::RevocationReason;
    use crate::{ClientKind, NewClient};

    fn settings() -> Settings {
        Settings::new(
            "2001:db8:0:f100::/56".parse().unwrap(),
            "vpn.example.net".parse().unwrap(),
        )
    }

    /// The one query of the SQLite store picks what the rows say: active
    /// clients of the server, with their latest certificate when it is
    /// current, in ID order.
    #[test]
    fn the_current_serials_of_one_query_are_those_of_the_rows() {
        let tmp = tempfile::tempdir().unwrap();
        let mut options = InitOptions::new(settings());
        options.parent = Some("2001:db8::/48".parse().unwrap());
        let b = Broker::init(&tmp.path().join("broker"), &options).unwrap();
        b.add_server(&NewServer::new("b", "vpn-b.example.net".parse().unwrap()))
            .unwrap();
        let add = |id: &str, server: &str| {
            let mut new = NewClient::new(id.parse().unwrap(), ClientKind::Hermit);
            new.server = Some(server.to_owned());
            b.add_client(&new).unwrap()
        };
        // Added out of ID order, so that the order is the query's.
        let zoe = add("zoe", "main");
        let alice = add("alice", "main");
        let bob = add("bob", "main");
        let carol = add("carol", "main");
        let dave = add("dave", "main");
        let erin = add("erin", "b");
        b.revoke(&bob.id, RevocationReason::Unspecified).unwrap();
        b.renew(&carol.id, None).unwrap();
        let carol = b.renew(&carol.id, None).unwrap();
        b.revoke(&dave.id, RevocationReason::Unspecified).unwrap();
        b.purge(&dave.id).unwrap();
        // A row the broker never writes: a revoked certificate recorded
        // after frank's current one. Only the latest counts, so he is out.
        let frank = add("frank", "main");
        b.store()
            .write_with(|tx| {
                let mut later = tx.latest_certificate(&frank.id)?.unwrap();
                later.serial = crate::pki::Serial::random()?;
                later.state = crate::store::CertState::Revoked;
                later.revoked = Some((
                    time::OffsetDateTime::now_utc(),
                    RevocationReason::Unspecified,
                ));
                tx.insert_certificate(&later)
            })
            .unwrap();
        for (server, want) in [
            ("main", vec![&alice, &carol, &zoe]),
            ("b", vec![&erin]),
            ("nowhere", vec![]),
        ] {
            let fast = b
                .store()
                .read_with(|tx| tx.current_serials(server))
                .unwrap();
            let slow = b
                .store()
                .read_with(|tx| crate::store::current_serials_by_rows(tx, server))
                .unwrap();
            assert_eq!(fast, slow, "{server}");
            let want: Vec<_> = want
                .into_iter()
                .map(|c| (c.id.clone(), c.serial.clone()))
                .collect();
            assert_eq!(fast, want, "{server}");
            // The rows a rendering reads: the active clients of the
            // server (frank too: he has no current certificate, yet a CCD
            // entry), as the whole rows say.
            let rendered = b
                .store()
                .read_with(|tx| tx.rendered_clients(server))
                .unwrap();
            let rows: Vec<_> = b
                .store()
                .read_with(|tx| tx.clients())
                .unwrap()
                .into_iter()
                .filter(|c| c.server == server && c.state == ClientState::Active)
                .map(|c| (c.id, c.assignment, c.port))
                .collect();
            assert_eq!(rendered, rows, "{server}");
        }
    }

    /// A list of tls-crypt-v2 clients planned in one transaction is written
    /// in the next only if nothing was committed in between (the store's
    /// data stamp) or the serials are still the current ones: a revocation
    /// between a rendering's plan and its write is never undone.
    #[test]
    fn a_list_planned_before_a_revocation_is_made_again() {
        let tmp = tempfile::tempdir().unwrap();
        let mut b =
            Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings())).unwrap();
        b.set_tls_crypt(TlsCryptVersion::V2).unwrap();
        let add = |id: &str| {
            b.add_client(&NewClient::new(id.parse().unwrap(), ClientKind::Hermit))
                .unwrap()
        };
        let alice = add("alice");
        let bob = add("bob");
        let list = tmp.path().join("tls-crypt-v2-clients");
        let plan = || {
            let (serials, stamp) = b
                .store()
                .read_with(|tx| {
                    let serials = tx.current_serials("main")?;
                    Ok((serials, tx.data_stamp()?))
                })
                .unwrap();
            let text = b.tls_crypt_v2_clients_of(serials.clone()).to_string();
            V2Plan {
                serials,
                stamp,
                text,
            }
        };
        let write = |planned: &V2Plan| {
            b.store()
                .write_with(|tx| b.write_tls_crypt_v2_clients(tx, &list, Some(planned)))
                .unwrap()
        };
        // Nothing committed since: the planned text, as it is.
        let planned = plan();
        assert!(planned.stamp.is_some());
        assert_eq!(write(&planned), Some(true));
        assert_eq!(std::fs::read_to_string(&list).unwrap(), planned.text);
        assert_eq!(write(&planned), Some(false));
        // A revocation after the plan: the list is made again without bob.
        let planned = plan();
        b.revoke(&bob.id, RevocationReason::Unspecified).unwrap();
        let stale = b.store().read_with(|tx| tx.data_stamp()).unwrap();
        assert_ne!(stale, planned.stamp, "a commit moves the stamp");
        assert_eq!(write(&planned), Some(true));
        let text = std::fs::read_to_string(&list).unwrap();
        assert!(text.contains(&format!("{} alice", alice.serial)), "{text}");
        assert!(!text.contains(" bob"), "{text}");
        // A commit that leaves the serials as planned (a shared value):
        // the planned text is still right, and written as it is.
        let planned = plan();
        b.store()
            .write_with(|tx| tx.set_shared("test", "value"))
            .unwrap();
        std::fs::remove_file(&list).unwrap();
        assert_eq!(write(&planned), Some(true));
        assert_eq!(std::fs::read_to_string(&list).unwrap(), planned.text);
    }
}
