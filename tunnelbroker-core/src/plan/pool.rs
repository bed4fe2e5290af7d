use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv6Net};
use serde::{Deserialize, Serialize};

pub use crate::words::Role;

use crate::error::{Error, Result, shown};

/// An IPv6 prefix of length 48 to 62 with all host bits zero, inside global
/// unicast (2000::/3) or unique local (fc00::/7) space, from which the
/// broker hands out assignments.
///
/// # Examples
///
/// ```
/// use tunnelbroker_core::Pool;
///
/// let pool: Pool = "2001:638:500:f100::/56".parse()?;
/// assert_eq!(pool.routing_net().to_string(), "2001:638:500:f100::/64");
/// assert_eq!(pool.hermit_net().to_string(), "2001:638:500:f1ff::/64");
/// assert_eq!(pool.subnet_capacity(), 254);
///
/// // Host bits set, too long, too short, IPv4 or garbage: a clear error.
/// let err = "2001:db8::1/56".parse::<Pool>().unwrap_err();
/// assert!(err.to_string().contains("host bits"));
/// assert!("2001:db8::/63".parse::<Pool>().is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Pool {
    net: Ipv6Net,
}

impl Pool {
    /// The shortest accepted prefix length.
    pub const MIN_LEN: u8 = 48;
    /// The longest accepted prefix length (a /62 holds two subnets).
    pub const MAX_LEN: u8 = 62;

    /// Checks a prefix and makes it a pool.
    ///
    /// ```
    /// use ipnet::Ipv6Net;
    /// use tunnelbroker_core::Pool;
    ///
    /// let net: Ipv6Net = "2001:db8:abcd::/48".parse().unwrap();
    /// assert_eq!(Pool::new(net)?.subnet_capacity(), 65534);
    /// let bad: Ipv6Net = "2001:db8::/64".parse().unwrap();
    /// assert!(Pool::new(bad).is_err());
    /// let link_local: Ipv6Net = "fe80::/48".parse().unwrap();
    /// assert!(Pool::new(link_local).unwrap_err().to_string().contains("2000::/3"));
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn new(net: Ipv6Net) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidPool {
            input: shown(&net.to_string()),
            reason,
        };
        let len = net.prefix_len();
        if len < Self::MIN_LEN {
            return Err(invalid(format!(
                "prefix length /{len} is too short; a pool is /{} to /{}",
                Self::MIN_LEN,
                Self::MAX_LEN
            )));
        }
        if len > Self::MAX_LEN {
            return Err(invalid(format!(
                "prefix length /{len} is too long; a pool is /{} to /{} (it needs a routing, a hermit and at least two subnet /64s)",
                Self::MIN_LEN,
                Self::MAX_LEN
            )));
        }
        if net.addr() != net.network() {
            return Err(invalid(format!(
                "host bits are set; did you mean {}?",
                net.trunc()
            )));
        }
        if !Self::is_routable(net.network()) {
            return Err(invalid(
                "a pool must be global unicast (2000::/3) or unique local (fc00::/7)".into(),
            ));
        }
        Ok(Pool { net })
    }

    /// Whether `addr` lies in 2000::/3 (global unicast, 2001:db8::/32
    /// included) or fc00::/7 (unique local): the only space a broker can
    /// route to its clients. Anything else (::/8 with `::1`, link-local
    /// fe80::/10, multicast ff00::/8) would make a server address that
    /// cannot work.
    fn is_routable(addr: Ipv6Addr) -> bool {
        let first = addr.segments()[0];
        first & 0xe000 == 0x2000 || first & 0xfe00 == 0xfc00
    }

    /// The pool as a prefix.
    pub fn net(&self) -> Ipv6Net {
        self.net
    }

    /// The pool's prefix length (48 to 62).
    pub fn prefix_len(&self) -> u8 {
        self.net.prefix_len()
    }

    /// How many /64 networks the pool has: `2^(64 - len)`.
    pub fn network_count(&self) -> u64 {
        1u64 << (64 - self.prefix_len())
    }

    fn base(&self) -> u128 {
        u128::from(self.net.network())
    }

    /// The /64 with number `n` (0 is routing, `N-1` hermit), if it exists.
    pub fn network(&self, n: u64) -> Option<Ipv6Net> {
        (n < self.network_count()).then(|| net64(self.base() | (u128::from(n) << 64)))
    }

    /// The number of the /64 that holds `addr`, if `addr` is in the pool.
    pub fn network_number(&self, addr: Ipv6Addr) -> Option<u64> {
        if !self.net.contains(&addr) {
            return None;
        }
        let bits = (u128::from(addr) ^ self.base()) >> 64;
        Some(bits as u64)
    }

    /// The routing /64 (number 0).
    pub fn routing_net(&self) -> Ipv6Net {
        net64(self.base())
    }

    /// The hermit /64 (number `N-1`).
    pub fn hermit_net(&self) -> Ipv6Net {
        net64(self.base() | (u128::from(self.network_count() - 1) << 64))
    }

    /// How many subnet /64s the pool holds (`N-2`).
    pub fn subnet_capacity(&self) -> u64 {
        self.network_count() - 2
    }

    /// The role of the /64 that holds `addr`, if it is in the pool.
    ///
    /// ```
    /// use tunnelbroker_core::Pool;
    /// use tunnelbroker_core::plan::Role;
    /// let pool: Pool = "2001:db8:0:f1fc::/62".parse()?;
    /// assert_eq!(pool.role_of("2001:db8:0:f1fc::1".parse().unwrap()), Some(Role::Routing));
    /// assert_eq!(pool.role_of("2001:db8:0:f1fe::1".parse().unwrap()), Some(Role::Subnet));
    /// assert_eq!(pool.role_of("2001:db8:0:f1ff::1".parse().unwrap()), Some(Role::Hermit));
    /// assert_eq!(pool.role_of("2001:db8:1::1".parse().unwrap()), None);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn role_of(&self, addr: Ipv6Addr) -> Option<Role> {
        let n = self.network_number(addr)?;
        Some(self.role_of_number(n))
    }

    fn role_of_number(&self, n: u64) -> Role {
        if n == 0 {
            Role::Routing
        } else if n == self.network_count() - 1 {
            Role::Hermit
        } else {
            Role::Subnet
        }
    }

    /// Whether `addr` lies in the pool.
    pub fn contains(&self, addr: Ipv6Addr) -> bool {
        self.net.contains(&addr)
    }

    /// Checks that the whole of `prefix` lies in a /64 of `expected` role and
    /// returns that /64's number.
    pub(crate) fn check_role(&self, prefix: Ipv6Net, expected: Role) -> Result<u64> {
        let n = match self.network_number(prefix.network()) {
            Some(n) if self.net.contains(&prefix) => n,
            _ => {
                return Err(Error::OutsidePool {
                    prefix,
                    pool: self.net(),
                });
            }
        };
        let found = self.role_of_number(n);
        if found != expected {
            return Err(Error::WrongRole {
                prefix,
                found,
                expected,
            });
        }
        Ok(n)
    }
}

