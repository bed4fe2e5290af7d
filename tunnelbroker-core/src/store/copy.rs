//! Moving a broker's records from one store into another (SQLite to
//! PostgreSQL, when a broker outgrows one host).

use serde::Serialize;

use super::Store;
use crate::error::{Error, Result};

/// What [`copy`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CopyReport {
    /// Client rows.
    pub clients: usize,
    /// Certificate rows (current, revoked and superseded, also those of
    /// purged clients).
    pub certificates: usize,
    /// Session rows (live and ended).
    pub sessions: usize,
}

/// Copies everything (clients, certificates, shared values, the CRL
/// number, sessions and the assignment history) from one store into another that holds no clients and no
/// certificates, in one write transaction of the target: it receives
/// everything or nothing.
///
/// The source is read on one consistent snapshot. Certificates are
/// inserted in the order they were recorded, so that each client's latest
/// certificate stays its latest. A shared value of the source replaces one
/// of the same key in the target; the target's CRL number becomes the
/// larger of the two (CRL numbers only grow). The target's saved allocation
/// state is dropped: its next writer rebuilds it from the client rows.
///
/// A target that holds clients or certificates is refused
/// ([`Error::Database`]), and nothing is written to it.
pub fn copy(from: &dyn Store, to: &dyn Store) -> Result<CopyReport> {
    let (servers, clients, certificates, shared, crl, sessions, history) =
        from.read_with(|tx| {
            Ok((
                tx.servers()?,
                tx.clients()?,
                tx.certificates()?,
                tx.shared_values()?,
                tx.crl_number()?,
                tx.sessions(&super::SessionFilter::default())?,
                tx.assignment_history(None)?,
            ))
        })?;
    to.write_with(|tx| {
        let held_clients = tx.client_count()?;
        let held_certs = tx.certificates()?.len();
        if held_clients > 0 || held_certs > 0 {
            return Err(Error::Database {
                reason: format!(
                    "the target database holds {held_clients} clients and {held_certs} certificates already; copy only into a new one"
                ),
            });
        }
        let held: Vec<String> = tx.servers()?.into_iter().map(|s| s.name).collect();
        for s in servers.iter().filter(|s| !held.contains(&s.name)) {
            tx.insert_server(s)?;
        }
        for c in &clients {
            tx.insert_client(c)?;
        }
        for c in &certificates {
            tx.insert_certificate(c)?;
        }
        for (key, value) in &shared {
            tx.set_shared(key, value)?;
        }
        let target_crl = tx.crl_number()?;
        tx.set_crl_number(crl.max(target_crl))?;
        tx.set_plan_state(None)?;
        // The history as it was (inserting the clients started new spans).
        tx.replace_assignment_history(&history)?;
        for s in &sessions {
            tx.insert_session(s)?;
        }
        Ok(CopyReport {
            clients: clients.len(),
            certificates: certificates.len(),
            sessions: sessions.len(),
        })
    })
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::ErrorKind;
    use crate::client_id::ClientId;
    use crate::pki::RevocationReason;
    use crate::pki::Serial;
    use crate::plan::{Assignment, ClientKind, Pool};
    use crate::store::{CertRecord, CertState, ClientRecord, SqliteStore};
    use crate::words::{ClientOs, ClientState};

    fn pool() -> Pool {
        "2001:db8:0:f100::/56".parse().unwrap()
    }

    fn client(i: u8, state: ClientState) -> ClientRecord {
        ClientRecord {
            id: ClientId::new(&format!("c{i}")).unwrap(),
            os: ClientOs::Linux,
            assignment: Assignment::parse_in(
                &pool(),
                ClientKind::Subnet,
                &format!("2001:db8:0:f1{i:02x}::/64"),
            )
            .unwrap(),
            port: Some(5000 + u16::from(i)),
            state,
            email: Some(format!("c{i}@example.org")),
            name: None,
            created_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            revoked_at: None,
            server: "main".into(),
        }
    }

    fn cert(serial: &str, client: u8, state: CertState) -> CertRecord {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_100).unwrap();
        CertRecord {
            serial: serial.parse::<Serial>().unwrap(),
            client_id: ClientId::new(&format!("c{client}")).unwrap(),
            pem: format!("-----BEGIN CERTIFICATE-----\n{serial}\n"),
            key_pem: Some("key".into()),
            not_after: at,
            state,
            revoked: (state == CertState::Revoked).then_some((at, RevocationReason::Superseded)),
        }
    }

    fn store(dir: &tempfile::TempDir, name: &str) -> SqliteStore {
        SqliteStore::create(&dir.path().join(name), pool()).unwrap()
    }

    #[test]
    fn everything_is_copied_and_the_latest_certificate_stays_latest() {
        let dir = tempfile::tempdir().unwrap();
        let a = store(&dir, "a.db");
        let b = store(&dir, "b.db");
        let a_dyn: &dyn Store = &a;
        a_dyn
            .write_with(|tx| {
                tx.insert_client(&client(1, ClientState::Active))?;
                tx.insert_client(&client(2, ClientState::Revoked))?;
                // Serials out of order: the later one sorts first.
                tx.insert_certificate(&cert("7F01", 1, CertState::Revoked))?;
                tx.insert_certificate(&cert("1A02", 1, CertState::Current))?;
                tx.insert_certificate(&cert("5503", 2, CertState::Revoked))?;
                // A purged client's certificate.
                tx.insert_certificate(&cert("6604", 9, CertState::Revoked))?;
                tx.set_shared("ca", "PEM")?;
                tx.set_shared("pool", "2001:db8:0:f100::/56")?;
                tx.set_crl_number(41)?;
                tx.set_plan_state(Some("state"))?;
                Ok(())
            })
            .unwrap();
        let b_dyn: &dyn Store = &b;
        b_dyn
            .write_with(|tx| tx.set_shared("pool", "stale"))
            .unwrap();
        let report = copy(&a, &b).unwrap();
        assert_eq!(
            report,
            CopyReport {
                clients: 2,
                certificates: 4,
                sessions: 0,
            }
        );
        let read = |s: &dyn Store| {
            s.read_with(|tx| {
                Ok((
                    tx.clients()?,
                    tx.certificates()?,
                    tx.shared_values()?,
                    tx.crl_number()?,
                    tx.latest_certificate(&ClientId::new("c1")?)?,
                ))
            })
            .unwrap()
        };
        let (ca, cb) = (read(&a), read(&b));
        assert_eq!(ca.0, cb.0);
        assert_eq!(ca.1, cb.1);
        assert_eq!(ca.2, cb.2);
        assert_eq!(cb.3, 41);
        assert_eq!(cb.4.unwrap().serial.to_string(), "1A02");
        assert_eq!(b_dyn.read_with(|tx| tx.plan_state()).unwrap(), None);
        assert_eq!(b_dyn.write_with(|tx| tx.next_crl_number()).unwrap(), 42);
    }

    #[test]
    fn a_target_with_records_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let a = store(&dir, "a.db");
        let b = store(&dir, "b.db");
        let (a_dyn, b_dyn): (&dyn Store, &dyn Store) = (&a, &b);
        a_dyn
            .write_with(|tx| tx.insert_client(&client(1, ClientState::Active)))
            .unwrap();
        b_dyn
            .write_with(|tx| tx.insert_certificate(&cert("0BAD", 5, CertState::Revoked)))
            .unwrap();
        let e = copy(&a, &b).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Database);
        assert!(
            e.to_string().contains("0 clients and 1 certificates"),
            "{e}"
        );
        assert_eq!(b_dyn.read_with(|tx| tx.client_count()).unwrap(), 0);
    }
}
