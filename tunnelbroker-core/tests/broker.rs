//! The broker: init, the subscription lifecycle, the client database, CSV
//! import, concurrency and every failure path (issue 4).

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tunnelbroker_core::{
    Broker, ClientKind, ClientOs, ClientState, ErrorKind, InitOptions, NewClient, RevocationReason,
    ServerMode, Settings, parse_prefix,
};

fn settings(pool: &str) -> Settings {
    Settings::new(pool.parse().unwrap(), "vpn.example.net".parse().unwrap())
}

fn new_broker(pool: &str) -> (tempfile::TempDir, Broker) {
    let tmp = tempfile::tempdir().unwrap();
    let b = Broker::init(
        &tmp.path().join("broker"),
        &InitOptions::new(settings(pool)),
    )
    .unwrap();
    (tmp, b)
}

fn req(id: &str, kind: ClientKind) -> NewClient {
    NewClient::new(id.parse().unwrap(), kind)
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every file of a directory tree with its contents.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn init_lays_out_the_broker_with_private_keys_private() {
    let (_t, b) = new_broker("2001:db8:0:f100::/56");
    let p = b.paths();
    for f in [&p.settings, &p.ca_cert, &p.server_cert, &p.crl] {
        assert_eq!(mode(f), 0o644, "{}", f.display());
    }
    for f in [&p.ca_key, &p.server_key, &p.tls_crypt_key, &p.database] {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    assert_eq!(mode(&p.private_dir), 0o700);
    let crl = b.crl().unwrap();
    assert!(crl.revoked_serials().is_empty());
    let server = b.server_certificate().unwrap();
    b.ca().verify(&server).unwrap();
    assert_eq!(server.info().common_name, tunnelbroker_core::SERVER_CN);
    b.tls_crypt_key().unwrap();
    // Reopening gives the same settings.
    let again = Broker::open(b.dir()).unwrap();
    assert_eq!(again.settings(), b.settings());
}

#[test]
fn init_on_an_existing_broker_refuses_and_changes_nothing() {
    let (_t, b) = new_broker("2001:db8:0:f100::/56");
    b.add_client(&req("alice", ClientKind::Subnet)).unwrap();
    let before = snapshot(b.dir());
    let err = Broker::init(b.dir(), &InitOptions::new(settings("2001:db8:1::/48"))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert!(err.to_string().contains("already holds a broker"), "{err}");
    assert_eq!(snapshot(b.dir()), before);
}

#[test]
fn init_refuses_a_non_empty_directory_and_bad_settings_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("notes.txt"), "mine").unwrap();
    let err = Broker::init(&dir, &InitOptions::new(settings("2001:db8:0:f100::/56"))).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(fs::read(dir.join("notes.txt")).unwrap(), b"mine");

    let mut s = settings("2001:db8:0:f100::/56");
    s.lan_interface = "eth0; reboot".into();
    let fresh = tmp.path().join("fresh");
    let err = Broker::init(&fresh, &InitOptions::new(s)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(!fresh.exists());
    // No temporary directory is left behind either.
    let left: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn settings_follow_the_pki_rule_for_validity_periods() {
    let tmp = tempfile::tempdir().unwrap();
    type Field = fn(&mut Settings) -> &mut u32;
    let fields: [(&str, Field); 4] = [
        ("validity.ca_days", |s| &mut s.validity.ca_days),
        ("validity.server_days", |s| &mut s.validity.server_days),
        ("validity.client_days", |s| &mut s.validity.client_days),
        ("validity.crl_days", |s| &mut s.validity.crl_days),
    ];
    for (name, field) in fields {
        for (days, ok) in [(0, false), (1, true), (36_525, true), (36_526, false)] {
            let mut s = settings("2001:db8:0:f100::/56");
            *field(&mut s) = days;
            match s.validate() {
                Ok(()) => assert!(ok, "{name} = {days} was accepted"),
                Err(err) => {
                    assert!(!ok, "{name} = {days}: {err}");
                    assert_eq!(err.kind(), ErrorKind::InvalidInput);
                    let text = err.to_string();
                    assert!(
                        text.contains(name) && text.contains(&days.to_string()),
                        "{text}"
                    );
                    let dir = tmp.path().join(format!("{name}-{days}"));
                    assert!(Broker::init(&dir, &InitOptions::new(s)).is_err());
                    assert!(!dir.exists());
                }
            }
        }
    }
}

#[test]
fn init_creates_missing_parent_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("srv").join("tb").join("broker");
    Broker::init(&dir, &InitOptions::new(settings("2001:db8:0:f100::/56"))).unwrap();
    assert!(dir.join("tunnelbroker.toml").exists());
}

#[test]
fn open_refuses_a_directory_without_a_broker_and_a_hostile_settings_file() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Broker::open(tmp.path()).unwrap_err();
    assert!(err.to_string().contains("tunnelbroker init"), "{err}");

    let (_t, b) = new_broker("2001:db8:0:f100::/56");
    let path = b.paths().settings.clone();
    for bad in [
        "pool = \"2001:db8::1/56\"",
        "garbage = = =",
        "",
        "pool = \"2001:db8:0:f100::/56\"\nendpoint = \"x;rm -rf /\"",
    ] {
        fs::write(&path, bad).unwrap();
        let err = Broker::open(b.dir()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}: {err}");
        assert_eq!(err.to_string().lines().count(), 1, "{err}");
    }
}

#[test]
fn subscribe_gives_the_lowest_free_assignment_and_port() {
    let (_t, b) = new_broker("2001:db8:0:f100::/56");
    let alice = b.add_client(&req("alice", ClientKind::Subnet)).unwrap();
    let bob = b.add_client(&req("bob", ClientKind::Hermit)).unwrap();
    let carol = b.add_client(&req("carol", ClientKind::Subnet)).unwrap();
    assert_eq!(alice.assignment.to_string(), "2001:db8:0:f101::/64");
    assert_eq!(
        alice.tunnel_address().to_string(),
        "2001:db8:0:f100::f101:2"
    );
    assert_eq!(bob.assignment.to_string(), "2001:db8:0:f1ff::1/128");
    assert_eq!(carol.assignment.to_string(), "2001:db8:0:f102::/64");
    assert_eq!(
        [alice.port, bob.port, carol.port],
        [Some(5000), Some(5001), Some(5002)]
    );
    assert_eq!(alice.state, ClientState::Active);
    assert!(alice.has_key);
    let creds = b.client_credentials(&alice.id).unwrap();
    assert_eq!(creds.certificate.info().common_name, "alice");
    b.ca().verify(&creds.certificate).unwrap();
    assert!(creds.key.is_some());
    let ids: Vec<_> = b
        .clients()
        .unwrap()
        .into_iter()
        .map(|c| c.id.to_string())
        .collect();
    assert_eq!(ids, ["alice", "bob", "carol"]);
}

#[test]
fn shared_mode_gives_no_ports() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = settings("2001:db8:0:f100::/56");
    s.mode = ServerMode::Shared;
    let b = Broker::init(&tmp.path().join("b"), &InitOptions::new(s)).unwrap();
    let a = b.add_client(&req("a", ClientKind::Subnet)).unwrap();
    assert_eq!(a.port, None);
}

