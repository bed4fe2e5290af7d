//! Sessions and "who had this address?" (issue 14, items 2, 3 and 5), on
//! both stores: recording a poll is idempotent, ends what is gone and
//! touches no other server; whois answers for past times after a purge and
//! a reassignment; retention prunes only what ended long ago.

use std::net::Ipv6Addr;

use rusqlite::Connection;
use time::{Duration, OffsetDateTime};
use tunnelbroker_core::broker::{SessionFilter, parse_address, parse_time};
use tunnelbroker_core::openvpn::LiveSession;
use tunnelbroker_core::pki::RevocationReason;
use tunnelbroker_core::{Broker, ClientKind, ErrorKind, NewClient, Settings};

use crate::stores::{self, TestStore, by_store};

const POOL: &str = "2001:db8:0:f100::/56";

fn broker_in(store: &TestStore) -> (tempfile::TempDir, Broker) {
    let tmp = tempfile::tempdir().unwrap();
    let settings = Settings::new(POOL.parse().unwrap(), "vpn.example.net".parse().unwrap());
    let b = Broker::init(&tmp.path().join("broker"), &store.options(settings)).unwrap();
    (tmp, b)
}

fn add(b: &Broker, id: &str, kind: ClientKind) -> tunnelbroker_core::Client {
    let mut req = NewClient::new(id.parse().unwrap(), kind);
    req.email = Some(format!("{id}@example.org"));
    req.name = Some(format!("Ünïcode {id}"));
    b.add_client(&req).unwrap()
}

fn live(cn: &str, real: &str, since: OffsetDateTime, bytes: u64) -> LiveSession {
    LiveSession {
        common_name: cn.into(),
        real_address: real.parse().unwrap(),
        virtual_addresses: Vec::new(),
        connected_since: since.replace_nanosecond(0).unwrap(),
        bytes_received: bytes,
        bytes_sent: bytes * 2,
    }
}

fn addr(text: &str) -> Ipv6Addr {
    text.parse().unwrap()
}

fn a_poll_is_idempotent_updates_bytes_and_ends_what_is_gone(store: &TestStore) {
    let (_t, b) = broker_in(store);
    let alice = add(&b, "alice", ClientKind::Subnet);
    add(&b, "bob", ClientKind::Hermit);
    let now = OffsetDateTime::now_utc();
    let since = now - Duration::minutes(10);
    let poll = [
        live("alice", "198.18.0.2:51234", since, 10),
        live("bob", "[2001:db8:1::2]:40000", since, 20),
        // OpenVPN never lists one twice; a list that does counts it once.
        live("bob", "[2001:db8:1::2]:40000", since, 20),
    ];
    let sync = b.record_sessions("main", &poll, now).unwrap();
    assert_eq!((sync.started, sync.updated, sync.ended), (2, 0, 0));
    let sync = b.record_sessions("main", &poll, now).unwrap();
    assert_eq!((sync.started, sync.updated, sync.ended), (0, 0, 0));

    let mut next = poll[..1].to_vec();
    next[0].bytes_received = 1_000_000_000_000;
    let later = now + Duration::seconds(30);
    let sync = b.record_sessions("main", &next, later).unwrap();
    assert_eq!((sync.started, sync.updated, sync.ended), (0, 1, 1));

    let status = b.status().unwrap();
    assert_eq!(status.len(), 1, "{status:?}");
    let s = &status[0];
    assert_eq!((s.client_id.as_str(), s.server.as_str()), ("alice", "main"));
    assert_eq!(s.real_address.to_string(), "198.18.0.2:51234");
    assert_eq!(s.started_at, since.replace_nanosecond(0).unwrap());
    assert_eq!((s.bytes_in, s.bytes_out), (1_000_000_000_000, 20));
    let a = s.addresses.unwrap();
    assert_eq!(a.prefix, alice.prefix());
    assert_eq!(a.tunnel_address, Some(alice.tunnel_address()));

    let mut filter = SessionFilter::default();
    filter.client_id = Some("bob".into());
    let bob = b.sessions(&filter).unwrap();
    assert_eq!(bob.len(), 1);
    assert_eq!(
        bob[0].ended_at.map(|t| t.unix_timestamp()),
        Some(later.unix_timestamp())
    );
    assert_eq!(bob[0].addresses.unwrap().kind, ClientKind::Hermit);
}
by_store!(a_poll_is_idempotent_updates_bytes_and_ends_what_is_gone);

