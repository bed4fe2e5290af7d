//! The server agent against real OpenVPN in network namespaces (issue 14,
//! item 6): a provisioning broker directory and a server host's directory
//! (a copy without the CA key) on one PostgreSQL database, the agent on
//! the server host, and a shared server with real clients.
//!
//! The agent runs as a loop in a thread of the test (what
//! `tunnelbroker agent` runs); "killing" it stops the loop between two
//! polls without any shutdown step, which leaves what SIGKILL leaves (the
//! agent has no shutdown step; the CLI's SIGKILL and SIGTERM are tested in
//! tunnelbroker-cli/tests/agent.rs).

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tunnelbroker_core::agent::{Agent, AgentOptions, InstanceControl};
use tunnelbroker_core::broker::{RenderOptions, ServerMode, TlsCryptVersion};
use tunnelbroker_core::openvpn::Management;
use tunnelbroker_core::pki::RevocationReason;
use tunnelbroker_core::{Broker, ClientKind, InitOptions, Settings};

use crate::lab::*;

const INTERVAL: Duration = Duration::from_millis(500);

/// The agent's loop in a thread, stopped (abruptly, between polls) on drop.
struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    metrics: Arc<tunnelbroker_core::agent::Metrics>,
}

fn start_agent(host: &Path, out: &Path) -> Running {
    let mut options = AgentOptions::new();
    options.dir = Some(out.to_owned());
    start_agent_with(host, options)
}

