//! Issue 13: several OpenVPN servers in one broker, each with its own pool,
//! certificate and clients; on both stores (`stores`).

use std::os::unix::fs::PermissionsExt;

use tunnelbroker_core::broker::{NewServer, RenderOptions, ServerMode};
use tunnelbroker_core::pki::RevocationReason;
use tunnelbroker_core::{Broker, ClientKind, ErrorKind, NewClient, Settings};

use crate::stores::{TestStore, by_store, lit, query_text, sql};

fn new_broker(store: &TestStore) -> (tempfile::TempDir, Broker) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let settings = Settings::new(
        "2001:db8:0:f100::/56".parse().unwrap(),
        "vpn.example.net".parse().unwrap(),
    );
    let mut options = store.options(settings);
    options.parent = Some("2001:db8::/48".parse().unwrap());
    let b = Broker::init(&tmp.path().join("broker"), &options).unwrap();
    (tmp, b)
}

fn server(name: &str, endpoint: &str, pool: Option<&str>) -> NewServer {
    let mut s = NewServer::new(name, endpoint.parse().unwrap());
    s.pool = pool.map(|p| p.parse().unwrap());
    s
}

fn req(id: &str, kind: ClientKind, server: Option<&str>) -> NewClient {
    let mut r = NewClient::new(id.parse().unwrap(), kind);
    r.server = server.map(str::to_owned);
    r
}

fn init_makes_main_from_its_settings(store: &TestStore) {
    let (_tmp, b) = new_broker(store);
    let servers = b.servers().unwrap();
    assert_eq!(servers.len(), 1);
    let main = &servers[0];
    assert_eq!(main.name, "main");
    assert_eq!(main.endpoint.as_str(), "vpn.example.net");
    assert_eq!(main.mode, ServerMode::PerClient);
    assert_eq!(main.port, 5000);
    assert_eq!(main.pool.to_string(), "2001:db8:0:f100::/56");
    assert_eq!(main.certificate_name, "tunnelbroker-server");
    assert_eq!((main.clients, main.subnets_free), (0, 254));
    assert_eq!(
        b.parent_prefix().unwrap(),
        Some("2001:db8::/48".parse().unwrap())
    );
    // Today's usage: a client without --server goes to main.
    let alice = b
        .add_client(&req("alice", ClientKind::Subnet, None))
        .unwrap();
    assert_eq!(alice.server, "main");
    assert_eq!(alice.assignment.to_string(), "2001:db8:0:f101::/64");
    assert_eq!(b.servers().unwrap()[0].clients, 1);
}
by_store!(init_makes_main_from_its_settings);

fn a_broker_of_the_old_schema_migrates_to_main(store: &TestStore) {
    let (_tmp, b) = new_broker(store);
    b.add_client(&req("alice", ClientKind::Subnet, None))
        .unwrap();
    b.add_client(&req("bob", ClientKind::Hermit, None)).unwrap();
    let dir = b.dir().to_owned();
    // Back to the schema before servers: no servers table, no server column
    // (and none of what came after it: sessions, the assignment history).
    match store {
        TestStore::Sqlite => sql(
            &b,
            "DROP TRIGGER clients_assigned; DROP TRIGGER clients_released;
             DROP TRIGGER clients_changed; DROP TABLE sessions; DROP TABLE assignments;
             DROP INDEX clients_by_server; ALTER TABLE clients DROP COLUMN server;
             DROP TABLE servers; DELETE FROM plan_state; PRAGMA user_version = 3;",
        ),
        TestStore::Postgres(_) => sql(
            &b,
            "DROP TRIGGER clients_assigned ON clients; DROP TRIGGER clients_changed ON clients;
             DROP TRIGGER clients_bump_changes ON clients; DROP TRIGGER servers_bump_changes ON servers;
             DROP FUNCTION tunnelbroker_changed(); DELETE FROM meta WHERE key = 'changes';
             DROP FUNCTION tunnelbroker_assignments(); DROP TABLE sessions; DROP TABLE assignments;
             DROP INDEX clients_by_server; ALTER TABLE clients DROP COLUMN server;
             DROP TABLE servers; DELETE FROM plan_state;
             UPDATE meta SET value = '1' WHERE key = 'schema_version';",
        ),
    }
    drop(b);
    let b = Broker::open(&dir).unwrap();
    let servers = b.servers().unwrap();
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0].name, "main");
    assert_eq!(servers[0].pool.to_string(), "2001:db8:0:f100::/56");
    assert_eq!(servers[0].clients, 2);
    let clients = b.clients().unwrap();
    assert!(clients.iter().all(|c| c.server == "main"));
    // It keeps working: the next client gets the next /64.
    let carol = b
        .add_client(&req("carol", ClientKind::Subnet, None))
        .unwrap();
    assert_eq!(carol.assignment.to_string(), "2001:db8:0:f102::/64");
}
by_store!(a_broker_of_the_old_schema_migrates_to_main);

