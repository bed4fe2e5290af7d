//! Allocation inside a write transaction: the assignments and ports in
//! use (saved as runs, rebuilt from the rows when stale) and the
//! reservation of a new client's.

use std::collections::{BTreeMap, HashMap, HashSet};

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

use super::{Broker, NewClient, ServerMode};
use crate::client_id::ClientId;
use crate::error::{Error, Result};
use crate::plan::{Allocator, Assignment, ClientKind, RangeSet};
use crate::store::MAIN_SERVER;
use crate::store::{Allocation, ServerRecord, Transaction};

/// What a write transaction knows about the assignments and ports in use.
///
/// It starts from the saved runs (the `plan_state` of the database, which
/// every change rewrites), so a subscription costs the same with ten clients
/// or a million; without a saved state, or with one that does not match the
/// client rows, it is rebuilt from the rows. IDs and owners are looked up by
/// index, plus those reserved earlier in the same transaction (an import).
pub(super) struct Taken {
    /// The plan of each server's pool, by server name.
    plans: BTreeMap<String, Allocator>,
    /// The servers (name order).
    servers: Vec<ServerRecord>,
    /// The ports of every server's clients: ports are unique in the broker,
    /// so per-client servers that share a host never collide.
    pub(super) ports: RangeSet,
    /// Read from the saved state: what it calls free is checked against the
    /// rows before it is handed out, and a mismatch rebuilds it.
    saved: bool,
    /// Assignments reserved in this transaction, by prefix.
    new_owners: HashMap<Ipv6Net, ClientId>,
    /// IDs reserved in this transaction.
    new_ids: HashSet<ClientId>,
}

/// The saved allocation state: runs of taken assignments (per server) and
/// ports. A state saved before servers existed (`plan`, one pool) does not
/// parse as this: the next writer rebuilds it from the rows.
#[derive(Serialize, Deserialize)]
struct SavedPlan {
    plans: BTreeMap<String, Allocator>,
    ports: Vec<(u16, u16)>,
}

impl Taken {
    /// The saved state if there is one that fits `servers`, else a rebuild
    /// from rows.
    pub(super) fn load(tx: &mut dyn Transaction, servers: Vec<ServerRecord>) -> Result<Taken> {
        let mut taken = Taken {
            plans: fresh_plans(&servers),
            servers,
            ports: RangeSet::default(),
            saved: false,
            new_owners: HashMap::new(),
            new_ids: HashSet::new(),
        };
        if !taken.load_saved(tx)? {
            taken.rebuild(tx)?;
        }
        Ok(taken)
    }

    fn load_saved(&mut self, tx: &mut dyn Transaction) -> Result<bool> {
        let Some(text) = tx.plan_state()? else {
            return Ok(false);
        };
        let Ok(saved) = serde_json::from_str::<SavedPlan>(&text) else {
            return Ok(false);
        };
        let fits = saved.plans.len() == self.servers.len()
            && self
                .servers
                .iter()
                .all(|s| saved.plans.get(&s.name).map(Allocator::pool) == Some(s.pool));
        if !fits {
            return Ok(false);
        }
        let mut ports = RangeSet::default();
        for (s, e) in saved.ports {
            let (s, e) = (u64::from(s), u64::from(e));
            if s > e || !ports.is_free(s, e) {
                return Ok(false);
            }
            ports.insert_run(s, e);
        }
        let used: u64 = saved
            .plans
            .values()
            .map(|p| {
                let c = p.counts();
                c.subnets_used + c.hermits_used
            })
            .sum();
        if used != tx.client_count()? {
            return Ok(false);
        }
        self.plans = saved.plans;
        self.ports = ports;
        self.saved = true;
        Ok(true)
    }

    /// Reads every client row (including those written earlier in this
    /// transaction).
    fn rebuild(&mut self, tx: &mut dyn Transaction) -> Result<()> {
        self.plans = fresh_plans(&self.servers);
        self.ports = RangeSet::default();
        self.saved = false;
        for Allocation { assignment, port } in tx.allocations()? {
            let prefix = assignment.prefix();
            let plan = self
                .plans
                .values_mut()
                .find(|p| p.pool().net().contains(&prefix))
                .ok_or_else(|| Error::Database {
                    reason: format!("the assignment {prefix} lies in no server's pool"),
                })?;
            plan.insert(&assignment)?;
            if let Some(p) = port {
                self.ports.insert(u64::from(p));
            }
        }
        Ok(())
    }

    /// Forgets this transaction's reservations and rebuilds from the rows
    /// (nothing of them must have been written).
    pub(super) fn start_over(&mut self, tx: &mut dyn Transaction) -> Result<()> {
        self.new_owners.clear();
        self.new_ids.clear();
        self.rebuild(tx)
    }

