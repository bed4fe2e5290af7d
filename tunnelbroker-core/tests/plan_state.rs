//! The saved allocation state of the client database (schema 2): adds start
//! from the saved runs instead of reading every client, and a state that is
//! missing, garbled or out of step with the client rows is never trusted:
//! the rows win, and no assignment or port is handed out twice. The cases
//! that edit the rows run on both stores (`stores`); the schema cases and
//! the model check (SQLite's `clients.db`, and allocation alone) on SQLite.

use std::collections::HashSet;
use std::path::Path;

use proptest::prelude::*;
use rusqlite::Connection;
use tunnelbroker_core::broker::ServerMode;
use tunnelbroker_core::pki::RevocationReason;
use tunnelbroker_core::plan::Allocator;
use tunnelbroker_core::{Broker, ClientKind, NewClient, Settings};

use crate::stores::{self, TestStore, by_store, lit};

const POOL: &str = "2001:db8:0:f1f8::/61";

fn new_broker() -> (tempfile::TempDir, Broker) {
    broker_in(&TestStore::Sqlite, ServerMode::PerClient)
}

/// A new broker in `mode`, its clients in `store`.
fn broker_in(store: &TestStore, mode: ServerMode) -> (tempfile::TempDir, Broker) {
    let tmp = tempfile::tempdir().unwrap();
    let mut settings = Settings::new(POOL.parse().unwrap(), "vpn.example.net".parse().unwrap());
    settings.mode = mode;
    let b = Broker::init(&tmp.path().join("broker"), &store.options(settings)).unwrap();
    (tmp, b)
}

fn add(b: &Broker, id: &str, kind: ClientKind) -> tunnelbroker_core::Client {
    b.add_client(&NewClient::new(id.parse().unwrap(), kind))
        .unwrap()
}

fn db(b: &Broker) -> Connection {
    Connection::open(&b.paths().database).unwrap()
}

fn saved_state(b: &Broker) -> Option<String> {
    stores::query_text(b, "SELECT state FROM plan_state")
}

/// Every client's assignment and port are unique.
fn assert_unique(b: &Broker) {
    let clients = b.clients().unwrap();
    let prefixes: HashSet<_> = clients.iter().map(|c| c.assignment.prefix()).collect();
    let ports: Vec<_> = clients.iter().filter_map(|c| c.port).collect();
    let distinct: HashSet<_> = ports.iter().collect();
    assert_eq!(prefixes.len(), clients.len(), "an assignment is shared");
    assert_eq!(distinct.len(), ports.len(), "a port is shared");
}

fn every_change_saves_the_runs_and_adds_use_them(store: &TestStore) {
    let (_t, b) = broker_in(store, ServerMode::PerClient);
    assert_eq!(saved_state(&b), None, "a new broker has no clients to save");
    add(&b, "a", ClientKind::Subnet);
    add(&b, "b", ClientKind::Hermit);
    let state = saved_state(&b).expect("the add saved the state");
    assert!(state.contains("2001:db8:0:f1f9::/64"), "{state}");
    assert!(state.contains("2001:db8:0:f1ff::1"), "{state}");
    assert!(state.contains("[5000,5001]"), "{state}");
    let c = add(&b, "c", ClientKind::Subnet);
    assert_eq!(c.assignment.to_string(), "2001:db8:0:f1fa::/64");
    assert_eq!(c.port, Some(5002));
}
by_store!(every_change_saves_the_runs_and_adds_use_them);