fn servers_have_their_own_pools_that_never_overlap(store: &TestStore) {
    let (_tmp, b) = new_broker(store);
    // Without a pool: the next free /56 of the parent.
    let s1 = b
        .add_server(&server("b", "vpn-b.example.net", None))
        .unwrap();
    assert_eq!(s1.pool.to_string(), "2001:db8::/56");
    assert_eq!(s1.certificate_name, "tunnelbroker-server-b");
    let mut c = server("c", "vpn-c.example.net", None);
    c.pool_length = Some(60);
    assert_eq!(
        b.add_server(&c).unwrap().pool.to_string(),
        "2001:db8:0:100::/60"
    );
    // Overlapping pools, pools outside the parent, a second name: refused.
    for (name, pool) in [
        ("d", "2001:db8:0:f100::/60"),
        ("d", "2001:db8::/48"),
        ("d", "2001:db8:0:100::/62"),
    ] {
        let e = b.add_server(&server(name, "h", Some(pool))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{pool}: {e}");
        assert!(e.to_string().contains("overlaps"), "{e}");
    }
    let e = b
        .add_server(&server("d", "h", Some("2001:db9::/56")))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("outside the broker's parent"), "{e}");
    let e = b
        .add_server(&server("b", "h", Some("2001:db8:0:e000::/56")))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    let mut bad = server("d", "h", None);
    bad.pool_length = Some(47);
    assert_eq!(
        b.add_server(&bad).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let names: Vec<String> = b.servers().unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["b", "c", "main"]);
}
by_store!(servers_have_their_own_pools_that_never_overlap);

fn hostile_server_names_are_refused(store: &TestStore) {
    let (_tmp, b) = new_broker(store);
    let long = "x".repeat(33);
    for bad in [
        "",
        "../x",
        "a/b",
        "a;rm -rf",
        "$(id)",
        "-x",
        ".x",
        "ä",
        "a b",
        "a\nb",
        long.as_str(),
    ] {
        let e = b
            .add_server(&server(bad, "h", Some("2001:db8:0:e000::/56")))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}: {e}");
        assert_eq!(e.to_string().lines().count(), 1, "{e}");
        let e = b
            .add_client(&req("alice", ClientKind::Hermit, Some(bad)))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}: {e}");
    }
    assert_eq!(b.servers().unwrap().len(), 1);
    let e = b
        .add_client(&req("alice", ClientKind::Hermit, Some("nope")))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(b.clients().unwrap().is_empty());
    // A client may not take a server certificate's name.
    let e = b
        .add_client(&req("tunnelbroker-server-b", ClientKind::Hermit, None))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}
by_store!(hostile_server_names_are_refused);

