//! The server host's agent (issue 14, items 1 and 4) at the broker level,
//! on both stores: it opens without the CA key, follows the database
//! (clients, revocations, the CRL) and exports metrics that Prometheus's
//! own `promtool check metrics` accepts.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tunnelbroker_core::agent::{Agent, AgentOptions, ClientTraffic, InstanceControl};
use tunnelbroker_core::broker::ServerMode;
use tunnelbroker_core::pki::RevocationReason;
use tunnelbroker_core::{Broker, ClientKind, NewClient, Settings};

use crate::stores::{TestStore, by_store};

/// A provisioning broker in `tmp/broker` and the directory a server host
/// has: on PostgreSQL a copy of the broker directory without the CA key;
/// on SQLite (whose database is a file of the broker directory) the same
/// directory, its CA key removed once the provisioning broker holds it.
fn hosts(store: &TestStore, tmp: &Path, mode: ServerMode) -> (Broker, PathBuf) {
    let mut s = Settings::new(
        "2001:db8:0:f100::/56".parse().unwrap(),
        "vpn.example.net".parse().unwrap(),
    );
    s.mode = mode;
    let dir = tmp.join("broker");
    let b = Broker::init(&dir, &store.options(s)).unwrap();
    let server_host = match store {
        TestStore::Sqlite => dir.clone(),
        TestStore::Postgres(_) => {
            let copy = tmp.join("server-host");
            let out = Command::new("cp")
                .args(["-a", dir.to_str().unwrap(), copy.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            copy
        }
    };
    fs::remove_file(server_host.join("private/ca.key")).unwrap();
    (b, server_host)
}

fn agent(server_host: &Path, out: &Path) -> Agent {
    let mut options = AgentOptions::new();
    options.dir = Some(out.to_owned());
    options.instances = InstanceControl::Report;
    Agent::new(Broker::open_for_agent(server_host).unwrap(), options).unwrap()
}

fn hermit(b: &Broker, id: &str) {
    b.add_client(&NewClient::new(id.parse().unwrap(), ClientKind::Hermit))
        .unwrap();
}

fn agent_needs_no_ca_key_and_follows_the_database(store: &TestStore) {
    let tmp = crate::operator_tempdir();
    let (b, host) = hosts(store, tmp.path(), ServerMode::Shared);
    // The server host cannot open the broker the provisioning way.
    assert!(Broker::open(&host).is_err());
    let out = tmp.path().join("server");
    let mut a = agent(&host, &out);
    let first = a.poll().unwrap();
    assert!(first.reconciled);
    assert!(out.join("tb-shared.conf").exists());
    assert!(out.join("systemd/tunnelbroker-agent.service").exists());
    assert!(!a.poll().unwrap().reconciled, "nothing changed");

    // A client added on the provisioning host gets its CCD entry.
    hermit(&b, "alice");
    hermit(&b, "bob");
    let r = a.poll().unwrap();
    assert!(r.reconciled);
    assert!(out.join("ccd/alice").exists() && out.join("ccd/bob").exists());

    // A revocation there: the CRL of the database replaces this host's
    // (on SQLite the provisioning host wrote it here already), the CCD
    // entry goes, and the session end is attempted.
    let revoked = b
        .revoke(&"alice".parse().unwrap(), RevocationReason::KeyCompromise)
        .unwrap();
    let r = a.poll().unwrap();
    assert!(r.reconciled);
    match store {
        TestStore::Sqlite => assert_eq!(r.crl, None),
        TestStore::Postgres(_) => assert_eq!(r.crl, Some(b.crl().unwrap().number())),
    }
    assert_eq!(
        fs::read_to_string(out.join("crl.pem")).unwrap(),
        fs::read_to_string(&b.paths().crl).unwrap()
    );
    assert!(a.broker().crl().unwrap().is_revoked(&revoked.client.serial));
    assert!(!out.join("ccd/alice").exists());
    // The tls-crypt-v2 list (a v2 broker) drops her too: her key is
    // refused before TLS on this host.
    let list = fs::read_to_string(out.join("tls-crypt-v2-clients")).unwrap();
    assert!(!list.contains(" alice"), "{list}");
    assert!(list.contains(" bob"), "{list}");
    assert_eq!(r.ended.len(), 1);
    assert_eq!(r.ended[0].0.as_str(), "alice");
    assert!(out.join("ccd/bob").exists());

    // What signs is refused on the server host, and changes nothing.
    let keyless = Broker::open_for_agent(&host).unwrap();
    let err = keyless
        .add_client(&NewClient::new(
            "carol".parse().unwrap(),
            ClientKind::Hermit,
        ))
        .unwrap_err();
    assert!(err.to_string().contains("CA key"), "{err}");
    assert!(keyless.refresh_crl().is_err());
    assert_eq!(keyless.clients().unwrap().len(), 2);

    // A CRL refreshed on the provisioning host reaches the server host.
    let fresh = b.refresh_crl().unwrap();
    a.poll().unwrap();
    assert_eq!(a.broker().crl().unwrap().number(), fresh.number());
}
by_store!(agent_needs_no_ca_key_and_follows_the_database);

fn a_failed_poll_is_counted_and_the_next_one_recovers(store: &TestStore) {
    let tmp = crate::operator_tempdir();
    let (b, host) = hosts(store, tmp.path(), ServerMode::PerClient);
    let out = tmp.path().join("server");
    let mut a = agent(&host, &out);
    a.poll().unwrap();
    // A file in the way that the broker did not write: render refuses.
    hermit(&b, "alice");
    fs::write(out.join("tb-client-alice.conf"), "someone else's\n").unwrap();
    assert!(a.poll().is_err());
    assert!(a.poll().is_err(), "not marked done after a failure");
    let text = a.metrics().encode();
    assert!(
        text.contains("tunnelbroker_reconcile_errors_total 2"),
        "{text}"
    );
    fs::remove_file(out.join("tb-client-alice.conf")).unwrap();
    let r = a.poll().unwrap();
    assert_eq!(r.started, ["tb-client-alice"]);
    assert!(out.join("tb-client-alice.conf").exists());
}
by_store!(a_failed_poll_is_counted_and_the_next_one_recovers);

/// `promtool check metrics` on `text`: Ok, or what it said. `None` when
/// promtool is not installed (a failure under `CI=true`).
fn promtool(args: &[&str], stdin: &str) -> Option<Result<String, String>> {
    use std::io::Write;
    let child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(_) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("note: promtool is not installed (Debian package prometheus); not checked");
            return None;
        }
        Err(e) => panic!("CI=true and promtool cannot run: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(if out.status.success() {
        Ok(said)
    } else {
        Err(said)
    })
}

