//! `tunnelbroker plan`: the layout of a pool, or of one subnet of it.

use std::fmt;

use serde::Serialize;
use tunnelbroker_core::plan::{Subnet, parse_prefix};
use tunnelbroker_core::{Ipv6Net, Pool};

use crate::args::PlanArgs;
use crate::output::{Failure, Output};

/// Runs `plan`.
pub fn run(out: &Output, args: &PlanArgs) -> Result<(), Failure> {
    let pool: Pool = args.pool.parse()?;
    match &args.subnet {
        None => out.show(&Layout::of(&pool)),
        Some(text) => {
            let subnet = pool.subnet(parse_prefix(text)?)?;
            out.show(&SubnetView::of(&pool, &subnet))
        }
    }
}

/// The layout of a pool.
#[derive(Debug, Serialize)]
struct Layout {
    pool: Pool,
    routing: Ipv6Net,
    hermit: Ipv6Net,
    first_subnet: Ipv6Net,
    last_subnet: Ipv6Net,
    subnet_capacity: u64,
    hermit_capacity: u64,
}

impl Layout {
    fn of(pool: &Pool) -> Self {
        Layout {
            pool: *pool,
            routing: pool.routing_net(),
            hermit: pool.hermit_net(),
            first_subnet: pool.first_subnet().prefix(),
            last_subnet: pool.last_subnet().prefix(),
            subnet_capacity: pool.subnet_capacity(),
            hermit_capacity: pool.hermit_capacity(),
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "pool          {}", self.pool)?;
        writeln!(f, "routing /64   {}", self.routing)?;
        writeln!(f, "hermit /64    {}", self.hermit)?;
        writeln!(f, "first subnet  {}", self.first_subnet)?;
        writeln!(f, "last subnet   {}", self.last_subnet)?;
        writeln!(
            f,
            "capacity      {} subnets, {} hermits",
            self.subnet_capacity, self.hermit_capacity
        )
    }
}

/// One subnet and the addresses of its tunnel.
#[derive(Debug, Serialize)]
struct SubnetView {
    pool: Pool,
    subnet: Ipv6Net,
    routing_net: Ipv6Net,
    server_end: std::net::Ipv6Addr,
    client_end: std::net::Ipv6Addr,
    server_link_local: std::net::Ipv6Addr,
    client_link_local: std::net::Ipv6Addr,
}

impl SubnetView {
    fn of(pool: &Pool, s: &Subnet) -> Self {
        SubnetView {
            pool: *pool,
            subnet: s.prefix(),
            routing_net: s.routing_net(),
            server_end: s.server_end(),
            client_end: s.client_end(),
            server_link_local: s.server_link_local(),
            client_link_local: s.client_link_local(),
        }
    }
}

impl fmt::Display for SubnetView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "subnet             {}", self.subnet)?;
        writeln!(f, "routing net        {}", self.routing_net)?;
        writeln!(f, "server end         {}", self.server_end)?;
        writeln!(f, "client end         {}", self.client_end)?;
        writeln!(f, "server link-local  {}", self.server_link_local)?;
        writeln!(f, "client link-local  {}", self.client_link_local)
    }
}