fn net64(bits: u128) -> Ipv6Net {
    Ipv6Net::new_assert(Ipv6Addr::from(bits), 64)
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.net, f)
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pool({})", self.net)
    }
}

impl FromStr for Pool {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidPool {
            input: shown(s),
            reason: reason.into(),
        };
        let text = s.trim();
        if text.is_empty() {
            return Err(invalid(
                "empty; expected an IPv6 prefix such as 2001:db8:0:f100::/56",
            ));
        }
        match text.parse::<IpNet>() {
            Ok(IpNet::V6(net)) => Pool::new(net),
            Ok(IpNet::V4(_)) => Err(invalid(
                "an IPv4 prefix; the pool must be an IPv6 prefix such as 2001:db8:0:f100::/56",
            )),
            Err(_) => match text.parse::<IpAddr>() {
                Ok(_) => Err(invalid(
                    "no prefix length; write it as ADDRESS/LEN, for example 2001:db8:0:f100::/56",
                )),
                Err(_) => Err(invalid(
                    "not an IPv6 prefix; expected something like 2001:db8:0:f100::/56",
                )),
            },
        }
    }
}

impl TryFrom<String> for Pool {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Pool> for String {
    fn from(p: Pool) -> String {
        p.to_string()
    }
}

impl From<Pool> for Ipv6Net {
    fn from(p: Pool) -> Ipv6Net {
        p.net
    }
}

impl TryFrom<Ipv6Net> for Pool {
    type Error = Error;
    fn try_from(net: Ipv6Net) -> Result<Self> {
        Pool::new(net)
    }
}

/// Parses an IPv6 prefix (`ADDR/LEN`) or a bare IPv6 address (taken as a
/// /128), as an operator would type either. The prefix must have its host
/// bits zero.
///
/// ```
/// use tunnelbroker_core::plan::parse_prefix;
/// assert_eq!(parse_prefix("2001:db8::5")?.to_string(), "2001:db8::5/128");
/// assert_eq!(parse_prefix("2001:db8:0:f1ab::/64")?.prefix_len(), 64);
/// assert!(parse_prefix("2001:db8::1/64").is_err()); // host bits
/// assert!(parse_prefix("10.0.0.1").is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
pub fn parse_prefix(s: &str) -> Result<Ipv6Net> {
    let invalid = |reason: String| Error::InvalidPrefix {
        input: shown(s),
        reason,
    };
    let text = s.trim();
    if let Ok(addr) = text.parse::<Ipv6Addr>() {
        return Ok(Ipv6Net::from(addr));
    }
    match text.parse::<IpNet>() {
        Ok(IpNet::V6(net)) if net.addr() == net.network() => Ok(net),
        Ok(IpNet::V6(net)) => Err(invalid(format!(
            "host bits are set; did you mean {}?",
            net.trunc()
        ))),
        Ok(IpNet::V4(_)) => Err(invalid("an IPv4 prefix; expected IPv6".into())),
        Err(_) if text.parse::<IpAddr>().is_ok() => {
            Err(invalid("an IPv4 address; expected IPv6".into()))
        }
        Err(_) => Err(invalid(
            "not an IPv6 address or prefix; expected e.g. 2001:db8:0:f1ab::/64".into(),
        )),
    }
}
