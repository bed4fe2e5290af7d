use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

use super::assignment::{Assignment, ClientKind, Hermit, Subnet};
use super::pool::{Pool, Role};
use super::ranges::RangeSet;
use crate::error::{Error, Result};

/// Hands out assignments from a [`Pool`]: the lowest free hermit address or
/// subnet, or a specific one on request.
///
/// Memory grows with the number of runs of consecutive assignments, not with
/// the size of the pool: a /48 with all 65,534 subnets taken, or a million
/// hermits handed out in order, each cost a single entry. Every operation is
/// `O(log runs)`.
///
/// ```
/// use tunnelbroker_core::{ClientKind, Pool};
/// use tunnelbroker_core::plan::Allocator;
///
/// let mut plan = Allocator::new("2001:db8:0:f100::/56".parse()?);
/// let alice = plan.allocate(ClientKind::Subnet)?;
/// let bob = plan.allocate(ClientKind::Hermit)?;
/// assert_eq!(alice.to_string(), "2001:db8:0:f101::/64");
/// assert_eq!(bob.to_string(), "2001:db8:0:f1ff::1/128");
///
/// // Who owns an address?
/// let owner = plan.lookup("2001:db8:0:f101::abcd".parse().unwrap());
/// assert_eq!(owner, Some(alice));
///
/// // A taken prefix is refused; release frees it.
/// let want = "2001:db8:0:f101::/64".parse().unwrap();
/// assert!(plan.request(ClientKind::Subnet, want).is_err());
/// plan.release(&alice)?;
/// assert_eq!(plan.request(ClientKind::Subnet, want)?, alice);
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "AllocatorRepr", into = "AllocatorRepr")]
pub struct Allocator {
    pool: Pool,
    /// Numbers of the assigned subnet /64s.
    subnets: RangeSet,
    /// Interface identifiers of the assigned hermit addresses.
    hermits: RangeSet,
}

/// How many assignments of each kind are used and free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Subnet /64s assigned.
    pub subnets_used: u64,
    /// Subnet /64s free.
    pub subnets_free: u64,
    /// Hermit addresses assigned.
    pub hermits_used: u64,
    /// Hermit addresses free.
    pub hermits_free: u64,
}

impl Allocator {
    /// An allocator with nothing assigned.
    pub fn new(pool: Pool) -> Self {
        Allocator {
            pool,
            subnets: RangeSet::default(),
            hermits: RangeSet::default(),
        }
    }

    /// The pool it allocates from.
    pub fn pool(&self) -> Pool {
        self.pool
    }