pub(crate) fn promtool_check_metrics(text: &str) -> Option<Result<String, String>> {
    promtool(&["check", "metrics"], text)
}

fn metrics_pass_promtool(store: &TestStore) {
    let tmp = crate::operator_tempdir();
    let (b, host) = hosts(store, tmp.path(), ServerMode::Shared);
    hermit(&b, "alice");
    hermit(&b, "bob.example-1");
    b.add_client(&NewClient::new(
        "carol".parse().unwrap(),
        ClientKind::Subnet,
    ))
    .unwrap();
    b.revoke(
        &"bob.example-1".parse().unwrap(),
        RevocationReason::Unspecified,
    )
    .unwrap();
    let out = tmp.path().join("server");
    let mut a = agent(&host, &out);
    a.poll().unwrap();
    let m = a.metrics();
    m.live(&[
        ClientTraffic {
            client: "alice".into(),
            received: 1234,
            sent: 5678,
        },
        ClientTraffic {
            client: "alice".into(),
            received: 1,
            sent: 2,
        },
    ]);
    let text = m.encode();
    for want in [
        "tunnelbroker_connected_clients{server=\"main\"} 1",
        "tunnelbroker_client_connected{server=\"main\",client=\"alice\"} 1",
        "tunnelbroker_client_connected{server=\"main\",client=\"carol\"} 0",
        "tunnelbroker_client_received_bytes{server=\"main\",client=\"alice\"} 1235",
        "tunnelbroker_client_sent_bytes{server=\"main\",client=\"alice\"} 5680",
        "tunnelbroker_pool_assignments{kind=\"hermit\"} 2",
        "tunnelbroker_pool_assignments{kind=\"subnet\"} 1",
        "tunnelbroker_clients{state=\"revoked\"} 1",
        "tunnelbroker_reconcile_errors_total 0",
        "tunnelbroker_sessions_total 0",
    ] {
        assert!(text.contains(want), "{want} not in:\n{text}");
    }
    // The revoked client has no connected flag.
    assert!(!text.contains("client=\"bob.example-1\""), "{text}");
    let expiry = |name: &str| -> i64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let ca = b.ca().certificate().info().not_after.unix_timestamp();
    assert_eq!(
        expiry("tunnelbroker_ca_certificate_expiry_timestamp_seconds"),
        ca
    );
    assert_eq!(
        expiry("tunnelbroker_crl_next_update_timestamp_seconds"),
        b.crl().unwrap().next_update().unix_timestamp()
    );
    assert!(expiry("tunnelbroker_client_certificate_soonest_expiry_timestamp_seconds") > 0);
    assert!(expiry("tunnelbroker_server_certificate_expiry_timestamp_seconds") > 0);
    // Sessions end: the flags drop, the connected count too.
    m.live(&[]);
    let text = m.encode();
    assert!(
        text.contains("tunnelbroker_connected_clients{server=\"main\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("tunnelbroker_client_connected{server=\"main\",client=\"alice\"} 0"),
        "{text}"
    );
    if let Some(Err(said)) = promtool_check_metrics(&text) {
        panic!("promtool check metrics refused:\n{said}\n{text}");
    }
}
by_store!(metrics_pass_promtool);

#[test]
fn the_example_alert_rules_and_scrape_config_pass_promtool() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/prometheus");
    let rules = docs.join("tunnelbroker-rules.yml");
    let config = docs.join("prometheus.yml");
    let text = fs::read_to_string(&rules).unwrap();
    for alert in [
        "TunnelbrokerCrlDue",
        "TunnelbrokerServerCertificateExpiring",
        "TunnelbrokerServerDown",
    ] {
        assert!(text.contains(&format!("alert: {alert}")), "{alert}");
    }
    // Every metric the rules name is one the agent exports.
    let tmp = crate::operator_tempdir();
    let (b, host) = hosts(&TestStore::Sqlite, tmp.path(), ServerMode::Shared);
    hermit(&b, "alice");
    let mut a = agent(&host, &tmp.path().join("server"));
    a.poll().unwrap();
    let exported = a.metrics().encode();
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("tunnelbroker_") {
            assert!(
                exported.contains(&format!("# TYPE {word} "))
                    || exported.contains(&format!("# TYPE {} ", word.trim_end_matches("_total"))),
                "the rules name {word}, which the agent does not export:\n{exported}"
            );
        }
    }
    for (args, file) in [(["check", "rules"], &rules), (["check", "config"], &config)] {
        let mut all = args.to_vec();
        all.push(file.to_str().unwrap());
        if let Some(Err(said)) = promtool(&all, "") {
            panic!("promtool {args:?} refused {}:\n{said}", file.display());
        }
    }
}

