//! `audit` (issue 7): one test per inconsistency it reports, made by
//! altering the database with rusqlite, replacing the CRL or changing the
//! settings, and the safe repairs of `--fix`.

use std::fs;

use rusqlite::Connection;
use tunnelbroker_core::doctor::{AuditOptions, Report, Status, audit};
use tunnelbroker_core::{
    Broker, Ca, CaParams, ClientKind, InitOptions, NewClient, RevocationReason, Settings,
};

fn broker_with(settings: Settings) -> (tempfile::TempDir, Broker) {
    let tmp = tempfile::tempdir().unwrap();
    let b = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings)).unwrap();
    for (id, kind) in [
        ("alice", ClientKind::Subnet),
        ("bob", ClientKind::Subnet),
        ("carol", ClientKind::Hermit),
    ] {
        b.add_client(&NewClient::new(id.parse().unwrap(), kind))
            .unwrap();
    }
    (tmp, b)
}

fn settings() -> Settings {
    Settings::new(
        "2001:db8:0:f100::/56".parse().unwrap(),
        "vpn.example.net".parse().unwrap(),
    )
}

fn broker() -> (tempfile::TempDir, Broker) {
    broker_with(settings())
}

fn run(b: &Broker) -> Report {
    audit(b, &AuditOptions::default())
}

fn fix(b: &Broker) -> Report {
    let mut o = AuditOptions::default();
    o.fix = true;
    audit(b, &o)
}

fn fails(r: &Report) -> Vec<&str> {
    r.with_status(Status::Fail)
        .map(|c| c.name.as_str())
        .collect()
}

fn sql(b: &Broker, statement: &str) {
    let conn = Connection::open(&b.paths().database).unwrap();
    conn.execute_batch(statement).unwrap();
}

#[test]
fn a_consistent_broker_passes() {
    let (_t, b) = broker();
    b.revoke(&"carol".parse().unwrap(), RevocationReason::Unspecified)
        .unwrap();
    b.renew(&"bob".parse().unwrap(), None).unwrap();
    let r = run(&b);
    assert!(fails(&r).is_empty(), "{r}");
    assert_eq!(r.count(Status::Warn), 0, "{r}");
    assert!(r.to_string().contains("all 2 active clients"), "{r}");
    assert!(r.to_string().contains("all 2 revoked"), "{r}");
    // --fix on a healthy broker does nothing.
    assert!(fix(&b).actions.is_empty());
}

#[test]
fn a_missing_crl_fails_and_fix_signs_a_new_one() {
    let (_t, b) = broker();
    fs::remove_file(&b.paths().crl).unwrap();
    let r = run(&b);
    assert_eq!(fails(&r), ["crl"], "{r}");
    let r = fix(&b);
    assert!(fails(&r).is_empty(), "{r}");
    assert_eq!(r.actions.len(), 1, "{r}");
    assert!(r.actions[0].contains("signed a fresh CRL"), "{r}");
    assert!(r.to_string().contains("fixed: signed a fresh CRL"));
}

#[test]
fn a_crl_of_another_ca_fails_and_is_replaced() {
    let (_t, b) = broker();
    let other = Ca::generate(&CaParams::default()).unwrap();
    fs::write(&b.paths().crl, other.crl(&[], 1, 30).unwrap().pem()).unwrap();
    assert_eq!(fails(&run(&b)), ["crl"]);
    let r = fix(&b);
    assert!(fails(&r).is_empty(), "{r}");
    b.ca().check_crl(&b.crl().unwrap()).unwrap();
}

#[test]
fn a_revoked_certificate_missing_from_the_crl_fails() {
    let (_t, b) = broker();
    let old = fs::read(&b.paths().crl).unwrap();
    b.revoke(&"alice".parse().unwrap(), RevocationReason::KeyCompromise)
        .unwrap();
    fs::write(&b.paths().crl, old).unwrap();
    let r = run(&b);
    assert_eq!(fails(&r), ["revocation"], "{r}");
    let r = fix(&b);
    assert!(fails(&r).is_empty(), "{r}");
}

