//! The facts line: one machine-readable comment in a client's
//! configuration, `# tunnelbroker-doctor: key=value ...`, that says what the
//! client's tunnel should look like. The renderer writes it
//! ([`ClientConfig`](super::ClientConfig)), `doctor` reads it back.

use std::fmt;
use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use serde::Serialize;

use super::values::InterfaceName;
use crate::client_id::ClientId;
use crate::error::{Error, Result, shown};
use crate::plan::{Assignment, ClientKind, Pool, Subnet};
use crate::words::ServerMode;

/// The tag of the machine-readable comment line that says what a client
/// should have: `# tunnelbroker-doctor: key=value ...`.
pub const FACTS_TAG: &str = "tunnelbroker-doctor:";

/// What a client's tunnel should look like, as written into its
/// configuration by the broker (one comment line, see [`FACTS_TAG`]).
///
/// ```
/// use tunnelbroker_core::doctor::BundleFacts;
/// use tunnelbroker_core::{Assignment, ClientKind, Pool};
/// use tunnelbroker_core::broker::ServerMode;
/// let pool: Pool = "2001:db8:0:f100::/56".parse()?;
/// let a = Assignment::in_pool(&pool, ClientKind::Subnet, "2001:db8:0:f1ab::/64".parse().unwrap())?;
/// let facts = BundleFacts::new(&"alice".parse()?, &a, &pool, ServerMode::PerClient, "eth0");
/// let line = facts.to_string();
/// assert_eq!(line, "tunnelbroker-doctor: id=alice kind=subnet prefix=2001:db8:0:f1ab::/64 \
///     tunnel=2001:db8:0:f100::f1ab:2 server=2001:db8:0:f100::f1ab:1 lan=eth0");
/// assert_eq!(line.parse::<BundleFacts>()?, facts);
/// assert!("tunnelbroker-doctor: kind=subnet".parse::<BundleFacts>().is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleFacts {
    /// The client (its certificate's CN).
    pub id: Option<ClientId>,
    /// Hermit or subnet.
    pub kind: ClientKind,
    /// The assignment: the subnet /64 or the hermit's /128.
    pub prefix: Ipv6Net,
    /// The client's tunnel address.
    pub tunnel: Ipv6Addr,
    /// The server's end of the tunnel: what `doctor` pings.
    pub server: Ipv6Addr,
    /// A subnet client's LAN interface.
    pub lan: Option<String>,
}

impl BundleFacts {
    /// The facts of a client's assignment in a broker with this pool and mode.
    ///
    /// Per-client mode: a subnet's server end is `routing::H:1`, a hermit's
    /// `fe80::1` on the tun device. Shared mode: the server is the routing
    /// /64's `::1` for every client.
    pub fn new(
        id: &ClientId,
        assignment: &Assignment,
        pool: &Pool,
        mode: ServerMode,
        lan: &str,
    ) -> Self {
        BundleFacts {
            id: Some(id.clone()),
            kind: assignment.kind(),
            prefix: assignment.prefix(),
            tunnel: assignment.tunnel_address(),
            server: super::server_address(mode, pool, assignment),
            lan: (assignment.kind() == ClientKind::Subnet).then(|| lan.to_owned()),
        }
    }

    /// A subnet client's router address on its LAN, `PREFIX::1`.
    pub fn lan_address(&self) -> Option<Ipv6Addr> {
        (self.kind == ClientKind::Subnet).then(|| Subnet::lan_address_in(self.prefix))
    }
}

impl fmt::Display for BundleFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(FACTS_TAG)?;
        if let Some(id) = &self.id {
            write!(f, " id={id}")?;
        }
        write!(
            f,
            " kind={} prefix={} tunnel={} server={}",
            self.kind, self.prefix, self.tunnel, self.server
        )?;
        if let Some(lan) = &self.lan {
            write!(f, " lan={lan}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for BundleFacts {
    type Err = Error;

    /// Parses the comment's text (without the leading `#`). Unknown keys are
    /// ignored, so later versions may add some.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidField {
            field: "tunnelbroker-doctor line",
            input: shown(s),
            reason,
        };
        let rest = s
            .trim()
            .strip_prefix(FACTS_TAG)
            .ok_or_else(|| bad(format!("it does not start with {FACTS_TAG}")))?;
        let (mut id, mut kind, mut prefix, mut tunnel, mut server, mut lan) =
            (None, None, None, None, None, None);
        for word in rest.split_whitespace() {
            let (k, v) = word
                .split_once('=')
                .ok_or_else(|| bad(format!("expected key=value, found {}", shown(word))))?;
            let addr = |v: &str| {
                v.parse::<Ipv6Addr>()
                    .map_err(|_| bad(format!("{k}: not an IPv6 address: {}", shown(v))))
            };
            match k {
                "id" => id = Some(v.parse::<ClientId>()?),
                "kind" => kind = Some(v.parse::<ClientKind>()?),
                "prefix" => {
                    prefix = Some(
                        v.parse::<Ipv6Net>()
                            .map_err(|_| bad(format!("prefix: not a prefix: {}", shown(v))))?,
                    )
                }
                "tunnel" => tunnel = Some(addr(v)?),
                "server" => server = Some(addr(v)?),
                "lan" => {
                    InterfaceName::new(v)?;
                    lan = Some(v.to_owned());
                }
                _ => {}
            }
        }
        let need = |what: &str| bad(format!("{what}= is missing"));
        let kind = kind.ok_or_else(|| need("kind"))?;
        let prefix = prefix.ok_or_else(|| need("prefix"))?;
        let want = match kind {
            ClientKind::Subnet => 64,
            ClientKind::Hermit => 128,
        };
        if prefix.prefix_len() != want || prefix.trunc() != prefix {
            return Err(bad(format!("a {kind} prefix is a /{want} network")));
        }
        Ok(BundleFacts {
            id,
            kind,
            prefix,
            tunnel: tunnel.ok_or_else(|| need("tunnel"))?,
            server: server.ok_or_else(|| need("server"))?,
            lan: if kind == ClientKind::Subnet {
                lan
            } else {
                None
            },
        })
    }
}