fn a_revoked_clients_instance_is_ended_when_the_agent_starts(store: &TestStore) {
    use std::io::{BufRead, BufReader, Write};
    let tmp = crate::operator_tempdir();
    let (b, host) = hosts(store, tmp.path(), ServerMode::PerClient);
    hermit(&b, "alice");
    hermit(&b, "bob");
    let out = tmp.path().join("server");
    let run = tmp.path().join("run");
    fs::create_dir(&run).unwrap();
    let keyless = Broker::open_for_agent(&host).unwrap();
    let mut options = tunnelbroker_core::broker::RenderOptions::new();
    options.dir = Some(out.clone());
    options.run_dir = Some(run.clone());
    keyless.render_server_with(&options).unwrap();
    let sockets = keyless.management_sockets().unwrap();
    assert_eq!(sockets.len(), 2);
    let (name, socket) = sockets[0].clone();
    assert_eq!(name, "tb-client-alice");
    // Alice is revoked while no agent runs; her instance still runs (a
    // stand-in that answers the management interface as OpenVPN does).
    b.revoke(&"alice".parse().unwrap(), RevocationReason::KeyCompromise)
        .unwrap();
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut w = stream.try_clone().unwrap();
        w.write_all(b">INFO:OpenVPN Management Interface Version 5\n")
            .unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        w.write_all(b"SUCCESS: signal SIGTERM thrown\n").unwrap();
        line
    });
    let mut a = agent(&host, &out);
    let r = a.poll().unwrap();
    assert_eq!(server.join().unwrap(), "signal SIGTERM\n");
    assert_eq!(r.ended.len(), 1, "{r:?}");
    assert_eq!(r.ended[0].0.as_str(), "alice");
    assert!(r.ended[0].1.ended(), "{r:?}");
    assert!(!out.join("tb-client-alice.conf").exists());
    assert_eq!(r.started, ["tb-client-bob"]);
}
by_store!(a_revoked_clients_instance_is_ended_when_the_agent_starts);

