//! Sessions: who is connected now, and who had an address then.
//!
//! The agent on each server host reads OpenVPN's client list
//! ([`Management::status`](crate::openvpn::Management::status) or the
//! status file) and hands it to [`Broker::record_sessions`], once per poll.
//! Every host on the same database then answers [`Broker::status`],
//! [`Broker::sessions`] and [`Broker::whois`].
//!
//! "Who had this address then?" is answered from two records that outlive
//! a client: the assignment history (every client row opens a span, kept
//! after a purge, see [`AssignmentSpan`]) and the sessions, which copy the
//! client's assignment when they are first recorded. Both are pruned after
//! `sessions.retention_days` (see [`Broker::prune_sessions`]).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv6Addr};

use ipnet::Ipv6Net;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Duration, OffsetDateTime, PrimitiveDateTime};

use super::Broker;
use crate::client_id::ClientId;
use crate::error::{Error, Result, shown};
use crate::openvpn::LiveSession;
use crate::plan::{Assignment, Pool, Role};
pub use crate::store::{AssignmentSpan, Session, SessionAddresses, SessionFilter};

/// What one [`Broker::record_sessions`] call changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SessionSync {
    /// Sessions recorded for the first time (or seen again after they were
    /// ended).
    pub started: usize,
    /// Live sessions whose byte counts changed.
    pub updated: usize,
    /// Sessions of this server that are no longer live, now ended.
    pub ended: usize,
}

/// Who held an address at a time ([`Broker::whois`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Whois {
    /// The address asked about.
    pub address: Ipv6Addr,
    /// The time asked about.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The client that held it then, and how long (`None`: nobody, as far
    /// as the records kept reach).
    pub holder: Option<AssignmentSpan>,
    /// The holder's tunnel address, where the broker's pool tells it.
    pub tunnel_address: Option<Ipv6Addr>,
    /// The holder's sessions with that assignment from a day before to a
    /// day after `at` (latest first; of the 100 latest sessions of the
    /// assignment in that window).
    pub sessions: Vec<Session>,
}

/// How far around the asked time [`Broker::whois`] lists sessions.
const AROUND: Duration = Duration::days(1);