    pub(super) fn save(&self, tx: &mut dyn Transaction) -> Result<()> {
        let saved = SavedPlan {
            plans: self.plans.clone(),
            ports: self
                .ports
                .runs()
                .filter_map(|(s, e)| Some((u16::try_from(s).ok()?, u16::try_from(e).ok()?)))
                .collect(),
        };
        let text = serde_json::to_string(&saved).map_err(|e| Error::Database {
            reason: format!("cannot save the allocation state: {e}"),
        })?;
        tx.set_plan_state(Some(&text))
    }

    /// The servers.
    pub(super) fn servers(&self) -> &[ServerRecord] {
        &self.servers
    }

    /// The server named `name`.
    pub(super) fn server(&self, name: &str) -> Result<&ServerRecord> {
        self.servers
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::UnknownServer {
                name: crate::error::shown(name),
            })
    }

    /// The plan of server `name`.
    pub(super) fn plan(&mut self, name: &str) -> Result<&mut Allocator> {
        self.plans
            .get_mut(name)
            .ok_or_else(|| Error::UnknownServer {
                name: crate::error::shown(name),
            })
    }

    /// How many assignments of `kind` server `name` has free.
    pub(super) fn free(&self, name: &str, kind: ClientKind) -> u64 {
        self.plans.get(name).map_or(0, |p| {
            let c = p.counts();
            match kind {
                ClientKind::Subnet => c.subnets_free,
                ClientKind::Hermit => c.hermits_free,
            }
        })
    }

    /// How many clients server `name` has.
    pub(super) fn used(&self, name: &str) -> u64 {
        self.plans.get(name).map_or(0, |p| {
            let c = p.counts();
            c.subnets_used + c.hermits_used
        })
    }

    /// Releases a client's assignment and port; false when the state did
    /// not hold them (it must then be rebuilt).
    pub(super) fn release(&mut self, server: &str, a: &Assignment, port: Option<u16>) -> bool {
        let released = self
            .plans
            .get_mut(server)
            .is_some_and(|p| p.release(a).is_ok());
        released && port.is_none_or(|p| self.ports.remove(u64::from(p)))
    }

    /// The server a request goes to: the one it names; else the one whose
    /// pool holds the prefix it asks for; else the only one; else the one
    /// with the most free assignments of its kind (of those with as many,
    /// main, else the first by name).
    pub(super) fn choose(&self, req: &NewClient) -> Result<String> {
        if let Some(name) = &req.server {
            return Ok(self.server(name)?.name.clone());
        }
        if let Some(p) = req.prefix
            && let Some(s) = self
                .servers
                .iter()
                .find(|s| s.pool.net().contains(&p.addr()))
        {
            return Ok(s.name.clone());
        }
        let mut best: Option<(&ServerRecord, u64)> = None;
        // Main first: a tie goes to it, then to the first by name.
        let main_first = self
            .servers
            .iter()
            .filter(|s| s.name == MAIN_SERVER)
            .chain(self.servers.iter().filter(|s| s.name != MAIN_SERVER));
        for s in main_first {
            let free = self.free(&s.name, req.kind);
            if best.is_none_or(|(_, f)| free > f) {
                best = Some((s, free));
            }
        }
        best.map(|(s, _)| s.name.clone())
            .ok_or_else(|| Error::UnknownServer {
                name: MAIN_SERVER.into(),
            })
    }
}

/// An empty plan for each server.
fn fresh_plans(servers: &[ServerRecord]) -> BTreeMap<String, Allocator> {
    servers
        .iter()
        .map(|s| (s.name.clone(), Allocator::new(s.pool)))
        .collect()
}

/// A client whose assignment and port are reserved.
pub(super) struct Reserved<'a> {
    pub(super) req: &'a NewClient,
    pub(super) server: String,
    pub(super) assignment: Assignment,
    pub(super) port: Option<u16>,
}

impl Taken {
    /// The lowest free port from server `name`'s first port, for a client
    /// of a per-client server (`None` for a shared one). Ports are unique
    /// in the broker; a port of a shared server on the same host is skipped
    /// too.
    pub(super) fn per_client_port(&self, name: &str) -> Result<Option<u16>> {
        let server = self.server(name)?;
        if server.mode == ServerMode::Shared {
            return Ok(None);
        }
        let first = server.port;
        let shared: Vec<u64> = self
            .servers
            .iter()
            .filter(|s| s.mode == ServerMode::Shared && s.endpoint == server.endpoint)
            .map(|s| u64::from(s.port))
            .collect();
        let mut from = u64::from(first);
        loop {
            let p = self
                .ports
                .first_free(from, u64::from(u16::MAX))
                .ok_or(Error::PortsExhausted { first })?;
            if !shared.contains(&p) {
                return u16::try_from(p)
                    .map(Some)
                    .map_err(|_| Error::PortsExhausted { first });
            }
            from = p + 1;
        }
    }
}

