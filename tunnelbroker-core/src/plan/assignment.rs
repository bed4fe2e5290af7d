use std::fmt;
use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

pub use crate::words::ClientKind;

use super::pool::Pool;
use crate::error::{Error, Result, shown};

/// A hermit client's assignment: one /128 of the pool's hermit /64.
///
/// The hermit /64's subnet-router anycast address (`::`) and the reserved
/// anycast interface identifiers of RFC 2526 (`::fdff:ffff:ffff:ff80` to
/// `::fdff:ffff:ffff:ffff`) are never handed out.
///
/// ```
/// use tunnelbroker_core::Pool;
/// let pool: Pool = "2001:db8:0:f100::/56".parse()?;
/// let h = pool.hermit("2001:db8:0:f1ff::7".parse().unwrap())?;
/// assert_eq!(h.prefix().to_string(), "2001:db8:0:f1ff::7/128");
/// assert_eq!(h.server_link_local().to_string(), "fe80::1");
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "HermitRepr", into = "HermitRepr")]
pub struct Hermit {
    address: Ipv6Addr,
}

const ANYCAST_FIRST: u64 = 0xfdff_ffff_ffff_ff80;
const ANYCAST_LAST: u64 = 0xfdff_ffff_ffff_ffff;

impl Hermit {
    /// How many interface identifiers of the hermit /64 are reserved.
    pub const RESERVED_COUNT: u64 = 1 + (ANYCAST_LAST - ANYCAST_FIRST + 1);

    pub(crate) fn reserved_reason(iid: u64) -> Option<&'static str> {
        if iid == 0 {
            Some("it is the subnet-router anycast address of the hermit /64 (RFC 4291)")
        } else if (ANYCAST_FIRST..=ANYCAST_LAST).contains(&iid) {
            Some("it is a reserved subnet anycast address (RFC 2526)")
        } else {
            None
        }
    }

    /// The usable interface-identifier ranges, in order.
    pub(crate) const USABLE: [(u64, u64); 2] =
        [(1, ANYCAST_FIRST - 1), (ANYCAST_LAST + 1, u64::MAX)];

    pub(crate) fn from_interface_id(pool: &Pool, iid: u64) -> Result<Self> {
        let bits = u128::from(pool.hermit_net().network()) | u128::from(iid);
        let address = Ipv6Addr::from(bits);
        if let Some(why) = Self::reserved_reason(iid) {
            return Err(Error::Reserved { address, why });
        }
        Ok(Hermit { address })
    }

    /// The interface identifier: the low 64 bits of the address.
    pub fn interface_id(&self) -> u64 {
        u128::from(self.address) as u64
    }

    /// The client's address.
    pub fn address(&self) -> Ipv6Addr {
        self.address
    }

    /// The client's address as a /128.
    pub fn prefix(&self) -> Ipv6Net {
        Ipv6Net::from(self.address)
    }

    /// The server's link-local address on a hermit's tunnel: `fe80::1`.
    pub fn server_link_local(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)
    }
}

impl fmt::Debug for Hermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hermit({})", self.address)
    }
}

impl fmt::Display for Hermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/128", self.address)
    }
}

#[derive(Serialize, Deserialize)]
struct HermitRepr {
    address: Ipv6Addr,
}

impl From<Hermit> for HermitRepr {
    fn from(h: Hermit) -> Self {
        HermitRepr { address: h.address }
    }
}

impl TryFrom<HermitRepr> for Hermit {
    type Error = Error;
    fn try_from(r: HermitRepr) -> Result<Self> {
        let iid = u128::from(r.address) as u64;
        if let Some(why) = Hermit::reserved_reason(iid) {
            return Err(Error::Reserved {
                address: r.address,
                why,
            });
        }
        Ok(Hermit { address: r.address })
    }
}

/// A subnet client's assignment: a routed /64 of the pool together with its
/// point-to-point routing /112 and link-local tunnel ends.
///
/// ```
/// use tunnelbroker_core::Pool;
/// let pool: Pool = "2001:638:500:f100::/56".parse()?;
/// let s = pool.subnet("2001:638:500:f1ab::/64".parse().unwrap())?;
/// assert_eq!(s.tag(), 0xf1ab);
/// assert_eq!(s.routing_net().to_string(), "2001:638:500:f100::f1ab:0/112");
/// assert_eq!(s.server_end().to_string(), "2001:638:500:f100::f1ab:1");
/// assert_eq!(s.client_end().to_string(), "2001:638:500:f100::f1ab:2");
/// assert_eq!(s.server_link_local().to_string(), "fe80::f1ab:1");
/// assert_eq!(s.client_link_local().to_string(), "fe80::f1ab:2");
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "SubnetRepr", into = "SubnetRepr")]
pub struct Subnet {
    prefix: Ipv6Net,
    routing_net: Ipv6Net,
}

