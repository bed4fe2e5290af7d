//! Issue 19, items 5 and 6, with real OpenVPN run as Debian's unit runs it
//! (`lab::start_server_as_unit`: a private broker, the server side rendered
//! into one directory outside it, its own run directory, `nobody` after
//! start, a private /tmp):
//!
//! * two shared servers of one broker on one host (one server namespace,
//!   two ports), rendered into one directory, both start, and a client of
//!   each connects and is seen by its own server's management interface
//!   only;
//! * a management socket left behind (by a stopped server, and by a killed
//!   one) never blocks the next start, and nobody hangs on it meanwhile.

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tunnelbroker_core::agent::{Agent, AgentOptions, InstanceControl};
use tunnelbroker_core::broker::{
    NewServer, RenderOptions, RenderReport, ServerMode, SessionEnd, TlsCryptVersion,
};
use tunnelbroker_core::openvpn::Management;
use tunnelbroker_core::{Broker, ClientKind, NewClient};

use crate::lab::*;

fn render(b: &Broker, layout: &Layout, server: &str) -> RenderReport {
    let mut o = RenderOptions::new();
    o.dir = Some(layout.server.clone());
    o.run_dir = Some(layout.run.clone());
    let r = b.render_server_named(server, &o).unwrap();
    assert!(r.warnings.is_empty(), "{server}: {:?}", r.warnings);
    assert!(r.removed.is_empty(), "{server}: {:?}", r.removed);
    r
}

/// The common names the management interface at `socket` reports connected.
fn connected(socket: &Path) -> Vec<String> {
    let mut m = Management::connect(socket).unwrap();
    m.status()
        .unwrap()
        .into_iter()
        .map(|s| s.common_name)
        .collect()
}

/// The management socket a rendered configuration names.
fn socket_of(conf: &Path) -> PathBuf {
    let text = fs::read_to_string(conf).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("management "))
        .unwrap_or_else(|| panic!("no management line in {}", conf.display()));
    PathBuf::from(line.strip_suffix(" unix").unwrap())
}

fn two_shared_servers_on_one_host() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new("oh");
    let mut b = layout.broker(ServerMode::Shared, 5100);
    // The default of a new broker; the lab's are v1. v2 makes each server's
    // verify program read its own list, as nobody.
    b.set_tls_crypt(TlsCryptVersion::V2).unwrap();
    let mut sb = NewServer::new("b", SERVER_IP.parse().unwrap());
    sb.mode = ServerMode::Shared;
    sb.pool = Some("2001:db8:0:f200::/56".parse().unwrap());
    // Same host: the port main uses is refused, the next one is taken.
    let b_srv = b.add_server(&sb).unwrap();
    assert_eq!(b_srv.port, 5101);
    let mut req = NewClient::new("alice".parse().unwrap(), ClientKind::Subnet);
    let alice = b.add_client(&req).unwrap();
    req = NewClient::new("bob".parse().unwrap(), ClientKind::Hermit);
    req.server = Some("b".into());
    let bob = b.add_client(&req).unwrap();

    let rm = render(&b, &layout, "main");
    let rb = render(&b, &layout, "b");
    assert_eq!(rm.instances, ["tb-shared"]);
    assert_eq!(rb.instances, ["tb-shared-b"]);
    // Main's rendering again leaves b's files alone (and the other way).
    assert!(render(&b, &layout, "main").written.is_empty());
    assert!(render(&b, &layout, "b").written.is_empty());
    for f in [
        "tb-shared.conf",
        "tb-shared-b.conf",
        "ccd/alice",
        "ccd-b/bob",
    ] {
        assert!(layout.server.join(f).is_file(), "{f}");
    }
    let sock_main = socket_of(&layout.server.join("tb-shared.conf"));
    let sock_b = socket_of(&layout.server.join("tb-shared-b.conf"));
    assert_eq!(sock_main, layout.run.join("tb5100.sock"));
    assert_eq!(sock_b, layout.run.join("tb-shared-b.sock"));

    let mut lab = Lab::new("oh");
    let (s, ns) = underlay(&mut lab, &["al", "bo"]);
    let log_main = start_server_as_unit(
        &mut lab,
        &s,
        &layout.server,
        &layout.run,
        "tb-shared",
        &tmp.path().join("main.log"),
    );
    let log_b = start_server_as_unit(
        &mut lab,
        &s,
        &layout.server,
        &layout.run,
        "tb-shared-b",
        &tmp.path().join("b.log"),
    );
    assert!(log_has(&log_main, READY, UP), "main:\n{}", tail(&log_main));
    assert!(log_has(&log_b, READY, UP), "b:\n{}", tail(&log_b));
    // Both run as nobody, each with its own device and socket (and the
    // unit's status file, named after the instance).
    for (log, dev) in [(&log_main, "tb5100"), (&log_b, "tb5101")] {
        assert!(log_has(log, "UID set to nobody", UP), "{}", tail(log));
        assert!(
            log_line(log, &["TUN/TAP device", dev, "opened"], UP),
            "{}",
            tail(log)
        );
    }
    assert!(sock_main.exists() && sock_b.exists());

    let dir_alice = unpack(&b, "alice", tmp.path());
    let dir_bob = unpack(&b, "bob", tmp.path());
    assert!(
        fs::read_to_string(dir_bob.join("bob.conf"))
            .unwrap()
            .contains("\nremote 198.18.0.1 5101\n")
    );
    let la = start_client(&mut lab, "alice", &ns[0], &dir_alice, "alice");
    let lb = start_client(&mut lab, "bob", &ns[1], &dir_bob, "bob");
    wait_connected(&la, &log_main);
    wait_connected(&lb, &log_b);
    for (n, c, gw) in [
        (&ns[0], &alice, "2001:db8:0:f100::1"),
        (&ns[1], &bob, "2001:db8:0:f200::1"),
    ] {
        let addrs = lab.ns(n, &["ip", "-6", "addr", "show", "dev", "tun0"]);
        assert!(
            addrs.contains(&c.tunnel_address().to_string()),
            "{}: {addrs}",
            c.id
        );
        assert!(lab.ping(n, gw, None, 10), "{} -> {gw}", c.id);
    }
    // Each management interface answers, for its own server's clients.
    assert_eq!(connected(&sock_main), ["alice"]);
    assert_eq!(connected(&sock_b), ["bob"]);
    // Ending bob's session goes through b's socket, not main's.
    let rev = b
        .revoke(
            &bob.id,
            tunnelbroker_core::pki::RevocationReason::Unspecified,
        )
        .unwrap();
    // The broker handle is main's: b's sessions run on b's instance.
    assert!(
        matches!(rev.session, SessionEnd::NoServer(_)),
        "{:?}",
        rev.session
    );
    assert_eq!(connected(&sock_main), ["alice"]);
}