impl Broker {
    /// Records one poll of a server's live sessions: every session of
    /// `server` (all its OpenVPN instances) that `live` lists. New ones are
    /// recorded with the client's assignment of now; open ones get their
    /// byte counts; open ones of `server` that `live` no longer lists are
    /// ended at `now`. Idempotent: the same `live` twice changes nothing
    /// the second time. One write transaction.
    ///
    /// A session is known by server, client, real address and start time,
    /// so that an agent that was down catches up: sessions that started
    /// and are still live are recorded at its next poll (those that started
    /// and ended while it was down are not seen by anyone).
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::openvpn::LiveSession;
    /// use tunnelbroker_core::{ClientKind, ErrorKind, NewClient};
    /// let alice = broker.add_client(&NewClient::new("alice".parse()?, ClientKind::Subnet))?;
    /// let now = time::OffsetDateTime::now_utc();
    /// let live = [LiveSession {
    ///     common_name: "alice".into(),
    ///     real_address: "198.18.0.2:51234".parse().unwrap(),
    ///     virtual_addresses: vec![alice.tunnel_address().into()],
    ///     connected_since: now - time::Duration::minutes(5),
    ///     bytes_received: 100,
    ///     bytes_sent: 200,
    /// }];
    /// assert_eq!(broker.record_sessions("main", &live, now)?.started, 1);
    /// assert_eq!(broker.record_sessions("main", &live, now)?.started, 0);
    /// assert_eq!(broker.status()?[0].addresses.unwrap().prefix, alice.prefix());
    /// assert_eq!(broker.record_sessions("main", &[], now)?.ended, 1);
    /// assert!(broker.status()?.is_empty());
    ///
    /// // A server name that is no name is refused.
    /// let err = broker.record_sessions("../x", &live, now).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn record_sessions(
        &self,
        server: &str,
        live: &[LiveSession],
        now: OffsetDateTime,
    ) -> Result<SessionSync> {
        check_server_name(server)?;
        // One entry per session, whatever the list repeats.
        let mut seen = HashSet::new();
        let live: Vec<&LiveSession> = live
            .iter()
            .filter(|s| seen.insert(key_of(&s.common_name, s)))
            .collect();
        self.store().write_with(|tx| {
            let open = tx.open_sessions(server)?;
            let by_key: HashMap<(String, String, i64), &Session> = open
                .iter()
                .map(|s| {
                    (
                        (
                            s.client_id.clone(),
                            s.real_address.to_string(),
                            s.started_at.unix_timestamp(),
                        ),
                        s,
                    )
                })
                .collect();
            let mut sync = SessionSync::default();
            let mut still = HashSet::new();
            let mut updates = Vec::new();
            for l in &live {
                let key = key_of(&l.common_name, l);
                if let Some(s) = by_key.get(&key) {
                    still.insert(s.id);
                    if (s.bytes_in, s.bytes_out) != (l.bytes_received, l.bytes_sent) {
                        updates.push((s.id, l.bytes_received, l.bytes_sent));
                    }
                    continue;
                }
                let addresses = match ClientId::new(&l.common_name) {
                    Ok(id) => tx.client(&id)?.map(|c| addresses_of(&c.assignment)),
                    Err(_) => None,
                };
                let row = Session::new(
                    server.to_owned(),
                    l.common_name.clone(),
                    l.real_address,
                    l.virtual_addresses.clone(),
                    addresses,
                    l.connected_since,
                    l.bytes_received,
                    l.bytes_sent,
                );
                tx.insert_session(&row)?;
                sync.started += 1;
            }
            let ended: Vec<i64> = open
                .iter()
                .map(|s| s.id)
                .filter(|id| !still.contains(id))
                .collect();
            sync.updated = updates.len();
            sync.ended = ended.len();
            tx.update_session_bytes(&updates)?;
            tx.end_sessions(&ended, now)?;
            Ok(sync)
        })
    }

    /// The live sessions of every server (as their agents last recorded
    /// them), by server and start.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// assert!(broker.status()?.is_empty());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn status(&self) -> Result<Vec<Session>> {
        let mut open = self.sessions(&SessionFilter {
            open_only: true,
            ..SessionFilter::default()
        })?;
        open.sort_by(|a, b| (&a.server, a.started_at, a.id).cmp(&(&b.server, b.started_at, b.id)));
        Ok(open)
    }

    /// The recorded sessions that `filter` picks (oldest first; the latest
    /// first when it has a limit).
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::broker::SessionFilter;
    /// let mut filter = SessionFilter::default();
    /// filter.client_id = Some("alice".into());
    /// assert!(broker.sessions(&filter)?.is_empty());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>> {
        if let Some(server) = &filter.server {
            check_server_name(server)?;
        }
        self.store().read_with(|tx| tx.sessions(filter))
    }

    /// Who held `address` at `at` (now when `None`): the client whose
    /// hermit /128 it is, whose subnet /64 holds it, or whose routing net
    /// (its tunnel's /112) holds it; with the sessions of that assignment
    /// around then, and the client's e-mail and name as they were.
    ///
    /// The answer comes from the assignment history, which outlives purges
    /// and reassignments, and where the history has no span (pruned, or a
    /// database from before it was kept) from a session recorded with the
    /// address. Records older than the retention (`sessions.retention_days`)
    /// are gone: a time before them answers "nobody".
    ///
    /// An address outside the pool is refused
    /// ([`Error::OutsidePool`]).
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::{ClientKind, ErrorKind, NewClient};
    /// let mut req = NewClient::new("alice".parse()?, ClientKind::Subnet);
    /// req.email = Some("alice@example.org".into());
    /// broker.add_client(&req)?;
    /// let who = broker.whois("2001:db8:0:f101::17".parse().unwrap(), None)?;
    /// let holder = who.holder.unwrap();
    /// assert_eq!(holder.client_id, "alice");
    /// assert_eq!(holder.email.as_deref(), Some("alice@example.org"));
    ///
    /// // Out of the pool: refused.
    /// let err = broker.whois("2001:db8:1::1".parse().unwrap(), None).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn whois(&self, address: Ipv6Addr, at: Option<OffsetDateTime>) -> Result<Whois> {
        let at = at.unwrap_or_else(OffsetDateTime::now_utc);
        let pool = self.pool_holding(address)?;
        let prefixes = candidate_prefixes(&pool, address)?;
        let (spans, sessions) = self.store().read_with(|tx| {
            let spans = tx.assignment_history(Some(&prefixes))?;
            let sessions = tx.sessions(&SessionFilter {
                prefixes: Some(prefixes.clone()),
                from: Some(at - AROUND),
                to: Some(at + AROUND),
                limit: Some(100),
                ..SessionFilter::default()
            })?;
            Ok((spans, sessions))
        })?;
        // The latest span that holds `at` (spans of one prefix never
        // overlap but for clock skew between hosts: the later start wins).
        let mut holder = spans.iter().rev().find(|s| s.covers(at)).cloned();
        if holder.is_none() {
            // No span: a session that carried the address then.
            if let Some(s) = sessions.iter().find(|s| s.covers(at))
                && let Some(a) = s.addresses
            {
                let contact = spans.iter().rev().find(|p| p.client_id == s.client_id);
                holder = Some(AssignmentSpan {
                    client_id: s.client_id.clone(),
                    kind: a.kind,
                    prefix: a.prefix,
                    email: contact.and_then(|c| c.email.clone()),
                    name: contact.and_then(|c| c.name.clone()),
                    since: s.started_at,
                    until: s.ended_at,
                });
            }
        }
        let (tunnel_address, sessions) = match &holder {
            Some(h) => (
                Assignment::in_pool(&pool, h.kind, h.prefix)
                    .ok()
                    .map(|a| a.tunnel_address()),
                sessions
                    .into_iter()
                    .filter(|s| {
                        s.client_id == h.client_id
                            && s.addresses.is_some_and(|a| a.prefix == h.prefix)
                    })
                    .collect(),
            ),
            None => (None, Vec::new()),
        };
        Ok(Whois {
            address,
            at,
            holder,
            tunnel_address,
            sessions,
        })
    }

    /// Deletes the sessions (and past assignments) that ended more than
    /// `sessions.retention_days` before `now`; returns how many sessions
    /// went. Live sessions and current assignments stay, however old.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// assert_eq!(broker.prune_sessions(time::OffsetDateTime::now_utc())?, 0);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn prune_sessions(&self, now: OffsetDateTime) -> Result<u64> {
        let before = now - Duration::days(i64::from(self.settings.sessions.retention_days));
        self.store().write_with(|tx| tx.prune_sessions(before))
    }

    /// The pool of the server whose pool holds `address` (this broker's
    /// own pool when none does: the error then names it).
    fn pool_holding(&self, address: Ipv6Addr) -> Result<Pool> {
        let servers = self.store().read_with(|tx| self.servers_in(tx))?;
        Ok(servers
            .into_iter()
            .map(|s| s.pool)
            .find(|p| p.net().contains(&address))
            .unwrap_or(self.settings.pool))
    }
}

