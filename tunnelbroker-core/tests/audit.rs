//! `audit` (issue 7): one test per inconsistency it reports, made by
//! altering the database with rusqlite, replacing the CRL, changing the
//! settings or the rendered server files, and the safe repairs of `--fix`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use tunnelbroker_core::doctor::{AuditOptions, Report, Status, audit};
use tunnelbroker_core::{
    Broker, Ca, CaParams, ClientKind, InitOptions, NewClient, RevocationReason, ServerMode,
    Settings,
};

fn broker_with(settings: Settings) -> (tempfile::TempDir, Broker) {
    let tmp = crate::operator_tempdir();
    let b = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings)).unwrap();
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
    b.render_server(None).unwrap();
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

#[test]
fn a_revoked_certificate_missing_from_the_crl_fails() {
    let (_t, b) = broker();
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
fn any_number_of_days_is_accepted_without_panicking() {
    let (_t, b) = broker();
    for days in [0, 2_900_000, 3_000_000, u32::MAX] {
        let mut o = AuditOptions::default();
        o.days = days;
        let r = audit(&b, &o);
        assert!(fails(&r).is_empty(), "{days}: {r}");
        let expiring = if days == 0 { 0 } else { 3 };
        assert_eq!(r.count(Status::Warn), expiring, "{days}: {r}");
    }
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
        // per-client: 2 subnet instances with scripts + 1 hermit + 4 keys and
        // certificates + the CRL copy; shared: the server, 3 CCD entries + 5.
        let n = if mode == ServerMode::PerClient { 12 } else { 9 };
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
            "re-rendered {}: wrote ccd/dave",
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
        format!("{} is not a regular file", script.display()),
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
    // An orphan the broker wrote: the per-client file of a former mode.
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
                "{} was rendered for client alice in the other server mode (the broker runs in shared mode); nothing uses it",
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
    let r = fix(&b);
    assert_eq!(
        r.actions,
        [format!(
            "re-rendered {}: removed tb-client-alice.conf",
            dir.display()
        )],
        "{r}"
    );
    assert!(hand.exists() && inst.exists() && notes.exists());
    assert!(!stale.exists());
    // Nothing left that the broker may repair: --fix does nothing more.
    let r = fix(&b);
    assert!(r.actions.is_empty(), "{r}");
    assert_eq!(messages(&r, "orphan-files").len(), 2, "{r}");
    // Rendering leaves them too, and says so.
    let report = b.render_server(None).unwrap();
    assert!(report.removed.is_empty());
    assert_eq!(
        report
            .warnings
            .iter()
            .filter(|w| w.contains("not written by the broker"))
            .count(),
        2,
        "{:?}",
        report.warnings
    );
}

#[test]
fn a_server_side_never_rendered_warns_and_fix_does_not_create_it() {
    let tmp = tempfile::tempdir().unwrap();
    let b = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings())).unwrap();
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
    assert_eq!(fails(&r), ["server-files"; 3], "{r}");
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
