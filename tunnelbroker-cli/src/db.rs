//! `tunnelbroker db status` and `db migrate`: glue over
//! `Broker::database_status` and `Broker::migrate_to`.

use std::fmt;
use std::path::Path;

use serde::Serialize;
use tunnelbroker_core::broker::{DatabaseStatus, MigrateReport};
use tunnelbroker_core::store::DatabaseUrl;

use crate::args::DbCommand;
use crate::output::{Failure, Output, open_broker};

/// Runs one `db` subcommand on the broker in `dir`.
pub fn run(out: &Output, dir: &Path, cmd: &DbCommand) -> Result<(), Failure> {
    match cmd {
        DbCommand::Status => {
            let broker = open_broker(dir)?;
            out.show(&Status(broker.database_status()?))
        }
        DbCommand::Migrate { to } => {
            // Bad input is refused before the broker is even opened.
            let url: DatabaseUrl = to.parse()?;
            let mut broker = open_broker(dir)?;
            let report = broker.migrate_to(&url)?;
            out.show(&Migrated(report))
        }
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct Status(DatabaseStatus);

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.0;
        writeln!(
            f,
            "database      {} ({}, schema version {})",
            s.location, s.engine, s.schema_version
        )?;
        writeln!(f, "clients       {}", s.clients)?;
        writeln!(f, "certificates  {}", s.certificates)?;
        writeln!(f, "crl number    {}", s.crl_number)
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct Migrated(MigrateReport);

impl fmt::Display for Migrated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.0;
        writeln!(
            f,
            "moved {} clients and {} certificates to {}",
            r.clients, r.certificates, r.database
        )?;
        writeln!(f, "tunnelbroker.toml now names it ([database] url)")?;
        writeln!(
            f,
            "kept the SQLite database as {} (nothing uses it; remove it once you trust the move)",
            r.kept.display()
        )
    }
}
