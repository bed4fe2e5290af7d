//! A pool's members: its subnets and hermits, as [`Subnet`] and [`Hermit`]
//! values. Apart from `pool.rs` so that the pool knows nothing of
//! assignments (`assignment.rs` builds on `pool.rs`, this file on both).

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use super::assignment::{Hermit, Subnet};
use super::pool::{Pool, Role};
use crate::error::{Error, Result, shown};

impl Pool {
    /// How many hermit /128s the pool holds: the hermit /64 less its reserved
    /// addresses (see [`Hermit`]).
    pub fn hermit_capacity(&self) -> u64 {
        u64::MAX - Hermit::RESERVED_COUNT + 1
    }

    /// The subnet with number `n` (1 to `N-2`).
    ///
    /// ```
    /// use tunnelbroker_core::Pool;
    /// let pool: Pool = "2001:db8:0:f100::/56".parse()?;
    /// assert_eq!(pool.subnet_by_number(0xab)?.to_string(), "2001:db8:0:f1ab::/64");
    /// assert!(pool.subnet_by_number(0).is_err()); // the routing /64
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn subnet_by_number(&self, n: u64) -> Result<Subnet> {
        match self.network(n) {
            Some(net) => self.subnet(net),
            None => Err(Error::InvalidPrefix {
                input: n.to_string(),
                reason: format!(
                    "pool {self} has subnet numbers 1 to {} only",
                    self.subnet_capacity()
                ),
            }),
        }
    }

    /// The first subnet /64 (number 1).
    pub fn first_subnet(&self) -> Subnet {
        Subnet::new_unchecked(self, 1)
    }

    /// The last subnet /64 (number `N-2`).
    pub fn last_subnet(&self) -> Subnet {
        Subnet::new_unchecked(self, self.network_count() - 2)
    }

    /// All subnet /64s in address order.
    pub fn subnets(&self) -> impl Iterator<Item = Subnet> + '_ {
        (1..self.network_count() - 1).map(|n| Subnet::new_unchecked(self, n))
    }

    /// The subnet for a /64 of this pool; refuses prefixes of another length,
    /// outside the pool or in another role.
    ///
    /// ```
    /// use tunnelbroker_core::Pool;
    /// let pool: Pool = "2001:638:500:f100::/56".parse()?;
    /// let s = pool.subnet("2001:638:500:f1ab::/64".parse().unwrap())?;
    /// assert_eq!(s.server_end().to_string(), "2001:638:500:f100::f1ab:1");
    /// assert!(pool.subnet("2001:638:500:f1ff::/64".parse().unwrap()).is_err()); // hermit /64
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn subnet(&self, prefix: Ipv6Net) -> Result<Subnet> {
        if prefix.prefix_len() != 64 || prefix.addr() != prefix.network() {
            return Err(Error::InvalidPrefix {
                input: shown(&prefix.to_string()),
                reason: "a subnet is a /64 with host bits zero".into(),
            });
        }
        let n = self.check_role(prefix, Role::Subnet)?;
        Ok(Subnet::new_unchecked(self, n))
    }

    /// The hermit for an address of the hermit /64; refuses addresses outside
    /// the pool, in another role, or reserved.
    ///
    /// ```
    /// use tunnelbroker_core::Pool;
    /// let pool: Pool = "2001:db8:0:f100::/56".parse()?;
    /// assert!(pool.hermit("2001:db8:0:f1ff::5".parse().unwrap()).is_ok());
    /// assert!(pool.hermit("2001:db8:0:f1ff::".parse().unwrap()).is_err()); // anycast
    /// assert!(pool.hermit("2001:db8:0:f1ab::5".parse().unwrap()).is_err()); // a subnet /64
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn hermit(&self, address: Ipv6Addr) -> Result<Hermit> {
        self.check_role(Ipv6Net::from(address), Role::Hermit)?;
        Hermit::from_interface_id(self, u128::from(address) as u64)
    }
}
