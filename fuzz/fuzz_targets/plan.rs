//! Fuzzes the address plan with the same bytes two ways:
//!
//! 1. as text: a pool, a prefix, a saved allocator or assignment. Nothing may
//!    panic; whatever parses must print back to text that parses to the same
//!    value, and every error is one line.
//! 2. as a sequence of operations (allocate, request, release) on a pool of
//!    length 48 to 62 chosen by the first bytes; after each step and at the
//!    end the invariants of DESIGN.md §2 must hold.
#![no_main]

use std::net::Ipv6Addr;

use libfuzzer_sys::fuzz_target;
use tunnelbroker_core::plan::{Allocator, parse_prefix};
use tunnelbroker_core::{Assignment, ClientKind, Ipv6Net, Pool};
use tunnelbroker_fuzz::{check_error, checked};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        as_text(text);
    }
    as_operations(data);
});

fn as_text(text: &str) {
    if let Some(pool) = checked("pool", text.parse::<Pool>()) {
        let again: Pool = pool.to_string().parse().expect("Display of a pool parses");
        assert_eq!(again, pool);
        assert!((48..=62).contains(&pool.prefix_len()));
        assert_eq!(pool.net(), pool.net().trunc(), "host bits set in {pool}");
    }
    if let Some(prefix) = checked("prefix", parse_prefix(text)) {
        assert_eq!(parse_prefix(&prefix.to_string()).ok(), Some(prefix));
    }
    checked("client kind", text.parse::<ClientKind>());
    if let Ok(plan) = serde_json::from_str::<Allocator>(text) {
        let json = serde_json::to_string(&plan).expect("serialise");
        let back: Allocator = serde_json::from_str(&json).expect("read back");
        assert_eq!(back, plan);
        let c = plan.counts();
        assert_eq!(
            c.subnets_used + c.subnets_free,
            plan.pool().subnet_capacity()
        );
        assert_eq!(
            c.hermits_used + c.hermits_free,
            plan.pool().hermit_capacity()
        );
    }
    if let Ok(a) = serde_json::from_str::<Assignment>(text) {
        let json = serde_json::to_string(&a).expect("serialise");
        assert_eq!(serde_json::from_str::<Assignment>(&json).ok(), Some(a));
    }
}

/// Reads the bytes one at a time, zeros when they run out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u64(&mut self, n: usize) -> u64 {
        (0..n).fold(0, |acc, _| (acc << 8) | u64::from(self.u8()))
    }
}

fn as_operations(data: &[u8]) {
    let mut bytes = Bytes(data);
    let len = 48 + bytes.u8() % 15;
    // Inside 2000::/3, the space a pool must come from.
    let base = (u128::from(bytes.u64(8)) << 64) & !(7 << 125) | (1 << 125);
    let pool = Pool::new(Ipv6Net::new_assert(Ipv6Addr::from(base), len).trunc())
        .expect("length 48..=62 in 2000::/3 with host bits cleared is a pool");
    let mut plan = Allocator::new(pool);
    let mut live: Vec<Assignment> = Vec::new();

    let mut steps = 0;
    while !bytes.0.is_empty() && steps < 512 {
        steps += 1;
        let op = bytes.u8();
        let result = match op % 5 {
            0 => plan.allocate(ClientKind::Hermit),
            1 => plan.allocate(ClientKind::Subnet),
            2 => {
                // Any /64 of the pool, routing and hermit ones included.
                let n = bytes.u64(2) % pool.network_count();
                plan.request(ClientKind::Subnet, pool.network(n).expect("n < count"))
            }
            3 => {
                // A small interface id, or one near the reserved anycast range.
                let iid = if op & 0x80 == 0 {
                    bytes.u64(1)
                } else {
                    0xfdff_ffff_ffff_ff00 | bytes.u64(1)
                };
                let addr = u128::from(pool.hermit_net().network()) | u128::from(iid);
                plan.request(ClientKind::Hermit, Ipv6Net::from(Ipv6Addr::from(addr)))
            }
            _ => {
                if !live.is_empty() {
                    let a = live.remove(usize::from(bytes.u8()) % live.len());
                    plan.release(&a).expect("live assignments can be released");
                    assert!(plan.release(&a).is_err(), "released twice");
                    assert_eq!(plan.lookup(a.tunnel_address()), None);
                }
                continue;
            }
        };
        if let Err(e) = &result {
            check_error("allocate/request", e);
        }
        if let Ok(a) = result {
            assert!(!live.contains(&a), "{a} handed out while live");
            live.push(a);
        }
    }
    check(&plan, &mut live);
}

fn check(plan: &Allocator, live: &mut [Assignment]) {
    let pool = plan.pool();
    live.sort_by_key(|a| a.prefix());
    let listed: Vec<Assignment> = plan.iter().collect();
    assert_eq!(listed, live, "iter() differs from the model");

    let c = plan.counts();
    let subnets = live
        .iter()
        .filter(|a| a.kind() == ClientKind::Subnet)
        .count() as u64;
    assert_eq!(c.subnets_used, subnets);
    assert_eq!(c.hermits_used, live.len() as u64 - subnets);
    assert_eq!(c.subnets_used + c.subnets_free, pool.subnet_capacity());

    for (i, a) in live.iter().enumerate() {
        assert!(pool.net().contains(&a.prefix()), "{a} outside {pool}");
        for b in &live[i + 1..] {
            assert!(
                !a.prefix().contains(&b.prefix()) && !b.prefix().contains(&a.prefix()),
                "{a} overlaps {b}"
            );
        }
        match a {
            Assignment::Hermit(h) => {
                assert!(pool.hermit_net().contains(&h.address()));
                assert_eq!(plan.lookup(h.address()), Some(*a));
            }
            Assignment::Subnet(s) => {
                assert!(pool.routing_net().contains(&s.routing_net()));
                assert!(!pool.routing_net().contains(&s.prefix()));
                assert!(!pool.hermit_net().contains(&s.prefix()));
                for probe in [
                    s.lan_address(),
                    s.prefix().broadcast(),
                    s.server_end(),
                    s.client_end(),
                ] {
                    assert_eq!(plan.lookup(probe), Some(*a), "lookup {probe}");
                    assert_eq!(live.iter().filter(|b| b.owns(probe)).count(), 1);
                }
            }
        }
    }

    let json = serde_json::to_string(plan).expect("serialise");
    let back: Allocator = serde_json::from_str(&json).expect("read back");
    assert_eq!(&back, plan);
}