fn a_missing_or_garbled_state_is_rebuilt_from_the_rows(store: &TestStore) {
    let (_t, b) = broker_in(store, ServerMode::PerClient);
    add(&b, "a", ClientKind::Subnet);
    add(&b, "b", ClientKind::Subnet);
    stores::sql(&b, "DELETE FROM plan_state");
    let c = add(&b, "c", ClientKind::Subnet);
    assert_eq!(c.assignment.to_string(), "2001:db8:0:f1fb::/64");
    assert_eq!(c.port, Some(5002));
    for garbage in ["not json", "{}", "{\"plan\":1,\"ports\":[[9,1]]}", ""] {
        stores::sql(
            &b,
            &format!("UPDATE plan_state SET state = {}", lit(garbage)),
        );
        add(&b, &format!("h{}", garbage.len()), ClientKind::Hermit);
    }
    assert_unique(&b);
    assert_eq!(b.clients().unwrap().len(), 7);
}
by_store!(a_missing_or_garbled_state_is_rebuilt_from_the_rows);

fn a_state_that_forgot_a_client_never_hands_its_assignment_out_again(store: &TestStore) {
    // Shared mode: no port to give the stale state away, only the rows.
    let (_t, b) = broker_in(store, ServerMode::Shared);
    add(&b, "a", ClientKind::Subnet);
    let old = saved_state(&b).unwrap();
    add(&b, "b", ClientKind::Subnet);
    // Put back the state from before `b`.
    stores::sql(&b, &format!("UPDATE plan_state SET state = {}", lit(&old)));
    let c = add(&b, "c", ClientKind::Subnet);
    assert_eq!(c.assignment.to_string(), "2001:db8:0:f1fb::/64");
    assert_unique(&b);
}
by_store!(a_state_that_forgot_a_client_never_hands_its_assignment_out_again);

fn a_client_deleted_behind_the_brokers_back_frees_its_assignment(store: &TestStore) {
    let (_t, b) = broker_in(store, ServerMode::Shared);
    add(&b, "a", ClientKind::Subnet);
    let gone = add(&b, "b", ClientKind::Subnet);
    add(&b, "c", ClientKind::Subnet);
    stores::sql(&b, "DELETE FROM clients WHERE id = 'b'");
    // The saved state still holds b's subnet; the count of rows says no.
    let d = add(&b, "d", ClientKind::Subnet);
    assert_eq!(d.assignment, gone.assignment);
}
by_store!(a_client_deleted_behind_the_brokers_back_frees_its_assignment);

/// A client row changed behind the broker's back to the assignment (and
/// port) the saved state thinks are free next, keeping the count of rows.
fn move_a_to_the_next_assignment(b: &Broker) {
    stores::sql(
        b,
        "UPDATE clients SET id = 'x', prefix = '2001:db8:0:f1fa::/64',
             port = CASE WHEN port IS NULL THEN NULL ELSE 5001 END
         WHERE id = 'a';
         UPDATE certificates SET client_id = 'x' WHERE client_id = 'a';",
    );
}

fn a_state_out_of_step_with_the_same_count_is_caught_by_the_rows(store: &TestStore) {
    for mode in [ServerMode::PerClient, ServerMode::Shared] {
        let (_t, b) = broker_in(store, mode);
        let a = add(&b, "a", ClientKind::Subnet);
        let old = saved_state(&b).unwrap();
        move_a_to_the_next_assignment(&b);
        assert_eq!(
            saved_state(&b).unwrap(),
            old,
            "one row, one saved: counts agree"
        );
        // The state says f1f9 is taken and f1fa free; the rows say otherwise.
        let c = add(&b, "c", ClientKind::Subnet);
        assert_eq!(
            c.assignment, a.assignment,
            "{mode:?}: the rows free f1f9 again"
        );
        assert_eq!(c.port, a.port);
        let d = add(&b, "d", ClientKind::Subnet);
        assert_eq!(d.assignment.to_string(), "2001:db8:0:f1fb::/64");
        assert_unique(&b);
    }
}
by_store!(a_state_out_of_step_with_the_same_count_is_caught_by_the_rows);

