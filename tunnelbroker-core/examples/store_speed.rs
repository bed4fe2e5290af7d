//! How long the store part of an import and of one add take, on SQLite and
//! on PostgreSQL: `cargo run --release -p tunnelbroker-core --example
//! store_speed [POSTGRES_URL]` (a database that holds nothing; the URL
//! defaults to `TUNNELBROKER_TEST_POSTGRES`'s cluster, in a new database).
//!
//! It replays the transactions `client import` makes (batches of 500; per
//! client an ID check, a client row and a certificate row; the allocation
//! state read and written per batch), without issuing certificates, so
//! that only the store's cost is measured. scripts/bench-broker measures
//! the whole broker.

use std::time::Instant;

use time::OffsetDateTime;
use tunnelbroker_core::broker::{ClientOs, ClientState};
use tunnelbroker_core::store::{
    CertRecord, CertState, ClientRecord, DatabaseUrl, PostgresStore, SqliteStore, Store,
};
use tunnelbroker_core::{Assignment, ClientId, ClientKind, Pool};

const CLIENTS: u32 = 10_000;
const BATCH: u32 = 500;

fn pool() -> Pool {
    "2001:db8::/48".parse().unwrap()
}

fn client(i: u32) -> (ClientRecord, CertRecord) {
    let at = OffsetDateTime::now_utc();
    let id = ClientId::new(&format!("client-{i}")).unwrap();
    let rec = ClientRecord {
        id: id.clone(),
        os: ClientOs::Linux,
        assignment: Assignment::parse_in(
            &pool(),
            ClientKind::Subnet,
            &format!("2001:db8:0:{:x}::/64", 0x100 + i),
        )
        .unwrap(),
        port: Some(u16::try_from(1024 + i).unwrap()),
        state: ClientState::Active,
        email: Some(format!("client-{i}@example.org")),
        name: None,
        created_at: at,
        revoked_at: None,
        server: "main".into(),
    };
    let cert = CertRecord {
        serial: format!("4{i:031X}").parse().unwrap(),
        client_id: id,
        // About the size of a P-256 client certificate and key.
        pem: "C".repeat(700),
        key_pem: Some("K".repeat(240)),
        not_after: at,
        state: CertState::Current,
        revoked: None,
    };
    (rec, cert)
}

fn import(store: &dyn Store, from: u32, to: u32) {
    let mut i = from;
    while i < to {
        let end = (i + BATCH).min(to);
        store
            .write_with(|tx| {
                let state = tx.plan_state()?;
                for k in i..end {
                    let (rec, cert) = client(k);
                    assert!(!tx.has_client(&rec.id)?);
                    tx.insert_client(&rec)?;
                    tx.insert_certificate(&cert)?;
                }
                tx.set_plan_state(Some(state.as_deref().unwrap_or("state")))
            })
            .unwrap();
        i = end;
    }
}

fn add(store: &dyn Store, i: u32) {
    store
        .write_with(|tx| {
            let _ = tx.plan_state()?;
            let (rec, cert) = client(i);
            assert!(!tx.has_client(&rec.id)?);
            assert!(tx.port_owner(rec.port.unwrap())?.is_none());
            tx.insert_client(&rec)?;
            tx.insert_certificate(&cert)?;
            let _ = tx.next_crl_number()?;
            tx.set_plan_state(Some("state"))
        })
        .unwrap();
}

fn measure(name: &str, store: &dyn Store) {
    let t = Instant::now();
    import(store, 0, CLIENTS);
    let import_s = t.elapsed().as_secs_f64();
    let mut adds = Vec::new();
    for k in 0..20 {
        let t = Instant::now();
        add(store, CLIENTS + k);
        adds.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    adds.sort_by(f64::total_cmp);
    println!(
        "{name:>10}: import of {CLIENTS} clients {import_s:.2} s; one add with {CLIENTS} clients: median {:.1} ms, max {:.1} ms",
        adds[adds.len() / 2],
        adds[adds.len() - 1]
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::create(&dir.path().join("clients.db"), pool()).unwrap();
    measure("SQLite", &sqlite);
    let mut made = None;
    let url: DatabaseUrl = match std::env::args().nth(1) {
        Some(u) => u.parse().unwrap(),
        None => {
            let Ok(admin) = std::env::var("TUNNELBROKER_TEST_POSTGRES") else {
                eprintln!("no PostgreSQL URL given and TUNNELBROKER_TEST_POSTGRES unset");
                return;
            };
            let name = format!("tb_speed_{}", std::process::id());
            let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
            c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
            let (base, _) = admin.rsplit_once('/').unwrap();
            let url = format!("{base}/{name}").parse().unwrap();
            made = Some((c, name));
            url
        }
    };
    let pg = PostgresStore::create(&url, pool()).unwrap();
    measure("PostgreSQL", &pg);
    drop(pg);
    if let Some((mut c, name)) = made {
        c.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .unwrap();
    }
}
