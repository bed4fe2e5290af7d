//! `audit` (issue 7): one test per inconsistency it reports, made by
//! altering the database with SQL, replacing the CRL, changing the
//! settings or the rendered server files, and the safe repairs of `--fix`.
//! The database cases run on both stores (`stores`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};
use tunnelbroker_core::broker::ServerMode;
use tunnelbroker_core::doctor::{AUDIT_CHECKS, AuditOptions, Report, Status, audit, audit_dir};
use tunnelbroker_core::pki::{Ca, CaParams, RevocationReason};
use tunnelbroker_core::{Broker, ClientKind, NewClient, Settings};

fn broker_with(settings: Settings) -> (tempfile::TempDir, Broker) {
    broker_on(&TestStore::Sqlite, settings)
}

/// A broker with three clients, rendered, its clients in `store`.
fn broker_on(store: &TestStore, settings: Settings) -> (tempfile::TempDir, Broker) {
    let tmp = crate::operator_tempdir();
    let b = Broker::init(&tmp.path().join("broker"), &store.options(settings)).unwrap();
    for (id, kind) in [
        ("alice", ClientKind::Subnet),
        ("bob", ClientKind::Subnet),
        ("carol", ClientKind::Hermit),
    ] {
        b.add_client(&NewClient::new(id.parse().unwrap(), kind))
            .unwrap();
    }
    b.render_server(None).unwrap();
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

use crate::stores::{TestStore, by_store, lit, sql};

fn a_consistent_broker_passes(store: &TestStore) {
    let (_t, b) = broker_on(store, settings());
    b.revoke(&"carol".parse().unwrap(), RevocationReason::Unspecified)
        .unwrap();
    b.renew(&"bob".parse().unwrap(), None).unwrap();
    b.render_server(None).unwrap();
    let r = run(&b);
    assert!(fails(&r).is_empty(), "{r}");
    assert_eq!(r.count(Status::Warn), 0, "{r}");
    assert!(r.to_string().contains("all 2 active clients"), "{r}");
    assert!(r.to_string().contains("all 2 revoked"), "{r}");
    // Every check but the two that appear only when something is wrong.
    let names: Vec<&str> = r.checks.iter().map(|c| c.name.as_str()).collect();
    let all: Vec<&str> = AUDIT_CHECKS
        .iter()
        .copied()
        .filter(|n| !["settings", "port", "host-limits"].contains(n))
        .collect();
    assert_eq!(names, all, "{r}");
    assert_eq!(r.count(Status::Pass), all.len(), "{r}");
    // --fix on a healthy broker does nothing.
    assert!(fix(&b).actions.is_empty());
}
by_store!(a_consistent_broker_passes);

#[test]
fn a_missing_crl_fails_and_fix_signs_a_new_one() {
    let (_t, b) = broker();
    let names = |r: &tunnelbroker_core::doctor::Report| -> Vec<String> {
        r.checks.iter().map(|c| c.name.to_string()).collect()
    };
    let healthy = names(&run(&b));
    fs::remove_file(&b.paths().crl).unwrap();
    let r = run(&b);
    assert_eq!(fails(&r), ["crl"], "{r}");
    // What depends on the CRL is listed as skipped, not left out.
    assert_eq!(names(&r), healthy, "{r}");
    for name in ["crl-next-update", "revocation"] {
        assert_eq!(r.status_of(name), Some(Status::Skip), "{name}: {r}");
    }
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
    // The copy in the rendered directory no longer matches the broker's.
    assert_eq!(fails(&run(&b)), ["crl", "server-files"]);
    let r = fix(&b);
    assert!(fails(&r).is_empty(), "{r}");
    b.ca().check_crl(&b.crl().unwrap()).unwrap();
}

fn a_revoked_certificate_missing_from_the_crl_fails(store: &TestStore) {
    let (_t, b) = broker_on(store, settings());
    let old = fs::read(&b.paths().crl).unwrap();
    b.revoke(&"alice".parse().unwrap(), RevocationReason::KeyCompromise)
        .unwrap();
    fs::write(&b.paths().crl, old).unwrap();
    let r = run(&b);
    // The copy OpenVPN reads has it, the broker's CRL does not.
    assert_eq!(fails(&r), ["revocation", "server-files"], "{r}");
    let r = fix(&b);
    assert!(fails(&r).is_empty(), "{r}");
}
by_store!(a_revoked_certificate_missing_from_the_crl_fails);

/// Replaces the broker's CRL with one signed by its CA for this period.
fn crl_for(b: &Broker, this_update: OffsetDateTime, next_update: OffsetDateTime) {
    let crl = b.ca().crl_at(&[], 99, this_update, next_update).unwrap();
    fs::write(&b.paths().crl, crl.pem()).unwrap();
    // ... and its copy in the rendered directory, as the broker does.
    if let Some(dir) = b.recorded_server().unwrap().dir {
        fs::write(dir.join("crl.pem"), crl.pem()).unwrap();
    }
}

#[test]
fn a_crl_within_7_days_of_its_next_update_warns_and_a_passed_one_fails() {
    let (_t, b) = broker();
    let now = OffsetDateTime::now_utc();
    // 23 days into a 30-day CRL: 7 days left, a missed daily refresh.
    crl_for(&b, now - Duration::days(23), now + Duration::days(7));
    let r = run(&b);
    assert!(fails(&r).is_empty(), "{r}");
    assert_eq!(r.status_of("crl-next-update"), Some(Status::Warn), "{r}");
    assert!(
        messages(&r, "crl-next-update")[0].starts_with("the CRL's nextUpdate is near"),
        "{r}"
    );
    // 8 days left: fine.
    crl_for(&b, now - Duration::days(22), now + Duration::days(8));
    assert_eq!(run(&b).status_of("crl-next-update"), Some(Status::Pass));
    // Passed: OpenVPN refuses every client.
    crl_for(&b, now - Duration::days(31), now - Duration::hours(1));
    let r = run(&b);
    assert_eq!(fails(&r), ["crl-next-update"], "{r}");
    assert!(
        messages(&r, "crl-next-update")[0].ends_with("has passed: OpenVPN refuses every client"),
        "{r}"
    );
    // --fix signs a fresh one.
    let r = fix(&b);
    assert!(fails(&r).is_empty(), "{r}");
    assert!(r.actions[0].starts_with("signed a fresh CRL"), "{r}");
    assert_eq!(r.status_of("crl-next-update"), Some(Status::Pass), "{r}");
}

#[test]
fn a_long_lived_crl_warns_only_in_its_last_7_days() {
    let mut s = settings();
    s.validity.crl_days = 90;
    let (_t, b) = broker_with(s);
    let now = OffsetDateTime::now_utc();
    crl_for(&b, now - Duration::days(80), now + Duration::days(10));
    assert_eq!(run(&b).status_of("crl-next-update"), Some(Status::Pass));
    crl_for(&b, now - Duration::days(84), now + Duration::days(6));
    assert_eq!(run(&b).status_of("crl-next-update"), Some(Status::Warn));
}

#[test]
fn a_fresh_short_lived_crl_does_not_warn() {
    // A 1-day CRL refreshed often: near only in the second half of its life.
    let mut s = settings();
    s.validity.crl_days = 1;
    let (_t, b) = broker_with(s);
    let r = run(&b);
    assert_eq!(r.status_of("crl-next-update"), Some(Status::Pass), "{r}");
    let now = OffsetDateTime::now_utc();
    crl_for(&b, now - Duration::hours(13), now + Duration::hours(11));
    assert_eq!(run(&b).status_of("crl-next-update"), Some(Status::Warn));
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
fn any_number_of_days_is_accepted_without_panicking() {
    let (_t, b) = broker();
    for days in [0, 2_900_000, 3_000_000, u32::MAX] {
        let mut o = AuditOptions::default();
        o.days = days;
        let r = audit(&b, &o);
        assert!(fails(&r).is_empty(), "{days}: {r}");
        // The three clients, the server and the CA.
        let expiring = if days == 0 { 0 } else { 5 };
        assert_eq!(r.count(Status::Warn), expiring, "{days}: {r}");
    }
}

fn a_shared_assignment_fails(store: &TestStore) {
    let (_t, b) = broker_on(store, settings());
    // The same /64 as alice's, written differently (the UNIQUE column sees two texts).
    sql(
        &b,
        "UPDATE clients SET prefix = '2001:0db8:0:f101:0::/64' WHERE id = 'bob'",
    );
    let r = run(&b);
    assert_eq!(fails(&r), ["assignment"], "{r}");
    assert!(r.to_string().contains("also held by alice"), "{r}");
}
by_store!(a_shared_assignment_fails);

fn a_missing_port_in_per_client_mode_fails(store: &TestStore) {
    let (_t, b) = broker_on(store, settings());
    sql(&b, "UPDATE clients SET port = NULL WHERE id = 'bob'");
    let r = run(&b);
    assert_eq!(fails(&r), ["port"], "{r}");
    // What to render is unclear: the files are not judged, and --fix leaves them.
    assert_eq!(r.status_of("server-files"), Some(Status::Skip), "{r}");
    assert_eq!(r.status_of("orphan-files"), Some(Status::Skip), "{r}");
    let conf = server(&b).join("tb-client-alice.conf");
    fs::remove_file(&conf).unwrap();
    let r = fix(&b);
    assert!(r.actions.is_empty(), "{r}");
    assert!(!conf.exists());
}
by_store!(a_missing_port_in_per_client_mode_fails);

fn a_foreign_or_swapped_certificate_fails(store: &TestStore) {
    let (_t, b) = broker_on(store, settings());
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
    let (_t2, b) = broker_on(store, settings());
    let other = Ca::generate(&CaParams::default()).unwrap();
    let foreign = other
        .issue_client(
            &"alice".parse().unwrap(),
            tunnelbroker_core::pki::KeyType::P256,
            30,
        )
        .unwrap();
    sql(
        &b,
        &format!(
            "UPDATE certificates SET pem = {}, serial = {} WHERE client_id = 'alice'",
            lit(foreign.certificate.pem()),
            lit(&foreign.certificate.serial().to_string())
        ),
    );
    let r = run(&b);
    assert_eq!(fails(&r), ["certificate"], "{r}");
    assert!(r.to_string().contains("not issued by this CA"), "{r}");
}
by_store!(a_foreign_or_swapped_certificate_fails);

fn revocation_states_that_disagree_fail(store: &TestStore) {
    let (_t, b) = broker_on(store, settings());
    // An active client whose certificate is marked revoked.
    sql(
        &b,
        "UPDATE certificates SET state = 'revoked', revoked_at = '2026-01-01T00:00:00Z', reason = 'unspecified' WHERE client_id = 'alice'",
    );
    let r = run(&b);
    assert!(fails(&r).contains(&"certificate"), "{r}");
    // A revoked client whose certificate is still current.
    let (_t2, b) = broker_on(store, settings());
    sql(
        &b,
        "UPDATE clients SET state = 'revoked', revoked_at = '2026-01-01T00:00:00Z' WHERE id = 'bob'",
    );
    let r = run(&b);
    assert_eq!(fails(&r), ["revocation"], "{r}");
}
by_store!(revocation_states_that_disagree_fail);

fn a_corrupt_database_fails_without_panicking(store: &TestStore) {
    let (_t, b) = broker_on(store, settings());
    sql(&b, "UPDATE clients SET prefix = 'garbage' WHERE id = 'bob'");
    let r = run(&b);
    assert_eq!(fails(&r), ["database"], "{r}");
    // --fix touches nothing it cannot judge.
    let before = fs::read(&b.paths().crl).unwrap();
    let r = fix(&b);
    assert!(r.actions.is_empty(), "{r}");
    assert_eq!(fs::read(&b.paths().crl).unwrap(), before);
}
by_store!(a_corrupt_database_fails_without_panicking);

fn server(b: &Broker) -> PathBuf {
    fs::canonicalize(&b.paths().server_dir).unwrap()
}

fn messages<'a>(r: &'a Report, name: &str) -> Vec<&'a str> {
    r.checks
        .iter()
        .filter(|c| c.name == name && c.status != Status::Pass)
        .map(|c| c.message.as_str())
        .collect()
}

