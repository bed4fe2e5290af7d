//! The broker's tests on both stores (issue 12): a test written once as
//! `fn name(store: &TestStore)` and followed by `by_store!(name);` runs as
//! `name::sqlite` (the broker's `clients.db`) and `name::postgres` (a fresh
//! database of its own in the test cluster, see `pg`: a printed note and no
//! test without `TUNNELBROKER_TEST_POSTGRES`, a failure under `CI=true`).

use std::sync::Mutex;

use tunnelbroker_core::{InitOptions, Settings};

use crate::pg;

/// Where the brokers of one test keep their clients.
pub(crate) enum TestStore {
    /// SQLite: `clients.db` in each broker directory.
    Sqlite,
    /// PostgreSQL: each broker the test makes gets a database of its own,
    /// dropped when the test ends.
    Postgres(Mutex<Vec<pg::TestDb>>),
}

impl TestStore {
    /// PostgreSQL, or `None` when the tests have no cluster (see
    /// `pg::cluster`).
    pub(crate) fn postgres() -> Option<TestStore> {
        pg::cluster()?;
        Some(TestStore::Postgres(Mutex::new(Vec::new())))
    }

    /// `InitOptions` for a new broker with `settings` on this store: on
    /// PostgreSQL, in a new empty database.
    pub(crate) fn options(&self, settings: Settings) -> InitOptions {
        let mut o = InitOptions::new(settings);
        if let TestStore::Postgres(dbs) = self {
            let db = pg::database().expect("the cluster was there a moment ago");
            o.database = Some(db.url().clone());
            dbs.lock().unwrap().push(db);
        }
        o
    }

    /// `"sqlite"` or `"postgresql"`, as `Broker::database_status` says.
    #[allow(dead_code)]
    pub(crate) fn engine(&self) -> &'static str {
        match self {
            TestStore::Sqlite => "sqlite",
            TestStore::Postgres(_) => "postgresql",
        }
    }
}

/// `by_store!(name, ...)`: for each `fn name(store: &TestStore)` of the
/// calling module, a module `name` with the tests `sqlite` and `postgres`.
macro_rules! by_store {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name(&$crate::stores::TestStore::Sqlite);
                }

                #[test]
                fn postgres() {
                    if let Some(store) = $crate::stores::TestStore::postgres() {
                        super::$name(&store);
                    }
                }
            }
        )+
    };
}
pub(crate) use by_store;

/// Runs `statements` (SQL without parameters) on the client database of
/// `b`, whichever store it is on: what another program, or an operator with
/// a SQL shell, does behind the broker's back.
pub(crate) fn sql(b: &tunnelbroker_core::Broker, statements: &str) {
    match &b.settings().database.url {
        Some(url) => postgres::Client::connect(url.as_str(), postgres::NoTls)
            .expect("connect to the broker's database")
            .batch_execute(statements)
            .expect("run the statements"),
        None => rusqlite::Connection::open(&b.paths().database)
            .expect("open clients.db")
            .execute_batch(statements)
            .expect("run the statements"),
    }
}

/// The first column of the first row of `query` (text or NULL) on the
/// client database of `b`, or `None` when there is no row.
pub(crate) fn query_text(b: &tunnelbroker_core::Broker, query: &str) -> Option<String> {
    match &b.settings().database.url {
        Some(url) => postgres::Client::connect(url.as_str(), postgres::NoTls)
            .expect("connect to the broker's database")
            .query_opt(query, &[])
            .expect("run the query")
            .and_then(|row| row.get(0)),
        None => {
            use rusqlite::OptionalExtension;
            rusqlite::Connection::open(&b.paths().database)
                .expect("open clients.db")
                .query_row(query, [], |r| r.get(0))
                .optional()
                .expect("run the query")
                .flatten()
        }
    }
}

/// `text` as an SQL string literal.
pub(crate) fn lit(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