impl Subnet {
    /// The subnet with /64 number `n` of `pool`; `n` must be a subnet number.
    pub(crate) fn new_unchecked(pool: &Pool, n: u64) -> Self {
        let prefix_bits = u128::from(pool.net().network()) | (u128::from(n) << 64);
        let tag = (prefix_bits >> 64) as u16;
        let routing_bits = u128::from(pool.routing_net().network()) | (u128::from(tag) << 16);
        Subnet {
            prefix: Ipv6Net::new_assert(Ipv6Addr::from(prefix_bits), 64),
            routing_net: Ipv6Net::new_assert(Ipv6Addr::from(routing_bits), 112),
        }
    }

    /// The routed /64.
    pub fn prefix(&self) -> Ipv6Net {
        self.prefix
    }

    /// `H`, the 4th hextet of the /64, which names the routing net.
    pub fn tag(&self) -> u16 {
        self.prefix.network().segments()[3]
    }

    /// The point-to-point /112 in the routing /64 whose 7th hextet is `H`.
    pub fn routing_net(&self) -> Ipv6Net {
        self.routing_net
    }

    /// The server's end of the routing net: `routing::H:1`.
    pub fn server_end(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.routing_net.network()) | 1)
    }

    /// The client's end of the routing net, its tunnel address: `routing::H:2`.
    pub fn client_end(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.routing_net.network()) | 2)
    }

    /// The server's link-local tunnel address: `fe80::H:1`.
    pub fn server_link_local(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, self.tag(), 1)
    }

    /// The client's link-local tunnel address: `fe80::H:2`.
    pub fn client_link_local(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, self.tag(), 2)
    }

    /// The address a subnet client gives its LAN interface: `PREFIX::1`.
    pub fn lan_address(&self) -> Ipv6Addr {
        Self::lan_address_in(self.prefix)
    }

    /// The LAN address of a subnet /64, `PREFIX::1`, from the prefix alone
    /// (for callers that read it back from text, as the facts line).
    pub(crate) fn lan_address_in(prefix: Ipv6Net) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(prefix.network()) | 1)
    }
}

impl fmt::Debug for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Subnet({}, routing {})", self.prefix, self.routing_net)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.prefix, f)
    }
}

#[derive(Serialize, Deserialize)]
struct SubnetRepr {
    prefix: Ipv6Net,
    routing_net: Ipv6Net,
    #[serde(default, skip_deserializing)]
    server_end: Option<Ipv6Addr>,
    #[serde(default, skip_deserializing)]
    client_end: Option<Ipv6Addr>,
    #[serde(default, skip_deserializing)]
    server_link_local: Option<Ipv6Addr>,
    #[serde(default, skip_deserializing)]
    client_link_local: Option<Ipv6Addr>,
}

impl From<Subnet> for SubnetRepr {
    fn from(s: Subnet) -> Self {
        SubnetRepr {
            prefix: s.prefix,
            routing_net: s.routing_net,
            server_end: Some(s.server_end()),
            client_end: Some(s.client_end()),
            server_link_local: Some(s.server_link_local()),
            client_link_local: Some(s.client_link_local()),
        }
    }
}

impl TryFrom<SubnetRepr> for Subnet {
    type Error = Error;
    fn try_from(r: SubnetRepr) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidPrefix {
            input: shown(&format!("{} via {}", r.prefix, r.routing_net)),
            reason: reason.into(),
        };
        if r.prefix.prefix_len() != 64 || r.prefix.addr() != r.prefix.network() {
            return Err(bad("a subnet is a /64 with host bits zero"));
        }
        if r.routing_net.prefix_len() != 112 || r.routing_net.addr() != r.routing_net.network() {
            return Err(bad("a routing net is a /112 with host bits zero"));
        }
        let p = r.prefix.network().segments();
        let q = r.routing_net.network().segments();
        if p[..3] != q[..3] || q[4] != 0 || q[5] != 0 || q[6] != p[3] {
            return Err(bad("the routing net does not belong to the subnet"));
        }
        Ok(Subnet {
            prefix: r.prefix,
            routing_net: r.routing_net,
        })
    }
}