/// Every file below `dir` with its contents, for "nothing here changed".
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push((p.clone(), fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The value of the sample `name` (with its labels) in `text`.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        .parse()
        .unwrap()
}

fn the_agent_of_a_named_server_keeps_only_that_servers_files(store: &TestStore) {
    use tunnelbroker_core::broker::{NewServer, RenderOptions};
    let tmp = crate::operator_tempdir();
    let (b, host) = hosts(store, tmp.path(), ServerMode::Shared);
    let mut sb = NewServer::new("b", "vpn-b.example.net".parse().unwrap());
    sb.mode = ServerMode::Shared;
    sb.port = Some(5400);
    sb.pool = Some("2001:db8:0:f200::/58".parse().unwrap());
    b.add_server(&sb).unwrap();
    let on = |id: &str, server: &str| {
        let mut r = NewClient::new(id.parse().unwrap(), ClientKind::Hermit);
        r.server = Some(server.into());
        b.add_client(&r).unwrap()
    };
    on("alice", "main");
    on("bob", "b");
    // Main's files, rendered on its own host (here: beside b's).
    let out_a = tmp.path().join("server-main");
    let run = tmp.path().join("run");
    fs::create_dir(&run).unwrap();
    let mut o = RenderOptions::new();
    o.dir = Some(out_a.clone());
    o.run_dir = Some(run.clone());
    b.render_server_with(&o).unwrap();
    let main_files = tree(&out_a);

    // Without --server, a broker of two servers is refused, naming both.
    let mut options = AgentOptions::new();
    options.instances = InstanceControl::Report;
    let err = Agent::new(Broker::open_for_agent(&host).unwrap(), options.clone()).unwrap_err();
    assert!(
        err.to_string().contains("(b, main)") || err.to_string().contains("(main, b)"),
        "{err}"
    );
    assert_eq!(err.kind(), tunnelbroker_core::ErrorKind::InvalidInput);
    assert_eq!(err.to_string().lines().count(), 1, "{err}");

    // The agent of b renders what `server render b` renders.
    let out_b = tmp.path().join("server-b");
    options.server = Some("b".into());
    options.dir = Some(out_b.clone());
    options.run_dir = Some(run.clone());
    let mut a = Agent::new(Broker::open_for_agent(&host).unwrap(), options).unwrap();
    assert_eq!(a.server(), "b");
    let r = a.poll().unwrap();
    assert!(r.reconciled);
    let by_render = tmp.path().join("rendered-b");
    let mut o = RenderOptions::new();
    o.dir = Some(by_render.clone());
    o.run_dir = Some(run.clone());
    // (`server render b` on the same host: the units name its directory.)
    let rendered = Broker::open_for_agent(&host)
        .unwrap()
        .render_server_named("b", &o)
        .unwrap();
    let rel = |files: Vec<(PathBuf, Vec<u8>)>, base: &Path| -> Vec<(PathBuf, String)> {
        files
            .into_iter()
            .filter(|(p, _)| {
                let name = p.file_name().unwrap().to_str().unwrap();
                !name.starts_with(".tunnelbroker-manifest")
                    && !name.starts_with(".tunnelbroker-seen")
            })
            .map(|(p, d)| {
                let text = String::from_utf8(d)
                    .unwrap()
                    .replace(base.to_str().unwrap(), "DIR");
                (p.strip_prefix(base).unwrap().to_owned(), text)
            })
            .collect()
    };
    assert_eq!(rel(tree(&out_b), &out_b), rel(tree(&by_render), &by_render));
    assert_eq!(rendered.instances, ["tb-shared-b"]);
    assert!(out_b.join("ccd-b/bob").exists());
    assert!(!out_b.join("ccd-b/alice").exists());
    let cert = fs::read_to_string(out_b.join("server-b.crt")).unwrap();
    let b_cert = tunnelbroker_core::pki::Certificate::from_pem(&cert).unwrap();
    assert_eq!(b_cert.info().common_name, "tunnelbroker-server-b");
    let unit = fs::read_to_string(out_b.join("systemd/tunnelbroker-agent-b.service")).unwrap();
    assert!(
        unit.contains(&format!(
            " agent --server b -o {} --run-dir {}\n",
            out_b.canonicalize().unwrap().display(),
            run.display()
        )),
        "{unit}"
    );
    assert!(!out_b.join("systemd/tunnelbroker-agent.service").exists());
    let list = fs::read_to_string(out_b.join("tls-crypt-v2-clients-b")).unwrap();
    assert!(list.contains(" bob") && !list.contains(" alice"), "{list}");
    // Its metrics are b's: its certificate, its pool.
    let text = a.metrics().encode();
    assert_eq!(
        sample(
            &text,
            "tunnelbroker_server_certificate_expiry_timestamp_seconds"
        ) as i64,
        b_cert.info().not_after.unix_timestamp()
    );
    let pool_b = b.server("b").unwrap().pool;
    assert_eq!(
        sample(&text, "tunnelbroker_pool_capacity{kind=\"subnet\"}") as u64,
        pool_b.subnet_capacity()
    );
    assert_eq!(
        sample(&text, "tunnelbroker_pool_assignments{kind=\"hermit\"}"),
        1.0
    );
    assert!(
        text.contains("tunnelbroker_openvpn_up{server=\"b\"}"),
        "{text}"
    );

    // Clients added to either server: only b's reach b's directory, and
    // main's directory is not touched.
    on("carol", "main");
    on("dave", "b");
    let r = a.poll().unwrap();
    assert!(r.reconciled);
    assert!(out_b.join("ccd-b/dave").exists());
    assert!(!out_b.join("ccd-b/carol").exists());
    assert!(
        r.written
            .iter()
            .all(|p| p.starts_with(out_b.canonicalize().unwrap())),
        "{r:?}"
    );
    // Revoking main's alice ends nothing here; revoking b's dave does.
    b.revoke(&"alice".parse().unwrap(), RevocationReason::KeyCompromise)
        .unwrap();
    let r = a.poll().unwrap();
    assert!(r.ended.is_empty(), "{r:?}");
    b.revoke(&"dave".parse().unwrap(), RevocationReason::KeyCompromise)
        .unwrap();
    let r = a.poll().unwrap();
    assert_eq!(r.ended.len(), 1, "{r:?}");
    assert_eq!(r.ended[0].0.as_str(), "dave");
    assert!(!out_b.join("ccd-b/dave").exists());
    assert_eq!(
        fs::read_to_string(out_b.join("crl.pem")).unwrap(),
        fs::read_to_string(&b.paths().crl).unwrap()
    );
    // b's certificate renewed on the provisioning host: the agent writes
    // the new one, and its metric follows.
    let renewed = b.renew_server_named("b").unwrap();
    let r = a.poll().unwrap();
    assert!(r.reconciled, "a new server certificate was not seen: {r:?}");
    assert_eq!(
        fs::read_to_string(out_b.join("server-b.crt")).unwrap(),
        renewed.certificate.pem()
    );
    assert_ne!(renewed.certificate.pem(), cert);
    // Main's directory: only what the provisioning broker's own
    // revocations write there (main was rendered from it: the CRL copy and
    // the tls-crypt-v2 list) changed; no CCD entry of b's or main's new
    // client, no file of b's.
    let live = |f: &(PathBuf, Vec<u8>)| {
        !f.0.ends_with("crl.pem") && !f.0.ends_with("tls-crypt-v2-clients")
    };
    let now_a: Vec<_> = tree(&out_a).into_iter().filter(live).collect();
    let before_a: Vec<_> = main_files.into_iter().filter(live).collect();
    let names = |t: &[(PathBuf, Vec<u8>)]| t.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&now_a), names(&before_a));
    assert!(now_a == before_a, "the agent of b changed main's files");

    // A name that is no name, or no server, is refused.
    for (name, kind) in [
        ("../b", tunnelbroker_core::ErrorKind::InvalidInput),
        ("b\nmain", tunnelbroker_core::ErrorKind::InvalidInput),
        ("nope", tunnelbroker_core::ErrorKind::NotFound),
    ] {
        let mut options = AgentOptions::new();
        options.server = Some(name.into());
        options.dir = Some(out_b.clone());
        let err = Agent::new(Broker::open_for_agent(&host).unwrap(), options).unwrap_err();
        assert_eq!(err.kind(), kind, "{name:?}: {err}");
        assert_eq!(err.to_string().lines().count(), 1, "{err}");
    }
}
by_store!(the_agent_of_a_named_server_keeps_only_that_servers_files);