#[test]
fn duplicate_id_is_refused_and_nothing_changes() {
    let (_t, b) = new_broker("2001:db8:0:f100::/56");
    b.add_client(&req("alice", ClientKind::Subnet)).unwrap();
    let err = b.add_client(&req("alice", ClientKind::Hermit)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(err.to_string(), "a client named alice exists already");
    assert_eq!(b.clients().unwrap().len(), 1);
    // The hermit allocation of the refused request was not consumed.
    let bob = b.add_client(&req("bob", ClientKind::Hermit)).unwrap();
    assert_eq!(bob.assignment.to_string(), "2001:db8:0:f1ff::1/128");
}

#[test]
fn the_server_name_is_reserved() {
    let (_t, b) = new_broker("2001:db8:0:f100::/56");
    let err = b
        .add_client(&req("TunnelBroker-Server", ClientKind::Hermit))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn pool_exhausted_is_its_own_error() {
    let (_t, b) = new_broker("2001:db8:0:f1fc::/62");
    b.add_client(&req("a", ClientKind::Subnet)).unwrap();
    b.add_client(&req("b", ClientKind::Subnet)).unwrap();
    let err = b.add_client(&req("c", ClientKind::Subnet)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Exhausted, "{err}");
    assert!(err.to_string().contains("no free subnet"), "{err}");
    assert_eq!(b.clients().unwrap().len(), 2);
}

#[test]
fn a_requested_prefix_that_is_taken_names_its_owner() {
    let (_t, b) = new_broker("2001:db8:0:f100::/56");
    let mut r = req("alice", ClientKind::Subnet);
    r.prefix = Some(parse_prefix("2001:db8:0:f1ab::/64").unwrap());
    let alice = b.add_client(&r).unwrap();
    assert_eq!(
        alice
            .assignment
            .as_subnet()
            .unwrap()
            .server_end()
            .to_string(),
        "2001:db8:0:f100::f1ab:1"
    );
    let mut r2 = req("mallory", ClientKind::Subnet);
    r2.prefix = r.prefix;
    let err = b.add_client(&r2).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(
        err.to_string(),
        "2001:db8:0:f1ab::/64 is already assigned to alice"
    );
}

#[test]
fn requested_prefixes_outside_the_pool_or_in_the_wrong_role_are_refused() {
    let (_t, b) = new_broker("2001:db8:0:f100::/56");
    for (kind, p, needle) in [
        (ClientKind::Subnet, "2001:db8:1::/64", "outside the pool"),
        (ClientKind::Subnet, "2001:db8:0:f100::/64", "routing"),
        (ClientKind::Subnet, "2001:db8:0:f1ff::/64", "hermit"),
        (ClientKind::Hermit, "2001:db8:0:f1ab::5", "subnet"),
        (ClientKind::Hermit, "2001:db8:0:f1ff::", "reserved"),
        (ClientKind::Subnet, "2001:db8:0:f1a0::/60", "/64"),
    ] {
        let mut r = req("x", kind);
        r.prefix = Some(parse_prefix(p).unwrap());
        let err = b.add_client(&r).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{p}: {err}");
        assert!(err.to_string().contains(needle), "{p}: {err}");
    }
    assert!(b.clients().unwrap().is_empty());
}

#[test]
fn hostile_contact_fields_are_refused() {
    let (_t, b) = new_broker("2001:db8:0:f100::/56");
    let mut r = req("x", ClientKind::Hermit);
    r.email = Some("a@b\n@evil".into());
    assert_eq!(
        b.add_client(&r).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let mut r = req("x", ClientKind::Hermit);
    r.name = Some("x".repeat(500));
    assert_eq!(
        b.add_client(&r).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let mut r = req("x", ClientKind::Hermit);
    r.name = Some("Jörg Müller".into());
    r.email = Some("joerg@example.org".into());
    let c = b.add_client(&r).unwrap();
    assert_eq!(c.name.as_deref(), Some("Jörg Müller"));
}

#[test]
fn unknown_clients_are_not_found_for_every_action() {
    let (_t, b) = new_broker("2001:db8:0:f100::/56");
    let ghost = "ghost".parse().unwrap();
    let errs = [
        b.client(&ghost).unwrap_err(),
        b.revoke(&ghost, RevocationReason::Unspecified).unwrap_err(),
        b.renew(&ghost, None).unwrap_err(),
        b.purge(&ghost).unwrap_err(),
        b.client_credentials(&ghost).unwrap_err(),
    ];
    for e in errs {
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert_eq!(e.to_string(), "no client named ghost");
    }
}

#[test]
fn revoke_lists_the_serial_keeps_the_assignment_until_purge() {
    let (_t, b) = new_broker("2001:db8:0:f100::/56");
    let alice = b.add_client(&req("alice", ClientKind::Subnet)).unwrap();
    let number_before = b.crl().unwrap().number();
    let revoked = b
        .revoke(&alice.id, RevocationReason::KeyCompromise)
        .unwrap()
        .client;
    assert_eq!(revoked.state, ClientState::Revoked);
    assert!(revoked.revoked_at.is_some());
    let crl = b.crl().unwrap();
    assert_eq!(crl.revoked_serials(), vec![alice.serial.clone()]);
    assert!(crl.number() > number_before);
    // Revoking twice is refused.
    let err = b
        .revoke(&alice.id, RevocationReason::Unspecified)
        .unwrap_err();
    assert!(err.to_string().contains("it is revoked"), "{err}");
    // The assignment is not handed to someone else.
    let bob = b.add_client(&req("bob", ClientKind::Subnet)).unwrap();
    assert_ne!(bob.assignment, alice.assignment);
    // Purge frees it; the revoked serial stays on the CRL.
    let purged = b.purge(&alice.id).unwrap();
    assert_eq!(purged.id, alice.id);
    let carol = b.add_client(&req("carol", ClientKind::Subnet)).unwrap();
    assert_eq!(carol.assignment, alice.assignment);
    assert_eq!(carol.port, alice.port);
    assert_eq!(
        b.refresh_crl().unwrap().revoked_serials(),
        vec![alice.serial]
    );
}

#[test]
fn purge_of_an_active_client_is_refused() {
    let (_t, b) = new_broker("2001:db8:0:f100::/56");
    let a = b.add_client(&req("a", ClientKind::Hermit)).unwrap();
    let err = b.purge(&a.id).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("revoke it first"), "{err}");
    assert_eq!(b.clients().unwrap().len(), 1);
}

#[test]
fn renew_keeps_assignment_and_port_and_supersedes_the_old_certificate() {
    let (_t, b) = new_broker("2001:db8:0:f100::/56");
    let a = b.add_client(&req("a", ClientKind::Subnet)).unwrap();
    let old_key = b.client_credentials(&a.id).unwrap().key.unwrap();
    let r = b.renew(&a.id, None).unwrap();
    assert_eq!((r.assignment, r.port), (a.assignment, a.port));
    assert_ne!(r.serial, a.serial);
    let new_key = b.client_credentials(&a.id).unwrap().key.unwrap();
    assert_ne!(old_key.to_pem(), new_key.to_pem());
    assert_eq!(b.crl().unwrap().revoked_serials(), vec![a.serial]);
    b.revoke(&a.id, RevocationReason::Unspecified).unwrap();
    assert_eq!(
        b.renew(&a.id, None).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

fn csr_for(cn: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec![]).unwrap();
    let mut params = params;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.serialize_request(&key).unwrap().pem().unwrap()
}

#[test]
fn a_client_with_its_own_key_gets_no_key_kept() {
    let (_t, b) = new_broker("2001:db8:0:f100::/56");
    let mut r = req("own", ClientKind::Hermit);
    r.csr = Some(csr_for("whatever-they-wrote"));
    let c = b.add_client(&r).unwrap();
    assert!(!c.has_key);
    let creds = b.client_credentials(&c.id).unwrap();
    assert!(creds.key.is_none());
    assert_eq!(creds.certificate.info().common_name, "own");
    let err = b.renew(&c.id, None).unwrap_err();
    assert!(err.to_string().contains("--csr"), "{err}");
    let renewed = b.renew(&c.id, Some(&csr_for("own"))).unwrap();
    assert_ne!(renewed.serial, c.serial);

    // A broken request leaves no trace and consumes nothing.
    let mut bad = req("bad", ClientKind::Hermit);
    bad.csr = Some(
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n".into(),
    );
    assert!(b.add_client(&bad).is_err());
    assert_eq!(b.clients().unwrap().len(), 1);
    let next = b.add_client(&req("next", ClientKind::Hermit)).unwrap();
    assert_eq!(next.assignment.to_string(), "2001:db8:0:f1ff::2/128");
}

#[test]
fn import_reports_bad_rows_by_line_and_keeps_the_good_ones() {
    let (_t, b) = new_broker("2001:db8:0:f100::/56");
    b.add_client(&req("taken", ClientKind::Subnet)).unwrap();
    let csv = "\
id,kind,os,email,name,prefix
alice,subnet,linux,alice@example.org,Alice,
../etc,hermit,linux,,,
bob,hermit,windows,,Bob,2001:db8:0:f1ff::99
carol,router,linux,,,
alice,hermit,linux,,,
dave,subnet,linux,,,2001:db8:0:f101::/64
eve,subnet
frank,subnet,linux,,,2001:db8:1::/64
";
    let mut calls = 0;
    let report = b.import_csv(csv, &mut |_, _| calls += 1).unwrap();
    let added: Vec<_> = report.added.iter().map(|c| c.id.to_string()).collect();
    assert_eq!(added, ["alice", "bob"]);
    let lines: Vec<_> = report.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [3, 5, 6, 7, 8, 9], "{:#?}", report.errors);
    assert!(report.errors[0].error.contains("invalid client id"));
    assert!(report.errors[2].error.contains("exists already"));
    assert!(
        report.errors[3].error.contains("already assigned to taken"),
        "{}",
        report.errors[3].error
    );
    assert!(
        report.errors[4]
            .error
            .contains("expected id, kind, os, email, name")
    );
    assert!(report.errors[5].error.contains("outside the pool"));
    assert!(calls >= 1);
    let bob = b.client(&"bob".parse().unwrap()).unwrap();
    assert_eq!(bob.os, ClientOs::Windows);
    assert_eq!(bob.assignment.to_string(), "2001:db8:0:f1ff::99/128");
    assert_eq!(b.clients().unwrap().len(), 3);
}

#[test]
fn import_of_garbage_bytes_is_refused_row_by_row_without_panic() {
    let (_t, b) = new_broker("2001:db8:0:f100::/56");
    let text = "\u{0}\u{1}\u{2},,,\n\"unterminated,subnet\n;;;;\n";
    let report = b.import_csv(text, &mut |_, _| {}).unwrap();
    assert!(report.added.is_empty());
    assert!(!report.errors.is_empty());
    assert!(b.clients().unwrap().is_empty());
}

#[test]
fn concurrent_brokers_never_share_an_assignment_or_port() {
    let (_t, b) = new_broker("2001:db8:0:f100::/56");
    let dir = b.dir().to_owned();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let b = Broker::open(&dir).unwrap();
                for i in 0..10 {
                    let kind = if i % 2 == 0 {
                        ClientKind::Subnet
                    } else {
                        ClientKind::Hermit
                    };
                    b.add_client(&req(&format!("t{t}-{i}"), kind)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let clients = b.clients().unwrap();
    assert_eq!(clients.len(), 40);
    let prefixes: HashSet<_> = clients.iter().map(|c| c.prefix()).collect();
    let ports: HashSet<_> = clients.iter().map(|c| c.port).collect();
    let serials: HashSet<_> = clients.iter().map(|c| c.serial.clone()).collect();
    assert_eq!((prefixes.len(), ports.len(), serials.len()), (40, 40, 40));
}