/// A client's assignment: a hermit /128 or a subnet /64.
///
/// It serialises with a `kind` tag:
///
/// ```
/// use tunnelbroker_core::{Assignment, ClientKind, Pool};
/// use tunnelbroker_core::plan::Allocator;
/// let mut plan = Allocator::new("2001:db8:0:f100::/56".parse()?);
/// let a = plan.allocate(ClientKind::Subnet)?;
/// assert_eq!(a.to_string(), "2001:db8:0:f101::/64");
/// assert_eq!(a.tunnel_address().to_string(), "2001:db8:0:f100::f101:2");
/// let json = serde_json::to_string(&a).unwrap();
/// assert!(json.starts_with(r#"{"kind":"subnet","prefix":"2001:db8:0:f101::/64""#));
/// let back: Assignment = serde_json::from_str(&json).unwrap();
/// assert_eq!(back, a);
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Assignment {
    /// A hermit's /128.
    Hermit(Hermit),
    /// A subnet's /64 with its routing net.
    Subnet(Subnet),
}

impl Assignment {
    /// Hermit or subnet.
    pub fn kind(&self) -> ClientKind {
        match self {
            Assignment::Hermit(_) => ClientKind::Hermit,
            Assignment::Subnet(_) => ClientKind::Subnet,
        }
    }

    /// The assigned prefix: the hermit's /128 or the subnet's /64.
    pub fn prefix(&self) -> Ipv6Net {
        match self {
            Assignment::Hermit(h) => h.prefix(),
            Assignment::Subnet(s) => s.prefix(),
        }
    }

    /// The client's address on the tunnel: the hermit's /128, or the client
    /// end of the subnet's routing net.
    pub fn tunnel_address(&self) -> Ipv6Addr {
        match self {
            Assignment::Hermit(h) => h.address(),
            Assignment::Subnet(s) => s.client_end(),
        }
    }

    /// Whether `addr` belongs to this assignment: the hermit's address, or any
    /// address of the subnet /64 or of its routing /112.
    pub fn owns(&self, addr: Ipv6Addr) -> bool {
        match self {
            Assignment::Hermit(h) => h.address() == addr,
            Assignment::Subnet(s) => s.prefix().contains(&addr) || s.routing_net().contains(&addr),
        }
    }

    /// The hermit, if this is one.
    pub fn as_hermit(&self) -> Option<&Hermit> {
        match self {
            Assignment::Hermit(h) => Some(h),
            Assignment::Subnet(_) => None,
        }
    }

    /// The subnet, if this is one.
    pub fn as_subnet(&self) -> Option<&Subnet> {
        match self {
            Assignment::Subnet(s) => Some(s),
            Assignment::Hermit(_) => None,
        }
    }

    /// Rebuilds an assignment from its kind and prefix text, checking it
    /// against `pool` (the form in which the client database stores it).
    ///
    /// ```
    /// use tunnelbroker_core::{Assignment, ClientKind, Pool};
    /// let pool: Pool = "2001:db8:0:f100::/56".parse()?;
    /// let a = Assignment::parse_in(&pool, ClientKind::Hermit, "2001:db8:0:f1ff::9")?;
    /// assert_eq!(a.to_string(), "2001:db8:0:f1ff::9/128");
    /// assert!(Assignment::parse_in(&pool, ClientKind::Subnet, "2001:db8:0:f1ff::/64").is_err());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn parse_in(pool: &Pool, kind: ClientKind, text: &str) -> Result<Self> {
        let prefix = super::parse_prefix(text)?;
        Self::in_pool(pool, kind, prefix)
    }

    /// The assignment of `kind` for `prefix` in `pool`: a /128 (or bare
    /// address) for a hermit, a /64 for a subnet.
    pub fn in_pool(pool: &Pool, kind: ClientKind, prefix: Ipv6Net) -> Result<Self> {
        match kind {
            ClientKind::Subnet => pool.subnet(prefix).map(Assignment::Subnet),
            ClientKind::Hermit => {
                if prefix.prefix_len() != 128 {
                    return Err(Error::InvalidPrefix {
                        input: shown(&prefix.to_string()),
                        reason: "a hermit is given a single address (/128)".into(),
                    });
                }
                pool.hermit(prefix.addr()).map(Assignment::Hermit)
            }
        }
    }
}

impl fmt::Display for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Assignment::Hermit(h) => fmt::Display::fmt(h, f),
            Assignment::Subnet(s) => fmt::Display::fmt(s, f),
        }
    }
}

impl From<Hermit> for Assignment {
    fn from(h: Hermit) -> Self {
        Assignment::Hermit(h)
    }
}

impl From<Subnet> for Assignment {
    fn from(s: Subnet) -> Self {
        Assignment::Subnet(s)
    }
}