fn clients_go_to_the_named_server_or_the_one_with_most_room(store: &TestStore) {
    let (_tmp, b) = new_broker(store);
    let mut small = server("small", "vpn-s.example.net", Some("2001:db8:0:e000::/62"));
    small.mode = ServerMode::Shared;
    b.add_server(&small).unwrap();
    // Named: its pool.
    let a = b
        .add_client(&req("a", ClientKind::Subnet, Some("small")))
        .unwrap();
    assert_eq!(a.server, "small");
    assert_eq!(a.assignment.to_string(), "2001:db8:0:e001::/64");
    assert_eq!(a.port, None, "a shared server gives no port");
    // Unnamed: main has 254 free subnets, small 1.
    let c = b.add_client(&req("c", ClientKind::Subnet, None)).unwrap();
    assert_eq!(c.server, "main");
    assert_eq!(c.port, Some(5000));
    // A requested prefix picks the server whose pool holds it.
    let mut r = req("d", ClientKind::Subnet, None);
    r.prefix = Some("2001:db8:0:e002::/64".parse().unwrap());
    assert_eq!(b.add_client(&r).unwrap().server, "small");
    // Full: refused as exhausted, nothing recorded.
    let e = b
        .add_client(&req("e", ClientKind::Subnet, Some("small")))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Exhausted);
    let list = b.servers().unwrap();
    let small = list.iter().find(|s| s.name == "small").unwrap();
    assert_eq!((small.clients, small.subnets_free), (2, 0));
    // Purge frees the assignment in its own server's pool.
    b.revoke(&"a".parse().unwrap(), RevocationReason::Unspecified)
        .unwrap();
    b.purge(&"a".parse().unwrap()).unwrap();
    let again = b
        .add_client(&req("f", ClientKind::Subnet, Some("small")))
        .unwrap();
    assert_eq!(again.assignment.to_string(), "2001:db8:0:e001::/64");
}
by_store!(clients_go_to_the_named_server_or_the_one_with_most_room);