#[test]
fn rendered_files_that_match_pass() {
    for mode in [ServerMode::PerClient, ServerMode::Shared] {
        let mut s = settings();
        s.mode = mode;
        let (_t, b) = broker_with(s);
        let r = run(&b);
        assert!(fails(&r).is_empty(), "{r}");
        assert_eq!(r.status_of("server-files"), Some(Status::Pass), "{r}");
        assert_eq!(r.status_of("orphan-files"), Some(Status::Pass), "{r}");
        // per-client: 2 subnet instances with scripts + 1 hermit + 3 keys and
        // certificates + the CRL copy + the tls-crypt-v2 server key and verify
        // program (its list of clients is live data, not compared); shared:
        // the server, 3 CCD entries + 7.
        let n = if mode == ServerMode::PerClient {
            13
        } else {
            10
        };
        assert!(
            r.to_string()
                .contains(&format!("all {n} server files in {}", server(&b).display())),
            "{r}"
        );
    }
}

#[test]
fn a_missing_server_file_fails_naming_it_and_fix_writes_it() {
    let (_t, b) = broker();
    let conf = server(&b).join("tb-client-alice.conf");
    fs::remove_file(&conf).unwrap();
    let r = run(&b);
    assert_eq!(fails(&r), ["server-files"], "{r}");
    assert_eq!(
        messages(&r, "server-files"),
        [format!("{} is missing", conf.display())]
    );
    let r = fix(&b);
    assert!(fails(&r).is_empty(), "{r}");
    assert_eq!(
        r.actions[0],
        format!(
            "re-rendered {}: wrote tb-client-alice.conf",
            server(&b).display()
        )
    );
    assert_eq!(
        r.actions[1],
        "restart the OpenVPN instances whose files changed: openvpn-server@tb-client-alice"
    );
    assert!(conf.exists());
}