/// Every write that changes what a server renders moves the change marker
/// (PostgreSQL: triggers of migration 4; SQLite: `PRAGMA data_version`),
/// so the agent reconciles at its next poll and not only at the next full
/// reconcile (a minute later); a session recorded by another agent does
/// not (PostgreSQL).
fn every_write_that_changes_a_servers_files_wakes_its_agent(store: &TestStore) {
    use tunnelbroker_core::broker::NewServer;
    use tunnelbroker_core::openvpn::LiveSession;
    let tmp = crate::operator_tempdir();
    let (b, host) = hosts(store, tmp.path(), ServerMode::Shared);
    let mut sb = NewServer::new("b", "vpn-b.example.net".parse().unwrap());
    sb.mode = ServerMode::Shared;
    sb.port = Some(5400);
    sb.pool = Some("2001:db8:0:f200::/56".parse().unwrap());
    b.add_server(&sb).unwrap();
    hermit(&b, "alice");
    let out = tmp.path().join("server-b");
    let mut options = AgentOptions::new();
    options.server = Some("b".into());
    options.dir = Some(out.clone());
    options.instances = InstanceControl::Report;
    let mut a = Agent::new(Broker::open_for_agent(&host).unwrap(), options).unwrap();
    assert!(a.poll().unwrap().reconciled);
    assert!(!a.poll().unwrap().reconciled, "nothing changed");
    let alice: tunnelbroker_core::ClientId = "alice".parse().unwrap();

    // client move, to b and back.
    b.move_client(&alice, "b").unwrap();
    let r = a.poll().unwrap();
    assert!(r.reconciled, "client move to b was not seen");
    assert!(out.join("ccd-b/alice").exists());
    assert!(!a.poll().unwrap().reconciled);
    b.move_client(&alice, "main").unwrap();
    let r = a.poll().unwrap();
    assert!(r.reconciled, "client move away from b was not seen");
    assert!(!out.join("ccd-b/alice").exists());
    assert_eq!(r.ended.len(), 1, "{r:?}");

    // server add and remove.
    let mut sc = NewServer::new("c", "vpn-c.example.net".parse().unwrap());
    sc.pool = Some("2001:db8:0:f300::/56".parse().unwrap());
    b.add_server(&sc).unwrap();
    assert!(a.poll().unwrap().reconciled, "server add was not seen");
    b.remove_server("c").unwrap();
    assert!(a.poll().unwrap().reconciled, "server remove was not seen");

    // b's certificate renewed.
    let renewed = b.renew_server_named("b").unwrap();
    assert!(
        a.poll().unwrap().reconciled,
        "b's new certificate was not seen"
    );
    assert_eq!(
        fs::read_to_string(out.join("server-b.crt")).unwrap(),
        renewed.certificate.pem()
    );
    assert!(!a.poll().unwrap().reconciled);

    if let TestStore::Postgres(_) = store {
        // Another server's agent recording its sessions: no reconcile here.
        let live = [LiveSession {
            common_name: "alice".into(),
            real_address: "198.18.0.2:51234".parse().unwrap(),
            virtual_addresses: vec![],
            connected_since: time::OffsetDateTime::now_utc(),
            bytes_received: 1,
            bytes_sent: 2,
        }];
        b.record_sessions("main", &live, time::OffsetDateTime::now_utc())
            .unwrap();
        assert!(
            !a.poll().unwrap().reconciled,
            "a session write woke the agent"
        );
    }
}
by_store!(every_write_that_changes_a_servers_files_wakes_its_agent);

