//! Issuing client key+certificate pairs (issue 3's benchmark).
//!
//! `cargo bench -p tunnelbroker-core --bench pki` prints, for P-256 and
//! Ed25519, the time for 10,000 pairs issued one after another on one core
//! (and pairs per second), then criterion's per-pair estimates. Compare with
//! `scripts/bench-easyrsa`, which times `easyrsa build-client-full`.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput};
use tunnelbroker_core::ClientId;
use tunnelbroker_core::pki::{Ca, CaParams, KeyType};

fn ca() -> Ca {
    Ca::generate(&CaParams::default()).expect("CA")
}

/// 10,000 pairs in a plain loop, timed as a whole.
fn ten_thousand(ca: &Ca, key_type: KeyType, count: usize) {
    let ids: Vec<ClientId> = (0..count)
        .map(|i| format!("client-{i}").parse().expect("client id"))
        .collect();
    let started = Instant::now();
    for id in &ids {
        black_box(ca.issue_client(id, key_type, 365).expect("issue"));
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "issue_client {key_type}: {count} key+certificate pairs in {secs:.2} s = {:.0} per second ({:.3} ms each)",
        count as f64 / secs,
        secs * 1000.0 / count as f64
    );
}

fn criterion_benches(c: &mut Criterion, ca: &Ca) {
    let id: ClientId = "bench-client".parse().expect("client id");
    let mut group = c.benchmark_group("issue_client");
    group.throughput(Throughput::Elements(1));
    for key_type in [KeyType::P256, KeyType::Ed25519] {
        group.bench_function(key_type.to_string(), |b| {
            b.iter(|| black_box(ca.issue_client(&id, key_type, 365).expect("issue")))
        });
    }
    group.finish();
}

fn main() {
    let ca = ca();
    // `cargo bench` passes --bench; `cargo test --benches` does not, and
    // then only criterion's quick test mode runs.
    if std::env::args().any(|a| a == "--bench") {
        for key_type in [KeyType::P256, KeyType::Ed25519] {
            ten_thousand(&ca, key_type, 10_000);
        }
        ten_thousand(&ca, KeyType::Rsa2048, 20);
    }
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &ca);
    c.final_summary();
}
