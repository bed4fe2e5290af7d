//! The agent's metrics, in Prometheus's text format (OpenMetrics), through
//! the `prometheus-client` crate: names, types and escaping are the
//! library's, not text formatted here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use time::OffsetDateTime;

use crate::broker::{Client, ClientState};
use crate::plan::{ClientKind, Pool};

type Labels = Vec<(&'static str, String)>;

/// The clients the per-client metrics name.
#[derive(Debug, Default)]
struct State {
    /// Active client IDs, at the last reconcile.
    active: BTreeSet<String>,
    /// Live clients: bytes received and sent.
    live: BTreeMap<String, (u64, u64)>,
}

/// The agent's metrics (all prefixed `tunnelbroker_`). Updated by each
/// poll, read by [`encode`](Self::encode) from another thread.
///
/// ```
/// use tunnelbroker_core::agent::Metrics;
/// let m = Metrics::new("main");
/// let text = m.encode();
/// assert!(text.contains("# TYPE tunnelbroker_reconcile_errors_total counter\n"), "{text}");
/// assert!(text.contains("\ntunnelbroker_reconcile_errors_total 0\n"), "{text}");
/// assert!(text.contains("tunnelbroker_openvpn_up{server=\"main\"} 0"), "{text}");
/// assert!(m.encode_openmetrics().ends_with("# EOF\n"));
/// ```
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// What the per-client families are made from; held while they are
    /// cleared and filled again, and while encoding, so that a scrape
    /// never sees them half filled.
    lock: Mutex<State>,
    server: String,
    connected_clients: Family<Labels, Gauge>,
    openvpn_up: Family<Labels, Gauge>,
    client_connected: Family<Labels, Gauge>,
    client_received: Family<Labels, Gauge>,
    client_sent: Family<Labels, Gauge>,
    sessions: Counter,
    ca_expiry: Gauge,
    server_cert_expiry: Gauge,
    client_cert_expiry: Gauge,
    crl_next_update: Gauge,
    pool_used: Family<Labels, Gauge>,
    pool_capacity: Family<Labels, Gauge<f64, AtomicU64>>,
    clients: Family<Labels, Gauge>,
    reconcile_errors: Counter,
    polls: Counter,
    last_poll: Gauge,
}

/// What a reconcile knows, for the metrics.
pub(super) struct Facts<'a> {
    pub clients: &'a [Client],
    pub pool: &'a Pool,
    pub ca_not_after: OffsetDateTime,
    pub server_not_after: Option<OffsetDateTime>,
    pub crl_next_update: Option<OffsetDateTime>,
}

/// The live traffic of one client, for the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTraffic {
    /// The client ID (OpenVPN's common name).
    pub client: String,
    /// Bytes the server received from the client in its live session.
    pub received: u64,
    /// Bytes the server sent to the client in its live session.
    pub sent: u64,
}