/// A stand-in for a shared OpenVPN server's management interface: it
/// lists `live` for `status 3`, and counts `kill CN` (answered as
/// OpenVPN does, without dropping the client from its list: a killed
/// client may still be listed for a moment).
struct StandIn {
    live: std::sync::Arc<std::sync::Mutex<Vec<tunnelbroker_core::openvpn::LiveSession>>>,
    kills: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl StandIn {
    fn serve(socket: &Path) -> StandIn {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::{Arc, Mutex};
        let live = Arc::new(Mutex::new(Vec::new()));
        let kills = Arc::new(Mutex::new(Vec::new()));
        let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
        let (l, k) = (Arc::clone(&live), Arc::clone(&kills));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let mut w = conn.try_clone().unwrap();
                let _ = w.write_all(b">INFO:OpenVPN Management Interface Version 5\n");
                for line in BufReader::new(conn).lines() {
                    let Ok(line) = line else { break };
                    let reply = if line == "status 3" {
                        tunnelbroker_core::openvpn::status_text(&l.lock().unwrap())
                    } else if let Some(cn) = line.strip_prefix("kill ") {
                        k.lock().unwrap().push(cn.to_owned());
                        format!("SUCCESS: common name '{cn}' found, 1 client(s) killed\n")
                    } else {
                        "ERROR: unknown command\n".to_owned()
                    };
                    if w.write_all(reply.as_bytes()).is_err() {
                        break;
                    }
                }
            }
        });
        StandIn { live, kills }
    }
}