fn a_session_seen_again_is_reopened_and_other_servers_are_left_alone(store: &TestStore) {
    let (_t, b) = broker_in(store);
    add(&b, "alice", ClientKind::Subnet);
    add(&b, "bob", ClientKind::Subnet);
    let now = OffsetDateTime::now_utc();
    let a = live("alice", "198.18.0.2:1", now - Duration::hours(1), 1);
    let o = live("bob", "198.18.0.3:1", now - Duration::hours(1), 1);
    b.record_sessions("main", std::slice::from_ref(&a), now)
        .unwrap();
    b.record_sessions("other", std::slice::from_ref(&o), now)
        .unwrap();
    // A poll that missed alice (an instance that did not answer), then saw her.
    assert_eq!(b.record_sessions("main", &[], now).unwrap().ended, 1);
    let sync = b
        .record_sessions("main", std::slice::from_ref(&a), now)
        .unwrap();
    assert_eq!(sync.started, 1);
    assert_eq!(b.sessions(&SessionFilter::default()).unwrap().len(), 2);
    let status = b.status().unwrap();
    let servers: Vec<&str> = status.iter().map(|s| s.server.as_str()).collect();
    assert_eq!(servers, ["main", "other"]);

    // A reconnect (a new start) is a new session.
    let again = live("alice", "198.18.0.2:2", now, 0);
    let sync = b.record_sessions("main", &[again], now).unwrap();
    assert_eq!((sync.started, sync.ended), (1, 1));
    let mut f = SessionFilter::default();
    f.server = Some("main".into());
    assert_eq!(b.sessions(&f).unwrap().len(), 2);
    f.open_only = true;
    assert_eq!(b.sessions(&f).unwrap().len(), 1);
}
by_store!(a_session_seen_again_is_reopened_and_other_servers_are_left_alone);

fn hostile_names_are_refused_or_kept_as_text(store: &TestStore) {
    let (_t, b) = broker_in(store);
    let now = OffsetDateTime::now_utc();
    for server in [
        "",
        "../x",
        "a b",
        "x;rm -rf /",
        &"s".repeat(300),
        "ünï",
        "-x",
    ] {
        let err = b.record_sessions(server, &[], now).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{server:?}");
        assert_eq!(err.to_string().lines().count(), 1);
    }
    // A common name that is no client (OpenVPN lets only our certificates
    // in, but the list is input): recorded as text, without an assignment.
    let odd = live("x;rm -rf /", "198.18.0.9:9", now, 0);
    assert_eq!(b.record_sessions("main", &[odd], now).unwrap().started, 1);
    let s = &b.status().unwrap()[0];
    assert_eq!(s.client_id, "x;rm -rf /");
    assert_eq!(s.addresses, None);
}
by_store!(hostile_names_are_refused_or_kept_as_text);