    /// Takes the lowest free assignment of `kind`.
    ///
    /// ```
    /// use tunnelbroker_core::{ClientKind, ErrorKind};
    /// use tunnelbroker_core::plan::Allocator;
    /// let mut plan = Allocator::new("2001:db8:0:f1fc::/62".parse()?);
    /// plan.allocate(ClientKind::Subnet)?;
    /// plan.allocate(ClientKind::Subnet)?;
    /// let err = plan.allocate(ClientKind::Subnet).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Exhausted);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn allocate(&mut self, kind: ClientKind) -> Result<Assignment> {
        let exhausted = || Error::PoolExhausted {
            pool: self.pool.net(),
            kind,
            capacity: match kind {
                ClientKind::Subnet => self.pool.subnet_capacity(),
                ClientKind::Hermit => self.pool.hermit_capacity(),
            },
        };
        match kind {
            ClientKind::Subnet => {
                let n = self
                    .subnets
                    .first_free(1, self.pool.network_count() - 2)
                    .ok_or_else(exhausted)?;
                self.subnets.insert(n);
                Ok(Assignment::Subnet(Subnet::new_unchecked(&self.pool, n)))
            }
            ClientKind::Hermit => {
                let iid = Hermit::USABLE
                    .iter()
                    .find_map(|&(lo, hi)| self.hermits.first_free(lo, hi))
                    .ok_or_else(exhausted)?;
                self.hermits.insert(iid);
                Hermit::from_interface_id(&self.pool, iid).map(Assignment::Hermit)
            }
        }
    }

    /// Takes a specific assignment: a /128 (or address) of the hermit /64 for
    /// a hermit, a subnet /64 for a subnet. Refuses prefixes outside the
    /// pool, in the wrong role, reserved, or taken.
    ///
    /// ```
    /// use tunnelbroker_core::{ClientKind, ErrorKind};
    /// use tunnelbroker_core::plan::Allocator;
    /// let mut plan = Allocator::new("2001:db8:0:f100::/56".parse()?);
    /// let p = "2001:db8:0:f1ab::/64".parse().unwrap();
    /// plan.request(ClientKind::Subnet, p)?;
    /// assert_eq!(plan.request(ClientKind::Subnet, p).unwrap_err().kind(), ErrorKind::AlreadyExists);
    /// let routing = "2001:db8:0:f100::/64".parse().unwrap();
    /// assert_eq!(plan.request(ClientKind::Subnet, routing).unwrap_err().kind(), ErrorKind::InvalidInput);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn request(&mut self, kind: ClientKind, prefix: Ipv6Net) -> Result<Assignment> {
        let a = Assignment::in_pool(&self.pool, kind, prefix)?;
        self.insert(&a)?;
        Ok(a)
    }

    /// Marks an assignment (for example one read back from the client
    /// database) as live. Refuses one that belongs to another pool or is
    /// live already.
    pub fn insert(&mut self, a: &Assignment) -> Result<()> {
        let (set, key) = self.slot(a)?;
        if !set.insert(key) {
            return Err(Error::AlreadyAssigned {
                prefix: a.prefix(),
                owner: None,
            });
        }
        Ok(())
    }

    /// Frees a live assignment.
    ///
    /// ```
    /// use tunnelbroker_core::{ClientKind, ErrorKind};
    /// use tunnelbroker_core::plan::Allocator;
    /// let mut plan = Allocator::new("2001:db8:0:f100::/56".parse()?);
    /// let a = plan.allocate(ClientKind::Hermit)?;
    /// plan.release(&a)?;
    /// assert_eq!(plan.release(&a).unwrap_err().kind(), ErrorKind::NotFound);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn release(&mut self, a: &Assignment) -> Result<()> {
        let (set, key) = self.slot(a)?;
        if !set.remove(key) {
            return Err(Error::NotAssigned { prefix: a.prefix() });
        }
        Ok(())
    }

    /// Whether `a` is live.
    pub fn is_assigned(&self, a: &Assignment) -> bool {
        match self.key(a) {
            Ok((ClientKind::Subnet, k)) => self.subnets.contains(k),
            Ok((ClientKind::Hermit, k)) => self.hermits.contains(k),
            Err(_) => false,
        }
    }

    fn key(&self, a: &Assignment) -> Result<(ClientKind, u64)> {
        // Re-derive through the pool so that an assignment of another pool
        // is refused rather than silently mapped.
        match a {
            Assignment::Subnet(s) => {
                let n = self.pool.check_role(s.prefix(), Role::Subnet)?;
                if Subnet::new_unchecked(&self.pool, n) != *s {
                    return Err(Error::OutsidePool {
                        prefix: s.routing_net(),
                        pool: self.pool.net(),
                    });
                }
                Ok((ClientKind::Subnet, n))
            }
            Assignment::Hermit(h) => {
                self.pool.check_role(h.prefix(), Role::Hermit)?;
                Ok((ClientKind::Hermit, h.interface_id()))
            }
        }
    }

    fn slot(&mut self, a: &Assignment) -> Result<(&mut RangeSet, u64)> {
        Ok(match self.key(a)? {
            (ClientKind::Subnet, k) => (&mut self.subnets, k),
            (ClientKind::Hermit, k) => (&mut self.hermits, k),
        })
    }

    /// The live assignment that owns `addr`: the hermit with that address, the
    /// subnet whose /64 holds it, or the subnet whose routing /112 holds it.
    pub fn lookup(&self, addr: Ipv6Addr) -> Option<Assignment> {
        let n = self.pool.network_number(addr)?;
        match self.pool.role_of(addr)? {
            Role::Hermit => {
                let iid = u128::from(addr) as u64;
                self.hermits
                    .contains(iid)
                    .then(|| Hermit::from_interface_id(&self.pool, iid).ok())
                    .flatten()
                    .map(Assignment::Hermit)
            }
            Role::Subnet => self
                .subnets
                .contains(n)
                .then(|| Assignment::Subnet(Subnet::new_unchecked(&self.pool, n))),
            Role::Routing => {
                let seg = addr.segments();
                if seg[4] != 0 || seg[5] != 0 {
                    return None;
                }
                let tag = u64::from(seg[6]);
                let first = u64::from(self.pool.first_subnet().tag());
                let last = u64::from(self.pool.last_subnet().tag());
                if !(first..=last).contains(&tag) {
                    return None;
                }
                let n = tag - (first - 1);
                self.subnets
                    .contains(n)
                    .then(|| Assignment::Subnet(Subnet::new_unchecked(&self.pool, n)))
            }
        }
    }

    /// Used and free counts.
    pub fn counts(&self) -> Counts {
        Counts {
            subnets_used: self.subnets.len(),
            subnets_free: self.pool.subnet_capacity() - self.subnets.len(),
            hermits_used: self.hermits.len(),
            hermits_free: self.pool.hermit_capacity() - self.hermits.len(),
        }
    }

    /// Live assignments in address order (subnets, then hermits).
    pub fn iter(&self) -> impl Iterator<Item = Assignment> + '_ {
        let pool = self.pool;
        let subnets = self
            .subnets
            .iter()
            .map(move |n| Assignment::Subnet(Subnet::new_unchecked(&pool, n)));
        let hermits = self.hermits.iter().filter_map(move |iid| {
            Hermit::from_interface_id(&pool, iid)
                .ok()
                .map(Assignment::Hermit)
        });
        subnets.chain(hermits)
    }
}