fn per_client_servers_on_one_host_never_share_a_port(store: &TestStore) {
    let (_tmp, b) = new_broker(store);
    // Same host as main, same first port.
    b.add_server(&server("twin", "vpn.example.net", None))
        .unwrap();
    let mut shared = server("sh", "vpn.example.net", None);
    shared.mode = ServerMode::Shared;
    shared.port = Some(5002);
    b.add_server(&shared).unwrap();
    let mut ports = Vec::new();
    for (i, s) in ["main", "twin", "main", "twin"].iter().enumerate() {
        let c = b
            .add_client(&req(&format!("c{i}"), ClientKind::Hermit, Some(s)))
            .unwrap();
        ports.push(c.port.unwrap());
    }
    assert_eq!(
        ports,
        [5000, 5001, 5003, 5004],
        "5002 is the shared server's"
    );
    // A shared server may not take a port in use on its host.
    let mut again = server("sh2", "vpn.example.net", None);
    again.mode = ServerMode::Shared;
    again.port = Some(5002);
    assert_eq!(
        b.add_server(&again).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    again.port = Some(5001);
    assert_eq!(
        b.add_server(&again).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    again.port = None;
    assert_eq!(b.add_server(&again).unwrap().port, 5005);
}
by_store!(per_client_servers_on_one_host_never_share_a_port);

fn move_renumbers_and_the_bundle_names_the_new_server(store: &TestStore) {
    let (tmp, b) = new_broker(store);
    b.add_server(&server(
        "b",
        "vpn-b.example.net",
        Some("2001:db8:0:e000::/56"),
    ))
    .unwrap();
    let alice = b
        .add_client(&req("alice", ClientKind::Subnet, Some("main")))
        .unwrap();
    let cfg = b.client_config(&alice.id).unwrap().config().to_string();
    assert!(
        cfg.contains("verify-x509-name tunnelbroker-server name"),
        "{cfg}"
    );
    assert!(cfg.contains("remote vpn.example.net 5000"), "{cfg}");
    let moved = b.move_client(&alice.id, "b").unwrap();
    assert_eq!(moved.before.assignment.to_string(), "2001:db8:0:f101::/64");
    assert_eq!(moved.after.assignment.to_string(), "2001:db8:0:e001::/64");
    assert_eq!(moved.after.serial, alice.serial, "the certificate stays");
    let cfg = b.client_config(&alice.id).unwrap().config().to_string();
    assert!(
        cfg.contains("verify-x509-name tunnelbroker-server-b name"),
        "{cfg}"
    );
    assert!(cfg.contains("remote vpn-b.example.net 5000"), "{cfg}");
    b.bundle(&alice.id, Some(tmp.path())).unwrap();
    // Main's /64 is free again.
    let bob = b
        .add_client(&req("bob", ClientKind::Subnet, Some("main")))
        .unwrap();
    assert_eq!(bob.assignment, moved.before.assignment);
    // Refused: to where it is, to nowhere, a revoked client.
    assert_eq!(
        b.move_client(&alice.id, "b").unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        b.move_client(&alice.id, "zz").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    b.revoke(&bob.id, RevocationReason::Unspecified).unwrap();
    assert_eq!(
        b.move_client(&bob.id, "b").unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}
by_store!(move_renumbers_and_the_bundle_names_the_new_server);

fn move_with_a_stale_allocation_state_rebuilds_it_and_succeeds(store: &TestStore) {
    let (_tmp, b) = new_broker(store);
    b.add_server(&server(
        "b",
        "vpn-b.example.net",
        Some("2001:db8:0:e000::/56"),
    ))
    .unwrap();
    let alice = b
        .add_client(&req("alice", ClientKind::Subnet, Some("main")))
        .unwrap();
    b.add_client(&req("carol", ClientKind::Subnet, Some("main")))
        .unwrap();
    // A state with two clients on main and none on b ...
    let stale = query_text(&b, "SELECT state FROM plan_state").expect("a saved state");
    // ... put back after carol's row went behind the broker's back and bob
    // took b's first /64: it has as many clients as the rows (so it is
    // trusted) and calls bob's /64 free.
    sql(&b, "DELETE FROM clients WHERE id = 'carol'");
    let bob = b
        .add_client(&req("bob", ClientKind::Subnet, Some("b")))
        .unwrap();
    assert_eq!(bob.assignment.to_string(), "2001:db8:0:e001::/64");
    sql(
        &b,
        &format!("UPDATE plan_state SET state = {}", lit(&stale)),
    );
    // Before: refused with "rebuilt now; try again", and the rebuild was
    // rolled back with the refusal, so every retry failed the same way.
    let moved = b.move_client(&alice.id, "b").unwrap();
    assert_eq!(moved.after.assignment.to_string(), "2001:db8:0:e002::/64");
    // The state saved with the move holds the rows: nobody's prefix is
    // handed out again, and alice's old /64 on main is free.
    let dave = b
        .add_client(&req("dave", ClientKind::Subnet, Some("b")))
        .unwrap();
    assert_eq!(dave.assignment.to_string(), "2001:db8:0:e003::/64");
    let erin = b
        .add_client(&req("erin", ClientKind::Subnet, Some("main")))
        .unwrap();
    assert_eq!(erin.assignment, moved.before.assignment);
}
by_store!(move_with_a_stale_allocation_state_rebuilds_it_and_succeeds);

fn each_server_renders_its_own_clients_and_certificate(store: &TestStore) {
    let (tmp, b) = new_broker(store);
    b.add_server(&server(
        "b",
        "vpn-b.example.net",
        Some("2001:db8:0:e000::/56"),
    ))
    .unwrap();
    b.add_client(&req("alice", ClientKind::Subnet, Some("main")))
        .unwrap();
    b.add_client(&req("bob", ClientKind::Hermit, Some("b")))
        .unwrap();
    let mut o = RenderOptions::new();
    o.dir = Some(tmp.path().join("b"));
    o.run_dir = Some(tmp.path().join("run"));
    let r = b.render_server_named("b", &o).unwrap();
    assert_eq!(r.instances, ["tb-client-bob"]);
    // Its own certificate name (issue 19): it may share a directory with main.
    assert!(!r.dir.join("server.crt").exists());
    let cert = std::fs::read_to_string(r.dir.join("server-b.crt")).unwrap();
    let cert = tunnelbroker_core::pki::Certificate::from_pem(&cert).unwrap();
    assert_eq!(cert.info().common_name, "tunnelbroker-server-b");
    b.ca().verify(&cert).unwrap();
    // Main's rendering has main's clients; the recorded directory is main's.
    o.dir = Some(tmp.path().join("main"));
    let r = b.render_server_named("main", &o).unwrap();
    assert_eq!(r.instances, ["tb-client-alice"]);
    assert_eq!(
        b.recorded_server().unwrap().dir,
        Some(tmp.path().join("main").canonicalize().unwrap())
    );
    // Each server's tls-crypt-v2 list accepts its own clients only (a
    // client of main is refused by b before TLS, and the other way round).
    let list = |d: &str, f: &str| std::fs::read_to_string(tmp.path().join(d).join(f)).unwrap();
    let (main_list, b_list) = (
        list("main", "tls-crypt-v2-clients"),
        list("b", "tls-crypt-v2-clients-b"),
    );
    assert!(main_list.contains(" alice"), "{main_list}");
    assert!(!main_list.contains(" bob"), "{main_list}");
    assert!(b_list.contains(" bob"), "{b_list}");
    assert!(!b_list.contains(" alice"), "{b_list}");
    // Each directory has its server's agent unit: b's names b.
    assert!(
        tmp.path()
            .join("main/systemd/tunnelbroker-agent.service")
            .is_file()
    );
    assert!(
        !tmp.path()
            .join("b/systemd/tunnelbroker-agent.service")
            .exists()
    );
    let unit =
        std::fs::read_to_string(tmp.path().join("b/systemd/tunnelbroker-agent-b.service")).unwrap();
    assert!(unit.contains(" agent --server b -o "), "{unit}");
    // Main's management sockets are main's clients' instances only.
    let sockets: Vec<String> = b
        .management_sockets()
        .unwrap()
        .into_iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(sockets, ["tb-client-alice"]);
    // whois knows b's pool: bob's tunnel address is his.
    let bob = b.client(&"bob".parse().unwrap()).unwrap();
    let who = b.whois(bob.tunnel_address(), None).unwrap();
    assert_eq!(who.holder.unwrap().client_id, "bob");
    assert_eq!(who.tunnel_address, Some(bob.tunnel_address()));
    // Another server needs -o; an unknown one is not found.
    let e = b
        .render_server_named("b", &RenderOptions::new())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        b.render_server_named("zz", &o).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // Renewal: a new certificate, same name.
    let done = b.renew_server_named("b").unwrap();
    assert_ne!(done.certificate.serial(), cert.serial());
    assert_eq!(done.restart, ["openvpn-server@tb-client-bob"]);
}
by_store!(each_server_renders_its_own_clients_and_certificate);

fn remove_is_refused_while_a_server_has_clients(store: &TestStore) {
    let (_tmp, b) = new_broker(store);
    b.add_server(&server("b", "vpn-b.example.net", None))
        .unwrap();
    b.add_client(&req("alice", ClientKind::Hermit, Some("b")))
        .unwrap();
    let e = b.remove_server("b").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("1 client"), "{e}");
    assert_eq!(
        b.remove_server("main").unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        b.remove_server("zz").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    b.revoke(&"alice".parse().unwrap(), RevocationReason::Unspecified)
        .unwrap();
    b.purge(&"alice".parse().unwrap()).unwrap();
    b.remove_server("b").unwrap();
    assert_eq!(b.servers().unwrap().len(), 1);
    // Its pool is free again.
    assert_eq!(
        b.add_server(&server("c", "h", None))
            .unwrap()
            .pool
            .to_string(),
        "2001:db8::/56"
    );
}
by_store!(remove_is_refused_while_a_server_has_clients);

fn audit_checks_each_client_against_its_own_server(store: &TestStore) {
    use tunnelbroker_core::doctor::{AuditOptions, Status, audit};
    let (_tmp, b) = new_broker(store);
    let mut sh = server("b", "vpn-b.example.net", Some("2001:db8:0:e000::/56"));
    sh.mode = ServerMode::Shared;
    b.add_server(&sh).unwrap();
    b.add_client(&req("alice", ClientKind::Subnet, Some("main")))
        .unwrap();
    b.add_client(&req("bob", ClientKind::Hermit, Some("b")))
        .unwrap();
    let r = audit(&b, &AuditOptions::default());
    assert_eq!(r.status_of("assignment"), Some(Status::Pass), "{r}");
    // A client moved behind the broker's back to a server that does not exist.
    sql(&b, "UPDATE clients SET server = 'ghost' WHERE id = 'bob'");
    let r = audit(&b, &AuditOptions::default());
    assert!(r.count(Status::Fail) > 0, "{r}");
}
by_store!(audit_checks_each_client_against_its_own_server);

/// Issue 19: two shared servers of one broker (plus `main`, also shared)
/// rendered into one directory, as on one host with one
/// `/etc/openvpn/server`: every per-server name is distinct, `main` keeps
/// its names, and a rendering of one server (also after a revocation or an
/// addition) leaves the others' files alone.
#[test]
fn shared_servers_rendered_into_one_directory_keep_apart() {
    use std::collections::BTreeMap;
    use std::fs;
    use std::path::{Path, PathBuf};
    use tunnelbroker_core::doctor::{AuditOptions, Status, audit};

    let tmp = crate::operator_tempdir();
    let mut settings = Settings::new(
        "2001:db8:0:f100::/56".parse().unwrap(),
        "198.18.0.1".parse().unwrap(),
    );
    settings.mode = ServerMode::Shared;
    settings.port = 5000;
    let b = Broker::init(
        &tmp.path().join("broker"),
        &tunnelbroker_core::InitOptions::new(settings),
    )
    .unwrap();
    for (name, port, pool) in [
        ("b", 5001, "2001:db8:0:f200::/56"),
        ("c", 5002, "2001:db8:0:f300::/56"),
    ] {
        let mut s = server(name, "198.18.0.1", Some(pool));
        s.mode = ServerMode::Shared;
        s.port = Some(port);
        b.add_server(&s).unwrap();
    }
    b.add_client(&req("alice", ClientKind::Subnet, Some("main")))
        .unwrap();
    b.add_client(&req("bob", ClientKind::Hermit, Some("b")))
        .unwrap();
    b.add_client(&req("carol", ClientKind::Subnet, Some("c")))
        .unwrap();
    let dir = tmp.path().join("server");
    let run = tmp.path().join("run");
    fs::create_dir(&run).unwrap();
    let render = |name: &str| {
        let mut o = RenderOptions::new();
        o.dir = Some(dir.clone());
        o.run_dir = Some(run.clone());
        b.render_server_named(name, &o).unwrap()
    };
    // Every file in the directory, with its contents.
    let snapshot = |dir: &Path| -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, base: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for e in fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else if e
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".tunnelbroker-seen.")
                {
                    // render's cache of what it found, rewritten as files settle.
                } else {
                    let rel = p.strip_prefix(base).unwrap().to_owned();
                    out.insert(rel, fs::read(&p).unwrap());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(dir, dir, &mut out);
        out
    };
    let of = |files: &BTreeMap<PathBuf, Vec<u8>>, pick: &dyn Fn(&str) -> bool| {
        files
            .iter()
            .filter(|(p, _)| pick(p.to_str().unwrap()))
            .map(|(p, d)| (p.clone(), d.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    let b_files = |n: &str| n.contains("-b.") || n.ends_with("-b") || n.starts_with("ccd-b/");
    let main_files = |n: &str| {
        n == "tb-shared.conf"
            || n.starts_with("ccd/")
            || n == "server.crt"
            || n == "server.key"
            || n == "tls-crypt-v2-verify"
            || n == "tls-crypt-v2-clients"
    };

    let rm = render("main");
    let rb = render("b");
    let rc = render("c");
    assert_eq!(rm.instances, ["tb-shared"]);
    assert_eq!(rb.instances, ["tb-shared-b"]);
    assert_eq!(rc.instances, ["tb-shared-c"]);
    for r in [&rm, &rb, &rc] {
        assert!(r.removed.is_empty(), "{:?}", r.removed);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }
    let text = |name: &str| fs::read_to_string(dir.join(name)).unwrap();
    let d = fs::canonicalize(&dir).unwrap();
    let d = d.display();
    let r = fs::canonicalize(&run).unwrap();
    let r = r.display();
    // Main keeps today's names.
    let conf = text("tb-shared.conf");
    for line in [
        "port 5000".to_owned(),
        format!("cert {d}/server.crt"),
        format!("key {d}/server.key"),
        format!("tls-crypt-v2-verify {d}/tls-crypt-v2-verify"),
        format!("client-config-dir {d}/ccd"),
        format!("management {r}/tb5000.sock unix"),
    ] {
        assert!(conf.contains(&format!("\n{line}\n")), "{line}:\n{conf}");
    }
    // The others have their own.
    let conf = text("tb-shared-b.conf");
    for line in [
        "port 5001".to_owned(),
        "dev tb5001".to_owned(),
        format!("cert {d}/server-b.crt"),
        format!("key {d}/server-b.key"),
        format!("tls-crypt-v2-verify {d}/tls-crypt-v2-verify-b"),
        format!("client-config-dir {d}/ccd-b"),
        format!("management {r}/tb-shared-b.sock unix"),
        format!("crl-verify {d}/crl.pem"),
    ] {
        assert!(conf.contains(&format!("\n{line}\n")), "{line}:\n{conf}");
    }
    assert!(text("tb-shared-c.conf").contains(&format!("\nclient-config-dir {d}/ccd-c\n")));
    assert!(text("tls-crypt-v2-verify-b").contains(&format!("{d}/tls-crypt-v2-clients-b")));
    // Each certificate is its server's; each key 0600; each CCD and list
    // holds its own clients.
    for (file, cn) in [
        ("server.crt", "tunnelbroker-server"),
        ("server-b.crt", "tunnelbroker-server-b"),
        ("server-c.crt", "tunnelbroker-server-c"),
    ] {
        let cert = tunnelbroker_core::pki::Certificate::from_pem(&text(file)).unwrap();
        assert_eq!(cert.info().common_name, cn);
    }
    for key in ["server.key", "server-b.key", "server-c.key"] {
        let mode = fs::metadata(dir.join(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    let names = |sub: &str| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir.join(sub))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("ccd"), ["alice"]);
    assert_eq!(names("ccd-b"), ["bob"]);
    assert_eq!(names("ccd-c"), ["carol"]);
    assert!(text("tls-crypt-v2-clients").contains(" alice"));
    assert!(!text("tls-crypt-v2-clients").contains(" bob"));
    assert!(text("tls-crypt-v2-clients-b").contains(" bob"));
    assert!(!text("tls-crypt-v2-clients-b").contains(" alice"));
    // One manifest per server.
    let manifests: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tunnelbroker-manifest."))
        .collect();
    assert_eq!(manifests.len(), 3, "{manifests:?}");
    assert!(manifests.iter().any(|m| m.ends_with(".b")), "{manifests:?}");

    // Rendering each again changes nothing, removes nothing.
    let all = snapshot(&dir);
    for name in ["main", "b", "c", "main"] {
        let again = render(name);
        assert!(again.written.is_empty(), "{name}: {:?}", again.written);
        assert!(again.removed.is_empty(), "{name}: {:?}", again.removed);
        assert_eq!(snapshot(&dir), all, "{name}");
    }

    // A revocation on main: main's rendering removes alice's entry only.
    let alice = b.client(&"alice".parse().unwrap()).unwrap();
    b.revoke(&alice.id, RevocationReason::Unspecified).unwrap();
    let before_b = of(&snapshot(&dir), &b_files);
    let again = render("main");
    assert_eq!(again.removed, [d_path(&dir, "ccd/alice")]);
    assert_eq!(of(&snapshot(&dir), &b_files), before_b);
    assert!(dir.join("tb-shared-b.conf").exists() && dir.join("ccd-c/carol").exists());
    // A new client on b: b's rendering writes its entry and leaves main's
    // files alone.
    let before_main = of(&snapshot(&dir), &main_files);
    b.add_client(&req("dave", ClientKind::Hermit, Some("b")))
        .unwrap();
    let again = render("b");
    assert!(again.removed.is_empty(), "{:?}", again.removed);
    assert!(
        again.written.contains(&d_path(&dir, "ccd-b/dave")),
        "{:?}",
        again.written
    );
    assert_eq!(of(&snapshot(&dir), &main_files), before_main);
    assert_eq!(names("ccd-b"), ["bob", "dave"]);
    assert_eq!(names("ccd"), Vec::<String>::new());

    // The audit of main finds no orphans or foreign files among b's and c's.
    let mut o = AuditOptions::default();
    o.server_dir = Some(dir.clone());
    let report = audit(&b, &o);
    assert_eq!(
        report.status_of("orphan-files"),
        Some(Status::Pass),
        "{report}"
    );
    assert_eq!(
        report.status_of("server-files"),
        Some(Status::Pass),
        "{report}"
    );
}

/// The canonical path of `rel` in `dir`.
fn d_path(dir: &std::path::Path, rel: &str) -> std::path::PathBuf {
    std::fs::canonicalize(dir).unwrap().join(rel)
}

/// Issue 19: the names derived from a server name are single plain file
/// names; a name that could escape the directory is refused before any is
/// derived.
#[test]
fn derived_server_file_names_cannot_escape() {
    use tunnelbroker_core::broker::server_names;
    for bad in [
        "", "..", ".", "../etc", "a/b", "/abs", "-x", ".hidden", "a b", "a\nb", "ä",
    ] {
        assert_eq!(
            server_names(bad).unwrap_err().kind(),
            ErrorKind::InvalidInput,
            "{bad:?}"
        );
    }
    let long = "x".repeat(32);
    for good in ["b", "a..b", "x.", "vpn-2.example", "a_b", long.as_str()] {
        let n = server_names(good).unwrap();
        for name in [
            n.shared_instance(),
            n.ccd_dir(),
            n.cert(),
            n.key(),
            n.tls_crypt_v2_verify(),
            n.tls_crypt_v2_clients(),
            n.shared_socket(5000),
            format!(
                ".tunnelbroker-manifest.0123456789abcdef{}",
                n.manifest_suffix()
            ),
        ] {
            let p = std::path::Path::new(&name);
            assert_eq!(p.components().count(), 1, "{good}: {name}");
            assert!(
                matches!(p.components().next(), Some(std::path::Component::Normal(_))),
                "{good}: {name}"
            );
            assert!(name.contains(good), "{good}: {name}");
        }
        assert!(!n.is_main());
    }
    // main keeps the names it always had.
    let main = server_names("main").unwrap();
    assert!(main.is_main());
    assert_eq!(
        [
            main.shared_instance(),
            main.ccd_dir(),
            main.cert(),
            main.key()
        ],
        ["tb-shared", "ccd", "server.crt", "server.key"]
    );
    assert_eq!(main.shared_socket(5000), "tb5000.sock");
    assert_eq!(main.manifest_suffix(), "");
    // add_server refuses such a name before anything is made.
    let tmp = tempfile::tempdir().unwrap();
    let settings = Settings::new(
        "2001:db8:0:f100::/56".parse().unwrap(),
        "vpn.example.net".parse().unwrap(),
    );
    let b = Broker::init(
        &tmp.path().join("broker"),
        &tunnelbroker_core::InitOptions::new(settings),
    )
    .unwrap();
    let mut s = server("../x", "vpn.example.net", Some("2001:db8:0:f200::/56"));
    s.mode = ServerMode::Shared;
    assert_eq!(
        b.add_server(&s).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(b.servers().unwrap().len(), 1);
}
