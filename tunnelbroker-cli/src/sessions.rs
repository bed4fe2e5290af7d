//! `tunnelbroker status` and `whois`: glue over `Broker::status` and
//! `Broker::whois`.

use std::fmt;
use std::path::Path;

use serde::Serialize;
use tunnelbroker_core::broker::{Session, Whois, parse_address, parse_time};

use crate::args::WhoisArgs;
use crate::output::{Failure, Output, open_broker, rfc3339};

/// `tunnelbroker status`.
pub fn status(out: &Output, dir: &Path) -> Result<(), Failure> {
    let broker = open_broker(dir)?;
    out.show(&Status(broker.status()?))
}

/// `tunnelbroker whois ADDRESS [--at TIME]`.
pub fn whois(out: &Output, dir: &Path, args: &WhoisArgs) -> Result<(), Failure> {
    // Bad input is refused before the broker is even opened.
    let address = parse_address(&args.address)?;
    let at = args.at.as_deref().map(parse_time).transpose()?;
    let broker = open_broker(dir)?;
    out.show(&Answer(broker.whois(address, at)?))
}

/// A byte count for people: 1.5 MB.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn session_line(s: &Session) -> String {
    let addresses = match s.addresses {
        Some(a) => match a.tunnel_address {
            Some(t) if t != a.prefix.network() || a.prefix.prefix_len() != 128 => {
                format!("{} via {t}", a.prefix)
            }
            _ => a.prefix.to_string(),
        },
        None => "(no client of that name)".into(),
    };
    let end = match s.ended_at {
        Some(e) => format!(" until {}", rfc3339(e)),
        None => String::new(),
    };
    format!(
        "{:<20} {:<8} from {:<24} {addresses}  since {}{end}  in {} out {}",
        s.client_id,
        s.server,
        s.real_address.to_string(),
        rfc3339(s.started_at),
        bytes(s.bytes_in),
        bytes(s.bytes_out),
    )
}

#[derive(Serialize)]
#[serde(transparent)]
struct Status(Vec<Session>);

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(
                f,
                "no live sessions (as the servers' agents last recorded them)"
            );
        }
        for s in &self.0 {
            writeln!(f, "{}", session_line(s))?;
        }
        writeln!(f, "{} live sessions", self.0.len())
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct Answer(Whois);

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = &self.0;
        let Some(h) = &w.holder else {
            return writeln!(
                f,
                "{} was held by no client at {} (as far as the records kept reach)",
                w.address,
                rfc3339(w.at)
            );
        };
        writeln!(f, "address   {}", w.address)?;
        writeln!(f, "at        {}", rfc3339(w.at))?;
        writeln!(f, "client    {}", h.client_id)?;
        writeln!(f, "email     {}", h.email.as_deref().unwrap_or("-"))?;
        writeln!(f, "name      {}", h.name.as_deref().unwrap_or("-"))?;
        writeln!(f, "kind      {}", h.kind)?;
        writeln!(f, "prefix    {}", h.prefix)?;
        if let Some(t) = w.tunnel_address {
            writeln!(f, "tunnel    {t}")?;
        }
        let until = h.until.map_or_else(|| "now".to_owned(), rfc3339);
        writeln!(f, "held      {} to {until}", rfc3339(h.since))?;
        if w.sessions.is_empty() {
            writeln!(
                f,
                "sessions  none recorded from a day before to a day after"
            )
        } else {
            writeln!(f, "sessions  (a day before to a day after)")?;
            for s in &w.sessions {
                writeln!(f, "  {}", session_line(s))?;
            }
            Ok(())
        }
    }
}