#[test]
fn a_client_added_after_rendering_has_missing_files() {
    let mut s = settings();
    s.mode = ServerMode::Shared;
    let (_t, b) = broker_with(s);
    b.add_client(&NewClient::new("dave".parse().unwrap(), ClientKind::Hermit))
        .unwrap();
    let r = run(&b);
    assert_eq!(fails(&r), ["server-files"], "{r}");
    assert_eq!(
        messages(&r, "server-files"),
        [format!(
            "{} is missing",
            server(&b).join("ccd/dave").display()
        )]
    );
    let r = fix(&b);
    assert!(fails(&r).is_empty(), "{r}");
    // A CCD entry is read at each connection: nothing to restart.
    assert_eq!(
        r.actions,
        [format!(
            "re-rendered {}: wrote ccd/dave, tls-crypt-v2-clients",
            server(&b).display()
        )]
    );
}

#[test]
fn changed_contents_or_modes_fail_naming_the_file_and_fix_rewrites_them() {
    let (_t, b) = broker();
    let dir = server(&b);
    let conf = dir.join("tb-client-bob.conf");
    let original = fs::read_to_string(&conf).unwrap();
    fs::write(&conf, format!("{original}push \"route-ipv6 ::/0\"\n")).unwrap();
    let key = dir.join("server.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let script = dir.join("tb-client-alice.up");
    fs::remove_file(&script).unwrap();
    fs::create_dir(&script).unwrap();
    let r = run(&b);
    assert_eq!(fails(&r), ["server-files"; 3], "{r}");
    let found = messages(&r, "server-files");
    for want in [
        format!("{} differs from what would be rendered now", conf.display()),
        format!("{} has mode 0644, should have 0600", key.display()),
        format!(
            "{} is not a regular file; render refuses it",
            script.display()
        ),
    ] {
        assert!(found.contains(&want.as_str()), "{want}: {r}");
    }
    // A directory in the way is not removed by --fix (rendering cannot
    // replace it): the report says what was done and what still fails.
    let r = fix(&b);
    assert!(r.actions[0].contains("could not re-render"), "{r}");
    fs::remove_dir(&script).unwrap();
    let r = fix(&b);
    assert!(fails(&r).is_empty(), "{r}");
    assert!(
        r.actions[0].contains("tb-client-alice.up") && r.actions[0].contains("tb-client-bob.conf"),
        "{r}"
    );
    // The server key changed mode: every instance restarts.
    assert_eq!(
        r.actions[1],
        "restart the OpenVPN instances whose files changed: openvpn-server@tb-client-alice \
         openvpn-server@tb-client-bob openvpn-server@tb-client-carol"
    );
    assert_eq!(fs::read_to_string(&conf).unwrap(), original);
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn files_of_revoked_or_purged_clients_are_orphans_and_fix_removes_them() {
    let (_t, b) = broker();
    let dir = server(&b);
    let carol = "carol".parse().unwrap();
    b.revoke(&carol, RevocationReason::Unspecified).unwrap();
    let r = run(&b);
    assert!(fails(&r).is_empty(), "{r}");
    assert_eq!(
        messages(&r, "orphan-files"),
        [format!(
            "{} was rendered for revoked client carol; nothing uses it",
            dir.join("tb-client-carol.conf").display()
        )]
    );
    b.purge(&carol).unwrap();
    let r = run(&b);
    assert_eq!(r.status_of("orphan-files"), Some(Status::Warn), "{r}");
    assert!(
        messages(&r, "orphan-files")[0]
            .contains("client carol, which is no longer in the database"),
        "{r}"
    );
    let r = fix(&b);
    assert_eq!(
        r.actions,
        [format!(
            "re-rendered {}: removed tb-client-carol.conf",
            dir.display()
        )]
    );
    assert_eq!(r.status_of("orphan-files"), Some(Status::Pass), "{r}");
    assert!(!dir.join("tb-client-carol.conf").exists());
}

#[test]
fn files_the_broker_did_not_write_are_listed_but_never_removed() {
    let mut s = settings();
    s.mode = ServerMode::Shared;
    let (_t, b) = broker_with(s);
    let dir = server(&b);
    let hand = dir.join("ccd/zed");
    fs::write(
        &hand,
        "ifconfig-ipv6-push 2001:db8:0:f100::99/64 2001:db8:0:f100::1\n",
    )
    .unwrap();
    let inst = dir.join("tb-client-old.conf");
    fs::write(&inst, "dev tun\n").unwrap();
    // A file with the broker's header that its manifest does not list:
    // another broker's (issue 17), never removed.
    let stale = dir.join("tb-client-alice.conf");
    fs::write(
        &stale,
        "# tunnelbroker: per-client server for client alice\n",
    )
    .unwrap();
    let notes = dir.join("operator-notes.txt");
    fs::write(&notes, "mine").unwrap();
    let r = run(&b);
    assert!(fails(&r).is_empty(), "{r}");
    let found = messages(&r, "orphan-files");
    assert_eq!(found.len(), 3, "{r}");
    assert!(
        found.contains(
            &format!(
                "{} is named like a file of client alice in the other server mode (the broker runs in shared mode) but was not written by the broker",
                stale.display()
            )
            .as_str()
        ),
        "{r}"
    );
    for p in [&hand, &inst] {
        assert!(
            found.iter().any(|m| m.starts_with(&p.display().to_string())
                && m.ends_with("but was not written by the broker")),
            "{}: {r}",
            p.display()
        );
    }
    // Nothing the broker may repair: --fix does nothing, removes nothing.
    let r = fix(&b);
    assert!(r.actions.is_empty(), "{r}");
    assert!(hand.exists() && inst.exists() && notes.exists() && stale.exists());
    assert_eq!(messages(&r, "orphan-files").len(), 3, "{r}");
    // Rendering leaves them too, and says so.
    let report = b.render_server(None).unwrap();
    assert!(report.removed.is_empty());
    assert_eq!(
        report
            .warnings
            .iter()
            .filter(|w| w.contains("not written by the broker"))
            .count(),
        3,
        "{:?}",
        report.warnings
    );
}

#[test]
fn a_server_side_never_rendered_warns_and_fix_does_not_create_it() {
    let tmp = tempfile::tempdir().unwrap();
    let b = Broker::init(
        &tmp.path().join("broker"),
        &TestStore::Sqlite.options(settings()),
    )
    .unwrap();
    let r = run(&b);
    assert!(fails(&r).is_empty(), "{r}");
    assert_eq!(r.status_of("server-files"), Some(Status::Warn), "{r}");
    assert!(
        messages(&r, "server-files")[0].contains("never rendered"),
        "{r}"
    );
    assert_eq!(r.status_of("orphan-files"), Some(Status::Skip), "{r}");
    assert!(fix(&b).actions.is_empty());
    assert!(!b.paths().server_dir.exists());
}

#[test]
fn files_rendered_elsewhere_are_audited_with_server_dir() {
    let (t, b) = broker();
    let elsewhere = t.path().join("etc-openvpn-server");
    b.render_server(Some(&elsewhere)).unwrap();
    fs::remove_dir_all(&b.paths().server_dir).unwrap();
    let mut o = AuditOptions::default();
    o.server_dir = Some(elsewhere.clone());
    let r = audit(&b, &o);
    assert_eq!(r.status_of("server-files"), Some(Status::Pass), "{r}");
    // The instances name their files by absolute path: copied to another
    // directory, their configurations differ.
    let mut o2 = o.clone();
    let copy = t.path().join("copy");
    copy_dir(&elsewhere, &copy);
    o2.server_dir = Some(copy.clone());
    let r = audit(&b, &o2);
    // (and the tls-crypt-v2 verify program, which names its list of clients)
    assert_eq!(fails(&r), ["server-files"; 4], "{r}");
    assert!(
        messages(&r, "server-files")
            .iter()
            .all(|m| m.ends_with("differs from what would be rendered now")),
        "{r}"
    );
    o2.fix = true;
    assert!(!audit(&b, &o2).failed());
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            fs::copy(e.path(), &dest).unwrap();
        }
    }
}

