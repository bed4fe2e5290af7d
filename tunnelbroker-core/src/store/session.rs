//! Session rows and assignment history: the records behind "who is
//! connected now?" and "who had this address then?".
//!
//! Times in these tables are whole microseconds since the Unix epoch
//! (UTC), so that the database compares and prunes them as numbers.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use ipnet::Ipv6Net;
use serde::Serialize;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::plan::ClientKind;

/// A client's assignment as a session or the history recorded it: plain
/// values, so that a row outlives the client and its pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SessionAddresses {
    /// Hermit or subnet.
    pub kind: ClientKind,
    /// The assigned prefix (/128 or /64).
    pub prefix: Ipv6Net,
    /// The client's tunnel address (`None` when it could not be worked
    /// out: a prefix outside the broker's pool now).
    pub tunnel_address: Option<Ipv6Addr>,
}

/// One session of a client on a server: from its start (OpenVPN's
/// "connected since") to its end (the first poll that no longer saw it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Session {
    /// The row's number (unique in the database).
    pub id: i64,
    /// The server's name.
    pub server: String,
    /// The certificate's common name (the client ID for every certificate
    /// the broker issued).
    pub client_id: String,
    /// The real source address and port.
    pub real_address: SocketAddr,
    /// The tunnel addresses OpenVPN reported.
    pub virtual_addresses: Vec<IpAddr>,
    /// The client's assignment when the session was first recorded
    /// (`None`: no client of that name then).
    pub addresses: Option<SessionAddresses>,
    /// When it started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When it was seen ended (`None`: live at the last poll).
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    /// Bytes from the client, as the server counted them.
    pub bytes_in: u64,
    /// Bytes to the client.
    pub bytes_out: u64,
}

impl Session {
    /// A new session row (its [`id`](Self::id) 0 until the store gives it one).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        server: String,
        client_id: String,
        real_address: SocketAddr,
        virtual_addresses: Vec<IpAddr>,
        addresses: Option<SessionAddresses>,
        started_at: OffsetDateTime,
        bytes_in: u64,
        bytes_out: u64,
    ) -> Self {
        Session {
            id: 0,
            server,
            client_id,
            real_address,
            virtual_addresses,
            addresses,
            started_at,
            ended_at: None,
            bytes_in,
            bytes_out,
        }
    }

    /// Whether the session was live at `at` (started at or before it, and
    /// not ended before it).
    pub fn covers(&self, at: OffsetDateTime) -> bool {
        self.started_at <= at && self.ended_at.is_none_or(|e| e >= at)
    }
}

/// Which sessions to read. The default: all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionFilter {
    /// Only those of this server.
    pub server: Option<String>,
    /// Only those of this client (common name).
    pub client_id: Option<String>,
    /// Only those whose recorded assignment is one of these prefixes.
    pub prefixes: Option<Vec<Ipv6Net>>,
    /// Only live ones (not ended).
    pub open_only: bool,
    /// Only those that were live at some time at or after this.
    pub from: Option<OffsetDateTime>,
    /// Only those that started at or before this.
    pub to: Option<OffsetDateTime>,
    /// At most this many (the latest first when given; oldest first otherwise).
    pub limit: Option<u32>,
}

/// One span of the assignment history: a client held `addresses` from
/// `since` until `until`. Every client row adds one (kept after a purge);
/// changing a client's assignment, e-mail or name ends it and starts the
/// next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AssignmentSpan {
    /// The client's ID.
    pub client_id: String,
    /// Hermit or subnet.
    pub kind: ClientKind,
    /// The assigned prefix.
    pub prefix: Ipv6Net,
    /// Its contact e-mail then.
    pub email: Option<String>,
    /// Its contact name then.
    pub name: Option<String>,
    /// From (the client's subscription time, for its first span).
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// Until (exclusive); `None` while the client row holds it.
    #[serde(with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
}

impl AssignmentSpan {
    /// Whether the span holds `at` (`since <= at < until`).
    pub fn covers(&self, at: OffsetDateTime) -> bool {
        self.since <= at && self.until.is_none_or(|u| at < u)
    }
}

/// A time as stored: microseconds since the epoch.
pub(crate) fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// A stored time.
pub(crate) fn from_micros(us: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).map_err(|_| Error::Database {
        reason: format!("time {us} in the database is out of range"),
    })
}

/// A stored byte count (the database holds signed 64-bit numbers).
pub(crate) fn to_count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Parses the stored text columns of a session row.
pub(crate) fn parse_addresses(
    kind: Option<&str>,
    prefix: Option<&str>,
    tunnel: Option<&str>,
) -> Result<Option<SessionAddresses>> {
    let corrupt = |what: &str, v: &str| Error::Database {
        reason: format!(
            "a session row's {what} {} does not parse",
            crate::error::shown(v)
        ),
    };
    match (kind, prefix) {
        (Some(k), Some(p)) => Ok(Some(SessionAddresses {
            kind: k.parse().map_err(|_| corrupt("kind", k))?,
            prefix: p.parse().map_err(|_| corrupt("prefix", p))?,
            tunnel_address: tunnel
                .map(|t| t.parse().map_err(|_| corrupt("tunnel address", t)))
                .transpose()?,
        })),
        _ => Ok(None),
    }
}

/// The stored text of the virtual addresses (space-separated).
pub(crate) fn virtual_text(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses the stored virtual addresses and real address.
pub(crate) fn parse_endpoints(real: &str, virt: &str) -> Result<(SocketAddr, Vec<IpAddr>)> {
    let corrupt = |v: &str| Error::Database {
        reason: format!(
            "a session row's address {} does not parse",
            crate::error::shown(v)
        ),
    };
    let real = real.parse().map_err(|_| corrupt(real))?;
    let virt = virt
        .split_whitespace()
        .map(|a| a.parse().map_err(|_| corrupt(a)))
        .collect::<Result<Vec<_>>>()?;
    Ok((real, virt))
}