fn whois_answers_for_a_past_time_after_purge_and_reassignment(store: &TestStore) {
    let (_t, b) = broker_in(store);
    let alice = add(&b, "alice", ClientKind::Subnet);
    let hermit = add(&b, "hermit", ClientKind::Hermit);
    assert_eq!(alice.prefix().to_string(), "2001:db8:0:f101::/64");
    let now = OffsetDateTime::now_utc();
    let started = now - Duration::minutes(5);
    b.record_sessions(
        "main",
        &[
            live("alice", "198.18.0.2:51234", started, 5),
            live("hermit", "198.18.0.3:5000", started, 5),
        ],
        now,
    )
    .unwrap();
    let then = OffsetDateTime::now_utc();

    // Now: alice, by her /64, an address inside it, and her routing net.
    for a in [
        "2001:db8:0:f101::",
        "2001:db8:0:f101::17",
        "2001:db8:0:f101:ffff:ffff:ffff:ffff",
        "2001:db8:0:f100::f101:2",
        "2001:db8:0:f100::f101:1",
    ] {
        let who = b.whois(addr(a), None).unwrap();
        let h = who.holder.expect(a);
        assert_eq!(h.client_id, "alice", "{a}");
        assert_eq!(h.email.as_deref(), Some("alice@example.org"));
        assert_eq!(h.name.as_deref(), Some("Ünïcode alice"));
        assert_eq!(who.tunnel_address, Some(alice.tunnel_address()));
        assert_eq!(who.sessions.len(), 1, "{a}");
    }
    let who = b.whois(hermit.tunnel_address(), None).unwrap();
    assert_eq!(who.holder.unwrap().client_id, "hermit");
    // The hermit /64 beside the hermit's /128: nobody.
    assert_eq!(
        b.whois(addr("2001:db8:0:f1ff::99"), None).unwrap().holder,
        None
    );

    // Alice goes, her sessions end, and bob gets her /64 (and new contacts).
    b.record_sessions("main", &[], now + Duration::minutes(1))
        .unwrap();
    b.revoke(&alice.id, RevocationReason::CessationOfOperation)
        .unwrap();
    b.purge(&alice.id).unwrap();
    let bob = add(&b, "bob", ClientKind::Subnet);
    assert_eq!(bob.prefix(), alice.prefix());

    let who = b.whois(addr("2001:db8:0:f101::17"), None).unwrap();
    let spans = stores::query_text(
        &b,
        "SELECT string_agg(client_id || ' ' || since || ' ' || coalesce(until, -1) || ' ' || prefix, '; ') FROM assignments",
    );
    assert_eq!(
        who.holder.unwrap().client_id,
        "bob",
        "{spans:?} at {}",
        who.at
    );
    assert!(who.sessions.is_empty(), "{:?}", who.sessions);
    for at in [then, started + Duration::seconds(1)] {
        let who = b.whois(addr("2001:db8:0:f101::17"), Some(at)).unwrap();
        let h = who.holder.expect("alice held it then");
        assert_eq!(h.client_id, "alice");
        assert_eq!(h.email.as_deref(), Some("alice@example.org"));
        assert_eq!(who.sessions.len(), 1);
        assert_eq!(who.sessions[0].real_address.to_string(), "198.18.0.2:51234");
        assert_eq!(who.tunnel_address, Some(alice.tunnel_address()));
    }
    // Long before anything: nobody.
    let who = b
        .whois(addr("2001:db8:0:f101::17"), Some(now - Duration::days(30)))
        .unwrap();
    assert_eq!(who.holder, None);

    // A contact change starts a new span: the old one answers for the past.
    stores::sql(
        &b,
        "UPDATE clients SET email = 'new@example.org' WHERE id = 'bob'",
    );
    let who = b.whois(addr("2001:db8:0:f101::1"), None).unwrap();
    assert_eq!(
        who.holder.unwrap().email.as_deref(),
        Some("new@example.org")
    );

    // Out of the pool: refused in one line.
    let err = b.whois(addr("2001:db8:1::1"), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("outside the pool"), "{err}");
}
by_store!(whois_answers_for_a_past_time_after_purge_and_reassignment);

fn retention_prunes_only_what_ended_long_ago(store: &TestStore) {
    let (_t, b) = broker_in(store);
    assert_eq!(b.settings().sessions.retention_days, 400);
    add(&b, "alice", ClientKind::Hermit);
    let now = OffsetDateTime::now_utc();
    let old = now - Duration::days(500);
    // A session that ended 499 days ago, one that ended a day ago, and a
    // live one that started 500 days ago.
    b.record_sessions("main", &[live("alice", "198.18.0.2:1", old, 1)], old)
        .unwrap();
    b.record_sessions("main", &[], old + Duration::days(1))
        .unwrap();
    b.record_sessions(
        "main",
        &[live("alice", "198.18.0.2:2", now - Duration::days(2), 1)],
        now,
    )
    .unwrap();
    b.record_sessions("main", &[], now - Duration::days(1))
        .unwrap();
    b.record_sessions("main", &[live("alice", "198.18.0.2:3", old, 1)], now)
        .unwrap();
    assert_eq!(b.prune_sessions(now).unwrap(), 1);
    assert_eq!(b.prune_sessions(now).unwrap(), 0);
    let left = b.sessions(&SessionFilter::default()).unwrap();
    let ports: Vec<u16> = left.iter().map(|s| s.real_address.port()).collect();
    assert_eq!(ports, [3, 2]);
}
by_store!(retention_prunes_only_what_ended_long_ago);

#[test]
fn the_retention_setting_loads_from_old_settings_and_is_checked() {
    let old = Settings::new(POOL.parse().unwrap(), "vpn.example.net".parse().unwrap());
    let text = old.to_toml();
    assert!(
        text.contains("[sessions]\nretention_days = 400\n"),
        "{text}"
    );
    let without: String = text
        .replace("[sessions]\n", "")
        .replace("retention_days = 400\n", "");
    assert_eq!(Settings::from_toml(&without).unwrap(), old);
    let err = Settings::from_toml(&text.replace("retention_days = 400", "retention_days = 0"))
        .unwrap_err();
    assert!(err.to_string().contains("sessions.retention_days"), "{err}");
}