#[test]
fn two_shared_servers_on_one_host_both_serve_their_clients() {
    needs_root(
        "two_shared_servers_on_one_host_both_serve_their_clients",
        two_shared_servers_on_one_host,
    );
}

/// How long a stale socket may take to say that nobody listens.
const QUICK: Duration = Duration::from_secs(1);

fn stale_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new("st");
    let b = layout.broker(ServerMode::Shared, 5100);
    let alice = add(&b, "alice", ClientKind::Subnet);
    let r = layout.render(&b);
    assert_eq!(r.instances, ["tb-shared"]);
    let socket = layout.run.join("tb5100.sock");
    assert_eq!(socket_of(&layout.server.join("tb-shared.conf")), socket);
    let mut lab = Lab::new("st");
    let (s, ns) = underlay(&mut lab, &["al"]);
    let start = |lab: &mut Lab, n: u32| {
        let log = tmp.path().join(format!("server-{n}.log"));
        start_server_as_unit(lab, &s, &layout.server, &layout.run, "tb-shared", &log);
        assert!(log_has(&log, READY, UP), "start {n}:\n{}", tail(&log));
        assert!(log_has(&log, "UID set to nobody", UP), "{}", tail(&log));
        log
    };
    let answers = |what: &str| {
        let mut m = Management::connect(&socket)
            .unwrap_or_else(|e| panic!("{what}: the management interface: {e}"));
        m.status().unwrap_or_else(|e| panic!("{what}: status: {e}"));
    };
    // Nobody listens: refused at once, and the broker (like the agent)
    // takes the server for down rather than waiting on it.
    let down = |what: &str| {
        let t = Instant::now();
        match UnixStream::connect(&socket) {
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
                ),
                "{what}: {e}"
            ),
            Ok(_) => panic!("{what}: something still listens at {}", socket.display()),
        }
        let end = b.end_session(&alice).unwrap();
        assert!(matches!(end, SessionEnd::NoServer(_)), "{what}: {end:?}");
        assert!(t.elapsed() < QUICK, "{what}: took {:?}", t.elapsed());
    };

    let _first = start(&mut lab, 1);
    answers("first start");
    // Stopped as systemd stops it (SIGTERM): OpenVPN, nobody by then,
    // cannot unlink its socket in the root-owned run directory.
    lab.stop("tb-shared");
    assert!(socket.exists(), "OpenVPN removed its socket after all");
    down("after SIGTERM");
    let _second = start(&mut lab, 2);
    answers("start over the socket a stopped server left");

    // Killed: the socket stays, root-owned, and nothing listens.
    lab.kill("tb-shared");
    let meta = fs::symlink_metadata(&socket).expect("the killed server's socket");
    assert!(std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()));
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 0);
    down("after SIGKILL");
    // The agent polls through the stale socket without failing or waiting.
    let mut options = AgentOptions::new();
    options.instances = InstanceControl::Report;
    options.dir = Some(layout.server.clone());
    let mut agent = Agent::new(Broker::open_for_agent(b.dir()).unwrap(), options).unwrap();
    let t = Instant::now();
    agent.poll().unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    // The next start takes the path over; its management interface answers
    // and a client connects.
    let log = start(&mut lab, 3);
    answers("start over the socket a killed server left");
    let dir = unpack(&b, "alice", tmp.path());
    let la = start_client(&mut lab, "alice", &ns[0], &dir, "alice");
    wait_connected(&la, &log);
    assert_eq!(connected(&socket), ["alice"]);
    assert!(matches!(
        b.end_session(&alice).unwrap(),
        SessionEnd::Ended(_)
    ));
}

#[test]
fn a_stale_management_socket_never_blocks_a_start() {
    needs_root(
        "a_stale_management_socket_never_blocks_a_start",
        stale_socket,
    );
}
