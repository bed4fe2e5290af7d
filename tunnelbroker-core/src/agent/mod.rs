//! The server host's agent (issue 14): a long-running loop beside OpenVPN
//! that keeps the host in step with the client database.
//!
//! Each [`poll`](Agent::poll) asks the store for its
//! [`change_marker`](crate::store::Store::change_marker) (SQLite's
//! `PRAGMA data_version`; on PostgreSQL one cheap query). When it moved, or
//! when [`AgentOptions::full_every`] has passed, the agent reconciles:
//!
//! 1. the CRL: the newest one the database holds (signed on a provisioning
//!    host) replaces this host's ([`Broker::sync_crl`]); OpenVPN reads its
//!    `crl-verify` file at every TLS handshake, so nothing needs a reload;
//! 2. the files: the server side is rendered again
//!    ([`Broker::render_server_with`], which writes only what changed and
//!    removes what belonged to clients that are gone), CCD entries included;
//! 3. the live sessions of clients that were active at the last reconcile
//!    and are not any more (revoked or purged) are ended through the
//!    management socket ([`Broker::end_session`]): `kill CN` in shared mode,
//!    the instance told to stop in per-client mode;
//! 4. the per-client instances that appeared or went away are started or
//!    stopped through `systemctl` when systemd runs the host, and named in
//!    the report otherwise (the agent never starts OpenVPN itself).
//!
//! An agent serves one server of the broker ([`AgentOptions::server`]):
//! it renders what `server render NAME` renders (that server's clients,
//! its certificate, its tls-crypt-v2 list), records sessions under its
//! name, ends the sessions of its clients only, and its metrics are that
//! server's. The server's row is read again at every reconcile (a renewed
//! certificate, a client moved in or out).
//!
//! The agent never needs the CA key: open the broker with
//! [`Broker::open_for_agent`]. A failed poll is reported and counted
//! ([`Metrics`]) and the next poll tries again: nothing is marked done
//! until it succeeded.
//!
//! ```
//! use tunnelbroker_core::agent::{Agent, AgentOptions, InstanceControl};
//! use tunnelbroker_core::pki::RevocationReason;
//! use tunnelbroker_core::{Broker, ClientKind, InitOptions, NewClient, Settings};
//! use std::os::unix::fs::PermissionsExt;
//! let tmp = tempfile::tempdir().unwrap();
//! std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
//! let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
//! let dir = tmp.path().join("broker");
//! let provisioning = Broker::init(&dir, &InitOptions::new(settings))?;
//! let mut options = AgentOptions::new();
//! options.dir = Some(tmp.path().join("server"));
//! options.instances = InstanceControl::Report;
//! let mut agent = Agent::new(Broker::open_for_agent(&dir)?, options)?;
//! assert!(agent.poll()?.reconciled);
//! assert!(!agent.poll()?.reconciled); // nothing changed
//!
//! provisioning.add_client(&NewClient::new("alice".parse()?, ClientKind::Hermit))?;
//! let report = agent.poll()?;
//! assert!(report.reconciled);
//! assert_eq!(report.started, ["tb-client-alice"]);
//! assert!(tmp.path().join("server/tb-client-alice.conf").exists());
//!
//! provisioning.revoke(&"alice".parse()?, RevocationReason::KeyCompromise)?;
//! let report = agent.poll()?;
//! assert_eq!(report.ended[0].0.as_str(), "alice");
//! assert_eq!(report.stopped, ["tb-client-alice"]);
//! assert!(!tmp.path().join("server/tb-client-alice.conf").exists());
//! # Ok::<(), tunnelbroker_core::Error>(())
//! ```

mod metrics;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

pub use metrics::{ClientTraffic, Metrics};

use crate::broker::{
    Broker, Client, ClientState, RenderOptions, ServerMode, SessionEnd, SessionSync,
};
use crate::client_id::ClientId;
use crate::error::{Error, Result, one_line};
use crate::openvpn::{CommonName, LiveSession, Management};

/// The server an agent serves when the broker has only this one: `main`.
pub const DEFAULT_SERVER: &str = crate::store::MAIN_SERVER;

/// How the agent starts and stops per-client OpenVPN instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InstanceControl {
    /// `systemctl` when systemd runs this host (`/run/systemd/system`
    /// exists), else [`Report`](Self::Report).
    Auto,
    /// `systemctl enable --now` / `disable --now openvpn-server@NAME`.
    Systemd,
    /// Only say, in [`PollReport::started`] and [`PollReport::stopped`],
    /// what should be started or stopped.
    Report,
}

