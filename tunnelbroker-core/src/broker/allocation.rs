//! Allocation inside a write transaction: the assignments and ports in
//! use (saved as runs, rebuilt from the rows when stale) and the
//! reservation of a new client's.

use std::collections::{HashMap, HashSet};

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

use super::{Broker, NewClient, ServerMode};
use crate::client_id::ClientId;
use crate::error::{Error, Result};
use crate::plan::{Allocator, Assignment, Pool, RangeSet};
use crate::store::{Allocation, Transaction};

/// What a write transaction knows about the assignments and ports in use.
///
/// It starts from the saved runs (the `plan_state` of the database, which
/// every change rewrites), so a subscription costs the same with ten clients
/// or a million; without a saved state, or with one that does not match the
/// client rows, it is rebuilt from the rows. IDs and owners are looked up by
/// index, plus those reserved earlier in the same transaction (an import).
pub(super) struct Taken {
    pub(super) plan: Allocator,
    pub(super) ports: RangeSet,
    /// Read from the saved state: what it calls free is checked against the
    /// rows before it is handed out, and a mismatch rebuilds it.
    saved: bool,
    /// Assignments reserved in this transaction, by prefix.
    new_owners: HashMap<Ipv6Net, ClientId>,
    /// IDs reserved in this transaction.
    new_ids: HashSet<ClientId>,
}

/// The saved allocation state: runs of taken assignments and ports.
#[derive(Serialize, Deserialize)]
struct SavedPlan {
    plan: Allocator,
    ports: Vec<(u16, u16)>,
}

impl Taken {
    /// The saved state if there is one that fits, else a rebuild from rows.
    pub(super) fn load(tx: &mut dyn Transaction, pool: Pool) -> Result<Taken> {
        let mut taken = Taken {
            plan: Allocator::new(pool),
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
        if saved.plan.pool() != self.plan.pool() {
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
        let counts = saved.plan.counts();
        if counts.subnets_used + counts.hermits_used != tx.client_count()? {
            return Ok(false);
        }
        self.plan = saved.plan;
        self.ports = ports;
        self.saved = true;
        Ok(true)
    }

    /// Reads every client row (including those written earlier in this
    /// transaction).
    fn rebuild(&mut self, tx: &mut dyn Transaction) -> Result<()> {
        self.plan = Allocator::new(self.plan.pool());
        self.ports = RangeSet::default();
        self.saved = false;
        for Allocation { assignment, port } in tx.allocations()? {
            self.plan.insert(&assignment)?;
            if let Some(p) = port {
                self.ports.insert(u64::from(p));
            }
        }
        Ok(())
    }

    /// Forgets this transaction's reservations and rebuilds from the rows
    /// (nothing of them must have been written).
    fn start_over(&mut self, tx: &mut dyn Transaction) -> Result<()> {
        self.new_owners.clear();
        self.new_ids.clear();
        self.rebuild(tx)
    }

    pub(super) fn save(&self, tx: &mut dyn Transaction) -> Result<()> {
        let saved = SavedPlan {
            plan: self.plan.clone(),
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
}

/// A client whose assignment and port are reserved.
pub(super) struct Reserved<'a> {
    pub(super) req: &'a NewClient,
    pub(super) assignment: Assignment,
    pub(super) port: Option<u16>,
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
        let assignment = match req.prefix {
            Some(p) => match taken.plan.request(req.kind, p) {
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
            None => taken.plan.allocate(req.kind)?,
        };
        // What the saved state calls free must be free in the rows too.
        if check && taken.saved && tx.prefix_owner(assignment.prefix())?.is_some() {
            return Ok(None);
        }
        let port = match self.settings.mode {
            ServerMode::Shared => None,
            ServerMode::PerClient => {
                let first = self.settings.port;
                let p = taken
                    .ports
                    .first_free(u64::from(first), u64::from(u16::MAX))
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or(Error::PortsExhausted { first })?;
                if check && taken.saved && tx.port_owner(p)?.is_some() {
                    return Ok(None);
                }
                taken.ports.insert(u64::from(p));
                Some(p)
            }
        };
        Ok(Some(Reserved {
            req,
            assignment,
            port,
        }))
    }
}
