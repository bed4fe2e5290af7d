//! Where the client database is, and moving a one-host broker's SQLite
//! database into PostgreSQL (`tunnelbroker db migrate`).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::init::{create_store, open_store};
use super::{Broker, Settings};
use crate::error::{Error, Result, shown};
use crate::fsutil;
use crate::store::{self, DatabaseUrl, Store};

/// Where a broker's client database is and what it holds
/// ([`Broker::database_status`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DatabaseStatus {
    /// `sqlite` or `postgresql`.
    pub engine: &'static str,
    /// The SQLite file, or the PostgreSQL URL (which never holds a password).
    pub location: String,
    /// The schema version (opening the broker migrated the database to
    /// the one this tunnelbroker knows).
    pub schema_version: u32,
    /// Client rows.
    pub clients: u64,
    /// Certificate rows (current, revoked and superseded).
    pub certificates: usize,
    /// The number of the last CRL signed.
    pub crl_number: u64,
}

/// What [`Broker::migrate_to`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MigrateReport {
    /// The PostgreSQL database the broker uses now.
    pub database: DatabaseUrl,
    /// Client rows copied.
    pub clients: usize,
    /// Certificate rows copied (also those of purged clients).
    pub certificates: usize,
    /// Where the SQLite database was kept (renamed, so that nothing uses
    /// it by accident).
    pub kept: PathBuf,
}

impl Broker {
    /// Which client database the broker uses, and how many rows it holds.
    ///
    /// ```
    /// use tunnelbroker_core::{Broker, ClientKind, InitOptions, NewClient, Settings};
    /// let tmp = tempfile::tempdir().unwrap();
    /// let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// broker.add_client(&NewClient::new("alice".parse()?, ClientKind::Hermit))?;
    /// let status = broker.database_status()?;
    /// assert_eq!((status.engine, status.clients, status.crl_number), ("sqlite", 1, 1));
    /// assert!(status.location.ends_with("clients.db"));
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn database_status(&self) -> Result<DatabaseStatus> {
        let (clients, certificates, crl_number) = self.store().read_with(|tx| {
            Ok((
                tx.client_count()?,
                tx.certificates()?.len(),
                tx.crl_number()?,
            ))
        })?;
        let (engine, location, schema_version) = match &self.settings.database.url {
            Some(url) => ("postgresql", url.to_string(), store::POSTGRES_SCHEMA),
            None => (
                "sqlite",
                self.paths.database.display().to_string(),
                store::SQLITE_SCHEMA,
            ),
        };
        Ok(DatabaseStatus {
            engine,
            location,
            schema_version,
            clients,
            certificates,
            crl_number,
        })
    }

    /// Moves the client database from SQLite into the PostgreSQL database
    /// `url`, which must hold no broker: everything (clients, certificates,
    /// revocations, the CRL number, the shared settings and CA
    /// certificate) is copied in one transaction, the counts are checked,
    /// and then `tunnelbroker.toml` names the new database (rewritten
    /// atomically). `clients.db` is kept as `clients.db.migrated`, which
    /// nothing opens.
    ///
    /// Refused, changing nothing: a broker on PostgreSQL already, a
    /// `clients.db.migrated` that exists, a database that cannot be reached
    /// or that holds a broker. Other provisioning on this broker (CLI,
    /// Python) must stop for the move: what another process writes into
    /// SQLite meanwhile stays there. If the move fails after the copy was
    /// committed (a count that does not match, the settings file that
    /// cannot be written), the broker stays on SQLite and the PostgreSQL
    /// database holds the copy: drop and recreate it before trying again.
    ///
    /// ```
    /// use tunnelbroker_core::store::DatabaseUrl;
    /// use tunnelbroker_core::{Broker, ErrorKind, InitOptions, Settings};
    /// let tmp = tempfile::tempdir().unwrap();
    /// let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// let dir = tmp.path().join("broker");
    /// let mut broker = Broker::init(&dir, &InitOptions::new(settings))?;
    ///
    /// // A database that cannot be reached: refused, and the broker stays on SQLite.
    /// let nowhere: DatabaseUrl = "postgresql://tb@127.0.0.1:1/tunnelbroker".parse()?;
    /// let err = broker.migrate_to(&nowhere).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Database);
    /// assert_eq!(broker.database_status()?.engine, "sqlite");
    /// assert!(dir.join("clients.db").exists());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn migrate_to(&mut self, url: &DatabaseUrl) -> Result<MigrateReport> {
        if let Some(current) = &self.settings.database.url {
            return Err(Error::InvalidField {
                field: "migration target",
                input: shown(url.as_str()),
                reason: format!("the broker's clients are in PostgreSQL already ({current})"),
            });
        }
        let kept = with_suffix(&self.paths.database, ".migrated");
        for suffix in ["", "-wal", "-shm"] {
            let p = with_suffix(&kept, suffix);
            if p.exists() || p.is_symlink() {
                return Err(Error::DirectoryInUse {
                    path: self.paths.dir.clone(),
                    reason: format!(
                        "{} exists (an earlier migration kept it): move it away first",
                        p.display()
                    ),
                });
            }
        }
        let mut settings = self.settings.clone();
        settings.database.url = Some(url.clone());
        // This host's sections as the file has them now, naming PostgreSQL.
        let mut file = Settings::from_toml(&fsutil::read_to_string(&self.paths.settings)?)?;
        file.database.url = Some(url.clone());
        let target = create_store(&self.paths, &settings).map_err(|e| match e {
            Error::DatabaseInUse { url, .. } => Error::DatabaseInUse {
                url,
                hint: "migrate into a new, empty database",
            },
            e => e,
        })?;
        let report = store::copy(self.store(), &*target)?;
        check_copy(self.store(), &*target)?;

