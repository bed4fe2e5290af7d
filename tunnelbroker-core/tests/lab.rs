//! The network-namespace harness of the tests that run real OpenVPN
//! (`openvpn_e2e`, `doctor_e2e`).
//!
//! The namespace tests need root, `/dev/net/tun`, `openvpn`, `ip`, `ping`
//! and `tar`. Without them they print why and pass, except with `CI=true`,
//! where they fail. They make their own namespaces (named after the test's
//! PID and a scenario tag), an IPv4 underlay in 198.18.0.0/15 and IPv6 only
//! from 2001:db8::/32, and a guard ([`Lab`]) ends every process they
//! started (by PID) and deletes the namespaces on every exit path. They run
//! one at a time ([`needs_root`] holds a lock).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tunnelbroker_core::broker::{ServerMode, TlsCryptVersion};
use tunnelbroker_core::{Broker, ClientId, ClientKind, InitOptions, NewClient, Settings};

pub(crate) static SERIAL: Mutex<()> = Mutex::new(());

pub(crate) const POOL: &str = "2001:db8:0:f100::/56";
pub(crate) const SERVER_IP: &str = "198.18.0.1";
pub(crate) const LAN_IF: &str = "lan0";

/// Why this machine cannot run the namespace tests, if it cannot.
pub(crate) fn cannot_run() -> Option<String> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    if !root {
        return Some("not running as root (effective uid is not 0)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing".into());
    }
    for (tool, arg) in [
        ("openvpn", "--version"),
        ("ip", "-V"),
        ("ping", "-V"),
        ("tar", "--version"),
    ] {
        let ok = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !ok {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// Runs `f` if the machine can, else explains (and fails under CI=true).
pub(crate) fn needs_root(name: &str, f: impl FnOnce()) {
    if let Some(why) = cannot_run() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{name} must run with CI=true but cannot: {why}");
        }
        eprintln!("skipped {name}: {why}");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    f();
}

/// Namespaces, links and processes of one test, undone on drop.
pub(crate) struct Lab {
    tag: String,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
    links: usize,
}

impl Lab {
    pub(crate) fn new(scenario: &str) -> Lab {
        Lab {
            tag: format!("tbe{}{scenario}", std::process::id() % 100_000),
            namespaces: Vec::new(),
            children: Vec::new(),
            links: 0,
        }
    }

    pub(crate) fn ns_name(&self, short: &str) -> String {
        format!("{}-{short}", self.tag)
    }

    pub(crate) fn add_ns(&mut self, short: &str) -> String {
        let name = self.ns_name(short);
        run(&["ip", "netns", "add", &name]);
        self.namespaces.push(name.clone());
        self.ns(&name, &["ip", "link", "set", "lo", "up"]);
        name
    }

    /// Runs a command in a namespace and insists that it succeeds.
    pub(crate) fn ns(&self, ns: &str, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Whether a command in a namespace succeeds.
    pub(crate) fn ns_ok(&self, ns: &str, args: &[&str]) -> bool {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// A veth pair `a_if` in `a`, `b_if` in `b`.
    pub(crate) fn link(&mut self, a: &str, a_if: &str, b: &str, b_if: &str) {
        self.links += 1;
        let tmp_a = format!("tbv{}a{}", std::process::id() % 100_000, self.links);
        let tmp_b = format!("tbv{}b{}", std::process::id() % 100_000, self.links);
        run(&[
            "ip", "link", "add", &tmp_a, "type", "veth", "peer", "name", &tmp_b,
        ]);
        run(&["ip", "link", "set", &tmp_a, "netns", a, "name", a_if]);
        run(&["ip", "link", "set", &tmp_b, "netns", b, "name", b_if]);
        self.ns(a, &["ip", "link", "set", a_if, "up"]);
        self.ns(b, &["ip", "link", "set", b_if, "up"]);
    }

    /// Starts OpenVPN in a namespace.
    pub(crate) fn openvpn(&mut self, label: &str, ns: &str, args: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "openvpn"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start openvpn");
        self.children.push((label.to_owned(), child));
    }

    /// Starts a command in a namespace, its stdout and stderr appended to
    /// `log`.
    pub(crate) fn spawn_logged(&mut self, label: &str, ns: &str, args: &[&str], log: &Path) {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open log");
        let err = out.try_clone().expect("dup log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start");
        self.children.push((label.to_owned(), child));
    }

    /// Whether the process started under `label` has exited, waiting up to
    /// `timeout`.
    pub(crate) fn exited(&mut self, label: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let child = &mut self
                .children
                .iter_mut()
                .find(|(l, _)| l == label)
                .expect("known label")
                .1;
            if matches!(child.try_wait(), Ok(Some(_))) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Ends a started process: SIGTERM (so that down scripts run), then
    /// SIGKILL after two seconds.
    pub(crate) fn stop(&mut self, label: &str) {
        if let Some(i) = self.children.iter().position(|(l, _)| l == label) {
            let (_, mut child) = self.children.remove(i);
            end(&mut child);
        }
    }

    /// Kills a started process with SIGKILL (by its PID), as a crash or
    /// the OOM killer would: it cleans nothing up.
    pub(crate) fn kill(&mut self, label: &str) {
        if let Some(i) = self.children.iter().position(|(l, _)| l == label) {
            let (_, mut child) = self.children.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Pings `dst` from `ns`, retrying for up to `tries` seconds.
    pub(crate) fn ping(&self, ns: &str, dst: &str, src: Option<&str>, tries: u32) -> bool {
        for _ in 0..tries {
            let mut args = vec!["ping", "-6", "-n", "-c", "1", "-W", "1"];
            if let Some(s) = src {
                args.extend(["-I", s]);
            }
            args.push(dst);
            if self.ns_ok(ns, &args) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        false
    }
}

pub(crate) fn end(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            end(child);
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

pub(crate) fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `path` contains `needle`.
pub(crate) fn log_has(path: &Path, needle: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until one line of `path` contains every needle.
pub(crate) fn log_line(path: &Path, needles: &[&str], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if fs::read_to_string(path)
            .is_ok_and(|t| t.lines().any(|l| needles.iter().all(|n| l.contains(n))))
        {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) const READY: &str = "Initialization Sequence Completed";
pub(crate) const UP: Duration = Duration::from_secs(20);
/// How long a refused client is given to (wrongly) come up.
pub(crate) const REFUSED: Duration = Duration::from_secs(8);

pub(crate) fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

/// A broker in a world-searchable temporary directory (OpenVPN re-reads
/// the CRL as `nobody`).
pub(crate) fn broker(tmp: &Path, mode: ServerMode, port: u16) -> Broker {
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o755)).unwrap();
    broker_in(tmp, mode, port)
}

/// A broker of the lab's pool and server address in `dir/broker`.
fn broker_in(dir: &Path, mode: ServerMode, port: u16) -> Broker {
    let mut s = Settings::new(POOL.parse().unwrap(), SERVER_IP.parse().unwrap());
    s.mode = mode;
    s.port = port;
    s.lan_interface = LAN_IF.into();
    // The scenarios written before tls-crypt-v2 check v1 (the CRL refuses
    // a revoked client in TLS); tls_crypt_v2_e2e moves its brokers to v2.
    s.tls_crypt = TlsCryptVersion::V1;
    Broker::init(&dir.join("broker"), &InitOptions::new(s)).unwrap()
}

pub(crate) fn add(b: &Broker, id: &str, kind: ClientKind) -> tunnelbroker_core::Client {
    b.add_client(&NewClient::new(id.parse().unwrap(), kind))
        .unwrap()
}

/// Extracts a Linux bundle with the system's `tar` and returns the
/// client's folder.
pub(crate) fn unpack(b: &Broker, id: &str, tmp: &Path) -> PathBuf {
    let id: ClientId = id.parse().unwrap();
    let archive = tmp.join(format!("{id}.tar.gz"));
    b.bundle(&id, Some(&archive)).unwrap();
    let dest = tmp.join("clients");
    fs::create_dir_all(&dest).unwrap();
    run(&[
        "tar",
        "-xzf",
        archive.to_str().unwrap(),
        "-C",
        dest.to_str().unwrap(),
    ]);
    dest.join(id.as_str())
}

/// The server namespace with a bridge at 198.18.0.1/24 and `n` client
/// namespaces at 198.18.0.(10+i)/24.
pub(crate) fn underlay(lab: &mut Lab, clients: &[&str]) -> (String, Vec<String>) {
    let s = lab.add_ns("s");
    lab.ns(&s, &["ip", "link", "add", "br0", "type", "bridge"]);
    lab.ns(&s, &["ip", "link", "set", "br0", "up"]);
    lab.ns(
        &s,
        &[
            "ip",
            "addr",
            "add",
            &format!("{SERVER_IP}/24"),
            "dev",
            "br0",
        ],
    );
    // The broker's server is a router.
    lab.ns(
        &s,
        &["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"],
    );
    let mut names = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let ns = lab.add_ns(c);
        let port = format!("p{i}");
        lab.link(&s, &port, &ns, "wan0");
        lab.ns(&s, &["ip", "link", "set", &port, "master", "br0"]);
        lab.ns(
            &ns,
            &[
                "ip",
                "addr",
                "add",
                &format!("198.18.0.{}/24", 10 + i),
                "dev",
                "wan0",
            ],
        );
        names.push(ns);
    }
    (s, names)
}

pub(crate) fn start_client(lab: &mut Lab, label: &str, ns: &str, dir: &Path, id: &str) -> PathBuf {
    start_client_with(lab, label, ns, dir, id, &[])
}

/// Starts a client from its unpacked bundle, with extra OpenVPN arguments.
pub(crate) fn start_client_with(
    lab: &mut Lab,
    label: &str,
    ns: &str,
    dir: &Path,
    id: &str,
    extra: &[&str],
) -> PathBuf {
    let log = dir.join("openvpn.log");
    let file = format!("{id}.conf");
    let mut args = vec![
        "--cd",
        dir.to_str().unwrap(),
        "--config",
        &file,
        "--log",
        log.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    lab.openvpn(label, ns, &args);
    log
}

/// Starts the rendered server instance `name` (`NAME.conf` in `dir`) in
/// `ns`, labelled `name`, and returns where it logs (its standard output,
/// in `<broker>/log/`, a directory of the harness).
pub(crate) fn start_server(lab: &mut Lab, ns: &str, b: &Broker, dir: &Path, name: &str) -> PathBuf {
    let logs = b.dir().join("log");
    fs::create_dir_all(&logs).unwrap();
    let log = logs.join(format!("{name}.log"));
    let conf = format!("{name}.conf");
    lab.spawn_logged(
        name,
        ns,
        &["openvpn", "--cd", dir.to_str().unwrap(), "--config", &conf],
        &log,
    );
    log
}

/// The capabilities Debian's `openvpn-server@.service` leaves OpenVPN
/// (`CapabilityBoundingSet=`), as `setpriv --bounding-set` takes them.
const UNIT_CAPS: &str = "-all,+ipc_lock,+net_admin,+net_bind_service,+net_raw,+setgid,+setuid,+setpcap,+sys_chroot,+dac_override,+audit_write";

/// Starts the rendered server instance `name` in `ns` exactly as Debian's
/// `openvpn-server@NAME` runs it, emulated in a private mount namespace
/// (DESIGN.md §5): tmpfs over /root, /home and /tmp (ProtectHome,
/// PrivateTmp), /usr read-only (ProtectSystem), the unit's capability
/// bounding set, `dir` as the working directory and its command line
/// (`--status RUN/status-NAME.log --status-version 2
/// --suppress-timestamps --config NAME.conf`). Its output (the journal
/// under systemd) goes to `log`, which is returned.
pub(crate) fn start_server_as_unit(
    lab: &mut Lab,
    ns: &str,
    dir: &Path,
    run_dir: &Path,
    name: &str,
    log: &Path,
) -> PathBuf {
    let script = format!(
        "mount -t tmpfs tmpfs /root && mount -t tmpfs tmpfs /home && mount -t tmpfs tmpfs /tmp && \
         mount --bind -o ro /usr /usr && cd \"$1\" && \
         exec setpriv --bounding-set {UNIT_CAPS} openvpn --status \"$2/status-$3.log\" \
         --status-version 2 --suppress-timestamps --config \"$3.conf\""
    );
    lab.spawn_logged(
        name,
        ns,
        &[
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
            dir.to_str().unwrap(),
            run_dir.to_str().unwrap(),
            name,
        ],
        log,
    );
    log.to_owned()
}

/// The directories of a broker laid out as operators run it: the broker in
/// a private (0700) directory under /root, its server side rendered into a
/// readable directory outside /root, /home and /tmp, and a run directory of
/// its own. All three are unique to the test and removed on drop.
pub(crate) struct Layout {
    /// `/root/tbe-<pid>-<tag>` (0700); the broker is its `broker/`.
    pub(crate) private: PathBuf,
    /// `/srv/tbe-<pid>-<tag>` (0755), the rendered server directory.
    pub(crate) server: PathBuf,
    /// `/run/tbe<pid><tag>` (0710, like /run/openvpn-server).
    pub(crate) run: PathBuf,
}

impl Layout {
    pub(crate) fn new(tag: &str) -> Layout {
        let id = format!("{}{tag}", std::process::id() % 100_000);
        let l = Layout {
            private: PathBuf::from(format!("/root/tbe-{id}")),
            server: PathBuf::from(format!("/srv/tbe-{id}")),
            run: PathBuf::from(format!("/run/tbe{id}")),
        };
        for (d, mode) in [(&l.private, 0o700), (&l.server, 0o755), (&l.run, 0o710)] {
            let _ = fs::remove_dir_all(d);
            fs::create_dir(d).unwrap();
            fs::set_permissions(d, fs::Permissions::from_mode(mode)).unwrap();
        }
        l
    }

    /// A broker in the private directory.
    pub(crate) fn broker(&self, mode: ServerMode, port: u16) -> Broker {
        broker_in(&self.private, mode, port)
    }

    /// Renders `b`'s server side into the server and run directories,
    /// asserting that render has nothing to warn about there.
    pub(crate) fn render(&self, b: &Broker) -> tunnelbroker_core::broker::RenderReport {
        let mut options = tunnelbroker_core::broker::RenderOptions::new();
        options.dir = Some(self.server.clone());
        options.run_dir = Some(self.run.clone());
        let report = b.render_server_with(&options).unwrap();
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        report
    }
}

impl Drop for Layout {
    fn drop(&mut self) {
        for d in [&self.private, &self.server, &self.run] {
            let _ = fs::remove_dir_all(d);
        }
    }
}

/// Asserts that the client that logs to `client_log` does not connect and
/// that one line of `server_log` holds every word of `server_says` (the
/// reason the server gave).
pub(crate) fn assert_refused(
    client_log: &Path,
    server_log: &Path,
    server_says: &[&str],
    what: &str,
) {
    assert!(
        !log_has(client_log, READY, REFUSED),
        "{what}: it connected:\n{}",
        tail(client_log)
    );
    assert!(
        log_line(server_log, server_says, UP),
        "{what}: the server never said {server_says:?}:\n{}",
        tail(server_log)
    );
}

/// Waits until the client that logs to `client_log` is connected; panics
/// with the tails of both logs when it does not.
pub(crate) fn wait_connected(client_log: &Path, server_log: &Path) {
    assert!(
        log_has(client_log, READY, UP),
        "{} did not connect:\n{}\n--- server:\n{}",
        client_log.display(),
        tail(client_log),
        tail(server_log)
    );
}

/// Renders `b`'s server side into its default directory with a run
/// directory of its own beside the broker (recorded, so later renderings
/// and revocations use it too): tests run side by side, and two servers
/// must never share a management socket path.
pub(crate) fn render_with_own_run_dir(b: &Broker) -> tunnelbroker_core::broker::RenderReport {
    let run = b.dir().with_extension("run");
    std::fs::create_dir_all(&run).unwrap();
    let mut options = tunnelbroker_core::broker::RenderOptions::new();
    options.run_dir = Some(run);
    b.render_server_with(&options).unwrap()
}
