//! Subscribes N clients (default 1,000) through the Rust API and prints the
//! time taken: the baseline for `tunnelbroker-py/bench/bench_subscribe.py`,
//! which does the same through Python.
//!
//! ```text
//! cargo run --release -p tunnelbroker-core --example bench_subscribe -- [N] [ROUNDS]
//! ```
//!
//! Two ways, each in a fresh broker (pool 2001:db8::/48, per-client mode,
//! P-256 keys), best of ROUNDS (default 3):
//! * `add_client`: N calls, one transaction each, alternating subnet/hermit;
//! * `import_csv`: the same N clients as one CSV text.

use std::time::{Duration, Instant};

use tunnelbroker_core::{Broker, ClientKind, InitOptions, NewClient, Settings};

fn fresh(dir: &std::path::Path) -> Result<Broker, tunnelbroker_core::Error> {
    let settings = Settings::new("2001:db8::/48".parse()?, "vpn.example.net".parse()?);
    Broker::init(dir, &InitOptions::new(settings))
}

fn add_clients(n: usize) -> Result<Duration, tunnelbroker_core::Error> {
    let tmp = tempfile::tempdir().map_err(|e| tunnelbroker_core::Error::Io {
        path: std::env::temp_dir(),
        source: e,
    })?;
    let broker = fresh(&tmp.path().join("b"))?;
    let start = Instant::now();
    for i in 0..n {
        let kind = if i % 2 == 0 {
            ClientKind::Subnet
        } else {
            ClientKind::Hermit
        };
        let mut req = NewClient::new(format!("user{i}").parse()?, kind);
        req.email = Some(format!("user{i}@example.org"));
        broker.add_client(&req)?;
    }
    let took = start.elapsed();
    assert_eq!(broker.clients()?.len(), n);
    Ok(took)
}

fn import(n: usize) -> Result<Duration, tunnelbroker_core::Error> {
    let tmp = tempfile::tempdir().map_err(|e| tunnelbroker_core::Error::Io {
        path: std::env::temp_dir(),
        source: e,
    })?;
    let broker = fresh(&tmp.path().join("b"))?;
    let mut csv = String::from("id,kind,os,email,name\n");
    for i in 0..n {
        let kind = if i % 2 == 0 { "subnet" } else { "hermit" };
        csv.push_str(&format!(
            "user{i},{kind},linux,user{i}@example.org,User {i}\n"
        ));
    }
    let start = Instant::now();
    let report = broker.import_csv(&csv, &mut |_, _| {})?;
    let took = start.elapsed();
    assert_eq!(report.added.len(), n);
    Ok(took)
}

fn best(
    rounds: usize,
    f: impl Fn() -> Result<Duration, tunnelbroker_core::Error>,
) -> Result<Duration, tunnelbroker_core::Error> {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        best = best.min(f()?);
    }
    Ok(best)
}

fn main() -> Result<(), tunnelbroker_core::Error> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3).max(1);
    let add = best(rounds, || add_clients(n))?;
    let imp = best(rounds, || import(n))?;
    println!("rust add_client x{n}: {:.1} ms", add.as_secs_f64() * 1e3);
    println!("rust import_csv x{n}: {:.1} ms", imp.as_secs_f64() * 1e3);
    Ok(())
}
