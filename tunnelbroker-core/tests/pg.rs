//! PostgreSQL for the tests: each test gets a database of its own in the
//! cluster named by `TUNNELBROKER_TEST_POSTGRES` (a superuser URL, as
//! scripts/lib/postgres.sh exports it), dropped when the guard is.
//!
//! Without the variable, [`database`] prints a note and returns `None` (the
//! test then returns), except under `CI=true`, where it panics: CI runs
//! every PostgreSQL test.

use std::sync::atomic::{AtomicU64, Ordering};

use postgres::{Client, NoTls};
use tunnelbroker_core::store::DatabaseUrl;

/// A database made for one test, dropped (`WITH (FORCE)`) on drop.
pub(crate) struct TestDb {
    admin_url: String,
    name: String,
    url: DatabaseUrl,
}

impl TestDb {
    /// The database's URL (user `postgres`, no password).
    pub(crate) fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// The database's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// A superuser connection to this database, beside the store's.
    pub(crate) fn admin(&self) -> Client {
        Client::connect(self.url.as_str(), NoTls).expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut c) = Client::connect(&self.admin_url, NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// The cluster's superuser URL, or `None` (with a printed note) when the
/// tests run without PostgreSQL; a panic under `CI=true`.
pub(crate) fn cluster() -> Option<String> {
    match std::env::var("TUNNELBROKER_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "CI=true and TUNNELBROKER_TEST_POSTGRES is not set: run the tests in a cluster (scripts/test, or scripts/lib/postgres.sh cargo test ...)"
                );
            }
            eprintln!(
                "note: TUNNELBROKER_TEST_POSTGRES is not set, so this PostgreSQL test does nothing (scripts/lib/postgres.sh cargo test ... runs it)"
            );
            None
        }
    }
}

/// A fresh empty database `tb_<random>`, or `None` (see [`cluster`]).
pub(crate) fn database() -> Option<TestDb> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let admin_url = cluster()?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mixed = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(seed);
        h.write_u64(n);
        h.write_u32(std::process::id());
        h.finish()
    };
    let name = format!("tb_{mixed:016x}");
    let mut admin = Client::connect(&admin_url, NoTls).expect("connect to the test cluster");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create a test database");
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("TUNNELBROKER_TEST_POSTGRES ends in /DATABASE");
    let url = format!("{base}/{name}")
        .parse()
        .expect("the test database URL parses");
    Some(TestDb {
        admin_url,
        name,
        url,
    })
}
