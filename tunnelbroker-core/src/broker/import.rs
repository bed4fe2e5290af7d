//! Bulk subscription from a CSV file: the "simple text file" user database
//! of small sites.
//!
//! Columns: `id, kind, os, email, name[, prefix]`; a header row starting with
//! `id` is skipped; empty `os` means linux, empty `email`/`name`/`prefix`
//! mean none. Every row is checked first; bad rows are reported with their
//! line numbers and the good ones are subscribed, in batches that each
//! commit as a whole, so a killed import leaves only whole clients.

use std::thread;

use serde::Serialize;

use super::{Broker, Client, NewClient};
use crate::client_id::ClientId;
use crate::error::{Error, Result};
use crate::plan::{ClientKind, parse_prefix};
use crate::store::CertRecord;

/// How many rows one transaction subscribes.
const BATCH: usize = 500;

/// A row that was not subscribed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// The line of the file (1-based).
    pub line: u64,
    /// What was wrong.
    pub error: String,
}

/// The outcome of an import.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    /// The clients that were subscribed.
    pub added: Vec<Client>,
    /// The rows that were not, with their reasons.
    pub errors: Vec<RowError>,
}

struct Row {
    line: u64,
    req: NewClient,
}

fn parse_rows(text: &str) -> (Vec<Row>, Vec<RowError>) {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(RowError {
                    line,
                    error: format!("not a CSV row: {}", crate::error::one_line(e)),
                });
                continue;
            }
        };
        let line = rec.position().map_or(i as u64 + 1, |p| p.line());
        if i == 0 && rec.get(0).is_some_and(|f| f.eq_ignore_ascii_case("id")) {
            continue;
        }
        if rec.iter().all(str::is_empty) {
            continue;
        }
        match parse_row(&rec) {
            Ok(req) => rows.push(Row { line, req }),
            Err(e) => errors.push(RowError {
                line,
                error: e.to_string(),
            }),
        }
    }
    (rows, errors)
}

/// The rows of a CSV import text, checked as [`Broker::import_csv`] checks
/// them (line numbers and requests, and the rows' errors), subscribing
/// nothing. For the fuzz targets only.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn parse_import_csv(text: &str) -> (Vec<(u64, NewClient)>, Vec<RowError>) {
    let (rows, errors) = parse_rows(text);
    (rows.into_iter().map(|r| (r.line, r.req)).collect(), errors)
}

fn parse_row(rec: &csv::StringRecord) -> Result<NewClient> {
    if rec.len() < 5 || rec.len() > 6 {
        return Err(Error::InvalidField {
            field: "row",
            input: format!("{} fields", rec.len()),
            reason: "expected id, kind, os, email, name and an optional prefix".into(),
        });
    }
    let field = |i: usize| rec.get(i).filter(|s| !s.is_empty());
    let id = ClientId::new(rec.get(0).unwrap_or(""))?;
    let kind: ClientKind = rec.get(1).unwrap_or("").parse()?;
    let mut req = NewClient::new(id, kind);
    if let Some(os) = field(2) {
        req.os = os.parse()?;
    }
    req.email = field(3).map(str::to_owned);
    req.name = field(4).map(str::to_owned);
    req.prefix = field(5).map(parse_prefix).transpose()?;
    Broker::check_request(&req)?;
    Ok(req)
}

impl Broker {
    /// Subscribes every good row of a CSV text. `progress(done, total)` is
    /// called after each batch.
    ///
    /// Columns: `id, kind, os, email, name[, prefix]`; a header row starting
    /// with `id` is skipped; empty `os` means linux, empty
    /// `email`/`name`/`prefix` mean none. Every row is checked first; bad
    /// rows are reported with their line numbers and the good ones are
    /// subscribed, in batches that each commit as a whole, so a killed import
    /// leaves only whole clients.
    ///
    /// ```
    /// use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// let dir = tempfile::tempdir().unwrap();
    /// let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// let broker = Broker::init(&dir.path().join("b"), &InitOptions::new(settings))?;
    /// let csv = "id,kind,os,email,name\nalice,subnet,linux,alice@example.org,Alice\nbad id,hermit,,,\nbob,hermit,windows,,\n";
    /// let report = broker.import_csv(csv, &mut |_, _| {})?;
    /// assert_eq!(report.added.len(), 2);
    /// assert_eq!(report.errors[0].line, 3);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn import_csv(
        &self,
        text: &str,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<ImportReport> {
        let (rows, mut errors) = parse_rows(text);
        let total = rows.len();
        let mut added = Vec::with_capacity(total);
        let mut done = 0;
        for batch in rows.chunks(BATCH) {
            // Keys and certificates first, on every core and outside the
            // write lock; then one transaction reserves and records the batch.
            let issued = self.issue_parallel(batch);
            let (mut batch_added, mut batch_errors) = self.store().write_with(|tx| {
                let mut batch_added = Vec::new();
                let mut batch_errors = Vec::new();
                let mut taken = self.taken(tx)?;
                // The whole batch is reserved first (a few queries), then
                // recorded.
                let reqs: Vec<&NewClient> = batch
                    .iter()
                    .zip(&issued)
                    .filter(|(_, cert)| cert.is_ok())
                    .map(|(row, _)| &row.req)
                    .collect();
                let mut reservations = self.reserve_batch(tx, &mut taken, &reqs)?.into_iter();
                for (row, cert) in batch.iter().zip(&issued) {
                    let reserved = match cert {
                        Ok(cert) => match reservations.next() {
                            Some(Ok(r)) => Ok((r, cert.clone())),
                            Some(Err(e)) => Err(e.to_string()),
                            None => unreachable!("one reservation per request"),
                        },
                        Err(e) => Err(e.to_string()),
                    };
                    match reserved {
                        Ok((r, cert)) => batch_added.push(self.record(tx, &r, cert)?),
                        Err(error) => batch_errors.push(RowError {
                            line: row.line,
                            error,
                        }),
                    }
                }
                taken.save(tx)?;
                Ok((batch_added, batch_errors))
            })?;
            added.append(&mut batch_added);
            errors.append(&mut batch_errors);
            done += batch.len();
            progress(done, total);
        }
        errors.sort_by_key(|e| e.line);
        Ok(ImportReport { added, errors })
    }

    /// Issues the certificates of a batch on every core.
    fn issue_parallel(&self, rows: &[Row]) -> Vec<Result<CertRecord>> {
        let threads = thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = rows.len().div_ceil(threads).max(1);
        thread::scope(|s| {
            let handles: Vec<_> = rows
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || part.iter().map(|r| self.issue(&r.req)).collect::<Vec<_>>())
                })
                .collect();
            handles
                .into_iter()
                .zip(rows.chunks(chunk))
                .flat_map(|(h, part)| {
                    h.join().unwrap_or_else(|_| {
                        part.iter()
                            .map(|_| {
                                Err(Error::Database {
                                    reason: "a certificate worker panicked".into(),
                                })
                            })
                            .collect()
                    })
                })
                .collect()
        })
    }
}