/// The prefixes whose holder holds `address` in `pool`: its hermit /128,
/// its subnet /64, or (in the routing /64) the subnet whose routing net
/// holds it.
fn candidate_prefixes(pool: &Pool, address: Ipv6Addr) -> Result<Vec<Ipv6Net>> {
    let as_net = |len: u8| Ipv6Net::new(address, len).map(|n| n.trunc());
    let host = as_net(128).map_err(|_| not_an_address(address))?;
    let Some(role) = pool.role_of(address) else {
        return Err(Error::OutsidePool {
            prefix: host,
            pool: pool.net(),
        });
    };
    let net64 = as_net(64).map_err(|_| not_an_address(address))?;
    Ok(match role {
        Role::Hermit => vec![host],
        Role::Subnet => vec![net64],
        Role::Routing => {
            // ::H:1 / ::H:2 of the routing net of the subnet whose 4th hextet is H.
            let mut seg = address.segments();
            let tag = seg[6];
            seg[3] = tag;
            seg[4..].fill(0);
            let subnet =
                Ipv6Net::new(Ipv6Addr::from(seg), 64).map_err(|_| not_an_address(address))?;
            match pool.role_of(subnet.network()) {
                Some(Role::Subnet) => vec![subnet],
                _ => Vec::new(),
            }
        }
    })
}

/// The assignment as a session records it.
fn addresses_of(a: &Assignment) -> SessionAddresses {
    SessionAddresses {
        kind: a.kind(),
        prefix: a.prefix(),
        tunnel_address: Some(a.tunnel_address()),
    }
}

/// What tells one session from another on a server.
fn key_of(cn: &str, s: &LiveSession) -> (String, String, i64) {
    (
        cn.to_owned(),
        s.real_address.to_string(),
        s.connected_since.unix_timestamp(),
    )
}

fn not_an_address(address: Ipv6Addr) -> Error {
    Error::InvalidField {
        field: "address",
        input: address.to_string(),
        reason: "not an IPv6 address".into(),
    }
}

/// Refuses a server name that is no name (the rule of client IDs).
use super::servers::validate_server_name as check_server_name;

/// Parses a time as an operator writes it: RFC 3339
/// (`2026-12-01T14:00:00Z`, `2026-12-01T15:00:00+01:00`) or
/// `YYYY-MM-DD HH:MM[:SS]` in UTC.
///
/// ```
/// use tunnelbroker_core::broker::parse_time;
/// assert_eq!(parse_time("2026-12-01 14:00")?, parse_time("2026-12-01T14:00:00Z")?);
/// assert_eq!(parse_time("2026-12-01T15:00:00+01:00")?.unix_timestamp(), 1796133600);
/// assert!(parse_time("last tuesday").is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
pub fn parse_time(text: &str) -> Result<OffsetDateTime> {
    let t = text.trim();
    if let Ok(at) = OffsetDateTime::parse(t, &Rfc3339) {
        return Ok(at);
    }
    let long = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let short = format_description!("[year]-[month]-[day] [hour]:[minute]");
    PrimitiveDateTime::parse(t, long)
        .or_else(|_| PrimitiveDateTime::parse(t, short))
        .map(PrimitiveDateTime::assume_utc)
        .map_err(|_| Error::InvalidField {
            field: "time",
            input: shown(text),
            reason: "expected RFC 3339 (2026-12-01T14:00:00Z) or \"YYYY-MM-DD HH:MM[:SS]\" in UTC"
                .into(),
        })
}

/// The IPv6 address in `text`, or an error that says it is none.
///
/// ```
/// use tunnelbroker_core::broker::parse_address;
/// assert_eq!(parse_address("2001:db8::1")?.to_string(), "2001:db8::1");
/// assert!(parse_address("198.18.0.1").is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
pub fn parse_address(text: &str) -> Result<Ipv6Addr> {
    match text.trim().parse::<IpAddr>() {
        Ok(IpAddr::V6(a)) => Ok(a),
        _ => Err(Error::InvalidField {
            field: "address",
            input: shown(text),
            reason: "not an IPv6 address".into(),
        }),
    }
}