impl Broker {
    /// Reserves an assignment and a port for `req` in `taken`.
    pub(super) fn reserve<'a>(
        &self,
        tx: &mut dyn Transaction,
        taken: &mut Taken,
        req: &'a NewClient,
    ) -> Result<Reserved<'a>> {
        if taken.new_ids.contains(&req.id) || tx.has_client(&req.id)? {
            return Err(Error::ClientExists {
                id: req.id.to_string(),
            });
        }
        loop {
            if let Some(r) = self.try_reserve(tx, taken, req)? {
                taken
                    .new_owners
                    .insert(r.assignment.prefix(), req.id.clone());
                taken.new_ids.insert(req.id.clone());
                return Ok(r);
            }
            // The saved state and the rows disagree: trust the rows.
            taken.rebuild(tx)?;
        }
    }

    /// Reserves for each of `reqs` (an import's batch), as
    /// [`reserve`](Self::reserve) would one after the other, in a few
    /// queries instead of up to three per request: the IDs are looked up
    /// together, and what the saved state called free is checked against the
    /// rows together at the end; a mismatch rebuilds the state from the rows
    /// and starts over. Nothing may be written in `tx` between this and
    /// recording the reservations.
    pub(super) fn reserve_batch<'a>(
        &self,
        tx: &mut dyn Transaction,
        taken: &mut Taken,
        reqs: &[&'a NewClient],
    ) -> Result<Vec<Result<Reserved<'a>>>> {
        let ids: Vec<ClientId> = reqs.iter().map(|r| r.id.clone()).collect();
        let existing = tx.existing_ids(&ids)?;
        'attempt: loop {
            let deferred = taken.saved;
            let mut out = Vec::with_capacity(reqs.len());
            for req in reqs {
                if taken.new_ids.contains(&req.id) || existing.contains(&req.id) {
                    out.push(Err(Error::ClientExists {
                        id: req.id.to_string(),
                    }));
                    continue;
                }
                match self.try_reserve_checked(tx, taken, req, !deferred) {
                    Ok(Some(r)) => {
                        taken
                            .new_owners
                            .insert(r.assignment.prefix(), req.id.clone());
                        taken.new_ids.insert(req.id.clone());
                        out.push(Ok(r));
                    }
                    // The saved state and the rows disagree: trust the rows.
                    Ok(None) => {
                        taken.start_over(tx)?;
                        continue 'attempt;
                    }
                    Err(e) => out.push(Err(e)),
                }
            }
            if deferred {
                let prefixes: Vec<Ipv6Net> = out
                    .iter()
                    .flatten()
                    .map(|r| r.assignment.prefix())
                    .collect();
                let ports: Vec<u16> = out.iter().flatten().filter_map(|r| r.port).collect();
                if tx.holds_any(&prefixes, &ports)? {
                    taken.start_over(tx)?;
                    continue 'attempt;
                }
            }
            return Ok(out);
        }
    }

    /// One try of [`reserve`](Self::reserve); `None` when the saved state
    /// turned out stale.
    fn try_reserve<'a>(
        &self,
        tx: &mut dyn Transaction,
        taken: &mut Taken,
        req: &'a NewClient,
    ) -> Result<Option<Reserved<'a>>> {
        self.try_reserve_checked(tx, taken, req, true)
    }

    /// [`try_reserve`](Self::try_reserve); with `check` false, what the
    /// saved state calls free is not looked up in the rows (the caller
    /// checks it).
    fn try_reserve_checked<'a>(
        &self,
        tx: &mut dyn Transaction,
        taken: &mut Taken,
        req: &'a NewClient,
        check: bool,
    ) -> Result<Option<Reserved<'a>>> {
        let server = taken.choose(req)?;
        let assignment = match req.prefix {
            Some(p) => match taken.plan(&server)?.request(req.kind, p) {
                Err(Error::AlreadyAssigned { prefix, .. }) => {
                    let owner = match taken.new_owners.get(&prefix) {
                        Some(id) => Some(id.clone()),
                        None => tx.prefix_owner(prefix)?,
                    };
                    if owner.is_none() && taken.saved {
                        return Ok(None);
                    }
                    return Err(Error::AlreadyAssigned {
                        prefix,
                        owner: owner.map(|id| id.to_string()),
                    });
                }
                other => other?,
            },
            None => taken.plan(&server)?.allocate(req.kind)?,
        };
        // What the saved state calls free must be free in the rows too.
        if check && taken.saved && tx.prefix_owner(assignment.prefix())?.is_some() {
            return Ok(None);
        }
        let port = match taken.per_client_port(&server)? {
            None => None,
            Some(p) => {
                if check && taken.saved && tx.port_owner(p)?.is_some() {
                    return Ok(None);
                }
                taken.ports.insert(u64::from(p));
                Some(p)
            }
        };
        Ok(Some(Reserved {
            req,
            server,
            assignment,
            port,
        }))
    }
}