/// How an [`Agent`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentOptions {
    /// The server this agent serves; `None`: the broker's only server
    /// (`main`); a broker with several refuses `None`, naming them.
    pub server: Option<String>,
    /// The rendered directory, as for `server render [NAME] -o DIR`;
    /// `None`: the recorded one, else `<broker>/server`. A server other
    /// than `main` has no recorded one: it needs a directory.
    pub dir: Option<PathBuf>,
    /// The run directory of the management sockets, as for
    /// `server render --run-dir`; `None`: the recorded one, else
    /// `/run/openvpn-server`.
    pub run_dir: Option<PathBuf>,
    /// Reconcile at least this often even when the database did not
    /// change (files edited by hand, a reconcile that failed half way).
    pub full_every: Duration,
    /// How per-client instances are started and stopped.
    pub instances: InstanceControl,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            server: None,
            dir: None,
            run_dir: None,
            full_every: Duration::from_secs(60),
            instances: InstanceControl::Auto,
        }
    }
}

impl AgentOptions {
    /// The defaults: the only server, the recorded directories, a full
    /// reconcile every minute, systemd when it is there.
    pub fn new() -> Self {
        Self::default()
    }
}

/// What one [`Agent::poll`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PollReport {
    /// Whether it reconciled (the database changed, or a full reconcile
    /// was due).
    pub reconciled: bool,
    /// The number of the CRL it took from the database, if it replaced
    /// this host's.
    pub crl: Option<u64>,
    /// Files written because they were new or had changed.
    pub written: Vec<PathBuf>,
    /// Files of clients that are gone, removed.
    pub removed: Vec<PathBuf>,
    /// Clients no longer active, and what became of their live sessions.
    pub ended: Vec<(ClientId, SessionEnd)>,
    /// Instances (`openvpn-server@NAME`) started, or to start.
    pub started: Vec<String>,
    /// Instances stopped, or to stop.
    pub stopped: Vec<String>,
    /// Things the operator should know, one line each (rendering
    /// warnings, what to start by hand where systemd is not there).
    pub notes: Vec<String>,
    /// What recording the live sessions changed.
    pub sessions: Option<SessionSync>,
    /// Sessions pruned (past the retention), once an hour.
    pub pruned: u64,
}

/// The server host's agent. See the [module docs](self).
#[derive(Debug)]
pub struct Agent {
    broker: Broker,
    /// The server it serves.
    server: String,
    /// The broker as that server sees it (its settings, certificate and
    /// clients, the agent's directories), made again at every reconcile.
    view: Broker,
    options: AgentOptions,
    systemd: bool,
    marker: Option<String>,
    last_full: Option<Instant>,
    last_prune: Option<Instant>,
    /// The active clients at the last reconcile (`None` before the first).
    active: Option<BTreeMap<ClientId, Client>>,
    instances: BTreeSet<String>,
    metrics: Arc<Metrics>,
    /// The live sessions last recorded, and when (`None`: record at the
    /// next poll).
    recorded: Option<(Snapshot, Instant)>,
    /// The management sockets the sessions step asks, by instance (with
    /// its client in per-client mode), as of the last reconcile.
    sockets: Vec<(Option<Client>, String, PathBuf)>,
}

/// How often byte counts alone are written to the database: a session
/// that starts or ends is recorded at once, traffic at most this often.
pub const BYTES_EVERY: Duration = Duration::from_secs(10);

/// What the sessions step recorded: the sessions (client, real address,
/// start) and their byte counts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    keys: BTreeSet<(String, std::net::SocketAddr, i64)>,
    bytes: Vec<(u64, u64)>,
}

impl Snapshot {
    fn of(live: &[LiveSession]) -> Snapshot {
        let mut sorted: Vec<&LiveSession> = live.iter().collect();
        sorted.sort_by_key(|s| {
            (
                s.common_name.clone(),
                s.real_address,
                s.connected_since.unix_timestamp(),
            )
        });
        Snapshot {
            keys: sorted
                .iter()
                .map(|s| {
                    (
                        s.common_name.clone(),
                        s.real_address,
                        s.connected_since.unix_timestamp(),
                    )
                })
                .collect(),
            bytes: sorted
                .iter()
                .map(|s| (s.bytes_received, s.bytes_sent))
                .collect(),
        }
    }
}

