//! Benchmarks of the address plan (issue 2): allocate a million hermits,
//! allocate every subnet of a /48, and look up a million random addresses in
//! plans of growing size.
//!
//! Run with `cargo bench -p tunnelbroker-core --bench plan`.

use std::hint::black_box;
use std::net::Ipv6Addr;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tunnelbroker_core::plan::Allocator;
use tunnelbroker_core::{Assignment, ClientKind, Pool};

const HERMITS: u64 = 1_000_000;
const LOOKUPS: usize = 1_000_000;

fn pool(s: &str) -> Pool {
    s.parse().expect("a valid pool")
}

/// A small deterministic generator (xorshift64*), so that runs compare.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn allocate_hermits(c: &mut Criterion) {
    let p = pool("2001:db8:0:f100::/56");
    let mut g = c.benchmark_group("allocate");
    g.sample_size(10);
    g.throughput(Throughput::Elements(HERMITS));
    g.bench_function("1M hermits", |b| {
        b.iter(|| {
            let mut plan = Allocator::new(p);
            for _ in 0..HERMITS {
                black_box(plan.allocate(ClientKind::Hermit).expect("room"));
            }
            plan
        })
    });
    let p48 = pool("2001:db8:abcd::/48");
    g.throughput(Throughput::Elements(p48.subnet_capacity()));
    g.bench_function("all 65534 subnets of a /48", |b| {
        b.iter(|| {
            let mut plan = Allocator::new(p48);
            while let Ok(a) = plan.allocate(ClientKind::Subnet) {
                black_box(a);
            }
            assert_eq!(plan.counts().subnets_free, 0);
            plan
        })
    });
    g.finish();
}

/// A plan of a /48 with `n` live hermits and up to `n` live subnets, every
/// other one released so that nothing merges into runs: the worst case for
/// lookups.
fn fragmented(n: u64) -> Allocator {
    let mut plan = Allocator::new(pool("2001:db8:abcd::/48"));
    let mut taken = Vec::new();
    for i in 0..2 * n {
        let a = plan.allocate(ClientKind::Hermit).expect("room");
        if i % 2 == 1 {
            taken.push(a);
        }
    }
    for i in 0..(2 * n).min(65534) {
        let a = plan.allocate(ClientKind::Subnet).expect("room");
        if i % 2 == 1 {
            taken.push(a);
        }
    }
    for a in &taken {
        plan.release(a).expect("live");
    }
    plan
}

/// Random addresses: a third in the hermit range in use, a third in the
/// subnets, a third in the routing /64 near the routing nets.
fn probes(plan: &Allocator, n: u64) -> Vec<Ipv6Addr> {
    let p = plan.pool();
    let hermit = u128::from(p.hermit_net().network());
    let base = u128::from(p.net().network());
    let subnets = (2 * n).min(65534);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..LOOKUPS)
        .map(|i| {
            let r = rng.next();
            let bits = match i % 3 {
                0 => hermit | u128::from(1 + r % (2 * n)),
                1 => base | (u128::from(1 + r % subnets) << 64) | u128::from(r >> 40),
                _ => base | (u128::from(1 + r % subnets) << 16) | u128::from(r >> 62),
            };
            Ipv6Addr::from(bits)
        })
        .collect()
}

fn lookups(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup 1M random addresses");
    g.sample_size(10);
    g.throughput(Throughput::Elements(LOOKUPS as u64));
    for n in [1_000u64, 10_000, 100_000, 1_000_000] {
        let plan = fragmented(n);
        let live = plan.counts().hermits_used + plan.counts().subnets_used;
        let addrs = probes(&plan, n);
        g.bench_with_input(
            BenchmarkId::new("live assignments", live),
            &addrs,
            |b, addrs| {
                b.iter(|| {
                    let mut found = 0u64;
                    for a in addrs {
                        if let Some(Assignment::Hermit(_) | Assignment::Subnet(_)) = plan.lookup(*a)
                        {
                            found += 1;
                        }
                    }
                    black_box(found)
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, allocate_hermits, lookups);
criterion_main!(benches);