        // Close SQLite (its last connection folds the WAL back into the
        // file), keep it under another name, then name PostgreSQL in the
        // settings; undo the rename if that fails.
        let sqlite = std::mem::replace(&mut self.store, target.into());
        drop(sqlite);
        let moved = match move_database(&self.paths.database, &kept) {
            Ok(moved) => moved,
            Err(e) => return Err(self.back_to_sqlite(e)),
        };
        if let Err(e) = fsutil::write_public(&self.paths.settings, file.to_toml().as_bytes()) {
            for (from, to) in moved.iter().rev() {
                let _ = fs::rename(to, from);
            }
            return Err(self.back_to_sqlite(e));
        }
        self.settings.database.url = Some(url.clone());
        Ok(MigrateReport {
            database: url.clone(),
            clients: report.clients,
            certificates: report.certificates,
            kept,
        })
    }

    /// Reopens SQLite after a failed move, and returns `e`.
    fn back_to_sqlite(&mut self, e: Error) -> Error {
        match open_store(&self.paths, &self.settings, self.settings.pool) {
            Ok(s) => self.store = s.into(),
            Err(again) => {
                return Error::Database {
                    reason: format!("{e}; and reopening the SQLite database failed: {again}"),
                };
            }
        }
        e
    }
}

/// Checks that `to` holds what `from` holds: as many clients and
/// certificates, the same revoked serials, and a CRL number at least as
/// high.
fn check_copy(from: &dyn Store, to: &dyn Store) -> Result<()> {
    let count = |s: &dyn Store| {
        s.read_with(|tx| {
            let revoked: BTreeSet<String> = tx
                .revoked_certificates()?
                .into_iter()
                .map(|r| r.serial.to_string())
                .collect();
            Ok((
                tx.client_count()?,
                tx.certificates()?.len(),
                revoked,
                tx.crl_number()?,
            ))
        })
    };
    let (a, b) = (count(from)?, count(to)?);
    if a.0 != b.0 || a.1 != b.1 || a.2 != b.2 || b.3 < a.3 {
        return Err(Error::Database {
            reason: format!(
                "the copy does not match: {} clients, {} certificates and {} revocations in SQLite, {} clients, {} certificates and {} revocations in PostgreSQL; the broker stays on SQLite",
                a.0,
                a.1,
                a.2.len(),
                b.0,
                b.1,
                b.2.len()
            ),
        });
    }
    Ok(())
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = OsString::from(path.as_os_str());
    p.push(suffix);
    PathBuf::from(p)
}

/// Renames `database` (and its `-wal` and `-shm`, where they are) to
/// `kept`; returns the renames done. On failure, undoes them.
fn move_database(database: &Path, kept: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let mut done = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let (from, to) = (with_suffix(database, suffix), with_suffix(kept, suffix));
        if suffix.is_empty() || from.exists() {
            if let Err(e) = fs::rename(&from, &to) {
                for (f, t) in done.iter().rev() {
                    let _ = fs::rename(t, f);
                }
                return Err(Error::io(&from, e));
            }
            done.push((from, to));
        }
    }
    Ok(done)
}