impl Agent {
    /// An agent over `broker` (opened with [`Broker::open_for_agent`] on a
    /// server host) for server `options.server`: it renders what
    /// `server render NAME` renders, records sessions under that name, and
    /// its metrics are that server's. Without a name, a broker with
    /// several servers is refused, naming them; a server other than `main`
    /// needs its directory (`options.dir`, as `server render NAME -o DIR`).
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, ErrorKind, InitOptions, Settings};
    /// use tunnelbroker_core::agent::{Agent, AgentOptions};
    /// use tunnelbroker_core::broker::NewServer;
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// let dir = tmp.path().join("broker");
    /// let broker = Broker::init(&dir, &InitOptions::new(settings))?;
    /// let open = || Broker::open_for_agent(&dir);
    /// let mut options = AgentOptions::new();
    /// options.server = Some("paris".into());
    /// let err = Agent::new(open()?, options.clone()).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::NotFound);
    /// options.server = Some("../x".into());
    /// let err = Agent::new(open()?, options.clone()).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    ///
    /// let mut b = NewServer::new("paris", "vpn-paris.example.net".parse()?);
    /// b.pool = Some("2001:db8:0:f200::/56".parse()?);
    /// broker.add_server(&b)?;
    /// // Two servers: which one is to be named.
    /// let err = Agent::new(open()?, AgentOptions::new()).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// assert!(err.to_string().contains("(main, paris)"), "{err}");
    /// // paris has no recorded directory: it needs one.
    /// options.server = Some("paris".into());
    /// let err = Agent::new(open()?, options.clone()).unwrap_err();
    /// assert!(err.to_string().contains("-o DIR"), "{err}");
    /// options.dir = Some(tmp.path().join("paris"));
    /// assert_eq!(Agent::new(open()?, options)?.server(), "paris");
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn new(broker: Broker, options: AgentOptions) -> Result<Agent> {
        let server = match &options.server {
            Some(name) => name.clone(),
            None => {
                let names: Vec<String> = broker.servers()?.into_iter().map(|s| s.name).collect();
                match names.as_slice() {
                    [one] => one.clone(),
                    _ => {
                        return Err(Error::InvalidField {
                            field: "server",
                            input: String::new(),
                            reason: format!(
                                "this broker has {} servers ({}); name the one this host runs with --server NAME",
                                names.len(),
                                names.join(", ")
                            ),
                        });
                    }
                }
            }
        };
        let view = Self::view_of(&broker, &server, &options)?;
        if server != DEFAULT_SERVER && options.dir.is_none() {
            return Err(Error::InvalidField {
                field: "output directory",
                input: String::new(),
                reason: format!(
                    "server {server} is rendered into a directory you name (-o DIR, as for server render {server} -o DIR)"
                ),
            });
        }
        let systemd = match options.instances {
            InstanceControl::Auto => Path::new("/run/systemd/system").is_dir(),
            InstanceControl::Systemd => true,
            InstanceControl::Report => false,
        };
        let metrics = Arc::new(Metrics::new(&server));
        Ok(Agent {
            broker,
            server,
            view,
            options,
            systemd,
            marker: None,
            last_full: None,
            last_prune: None,
            active: None,
            instances: BTreeSet::new(),
            metrics,
            recorded: None,
            sockets: Vec::new(),
        })
    }

    /// `broker` as server `name` sees it, with the agent's directories.
    fn view_of(broker: &Broker, name: &str, options: &AgentOptions) -> Result<Broker> {
        Ok(broker
            .for_server(name)?
            .with_dirs(options.dir.clone(), options.run_dir.clone()))
    }

    /// The server it serves.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The broker it serves.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Its metrics, to be served (they are updated by every poll).
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// One round: reconciles if the database changed or a full reconcile
    /// is due. A failure is counted in the metrics and returned; the next
    /// poll tries again.
    pub fn poll(&mut self) -> Result<PollReport> {
        let out = self.poll_once();
        match &out {
            Ok(_) => self.metrics.polled(OffsetDateTime::now_utc()),
            Err(_) => self.metrics.failed(),
        }
        out
    }

    fn poll_once(&mut self) -> Result<PollReport> {
        let mut report = PollReport::default();
        let marker = self.broker.store().change_marker()?;
        let due = self.marker.as_deref() != Some(marker.as_str())
            || self
                .last_full
                .is_none_or(|t| t.elapsed() >= self.options.full_every);
        if due {
            self.reconcile(&mut report)?;
            self.marker = Some(marker);
            self.last_full = Some(Instant::now());
            report.reconciled = true;
        }
        self.sessions(&mut report)?;
        if self
            .last_prune
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(3600))
        {
            report.pruned = self.broker.prune_sessions(OffsetDateTime::now_utc())?;
            self.last_prune = Some(Instant::now());
        }
        Ok(report)
    }

    /// Reads the live sessions from the server's management socket(s) and
    /// records them ([`Broker::record_sessions`]): new sessions (also those
    /// that started while the agent was down, with their real start), byte
    /// counts, and the end of those no longer live. A shared server lists
    /// its sessions (`status 3`); a per-client instance has no client
    /// list, and its one session is read from its `state` (connected since
    /// when, from where) and `status` (the bytes of its link), see
    /// [`Management::peer`]. A live session of a client that is not active
    /// (revoked while the agent was down) is ended, unless the reconcile of
    /// this very poll ended it already. A socket that nobody listens on is
    /// an instance that does not run: its sessions are ended. A socket that
    /// accepts but does not answer fails the poll, and nothing is recorded
    /// for it (the sessions of a server that is merely slow are not ended).
    ///
    /// The database is written only when something changed: a session
    /// started or ended, or (at most every [`BYTES_EVERY`]) byte counts.
    fn sessions(&mut self, report: &mut PollReport) -> Result<()> {
        let now = OffsetDateTime::now_utc();
        let mut live: Vec<LiveSession> = Vec::new();
        let mut answered = false;
        let mut expected = 0usize;
        let ended_now: BTreeSet<String> =
            report.ended.iter().map(|(id, _)| id.to_string()).collect();
        let mode = self.mode();
        // The sockets as the last reconcile found them (a client added or
        // revoked moves the change marker, and the reconcile comes first).
        let instances = self.sockets.clone();
        for (client, instance, socket) in instances {
            expected += 1;
            let mut m = match Management::connect(&socket) {
                Ok(m) => m,
                // Nothing listens: that instance does not run.
                Err(_) if !socket.exists() => continue,
                Err(Error::Management { reason, .. }) if reason.contains("refused") => continue,
                Err(e) => return Err(e),
            };
            answered = true;
            if let Some(c) = client {
                // A per-client instance: its one peer, if connected.
                if let Some((link, received, sent)) = m.peer()? {
                    live.push(LiveSession {
                        common_name: c.id.to_string(),
                        real_address: link.real_address,
                        virtual_addresses: vec![c.tunnel_address().into()],
                        connected_since: link.connected_since,
                        bytes_received: received,
                        bytes_sent: sent,
                    });
                }
                continue;
            }
            let sessions = m.status()?;
            for s in &sessions {
                let active = self.active.as_ref().is_some_and(|a| {
                    s.common_name
                        .parse::<ClientId>()
                        .is_ok_and(|id| a.contains_key(&id))
                });
                if active || self.active.is_none() || ended_now.contains(&s.common_name) {
                    continue;
                }
                let end = match CommonName::new(&s.common_name) {
                    Ok(cn) => m
                        .kill_client(&cn)
                        .map(SessionEnd::Ended)
                        .unwrap_or_else(|e| SessionEnd::Failed(one_line(e))),
                    Err(e) => SessionEnd::Failed(one_line(e)),
                };
                report.notes.push(format!(
                    "{instance}: {} is connected but not an active client: {}",
                    s.common_name,
                    end.summary()
                ));
            }
            live.extend(sessions);
        }
        // A per-client server with no instance to run is not down: it
        // serves nobody yet. Down is: instances to run, and none answers.
        if answered || (mode == ServerMode::PerClient && expected == 0) {
            let traffic: Vec<ClientTraffic> = live
                .iter()
                .map(|s| ClientTraffic {
                    client: s.common_name.clone(),
                    received: s.bytes_received,
                    sent: s.bytes_sent,
                })
                .collect();
            self.metrics.live(&traffic);
        } else {
            self.metrics.unreachable();
        }
        let snapshot = Snapshot::of(&live);
        let unchanged = self.recorded.as_ref().is_some_and(|(last, at)| {
            last.keys == snapshot.keys
                && (last.bytes == snapshot.bytes || at.elapsed() < BYTES_EVERY)
        });
        if unchanged {
            report.sessions = Some(SessionSync::default());
            return Ok(());
        }
        self.recorded = None;
        let sync = self.broker.record_sessions(&self.server, &live, now)?;
        self.recorded = Some((snapshot, Instant::now()));
        self.metrics.sessions_started(sync.started as u64);
        report.sessions = Some(sync);
        Ok(())
    }

    fn reconcile(&mut self, report: &mut PollReport) -> Result<()> {
        // The server's row as it is now (its certificate may be renewed,
        // its endpoint or mode changed).
        self.view = Self::view_of(&self.broker, &self.server, &self.options)?;
        if let Some(crl) = self.broker.sync_crl()? {
            report.crl = Some(crl.number());
        }
        let mut options = RenderOptions::new();
        options.dir = self.options.dir.clone();
        options.run_dir = self.options.run_dir.clone();
        let rendered = self.view.render_server_with(&options)?;
        report.written = rendered.written;
        report.removed = rendered.removed;
        report.notes.extend(rendered.warnings);
        // This server's clients: one moved to another server leaves this
        // one's active set, and its session here is ended.
        let clients: Vec<Client> = self
            .broker
            .clients()?
            .into_iter()
            .filter(|c| c.server == self.server)
            .collect();
        let active: BTreeMap<ClientId, Client> = clients
            .iter()
            .filter(|c| c.state == ClientState::Active)
            .map(|c| (c.id.clone(), c.clone()))
            .collect();
        if let Some(before) = &self.active {
            for (id, client) in before {
                if active.contains_key(id) {
                    continue;
                }
                let end = self
                    .view
                    .end_session(client)
                    .unwrap_or_else(|e| SessionEnd::Failed(one_line(e)));
                report.ended.push((id.clone(), end));
            }
        } else if self.mode() == ServerMode::PerClient {
            // First reconcile: an instance of a client revoked while no
            // agent ran may still serve it (its socket is not among the
            // active ones that the sessions step reads). In shared mode the
            // sessions step finds such a session in the server's status.
            for c in clients.iter().filter(|c| c.state == ClientState::Revoked) {
                match self.view.end_session(c) {
                    Ok(SessionEnd::NoServer(_)) => {}
                    Ok(end) => report.ended.push((c.id.clone(), end)),
                    Err(e) => report
                        .ended
                        .push((c.id.clone(), SessionEnd::Failed(one_line(e)))),
                }
            }
        }
        let now: BTreeSet<String> = rendered.instances.into_iter().collect();
        let first = self.active.is_none();
        let start: Vec<String> = now.difference(&self.instances).cloned().collect();
        let stop: Vec<String> = self.instances.difference(&now).cloned().collect();
        self.control("stop", &stop, report)?;
        self.control("start", &start, report)?;
        if first && !self.systemd && !start.is_empty() {
            report.notes.push(format!(
                "no systemd on this host: the agent starts no OpenVPN instance; {} must run (openvpn-server@NAME)",
                start.len()
            ));
        }
        report.started = start;
        report.stopped = stop;
        self.instances = now;
        self.sockets = match self.mode() {
            ServerMode::Shared => self
                .view
                .management_sockets()?
                .into_iter()
                .map(|(name, socket)| (None, name, socket))
                .collect(),
            ServerMode::PerClient => self
                .view
                .client_sockets()?
                .into_iter()
                .map(|(c, name, socket)| (Some(c), name, socket))
                .collect(),
        };
        self.active = Some(active);
        let crl = self.broker.crl().ok();
        let server_cert = self.view.server_certificate().ok();
        self.metrics.reconciled(&metrics::Facts {
            clients: &clients,
            pool: &self.view.settings().pool,
            ca_not_after: self.broker.ca().certificate().info().not_after,
            server_not_after: server_cert.map(|c| c.info().not_after),
            crl_next_update: crl.map(|c| c.next_update()),
        });
        Ok(())
    }

    /// Starts or stops instances through systemd, when it is there.
    fn control(&self, verb: &str, names: &[String], report: &mut PollReport) -> Result<()> {
        if names.is_empty() || !self.systemd {
            return Ok(());
        }
        // Per-client instances may be many: one systemctl per batch, and
        // without waiting for the jobs (the next poll must not wait).
        let action = if verb == "start" { "enable" } else { "disable" };
        for batch in names.chunks(256) {
            let units: Vec<String> = batch
                .iter()
                .map(|n| format!("openvpn-server@{n}.service"))
                .collect();
            let out = Command::new("systemctl")
                .args([action, "--now", "--no-block"])
                .args(&units)
                .output()
                .map_err(|e| Error::io(Path::new("systemctl"), e))?;
            if !out.status.success() {
                report.notes.push(format!(
                    "systemctl {action} --now failed for {} instance(s): {}",
                    batch.len(),
                    one_line(String::from_utf8_lossy(&out.stderr).trim())
                ));
            }
        }
        Ok(())
    }

    /// The server's mode (shared or per-client).
    pub fn mode(&self) -> ServerMode {
        self.view.settings().mode
    }
}