#[test]
fn server_files_that_cannot_be_compared_fail() {
    let (_t, b) = broker();
    fs::remove_file(&b.paths().server_key).unwrap();
    let r = run(&b);
    assert_eq!(fails(&r), ["server-files"], "{r}");
    assert!(
        messages(&r, "server-files")[0].starts_with("the server files cannot be compared"),
        "{r}"
    );
    assert_eq!(r.status_of("orphan-files"), Some(Status::Skip), "{r}");
    assert!(fix(&b).actions.is_empty());
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn too_open_broker_files_fail_naming_the_path_and_mode_and_fix_narrows_them() {
    let (_t, b) = broker();
    let p = b.paths().clone();
    let wal = PathBuf::from(format!("{}-wal", p.database.display()));
    let mut changed = vec![
        (p.ca_key.clone(), 0o644, 0o600, "the CA key"),
        (p.database.clone(), 0o644, 0o600, "it holds client keys"),
        (p.private_dir.clone(), 0o777, 0o700, "it holds the keys"),
        (p.crl.clone(), 0o600, 0o644, "OpenVPN reads it as nobody"),
        (p.settings.clone(), 0o666, 0o644, "no one else may write it"),
    ];
    if wal.exists() {
        changed.push((wal, 0o640, 0o600, "it holds client keys"));
    }
    for (path, bad, _, _) in &changed {
        chmod(path, *bad);
    }
    let r = run(&b);
    assert_eq!(fails(&r), vec!["permissions"; changed.len()], "{r}");
    let found = messages(&r, "permissions");
    for (path, bad, good, why) in &changed {
        let want = format!(
            "{} has mode {bad:04o}, should be {good:04o}: {why}",
            path.display()
        );
        assert!(found.contains(&want.as_str()), "{want}\n{r}");
    }
    let r = fix(&b);
    assert!(fails(&r).is_empty(), "{r}");
    for (path, _, good, _) in &changed {
        assert_eq!(mode(path), *good, "{}", path.display());
        let action = format!("chmod {good:04o} {}", path.display());
        assert!(r.actions.contains(&action), "{action}: {r}");
    }
}

#[test]
fn a_server_dir_that_openvpn_cannot_reach_fails_and_one_under_tmp_warns() {
    let mut s = settings();
    s.mode = ServerMode::Shared;
    let (_t, b) = broker_with(s);
    let dir = server(&b);
    let r = run(&b);
    assert_eq!(r.status_of("server-access"), Some(Status::Pass), "{r}");
    // Rendered under `umask 077`: server/ and ccd/ are 0700, so OpenVPN as
    // nobody can read neither the CRL nor the CCD entries.
    chmod(&dir, 0o700);
    chmod(&dir.join("ccd"), 0o700);
    let r = run(&b);
    assert_eq!(fails(&r), ["server-access"; 2], "{r}");
    assert_eq!(
        messages(&r, "server-access"),
        [
            format!(
                "{} (mode 0700) is not searchable by others: OpenVPN cannot use it after dropping to nobody",
                dir.display()
            ),
            format!(
                "{} (mode 0700) is not searchable by others: OpenVPN cannot use it after dropping to nobody",
                dir.join("ccd").display()
            )
        ]
    );
    chmod(&dir, 0o755);
    chmod(&dir.join("ccd"), 0o755);
    // The broker in a private directory (0700), the files rendered in it.
    let top = b.dir().parent().unwrap();
    chmod(top, 0o700);
    let r = run(&b);
    assert_eq!(fails(&r), ["server-access"], "{r}");
    assert!(
        messages(&r, "server-access")[0].starts_with(&format!("{} (mode 0700)", top.display())),
        "{r}"
    );
    chmod(top, 0o755);
    // Under /tmp: hidden by PrivateTmp, a warning.
    let tmp = tempfile::tempdir().unwrap();
    chmod(tmp.path(), 0o755);
    let under_tmp = tmp.path().join("server");
    b.render_server(Some(&under_tmp)).unwrap();
    let mut o = AuditOptions::default();
    o.server_dir = Some(under_tmp.clone());
    let r = audit(&b, &o);
    assert!(fails(&r).is_empty(), "{r}");
    assert_eq!(r.status_of("server-access"), Some(Status::Warn), "{r}");
    assert!(
        messages(&r, "server-access")[0].ends_with("(PrivateTmp=true)"),
        "{r}"
    );
}

/// A certificate signed by the broker's CA (or self-signed with the CA's
/// key when `ca`) for the given period, PEM.
fn cert_for(b: &Broker, ca: bool, not_before: OffsetDateTime, not_after: OffsetDateTime) -> String {
    let key = rcgen::KeyPair::from_pem(b.ca().key().unwrap().to_pem()).unwrap();
    let mut cp = rcgen::CertificateParams::default();
    cp.not_before = not_before;
    cp.not_after = not_after;
    if ca {
        cp.distinguished_name
            .push(rcgen::DnType::CommonName, "tunnelbroker CA");
        cp.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        cp.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        cp.self_signed(&key).unwrap().pem()
    } else {
        cp.distinguished_name
            .push(rcgen::DnType::CommonName, "tunnelbroker-server");
        let leaf = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_pem(b.ca().certificate().pem(), key).unwrap();
        cp.signed_by(&leaf, &issuer).unwrap().pem()
    }
}

#[test]
fn server_and_ca_certificates_near_their_end_warn_and_expired_ones_fail() {
    let mut s = settings();
    s.validity.ca_days = 20;
    s.validity.server_days = 10;
    s.validity.client_days = 10;
    let (_t, b) = broker_with(s);
    let r = run(&b);
    assert!(fails(&r).is_empty(), "{r}");
    for name in ["ca", "server-certificate"] {
        assert_eq!(r.status_of(name), Some(Status::Warn), "{name}: {r}");
    }
    assert!(
        messages(&r, "server-certificate")[0]
            .starts_with("the server certificate expires in 9 days"),
        "{r}"
    );
    assert!(
        messages(&r, "ca")[0]
            .starts_with("the CA certificate \"tunnelbroker CA\" expires in 19 days"),
        "{r}"
    );
    let mut o = AuditOptions::default();
    o.days = 5;
    let r = audit(&b, &o);
    assert_eq!(r.status_of("ca"), Some(Status::Pass), "{r}");
    assert_eq!(r.status_of("server-certificate"), Some(Status::Pass), "{r}");

    // An expired server certificate: FAIL, with the way out.
    let now = OffsetDateTime::now_utc();
    let old = cert_for(&b, false, now - Duration::days(40), now - Duration::days(1));
    fs::write(&b.paths().server_cert, old).unwrap();
    let r = run(&b);
    assert!(fails(&r).contains(&"server-certificate"), "{r}");
    let c = r
        .checks
        .iter()
        .find(|c| c.name == "server-certificate")
        .unwrap();
    assert!(
        c.message.starts_with("the server certificate expired on"),
        "{r}"
    );
    assert!(c.hint.as_ref().unwrap().contains("server renew"), "{r}");

    // An expired CA: the broker cannot be opened, audit still reports it.
    let old = cert_for(&b, true, now - Duration::days(40), now - Duration::days(1));
    fs::write(&b.paths().ca_cert, &old).unwrap();
    // The client database holds the CA certificate every host uses.
    rusqlite::Connection::open(&b.paths().database)
        .unwrap()
        .execute(
            "UPDATE shared SET value = ?1 WHERE key = 'ca.chain'",
            [&old],
        )
        .unwrap();
    assert!(Broker::open(b.dir()).is_err());
    let r = audit_dir(b.dir(), &AuditOptions::default()).unwrap();
    assert_eq!(r.status_of("ca"), Some(Status::Fail), "{r}");
    let c = r.checks.iter().find(|c| c.name == "ca").unwrap();
    assert!(c.message.contains("expired on"), "{r}");
    assert!(
        c.hint
            .as_ref()
            .unwrap()
            .contains("cannot be renewed in place"),
        "{r}"
    );
}

#[test]
fn a_broker_that_cannot_be_opened_is_reported_not_an_error() {
    let (_t, b) = broker();
    let dir = b.dir().to_owned();
    let db = b.paths().database.clone();
    let names = |r: &Report| -> Vec<String> { r.checks.iter().map(|c| c.name.clone()).collect() };
    let in_order = |r: &Report| {
        let got = names(r);
        let order: Vec<&str> = AUDIT_CHECKS
            .iter()
            .copied()
            .filter(|n| got.iter().any(|g| g == n))
            .collect();
        assert_eq!(got, order, "{r}");
    };
    // A missing database is a FAIL and is not made anew.
    let saved = fs::read(&db).unwrap();
    drop(b);
    for side in ["-wal", "-shm"] {
        let _ = fs::remove_file(format!("{}{side}", db.display()));
    }
    fs::remove_file(&db).unwrap();
    let r = audit_dir(&dir, &AuditOptions::default()).unwrap();
    assert_eq!(fails(&r), ["database"], "{r}");
    assert_eq!(
        messages(&r, "database"),
        [format!("{} is missing", db.display())]
    );
    assert!(!db.exists(), "audit made a new database");
    in_order(&r);
    for name in ["certificate", "revocation", "server-files"] {
        assert_eq!(r.status_of(name), Some(Status::Skip), "{name}: {r}");
    }
    // What does not need the database is still checked.
    for name in [
        "permissions",
        "ca",
        "server-certificate",
        "crl",
        "server-access",
    ] {
        assert_eq!(r.status_of(name), Some(Status::Pass), "{name}: {r}");
    }
    let mut o = AuditOptions::default();
    o.fix = true;
    assert!(audit_dir(&dir, &o).unwrap().actions.is_empty());
    assert!(!db.exists());
    // --fix still narrows modes, and then reports again.
    let settings = dir.join("tunnelbroker.toml");
    chmod(&settings, 0o666);
    let r = audit_dir(&dir, &o).unwrap();
    assert_eq!(
        r.actions,
        [format!("chmod 0644 {}", settings.display())],
        "{r}"
    );
    assert_eq!(fails(&r), ["database"], "{r}");
    assert_eq!(mode(&settings), 0o644);
    assert!(!db.exists());

    // A database that is not one.
    fs::write(
        &db,
        b"not a database, just text that is long enough to be read",
    )
    .unwrap();
    chmod(&db, 0o600);
    let r = audit_dir(&dir, &AuditOptions::default()).unwrap();
    assert_eq!(fails(&r), ["database"], "{r}");
    assert!(
        messages(&r, "database")[0].contains(&db.display().to_string()),
        "{r}"
    );
    in_order(&r);
    fs::write(&db, saved).unwrap();
    assert!(!audit_dir(&dir, &AuditOptions::default()).unwrap().failed());

    // A corrupt CA certificate file: a cache of the one in the client
    // database, written again from there when the broker is opened.
    let ca = dir.join("ca.crt");
    let good = fs::read(&ca).unwrap();
    fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let r = audit_dir(&dir, &AuditOptions::default()).unwrap();
    assert!(fails(&r).is_empty(), "{r}");
    assert_eq!(fs::read(&ca).unwrap(), good);

    // No broker at all: an error.
    let e = audit_dir(&dir.join("nothing"), &AuditOptions::default()).unwrap_err();
    assert_eq!(e.kind(), tunnelbroker_core::ErrorKind::NotFound);
}

#[test]
fn an_unreadable_server_certificate_is_a_fail_naming_it() {
    let (_t, b) = broker();
    fs::write(&b.paths().server_cert, "garbage").unwrap();
    let r = run(&b);
    assert!(fails(&r).contains(&"server-certificate"), "{r}");
    assert!(
        messages(&r, "server-certificate")[0]
            .starts_with(&b.paths().server_cert.display().to_string()),
        "{r}"
    );
}

/// `server-access` looks where `server render` recorded it rendered, not at
/// the default `<broker>/server` (regression: a broker rendered into
/// /etc/openvpn/server got a SKIP, "does not exist").
#[test]
fn server_access_checks_the_recorded_directory() {
    let (t, b) = broker();
    let etc = t.path().join("etc");
    fs::create_dir(&etc).unwrap();
    let out = etc.join("server");
    b.render_server(Some(&out)).unwrap();
    fs::remove_dir_all(&b.paths().server_dir).ok();
    assert_eq!(run(&b).status_of("server-access"), Some(Status::Pass));
    fs::set_permissions(&etc, fs::Permissions::from_mode(0o700)).unwrap();
    let r = run(&b);
    fs::set_permissions(&etc, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(r.status_of("server-access"), Some(Status::Fail), "{r}");
    assert!(
        messages(&r, "server-access")
            .iter()
            .any(|m| m.contains(&etc.display().to_string())),
        "{r}"
    );
}