fn a_requested_prefix_the_stale_state_calls_free_names_its_owner(store: &TestStore) {
    let (_t, b) = broker_in(store, ServerMode::Shared);
    add(&b, "a", ClientKind::Subnet);
    move_a_to_the_next_assignment(&b);
    // The state says f1fa is free; the rows give it to x.
    let mut req = NewClient::new("c".parse().unwrap(), ClientKind::Subnet);
    req.prefix = Some("2001:db8:0:f1fa::/64".parse().unwrap());
    let err = b.add_client(&req).unwrap_err();
    assert!(err.to_string().contains("already assigned to x"), "{err}");
    // And the state is rebuilt once a write succeeds.
    let c = add(&b, "c", ClientKind::Subnet);
    assert_eq!(c.assignment.to_string(), "2001:db8:0:f1f9::/64");
}
by_store!(a_requested_prefix_the_stale_state_calls_free_names_its_owner);

fn a_port_moved_behind_the_brokers_back_is_not_handed_out_twice(store: &TestStore) {
    let (_t, b) = broker_in(store, ServerMode::PerClient);
    add(&b, "a", ClientKind::Hermit);
    stores::sql(&b, "UPDATE clients SET port = 5001 WHERE id = 'a'");
    // The state says 5000 is taken and 5001 free: the rows say otherwise.
    let c = add(&b, "c", ClientKind::Hermit);
    assert_eq!(c.port, Some(5000));
    assert_unique(&b);
}
by_store!(a_port_moved_behind_the_brokers_back_is_not_handed_out_twice);

fn purge_frees_the_assignment_and_port_in_the_saved_state(store: &TestStore) {
    let (_t, b) = broker_in(store, ServerMode::PerClient);
    let a = add(&b, "a", ClientKind::Hermit);
    add(&b, "b", ClientKind::Hermit);
    b.revoke(&a.id, RevocationReason::Unspecified).unwrap();
    b.purge(&a.id).unwrap();
    let state = saved_state(&b).unwrap();
    assert!(state.contains("[5001,5001]"), "{state}");
    let c = add(&b, "c", ClientKind::Hermit);
    assert_eq!((c.assignment, c.port), (a.assignment, a.port));
}
by_store!(purge_frees_the_assignment_and_port_in_the_saved_state);

/// Turns a current database into a schema-1 one, as an older tunnelbroker
/// left it.
fn downgrade_to_schema_1(path: &Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "DROP TRIGGER clients_assigned; DROP TRIGGER clients_released;
         DROP TRIGGER clients_changed; DROP TABLE sessions; DROP TABLE assignments;
         DROP INDEX clients_by_server;
         ALTER TABLE clients DROP COLUMN server;
         DROP TABLE servers;
         DROP INDEX certificates_by_client;
         DROP INDEX clients_allocation;
         DROP TABLE plan_state;
         DROP TABLE shared;
         PRAGMA user_version = 1;",
    )
    .unwrap();
}

#[test]
fn a_schema_1_database_is_migrated_and_keeps_its_clients() {
    let (t, b) = new_broker();
    let a = add(&b, "a", ClientKind::Subnet);
    let path = b.paths().database.clone();
    let dir = b.dir().to_owned();
    drop(b);
    downgrade_to_schema_1(&path);
    let b = Broker::open(&dir).unwrap();
    let version: u32 = db(&b)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, b.database_status().unwrap().schema_version);
    let plan: String = db(&b)
        .query_row(
            "EXPLAIN QUERY PLAN SELECT serial FROM certificates WHERE client_id = 'a'",
            [],
            |r| r.get(3),
        )
        .unwrap();
    assert!(plan.contains("certificates_by_client"), "{plan}");
    assert_eq!(b.client(&a.id).unwrap().assignment, a.assignment);
    let c = add(&b, "c", ClientKind::Subnet);
    assert_eq!(c.assignment.to_string(), "2001:db8:0:f1fa::/64");
    assert_eq!(c.port, Some(5001));
    drop(t);
}