#[test]
fn times_and_addresses_as_operators_write_them() {
    let t = parse_time("2026-12-01T14:00:00Z").unwrap();
    for text in [
        "2026-12-01 14:00",
        "2026-12-01 14:00:00",
        "2026-12-01T15:00:00+01:00",
    ] {
        assert_eq!(parse_time(text).unwrap(), t, "{text}");
    }
    for text in [
        "",
        "yesterday",
        "2026-13-01 14:00",
        "2026-12-01",
        "14:00",
        "2026-12-01 14:00;rm",
    ] {
        let err = parse_time(text).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{text:?}");
        assert_eq!(err.to_string().lines().count(), 1);
    }
    for text in ["198.18.0.1", "2001:db8::/64", "", "x\n", "2001:db8::1%eth0"] {
        assert_eq!(
            parse_address(text).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }
}

/// Turns a current SQLite database into a schema-4 one (before sessions).
fn downgrade_to_schema_4(path: &std::path::Path) {
    Connection::open(path)
        .unwrap()
        .execute_batch(
            "DROP TRIGGER clients_assigned; DROP TRIGGER clients_released;
             DROP TRIGGER clients_changed; DROP TABLE sessions; DROP TABLE assignments;
             PRAGMA user_version = 4;",
        )
        .unwrap();
}

#[test]
fn a_database_from_before_sessions_migrates_and_knows_its_holders() {
    let (_t, b) = broker_in(&TestStore::Sqlite);
    let alice = add(&b, "alice", ClientKind::Subnet);
    let (dir, path) = (b.dir().to_owned(), b.paths().database.clone());
    let version = b.database_status().unwrap().schema_version;
    drop(b);
    downgrade_to_schema_4(&path);
    let b = Broker::open(&dir).unwrap();
    assert_eq!(b.database_status().unwrap().schema_version, version);
    let who = b.whois(alice.tunnel_address(), None).unwrap();
    let h = who.holder.unwrap();
    assert_eq!(h.client_id, "alice");
    // Its span starts at the subscription, to the microsecond.
    assert_eq!(h.since.unix_timestamp(), alice.created_at.unix_timestamp());
    assert!(h.since <= alice.created_at);
    assert!(b.status().unwrap().is_empty());
}

/// Moving a broker to another store keeps its sessions and its
/// assignment history as they were (SQLite to PostgreSQL and back when the
/// tests have a cluster; SQLite to SQLite always).
#[test]
fn a_copy_keeps_sessions_and_the_assignment_history() {
    use tunnelbroker_core::store::{PostgresStore, SqliteStore, Store, copy};
    let (_t, b) = broker_in(&TestStore::Sqlite);
    let alice = add(&b, "alice", ClientKind::Subnet);
    let now = OffsetDateTime::now_utc();
    b.record_sessions("main", &[live("alice", "198.18.0.2:1", now, 7)], now)
        .unwrap();
    b.revoke(&alice.id, RevocationReason::Unspecified).unwrap();
    b.purge(&alice.id).unwrap();
    add(&b, "bob", ClientKind::Subnet);
    let pool = POOL.parse().unwrap();
    let from = SqliteStore::open(&b.paths().database, pool).unwrap();
    let read = |s: &dyn Store| {
        s.read_with(|tx| {
            Ok((
                tx.sessions(&SessionFilter::default())?,
                tx.assignment_history(None)?,
            ))
        })
        .unwrap()
    };
    let want = read(&from);
    assert_eq!((want.0.len(), want.1.len()), (1, 2));
    let tmp = tempfile::tempdir().unwrap();
    let to = SqliteStore::create(&tmp.path().join("copy.db"), pool).unwrap();
    assert_eq!(copy(&from, &to).unwrap().sessions, 1);
    let got = read(&to);
    assert_eq!(got.1, want.1);
    assert_eq!(
        got.0
            .iter()
            .map(|s| (&s.client_id, s.started_at, s.ended_at, s.addresses))
            .collect::<Vec<_>>(),
        want.0
            .iter()
            .map(|s| (&s.client_id, s.started_at, s.ended_at, s.addresses))
            .collect::<Vec<_>>()
    );
    if let Some(db) = crate::pg::database() {
        let pg = PostgresStore::create(db.url(), pool).unwrap();
        copy(&from, &pg).unwrap();
        assert_eq!(read(&pg).1, want.1);
        assert_eq!(read(&pg).0.len(), 1);
    }
}