/// The saved form: the pool and the runs of assignments, as text.
#[derive(Serialize, Deserialize)]
struct AllocatorRepr {
    pool: Pool,
    subnets: Vec<Run<Ipv6Net>>,
    hermits: Vec<Run<Ipv6Addr>>,
}

#[derive(Serialize, Deserialize)]
struct Run<T> {
    first: T,
    last: T,
}

impl From<Allocator> for AllocatorRepr {
    fn from(a: Allocator) -> Self {
        let pool = a.pool;
        AllocatorRepr {
            pool,
            subnets: a
                .subnets
                .runs()
                .map(|(s, e)| Run {
                    first: Subnet::new_unchecked(&pool, s).prefix(),
                    last: Subnet::new_unchecked(&pool, e).prefix(),
                })
                .collect(),
            hermits: a
                .hermits
                .runs()
                .map(|(s, e)| {
                    let base = u128::from(pool.hermit_net().network());
                    Run {
                        first: Ipv6Addr::from(base | u128::from(s)),
                        last: Ipv6Addr::from(base | u128::from(e)),
                    }
                })
                .collect(),
        }
    }
}

impl TryFrom<AllocatorRepr> for Allocator {
    type Error = Error;
    fn try_from(r: AllocatorRepr) -> Result<Self> {
        let mut a = Allocator::new(r.pool);
        for run in r.subnets {
            let s = a.pool.subnet(run.first)?;
            let e = a.pool.subnet(run.last)?;
            if s.prefix() > e.prefix() {
                return Err(backwards(&run.first, &run.last));
            }
            let s = a.pool.check_role(s.prefix(), Role::Subnet)?;
            let e = a.pool.check_role(e.prefix(), Role::Subnet)?;
            for n in s..=e {
                a.insert(&Assignment::Subnet(a.pool.subnet_by_number(n)?))?;
            }
        }
        for run in r.hermits {
            let s = a.pool.hermit(run.first)?.interface_id();
            let e = a.pool.hermit(run.last)?.interface_id();
            if s > e {
                return Err(backwards(&run.first, &run.last));
            }
            // Runs may be huge (a million hermits is one run): insert the
            // run's ends and merge, refusing any overlap with what is there.
            if !a.hermits.is_free(s, e) {
                return Err(Error::AlreadyAssigned {
                    prefix: Ipv6Net::from(run.first),
                    owner: None,
                });
            }
            for (lo, hi) in Hermit::USABLE {
                if s <= hi && lo <= e && (s < lo || e > hi) {
                    return Err(Error::Reserved {
                        address: run.last,
                        why: "a run of hermits spans reserved addresses",
                    });
                }
            }
            a.hermits.insert_run(s, e);
        }
        Ok(a)
    }
}

fn backwards(first: &dyn std::fmt::Display, last: &dyn std::fmt::Display) -> Error {
    Error::InvalidPrefix {
        input: crate::error::shown(&format!("{first} .. {last}")),
        reason: "a run of assignments must go from the lower to the higher".into(),
    }
}

impl From<&Allocator> for Counts {
    fn from(a: &Allocator) -> Self {
        a.counts()
    }
}