#[derive(Debug, Clone)]
enum Op {
    Add(ClientKind),
    RevokePurge(usize),
    ForgetState,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop_oneof![Just(ClientKind::Subnet), Just(ClientKind::Hermit)].prop_map(Op::Add),
        1 => (0usize..8).prop_map(Op::RevokePurge),
        1 => Just(Op::ForgetState),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// The broker hands out exactly what a fresh allocator (the model) would:
    /// the lowest free assignment and port, whatever mix of adds, purges and
    /// lost states came before.
    #[test]
    fn adds_match_the_model_allocator(ops in proptest::collection::vec(op(), 1..14)) {
        let (_t, b) = new_broker();
        let mut model = Allocator::new(POOL.parse().unwrap());
        let mut ports: Vec<u16> = Vec::new();
        let mut live: Vec<tunnelbroker_core::Client> = Vec::new();
        for (i, op) in ops.into_iter().enumerate() {
            match op {
                Op::Add(kind) => {
                    let want = model.allocate(kind);
                    let got = b.add_client(&NewClient::new(format!("c{i}").parse().unwrap(), kind));
                    match (want, got) {
                        (Ok(w), Ok(g)) => {
                            prop_assert_eq!(g.assignment, w);
                            let port = (5000u16..).find(|p| !ports.contains(p)).unwrap();
                            prop_assert_eq!(g.port, Some(port));
                            ports.push(port);
                            live.push(g);
                        }
                        (Err(w), Err(g)) => prop_assert_eq!(w.kind(), g.kind()),
                        (w, g) => prop_assert!(false, "model {w:?}, broker {g:?}"),
                    }
                }
                Op::RevokePurge(n) if !live.is_empty() => {
                    let c = live.remove(n % live.len());
                    b.revoke(&c.id, RevocationReason::Unspecified).unwrap();
                    b.purge(&c.id).unwrap();
                    model.release(&c.assignment).unwrap();
                    ports.retain(|&p| Some(p) != c.port);
                }
                Op::RevokePurge(_) => {}
                Op::ForgetState => {
                    stores::sql(&b, "DELETE FROM plan_state");
                }
            }
        }
        assert_unique(&b);
    }
}

#[test]
fn a_database_from_a_newer_tunnelbroker_is_refused_untouched() {
    let (_t, b) = new_broker();
    add(&b, "a", ClientKind::Hermit);
    let dir = b.dir().to_owned();
    let path = b.paths().database.clone();
    drop(b);
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99;")
        .unwrap();
    let err = Broker::open(&dir).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("schema version 99") && text.contains("upgrade tunnelbroker"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1);
    let version: u32 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 99);
}

fn an_import_checks_a_stale_state_against_the_rows_for_its_whole_batch(store: &TestStore) {
    for mode in [ServerMode::PerClient, ServerMode::Shared] {
        let (_t, b) = broker_in(store, mode);
        add(&b, "a", ClientKind::Subnet);
        move_a_to_the_next_assignment(&b);
        // The state says f1fa (x's) is free; an import reserves all its rows
        // before it looks at the rows once, finds x and starts over.
        let report = b
            .import_csv(
                "c,subnet,linux,,\nx,hermit,linux,,\nd,subnet,linux,,\nc,hermit,linux,,\ne,subnet,linux,,\n",
                &mut |_, _| {},
            )
            .unwrap();
        let added: Vec<String> = report
            .added
            .iter()
            .map(|c| format!("{} {}", c.id, c.assignment))
            .collect();
        assert_eq!(
            added,
            [
                "c 2001:db8:0:f1f9::/64",
                "d 2001:db8:0:f1fb::/64",
                "e 2001:db8:0:f1fc::/64"
            ],
            "{mode:?}"
        );
        let lines: Vec<u64> = report.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 4], "{:?}", report.errors);
        assert!(report.errors.iter().all(|e| e.error.contains("exists")));
        assert_unique(&b);
        // And the next add starts from the saved state again.
        assert_eq!(
            add(&b, "f", ClientKind::Subnet).assignment.to_string(),
            "2001:db8:0:f1fd::/64"
        );
    }
}
by_store!(an_import_checks_a_stale_state_against_the_rows_for_its_whole_batch);