fn start_agent_with(host: &Path, mut options: AgentOptions) -> Running {
    options.instances = InstanceControl::Report;
    let mut agent = Agent::new(Broker::open_for_agent(host).unwrap(), options).unwrap();
    let metrics = agent.metrics();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            if let Err(e) = agent.poll() {
                eprintln!("agent: poll failed: {e}");
            }
            std::thread::sleep(INTERVAL);
        }
    });
    Running {
        stop,
        thread: Some(thread),
        metrics,
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits (polling every 50 ms, at most `limit`) until `f` holds.
fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The common names the shared server lists as connected now, asked on
/// its management socket (`None` when it did not answer: OpenVPN serves
/// one management client at a time, and the agent is one).
fn live(socket: &Path) -> Option<Vec<String>> {
    Management::connect(socket)
        .and_then(|mut m| m.status())
        .map(|s| s.into_iter().map(|s| s.common_name).collect())
        .map_err(|e| eprintln!("agent_e2e: status: {e}"))
        .ok()
}

/// Whether `cn` is connected: asked until the server answers.
fn connected(socket: &Path, cn: &str) -> bool {
    for _ in 0..100 {
        if let Some(names) = live(socket) {
            return names.iter().any(|n| n == cn);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the management socket {} does not answer", socket.display());
}

fn recorded(b: &Broker) -> Vec<String> {
    let mut ids: Vec<String> = b
        .status()
        .unwrap()
        .into_iter()
        .map(|s| s.client_id)
        .collect();
    ids.sort();
    ids
}

fn scenario(db: &crate::pg::TestDb) {
    let tmp = crate::operator_tempdir();
    fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // The provisioning host.
    let mut s = Settings::new(POOL.parse().unwrap(), SERVER_IP.parse().unwrap());
    s.mode = ServerMode::Shared;
    s.port = 5300;
    // tls-crypt v1, as lab.rs's brokers: this test shows the CRL refusing a
    // revoked client in TLS (tls_crypt_v2_e2e covers the refusal before TLS).
    s.tls_crypt = TlsCryptVersion::V1;
    s.lan_interface = LAN_IF.into();
    let mut o = InitOptions::new(s);
    o.database = Some(db.url().clone());
    let prov = Broker::init(&tmp.path().join("broker"), &o).unwrap();
    let alice = add(&prov, "alice", ClientKind::Subnet);
    let bob = add(&prov, "bob", ClientKind::Hermit);
    let carol = add(&prov, "carol", ClientKind::Hermit);
    add(&prov, "dave", ClientKind::Hermit);
    // The server host: the broker directory without the CA key.
    let host = tmp.path().join("server-host");
    run(&[
        "cp",
        "-a",
        prov.dir().to_str().unwrap(),
        host.to_str().unwrap(),
    ]);
    fs::remove_file(host.join("private/ca.key")).unwrap();
    assert!(Broker::open(&host).is_err());
    let out = tmp.path().join("server");
    let run_dir = tmp.path().join("run");
    fs::create_dir_all(&run_dir).unwrap();
    {
        // What an operator does once on the server host (the agent's
        // renderings use the recorded directories from then on).
        let b = Broker::open_for_agent(&host).unwrap();
        let mut options = RenderOptions::new();
        options.dir = Some(out.clone());
        options.run_dir = Some(run_dir.clone());
        b.render_server_with(&options).unwrap();
    }

    let mut lab = Lab::new("ag");
    let (s, ns) = underlay(&mut lab, &["a", "b", "c", "d"]);
    let host_broker = Broker::open_for_agent(&host).unwrap();
    let socket = host_broker.management_sockets().unwrap().remove(0).1;
    assert!(socket.starts_with(&run_dir), "{}", socket.display());
    let srv_log = start_server(&mut lab, &s, &host_broker, &out, "tb-shared");
    let mut agent = start_agent(&host, &out);

    // Three clients connect; `status` on the provisioning host shows them.
    let mut logs = Vec::new();
    for (c, n) in [&alice, &bob, &carol].iter().zip(&ns) {
        let dir = unpack(&prov, c.id.as_str(), tmp.path());
        logs.push(start_client(
            &mut lab,
            c.id.as_str(),
            n,
            &dir,
            c.id.as_str(),
        ));
    }
    for log in &logs {
        wait_connected(log, &srv_log);
    }
    let three = ["alice", "bob", "carol"].map(String::from).to_vec();
    assert!(
        wait_for(Duration::from_secs(20), || recorded(&prov) == three).is_some(),
        "status shows {:?}, not the three connected clients",
        recorded(&prov)
    );
    let connected_at = OffsetDateTime::now_utc();
    for s in prov.status().unwrap() {
        assert!(s.ended_at.is_none());
        assert!(s.started_at <= connected_at);
        assert_eq!(s.server, "main");
        assert!(
            s.real_address.ip().to_string().starts_with("198.18.0."),
            "{s:?}"
        );
    }

    // whois: bob's (hermit) tunnel address, and an address inside alice's /64.
    let w = prov.whois(bob.tunnel_address(), None).unwrap();
    assert_eq!(w.holder.as_ref().unwrap().client_id, "bob");
    assert_eq!(w.sessions.len(), 1);
    let inside: std::net::Ipv6Addr = {
        let p = alice.prefix().network().segments();
        std::net::Ipv6Addr::new(p[0], p[1], p[2], p[3], 0, 0, 0, 0x17)
    };
    let w = prov.whois(inside, None).unwrap();
    assert_eq!(w.holder.as_ref().unwrap().client_id, "alice");
    assert_eq!(w.sessions.len(), 1);

    // A revocation from the other broker directory (same database) ends
    // carol's live session: the agent takes the CRL and kills her.
    let before = fs::read_to_string(out.join("crl.pem")).unwrap();
    assert!(connected(&socket, "carol"));
    let t0 = Instant::now();
    prov.revoke(&carol.id, RevocationReason::KeyCompromise)
        .unwrap();
    let ended = wait_for(Duration::from_secs(30), || !connected(&socket, "carol"));
    let crl_now = fs::read_to_string(out.join("crl.pem")).unwrap();
    let Some(_) = ended else {
        panic!("carol's session did not end:\n{}", tail(&srv_log));
    };
    let latency = t0.elapsed();
    eprintln!(
        "agent_e2e: revocation on another broker directory ended the live session in {} ms (poll interval {} ms)",
        latency.as_millis(),
        INTERVAL.as_millis()
    );
    assert_ne!(before, crl_now, "the CRL was not replaced");
    assert_eq!(crl_now, fs::read_to_string(&prov.paths().crl).unwrap());
    // She stays out: the replaced CRL refuses her next handshake.
    lab.stop("carol");
    let carol_dir = tmp.path().join("clients").join("carol");
    let log = carol_dir.join("openvpn.log");
    let _ = fs::remove_file(&log);
    start_client(&mut lab, "carol", &ns[2], &carol_dir, "carol");
    assert_refused(
        &log,
        &srv_log,
        &["certificate revoked", "CN=carol"],
        "revoked carol reconnecting",
    );
    lab.stop("carol");
    assert!(
        wait_for(Duration::from_secs(10), || {
            recorded(&prov) == ["alice", "bob"].map(String::from).to_vec()
        })
        .is_some(),
        "{:?}",
        recorded(&prov)
    );
    // whois at a past time: carol's address, when she was connected.
    let w = prov
        .whois(carol.tunnel_address(), Some(connected_at))
        .unwrap();
    assert_eq!(w.holder.as_ref().unwrap().client_id, "carol");
    assert!(w.sessions.iter().any(|s| s.ended_at.is_some()), "{w:?}");

    // The agent dies; dave connects meanwhile; the agent comes back and
    // records his session with its real start.
    drop(agent);
    let dave_dir = unpack(&prov, "dave", tmp.path());
    let dave_log = start_client(&mut lab, "dave", &ns[3], &dave_dir, "dave");
    wait_connected(&dave_log, &srv_log);
    std::thread::sleep(Duration::from_secs(2));
    assert!(!recorded(&prov).contains(&"dave".to_owned()));
    let restarted = OffsetDateTime::now_utc();
    agent = start_agent(&host, &out);
    assert!(
        wait_for(Duration::from_secs(20), || recorded(&prov)
            .contains(&"dave".to_owned()))
        .is_some(),
        "dave's session was not recorded after the restart: {:?}",
        recorded(&prov)
    );
    let dave = prov
        .status()
        .unwrap()
        .into_iter()
        .find(|s| s.client_id == "dave")
        .unwrap();
    assert!(
        dave.started_at < restarted - time::Duration::seconds(1),
        "dave's session starts at the restart ({}), not when he connected",
        dave.started_at
    );
    drop(agent);
}

#[test]
fn agent_keeps_a_real_server_in_step() {
    needs_root("agent_keeps_a_real_server_in_step", || {
        let Some(db) = crate::pg::database() else {
            return;
        };
        scenario(&db);
    });
}

/// The agent of a named per-client server (issue 14, items 1 and 2): the
/// broker's server b runs on the server host, per client; its agent
/// (`--server b`) records the session of b's client from what its
/// point-to-point instance tells (`state`, `status`), under b, and a
/// revocation made from the provisioning directory ends that session (the
/// instance is told to stop) within 2 s.
fn named_per_client_scenario(db: &crate::pg::TestDb) {
    use tunnelbroker_core::broker::NewServer;
    let tmp = crate::operator_tempdir();
    fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut s = Settings::new(POOL.parse().unwrap(), "198.18.0.99".parse().unwrap());
    s.mode = ServerMode::Shared;
    s.port = 5310;
    s.tls_crypt = TlsCryptVersion::V1;
    s.lan_interface = LAN_IF.into();
    let mut o = InitOptions::new(s);
    o.database = Some(db.url().clone());
    let prov = Broker::init(&tmp.path().join("broker"), &o).unwrap();
    let mut sb = NewServer::new("b", SERVER_IP.parse().unwrap());
    sb.mode = ServerMode::PerClient;
    sb.port = Some(5620);
    sb.pool = Some("2001:db8:0:f200::/56".parse().unwrap());
    prov.add_server(&sb).unwrap();
    let mut req = tunnelbroker_core::NewClient::new("erin".parse().unwrap(), ClientKind::Hermit);
    req.server = Some("b".into());
    let erin = prov.add_client(&req).unwrap();
    // A client of main: nothing of hers on b's host.
    add(&prov, "frank", ClientKind::Hermit);
    let host = tmp.path().join("server-host");
    run(&[
        "cp",
        "-a",
        prov.dir().to_str().unwrap(),
        host.to_str().unwrap(),
    ]);
    fs::remove_file(host.join("private/ca.key")).unwrap();
    let out = tmp.path().join("server-b");
    let run_dir = tmp.path().join("run-b");
    fs::create_dir_all(&run_dir).unwrap();
    let mut options = AgentOptions::new();
    options.server = Some("b".into());
    options.dir = Some(out.clone());
    options.run_dir = Some(run_dir.clone());
    let agent = start_agent_with(&host, options);
    let conf = out.join("tb-client-erin.conf");
    assert!(
        wait_for(Duration::from_secs(20), || conf.exists()).is_some(),
        "the agent of b did not render erin's instance"
    );
    assert!(!out.join("tb-client-frank.conf").exists());
    // Erin's instance, started as its unit would (the agent names it).
    let mut lab = Lab::new("an");
    let (srv, ns) = underlay(&mut lab, &["e"]);
    let host_broker = Broker::open_for_agent(&host).unwrap();
    let srv_log = start_server(&mut lab, &srv, &host_broker, &out, "tb-client-erin");
    let dir = unpack(&prov, "erin", tmp.path());
    let log = start_client(&mut lab, "erin", &ns[0], &dir, "erin");
    wait_connected(&log, &srv_log);
    let recorded_b = || {
        prov.status()
            .unwrap()
            .into_iter()
            .filter(|s| s.client_id == "erin")
            .collect::<Vec<_>>()
    };
    assert!(
        wait_for(Duration::from_secs(20), || recorded_b().len() == 1).is_some(),
        "status does not show erin's per-client session: {:?}\n{}",
        prov.status().unwrap(),
        tail(&srv_log)
    );
    let session = recorded_b().remove(0);
    eprintln!("agent_e2e: per-client session recorded: {session:?}");
    assert_eq!(session.server, "b");
    assert_eq!(session.real_address.ip().to_string(), "198.18.0.10");
    assert!(session.ended_at.is_none());
    assert!(session.bytes_in > 0 && session.bytes_out > 0, "{session:?}");
    assert_eq!(
        session.addresses.map(|a| a.prefix),
        Some(erin.prefix()),
        "{session:?}"
    );
    let text = agent.metrics.encode();
    assert!(
        text.contains("tunnelbroker_openvpn_up{server=\"b\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("tunnelbroker_connected_clients{server=\"b\"} 1"),
        "{text}"
    );

    // Revoked from the provisioning directory: the agent of b takes the
    // CRL and stops erin's instance.
    let t0 = Instant::now();
    prov.revoke(&erin.id, RevocationReason::KeyCompromise)
        .unwrap();
    let ended = wait_for(Duration::from_secs(30), || {
        lab.exited("tb-client-erin", Duration::ZERO)
    });
    let Some(latency) = ended else {
        panic!("erin's instance did not stop:\n{}", tail(&srv_log));
    };
    eprintln!(
        "agent_e2e: revocation on another broker directory ended the per-client session on server b in {} ms (poll interval {} ms)",
        latency.as_millis(),
        INTERVAL.as_millis()
    );
    assert!(
        t0.elapsed() <= Duration::from_secs(2),
        "the session ended after {} ms, not within 2 s",
        t0.elapsed().as_millis()
    );
    assert_eq!(
        fs::read_to_string(out.join("crl.pem")).unwrap(),
        fs::read_to_string(&prov.paths().crl).unwrap()
    );
    assert!(
        wait_for(Duration::from_secs(10), || recorded_b().is_empty()).is_some(),
        "erin's session is still open: {:?}",
        prov.status().unwrap()
    );
    let mut filter = tunnelbroker_core::broker::SessionFilter::default();
    filter.client_id = Some("erin".into());
    let all = prov.sessions(&filter).unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(all[0].ended_at.is_some());
    drop(agent);
}

#[test]
fn agent_of_a_named_per_client_server_records_and_ends_sessions() {
    needs_root(
        "agent_of_a_named_per_client_server_records_and_ends_sessions",
        || {
            let Some(db) = crate::pg::database() else {
                return;
            };
            named_per_client_scenario(&db);
        },
    );
}
