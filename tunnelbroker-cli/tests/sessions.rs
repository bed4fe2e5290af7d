//! `tunnelbroker status` and `whois` (issue 14, item 3): who is connected
//! now, who had an address then (also after a purge and a reassignment),
//! text and JSON, and bad input refused with exit 2 in one line.

use time::{Duration, OffsetDateTime};
use tunnelbroker_core::Broker;
use tunnelbroker_core::openvpn::LiveSession;

use crate::{fails, init, json, ok, tb};

fn live(cn: &str, real: &str, since: OffsetDateTime) -> LiveSession {
    LiveSession {
        common_name: cn.into(),
        real_address: real.parse().unwrap(),
        virtual_addresses: Vec::new(),
        connected_since: since.replace_nanosecond(0).unwrap(),
        bytes_received: 1_500_000,
        bytes_sent: 42,
    }
}

#[test]
fn status_shows_who_is_connected_from_where_since_when() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    init(&dir, &[]);
    assert!(ok(&tb(&dir, &["status"])).contains("no live sessions"));
    assert_eq!(
        json(&tb(&dir, &["status", "--json"])),
        serde_json::json!([])
    );
    ok(&tb(&dir, &["client", "add", "alice", "--subnet"]));
    let now = OffsetDateTime::now_utc();
    Broker::open(&dir)
        .unwrap()
        .record_sessions("main", &[live("alice", "198.18.0.2:51234", now)], now)
        .unwrap();
    let text = ok(&tb(&dir, &["status"]));
    for want in [
        "alice",
        "main",
        "198.18.0.2:51234",
        "2001:db8:0:f101::/64",
        "1.5 MB",
        "1 live sessions",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    let v = json(&tb(&dir, &["status", "--json"]));
    assert_eq!(v[0]["client_id"], "alice");
    assert_eq!(v[0]["real_address"], "198.18.0.2:51234");
    assert_eq!(v[0]["addresses"]["prefix"], "2001:db8:0:f101::/64");
    assert_eq!(v[0]["bytes_in"], 1_500_000);
    assert_eq!(v[0]["ended_at"], serde_json::Value::Null);
}

#[test]
fn whois_answers_now_and_for_a_past_time_after_the_address_moved() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    init(&dir, &[]);
    ok(&tb(
        &dir,
        &[
            "client",
            "add",
            "alice",
            "--subnet",
            "--email",
            "alice@example.org",
            "--name",
            "Alice A.",
        ],
    ));
    let now = OffsetDateTime::now_utc();
    let b = Broker::open(&dir).unwrap();
    b.record_sessions(
        "main",
        &[live(
            "alice",
            "198.18.0.2:51234",
            now - Duration::minutes(3),
        )],
        now,
    )
    .unwrap();
    b.record_sessions("main", &[], now + Duration::seconds(1))
        .unwrap();
    drop(b);
    let then = now.replace_nanosecond(0).unwrap() - Duration::minutes(1);
    let then_text = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        then.year(),
        u8::from(then.month()),
        then.day(),
        then.hour(),
        then.minute(),
        then.second()
    );

    let text = ok(&tb(&dir, &["whois", "2001:db8:0:f101::17"]));
    for want in [
        "alice",
        "alice@example.org",
        "Alice A.",
        "2001:db8:0:f101::/64",
        "2001:db8:0:f100::f101:2",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    ok(&tb(&dir, &["client", "revoke", "alice"]));
    ok(&tb(&dir, &["client", "purge", "alice"]));
    ok(&tb(&dir, &["client", "add", "bob", "--subnet"]));
    let v = json(&tb(&dir, &["whois", "2001:db8:0:f101::17", "--json"]));
    assert_eq!(v["holder"]["client_id"], "bob");
    for at in [
        then_text.as_str(),
        &then
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
    ] {
        let v = json(&tb(
            &dir,
            &["whois", "2001:db8:0:f101::17", "--at", at, "--json"],
        ));
        assert_eq!(v["holder"]["client_id"], "alice", "{at}: {v}");
        assert_eq!(v["holder"]["email"], "alice@example.org");
        assert_eq!(v["sessions"][0]["real_address"], "198.18.0.2:51234");
        // The routing net's client end answers the same.
        let v = json(&tb(
            &dir,
            &["whois", "2001:db8:0:f100::f101:2", "--at", at, "--json"],
        ));
        assert_eq!(v["holder"]["client_id"], "alice");
    }
    let text = ok(&tb(
        &dir,
        &["whois", "2001:db8:0:f1ff::5", "--at", "2020-01-01 00:00"],
    ));
    assert!(text.contains("held by no client"), "{text}");
}

#[test]
fn bad_whois_input_is_refused_in_one_line_with_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    init(&dir, &[]);
    for (args, needle) in [
        (vec!["whois", "198.18.0.1"], "not an IPv6 address"),
        (vec!["whois", "not-an-address"], "not an IPv6 address"),
        (vec!["whois", ""], "not an IPv6 address"),
        (vec!["whois", "2001:db8::/64"], "not an IPv6 address"),
        (vec!["whois", "2001:db8:1::1"], "outside the pool"),
        (
            vec!["whois", "2001:db8:0:f101::1", "--at", "last tuesday"],
            "invalid time",
        ),
        (
            vec![
                "whois",
                "2001:db8:0:f101::1",
                "--at",
                "2026-12-01 14:00;rm -rf /",
            ],
            "invalid time",
        ),
        (
            vec!["whois", "2001:db8:0:f101::1", "--at", "2026-12-01\n14:00"],
            "invalid time",
        ),
        (vec!["whois", "ünï\u{1b}[2J"], "not an IPv6 address"),
    ] {
        let out = tb(&dir, &args);
        let err = fails(&out, 2);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains('\u{1b}'), "{err:?}");
        assert!(out.stdout.is_empty());
    }
}