fn gauge_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Metrics {
    /// Empty metrics of the agent for `server`.
    pub fn new(server: &str) -> Metrics {
        let mut registry = Registry::with_prefix("tunnelbroker");
        let m = Metrics {
            registry: Registry::default(),
            lock: Mutex::new(State::default()),
            server: server.to_owned(),
            connected_clients: Family::default(),
            openvpn_up: Family::default(),
            client_connected: Family::default(),
            client_received: Family::default(),
            client_sent: Family::default(),
            sessions: Counter::default(),
            ca_expiry: Gauge::default(),
            server_cert_expiry: Gauge::default(),
            client_cert_expiry: Gauge::default(),
            crl_next_update: Gauge::default(),
            pool_used: Family::default(),
            pool_capacity: Family::default(),
            clients: Family::default(),
            reconcile_errors: Counter::default(),
            polls: Counter::default(),
            last_poll: Gauge::default(),
        };
        registry.register(
            "connected_clients",
            "Clients with a live OpenVPN session, per server",
            m.connected_clients.clone(),
        );
        registry.register(
            "openvpn_up",
            "1 when the server's OpenVPN answered on its management socket at the last poll, else 0",
            m.openvpn_up.clone(),
        );
        registry.register(
            "client_connected",
            "1 when the active client has a live session, else 0",
            m.client_connected.clone(),
        );
        registry.register(
            "client_received_bytes",
            "Bytes the server received from the client in its live session",
            m.client_received.clone(),
        );
        registry.register(
            "client_sent_bytes",
            "Bytes the server sent to the client in its live session",
            m.client_sent.clone(),
        );
        registry.register(
            "sessions",
            "Sessions this agent saw start",
            m.sessions.clone(),
        );
        registry.register(
            "ca_certificate_expiry_timestamp_seconds",
            "When the CA certificate expires (unix time)",
            m.ca_expiry.clone(),
        );
        registry.register(
            "server_certificate_expiry_timestamp_seconds",
            "When the OpenVPN server certificate expires (unix time)",
            m.server_cert_expiry.clone(),
        );
        registry.register(
            "client_certificate_soonest_expiry_timestamp_seconds",
            "When the soonest-expiring certificate of an active client expires (unix time)",
            m.client_cert_expiry.clone(),
        );
        registry.register(
            "crl_next_update_timestamp_seconds",
            "The nextUpdate of the CRL OpenVPN reads (unix time); past it OpenVPN refuses every client",
            m.crl_next_update.clone(),
        );
        registry.register(
            "pool_assignments",
            "Assignments held by clients (active or revoked), per kind",
            m.pool_used.clone(),
        );
        registry.register(
            "pool_capacity",
            "Assignments the pool holds, per kind",
            m.pool_capacity.clone(),
        );
        registry.register("clients", "Clients per state", m.clients.clone());
        registry.register(
            "reconcile_errors",
            "Polls of the agent that failed",
            m.reconcile_errors.clone(),
        );
        registry.register("polls", "Polls of the agent", m.polls.clone());
        registry.register(
            "last_poll_timestamp_seconds",
            "When the agent last polled successfully (unix time)",
            m.last_poll.clone(),
        );
        // The per-server gauges exist from the start.
        m.openvpn_up.get_or_create(&m.server_label()).set(0);
        m.connected_clients.get_or_create(&m.server_label()).set(0);
        Metrics { registry, ..m }
    }

    fn server_label(&self) -> Labels {
        vec![("server", self.server.clone())]
    }

    fn client_label(&self, client: &str) -> Labels {
        vec![
            ("server", self.server.clone()),
            ("client", client.to_owned()),
        ]
    }

    /// The metrics in Prometheus's classic text format (version 0.0.4),
    /// as the agent serves them and `promtool check metrics` checks them.
    ///
    /// `prometheus-client` encodes OpenMetrics, where a counter family `x`
    /// has the sample `x_total` and the text ends in `# EOF`; the classic
    /// format names a counter's `# HELP` and `# TYPE` after its sample and
    /// has no end marker. That renaming is all that is done to the
    /// library's text.
    pub fn encode(&self) -> String {
        let open = self.encode_openmetrics();
        let mut counters = BTreeSet::new();
        for line in open.lines() {
            if let Some(name) = line
                .strip_prefix("# TYPE ")
                .and_then(|l| l.strip_suffix(" counter"))
            {
                counters.insert(name.to_owned());
            }
        }
        let mut text = String::with_capacity(open.len());
        for line in open.lines() {
            if line == "# EOF" {
                continue;
            }
            let meta = ["# HELP ", "# TYPE "]
                .into_iter()
                .find_map(|p| Some((p, line.strip_prefix(p)?)));
            match meta {
                Some((prefix, rest)) => {
                    let name = rest.split(' ').next().unwrap_or_default();
                    if counters.contains(name) {
                        text.push_str(prefix);
                        text.push_str(name);
                        text.push_str("_total");
                        text.push_str(&rest[name.len()..]);
                    } else {
                        text.push_str(line);
                    }
                }
                None => text.push_str(line),
            }
            text.push('\n');
        }
        text
    }

    /// The metrics as `prometheus-client` encodes them: OpenMetrics text,
    /// ending in `# EOF`.
    pub fn encode_openmetrics(&self) -> String {
        let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }

    pub(super) fn polled(&self, now: OffsetDateTime) {
        self.polls.inc();
        self.last_poll.set(now.unix_timestamp());
    }

    pub(super) fn failed(&self) {
        self.polls.inc();
        self.reconcile_errors.inc();
    }

    /// Records `n` sessions seen starting.
    pub(super) fn sessions_started(&self, n: u64) {
        self.sessions.inc_by(n);
    }

    pub(super) fn reconciled(&self, facts: &Facts<'_>) {
        self.ca_expiry.set(facts.ca_not_after.unix_timestamp());
        if let Some(t) = facts.server_not_after {
            self.server_cert_expiry.set(t.unix_timestamp());
        }
        if let Some(t) = facts.crl_next_update {
            self.crl_next_update.set(t.unix_timestamp());
        }
        let active = || {
            facts
                .clients
                .iter()
                .filter(|c| c.state == ClientState::Active)
        };
        if let Some(t) = active().map(|c| c.not_after).min() {
            self.client_cert_expiry.set(t.unix_timestamp());
        }
        for kind in [ClientKind::Hermit, ClientKind::Subnet] {
            let used = facts.clients.iter().filter(|c| c.kind == kind).count();
            let capacity = match kind {
                ClientKind::Hermit => facts.pool.hermit_capacity(),
                ClientKind::Subnet => facts.pool.subnet_capacity(),
            };
            let label = vec![("kind", kind.to_string())];
            self.pool_used
                .get_or_create(&label)
                .set(gauge_i64(used as u64));
            self.pool_capacity
                .get_or_create(&label)
                .set(capacity as f64);
        }
        for state in [ClientState::Active, ClientState::Revoked] {
            let n = facts.clients.iter().filter(|c| c.state == state).count();
            self.clients
                .get_or_create(&vec![("state", state.to_string())])
                .set(gauge_i64(n as u64));
        }
        let mut state = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        state.active = active().map(|c| c.id.to_string()).collect();
        self.fill_clients(&state);
    }

    /// Fills the per-client families from `state` again (the lock held).
    fn fill_clients(&self, state: &State) {
        self.client_connected.clear();
        self.client_received.clear();
        self.client_sent.clear();
        // Every active client has a connected flag; a live session of a
        // client not (or no longer) active shows too.
        for client in state.active.iter().chain(state.live.keys()) {
            let on = state.live.contains_key(client);
            self.client_connected
                .get_or_create(&self.client_label(client))
                .set(i64::from(on));
        }
        for (client, (received, sent)) in &state.live {
            let label = self.client_label(client);
            self.client_received
                .get_or_create(&label)
                .set(gauge_i64(*received));
            self.client_sent.get_or_create(&label).set(gauge_i64(*sent));
        }
        self.connected_clients
            .get_or_create(&self.server_label())
            .set(gauge_i64(state.live.len() as u64));
    }

    /// The live sessions of this server, from OpenVPN's status: the
    /// connected count, each client's bytes (summed over its sessions) and
    /// its connected flag.
    pub fn live(&self, traffic: &[ClientTraffic]) {
        self.openvpn_up.get_or_create(&self.server_label()).set(1);
        let mut state = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        state.live.clear();
        for t in traffic {
            let e = state.live.entry(t.client.clone()).or_default();
            e.0 = e.0.saturating_add(t.received);
            e.1 = e.1.saturating_add(t.sent);
        }
        self.fill_clients(&state);
    }

    /// The server's OpenVPN did not answer on its management socket: it
    /// is down (`openvpn_up` 0) and nobody is connected through it.
    pub fn unreachable(&self) {
        self.openvpn_up.get_or_create(&self.server_label()).set(0);
        let mut state = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        state.live.clear();
        self.fill_clients(&state);
    }
}