fn live_session(b: &Broker, id: &str, bytes: u64) -> tunnelbroker_core::openvpn::LiveSession {
    let c = b.client(&id.parse().unwrap()).unwrap();
    tunnelbroker_core::openvpn::LiveSession {
        common_name: id.into(),
        real_address: format!("198.18.0.{}:40000", 10 + id.len()).parse().unwrap(),
        virtual_addresses: vec![c.tunnel_address().into()],
        connected_since: time::OffsetDateTime::from_unix_timestamp(1_796_000_000).unwrap(),
        bytes_received: bytes,
        bytes_sent: bytes * 2,
    }
}

/// Issue 14, item 4: a client revoked in this poll is ended once (by the
/// reconcile), not a second time by the sessions step that still finds it
/// listed; and the sessions step writes only when something changed (a
/// session started or ended), byte counts alone at most every 10 s.
fn a_revoked_session_is_ended_once_and_sessions_are_written_on_change(store: &TestStore) {
    let tmp = crate::operator_tempdir();
    let (b, host) = hosts(store, tmp.path(), ServerMode::Shared);
    hermit(&b, "alice");
    hermit(&b, "bob");
    let out = tmp.path().join("server");
    let run = tmp.path().join("run");
    fs::create_dir(&run).unwrap();
    let keyless = Broker::open_for_agent(&host).unwrap();
    let mut options = tunnelbroker_core::broker::RenderOptions::new();
    options.dir = Some(out.clone());
    options.run_dir = Some(run.clone());
    keyless.render_server_with(&options).unwrap();
    let socket = keyless.management_sockets().unwrap().remove(0).1;
    let server = StandIn::serve(&socket);
    *server.live.lock().unwrap() = vec![live_session(&b, "alice", 10), live_session(&b, "bob", 10)];
    let mut a = agent(&host, &out);
    let r = a.poll().unwrap();
    assert_eq!(r.sessions.unwrap().started, 2, "{r:?}");
    let bytes_of = |id: &str| {
        b.status()
            .unwrap()
            .into_iter()
            .find(|s| s.client_id == id)
            .map(|s| s.bytes_in)
    };
    assert_eq!(bytes_of("bob"), Some(10));

    // Bob's traffic alone, within 10 s of the last write: not written.
    server.live.lock().unwrap()[1] = live_session(&b, "bob", 30);
    let r = a.poll().unwrap();
    assert_eq!(r.sessions.unwrap().updated, 0, "{r:?}");
    assert_eq!(bytes_of("bob"), Some(10));

    // Alice revoked: the reconcile ends her session (one kill); the
    // server still lists her in this poll, and she is not killed again.
    // (On SQLite the provisioning broker shares this host's directory,
    // and its revocation kills her through the recorded run directory
    // already: those kills are not the agent's.)
    b.revoke(&"alice".parse().unwrap(), RevocationReason::KeyCompromise)
        .unwrap();
    let before = server.kills.lock().unwrap().len();
    let r = a.poll().unwrap();
    assert_eq!(r.ended.len(), 1, "{r:?}");
    assert!(r.ended[0].1.ended(), "{r:?}");
    assert_eq!(server.kills.lock().unwrap()[before..], ["alice"]);
    assert!(
        !r.notes.iter().any(|n| n.contains("not an active client")),
        "{r:?}"
    );
    // Gone from the list: her session ends, and bob's bytes go with it.
    server.live.lock().unwrap().remove(0);
    let r = a.poll().unwrap();
    let sync = r.sessions.unwrap();
    assert_eq!((sync.ended, sync.updated), (1, 1), "{r:?}");
    assert_eq!(bytes_of("bob"), Some(30));
    assert_eq!(bytes_of("alice"), None);
    assert_eq!(server.kills.lock().unwrap().len(), before + 1);
}
by_store!(a_revoked_session_is_ended_once_and_sessions_are_written_on_change);

/// Issue 14, item 2: `openvpn_up` of a per-client server is 1 while it has
/// no instance to run (a new server is not down), and 0 once an instance
/// is due and none answers.
fn a_per_client_server_without_instances_is_not_down(store: &TestStore) {
    let tmp = crate::operator_tempdir();
    let (b, host) = hosts(store, tmp.path(), ServerMode::PerClient);
    let out = tmp.path().join("server");
    let mut a = agent(&host, &out);
    a.poll().unwrap();
    let text = a.metrics().encode();
    assert!(
        text.contains("tunnelbroker_openvpn_up{server=\"main\"} 1"),
        "{text}"
    );
    hermit(&b, "alice");
    a.poll().unwrap();
    let text = a.metrics().encode();
    assert!(
        text.contains("tunnelbroker_openvpn_up{server=\"main\"} 0"),
        "{text}"
    );
}
by_store!(a_per_client_server_without_instances_is_not_down);