#[test]
fn a_crl_near_its_next_update_warns() {
    let mut s = settings();
    s.validity.crl_days = 1;
    let (_t, b) = broker_with(s);
    let r = run(&b);
    assert!(fails(&r).is_empty(), "{r}");
    assert_eq!(r.status_of("crl-next-update"), Some(Status::Warn), "{r}");
}

#[test]
fn certificates_expiring_within_n_days_are_listed() {
    let mut s = settings();
    s.validity.client_days = 10;
    let (_t, b) = broker_with(s);
    let r = run(&b);
    assert!(fails(&r).is_empty(), "{r}");
    assert_eq!(r.with_status(Status::Warn).count(), 3, "{r}");
    assert!(
        r.to_string()
            .contains("client alice: its certificate expires in")
    );
    let mut o = AuditOptions::default();
    o.days = 5;
    assert_eq!(audit(&b, &o).count(Status::Warn), 0);
}

#[test]
fn a_shared_assignment_fails() {
    let (_t, b) = broker();
    // The same /64 as alice's, written differently (the UNIQUE column sees two texts).
    sql(
        &b,
        "UPDATE clients SET prefix = '2001:0db8:0:f101:0::/64' WHERE id = 'bob'",
    );
    let r = run(&b);
    assert_eq!(fails(&r), ["assignment"], "{r}");
    assert!(r.to_string().contains("also held by alice"), "{r}");
}

#[test]
fn a_missing_port_in_per_client_mode_fails() {
    let (_t, b) = broker();
    sql(&b, "UPDATE clients SET port = NULL WHERE id = 'bob'");
    assert_eq!(fails(&run(&b)), ["port"]);
}

#[test]
fn a_foreign_or_swapped_certificate_fails() {
    let (_t, b) = broker();
    // bob's certificate in alice's record.
    sql(
        &b,
        "UPDATE certificates SET pem = (SELECT pem FROM certificates WHERE client_id = 'bob')
         WHERE client_id = 'alice'",
    );
    let r = run(&b);
    assert_eq!(fails(&r), ["certificate"], "{r}");
    assert!(
        r.to_string()
            .contains("client alice: its certificate is for \"bob\""),
        "{r}"
    );

    // A certificate of another CA.
    let (_t2, b) = broker();
    let other = Ca::generate(&CaParams::default()).unwrap();
    let foreign = other
        .issue_client(
            &"alice".parse().unwrap(),
            tunnelbroker_core::KeyType::P256,
            30,
        )
        .unwrap();
    let conn = Connection::open(&b.paths().database).unwrap();
    conn.execute(
        "UPDATE certificates SET pem = ?1, serial = ?2 WHERE client_id = 'alice'",
        (
            foreign.certificate.pem(),
            foreign.certificate.serial().to_string(),
        ),
    )
    .unwrap();
    let r = run(&b);
    assert_eq!(fails(&r), ["certificate"], "{r}");
    assert!(r.to_string().contains("not issued by this CA"), "{r}");
}

#[test]
fn revocation_states_that_disagree_fail() {
    let (_t, b) = broker();
    // An active client whose certificate is marked revoked.
    sql(
        &b,
        "UPDATE certificates SET state = 'revoked', revoked_at = '2026-01-01T00:00:00Z', reason = 'unspecified' WHERE client_id = 'alice'",
    );
    let r = run(&b);
    assert!(fails(&r).contains(&"certificate"), "{r}");
    // A revoked client whose certificate is still current.
    let (_t2, b) = broker();
    sql(
        &b,
        "UPDATE clients SET state = 'revoked', revoked_at = '2026-01-01T00:00:00Z' WHERE id = 'bob'",
    );
    let r = run(&b);
    assert_eq!(fails(&r), ["revocation"], "{r}");
}

#[test]
fn a_corrupt_database_fails_without_panicking() {
    let (_t, b) = broker();
    sql(&b, "UPDATE clients SET prefix = 'garbage' WHERE id = 'bob'");
    let r = run(&b);
    assert_eq!(fails(&r), ["database"], "{r}");
    // --fix touches nothing it cannot judge.
    let before = fs::read(&b.paths().crl).unwrap();
    let r = fix(&b);
    assert!(r.actions.is_empty(), "{r}");
    assert_eq!(fs::read(&b.paths().crl).unwrap(), before);
}
