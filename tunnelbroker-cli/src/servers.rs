//! `tunnelbroker server add`, `server list`, `server remove` and `server
//! parent`: several OpenVPN servers in one broker (issue 13). Glue over
//! `Broker::add_server`, `Broker::servers`, `Broker::remove_server` and
//! `Broker::set_parent_prefix`.

use std::fmt;
use std::path::Path;

use serde::Serialize;
use tunnelbroker_core::broker::{NewServer, Server};
use tunnelbroker_core::plan::parse_prefix;

use crate::args::ServerAddArgs;
use crate::output::{Failure, Output};

/// `server add NAME --endpoint HOST [--pool PREFIX | --pool-length N] [--mode M] [--port N]`.
pub fn add(out: &Output, dir: &Path, a: &ServerAddArgs) -> Result<(), Failure> {
    tunnelbroker_core::broker::validate_server_name(&a.name)?;
    let mut new = NewServer::new(&a.name, a.endpoint.parse()?);
    if let Some(m) = &a.mode {
        new.mode = m.parse()?;
    }
    new.port = a.port;
    new.pool = a.pool.as_deref().map(str::parse).transpose()?;
    new.pool_length = a.pool_length;
    let broker = crate::output::open_broker(dir)?;
    let server = broker.add_server(&new)?;
    out.show(&Added(server))
}

/// `server list`.
pub fn list(out: &Output, dir: &Path) -> Result<(), Failure> {
    let broker = crate::output::open_broker(dir)?;
    out.show(&ServerTable(broker.servers()?))
}

/// `server remove NAME`.
pub fn remove(out: &Output, dir: &Path, name: &str) -> Result<(), Failure> {
    tunnelbroker_core::broker::validate_server_name(name)?;
    let broker = crate::output::open_broker(dir)?;
    let server = broker.remove_server(name)?;
    out.show(&Removed(server))
}

/// `server parent PREFIX`.
pub fn parent(out: &Output, dir: &Path, prefix: &str) -> Result<(), Failure> {
    let parent = parse_prefix(prefix)?;
    let broker = crate::output::open_broker(dir)?;
    broker.set_parent_prefix(parent)?;
    out.show(&Parent {
        parent: parent.to_string(),
    })
}

#[derive(Serialize)]
#[serde(transparent)]
struct Added(Server);

impl fmt::Display for Added {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.0;
        writeln!(f, "added server {}", s.name)?;
        writeln!(f, "endpoint      {}", s.endpoint)?;
        writeln!(f, "mode          {}", s.mode)?;
        writeln!(f, "port          {}/udp", s.port)?;
        writeln!(f, "pool          {}", s.pool)?;
        writeln!(f, "certificate   CN {}", s.certificate_name)?;
        writeln!(
            f,
            "next: route {} to {} upstream, then `tunnelbroker server render {} -o DIR` on that host",
            s.pool, s.endpoint, s.name
        )
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct Removed(Server);

impl fmt::Display for Removed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "removed server {}; its pool {} is free again",
            self.0.name, self.0.pool
        )
    }
}

#[derive(Serialize)]
struct Parent {
    parent: String,
}

impl fmt::Display for Parent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "parent prefix {}", self.parent)
    }
}

/// Every server, one line each.
#[derive(Serialize)]
#[serde(transparent)]
struct ServerTable(Vec<Server>);

impl fmt::Display for ServerTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = |get: &dyn Fn(&Server) -> usize, min: usize| {
            self.0.iter().map(get).max().unwrap_or(min).max(min)
        };
        let wn = w(&|s| s.name.len(), 4);
        let we = w(&|s| s.endpoint.as_str().len(), 8);
        let wp = w(&|s| s.pool.to_string().len(), 4);
        writeln!(
            f,
            "{:wn$}  {:we$}  {:10}  {:5}  {:wp$}  {:>7}  {:>12}  {:>20}",
            "NAME", "ENDPOINT", "MODE", "PORT", "POOL", "CLIENTS", "FREE SUBNETS", "FREE HERMITS"
        )?;
        for s in &self.0 {
            writeln!(
                f,
                "{:wn$}  {:we$}  {:10}  {:5}  {:wp$}  {:>7}  {:>12}  {:>20}",
                s.name,
                s.endpoint.as_str(),
                s.mode.to_string(),
                s.port,
                s.pool.to_string(),
                s.clients,
                s.subnets_free,
                s.hermits_free
            )?;
        }
        Ok(())
    }
}
