//! `audit`: the broker-side checks, and the safe repairs of `--fix`.

use std::collections::{BTreeMap, BTreeSet};

use time::{Duration, OffsetDateTime};

use super::Report;
use crate::broker::{Broker, ClientState, ServerMode};
use crate::client_id::ClientId;
use crate::error::shown;
use crate::pki::{Certificate, Crl, RevokedCert, Serial};
use crate::plan::Allocator;
use crate::registry::{CertRecord, CertState, ClientRecord, Store};

/// What `audit` is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditOptions {
    /// List certificates that expire within this many days (default 30).
    pub days: u32,
    /// Make the safe repairs (sign a fresh CRL, re-render server files) and
    /// say what was done.
    pub fix: bool,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            days: 30,
            fix: false,
        }
    }
}

/// What the database holds, read in one snapshot.
struct Snapshot {
    clients: Vec<(ClientRecord, Option<CertRecord>)>,
    revoked: Vec<RevokedCert>,
}

/// Checks that the client database, the CA, the CRL and the files agree.
///
/// * every active client has a current certificate of this CA for its ID,
///   within validity and not on the CRL; every revoked client's
///   certificate is on the CRL;
/// * assignments are in the pool and unique, ports unique (per-client mode);
/// * certificates expiring within `days` are listed (WARN);
/// * the CRL is signed by this CA (with the key identifier OpenVPN
///   matches) and its nextUpdate is not past (FAIL) or near (WARN);
///
/// With `fix`, a fresh CRL is signed when the CRL is missing, foreign,
/// stale or incomplete, and the report is made again after the repair.
///
/// ```
/// use tunnelbroker_core::{Broker, InitOptions, Settings};
/// use tunnelbroker_core::doctor::{audit, AuditOptions};
/// let dir = tempfile::tempdir().unwrap();
/// let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
/// let broker = Broker::init(&dir.path().join("b"), &InitOptions::new(settings))?;
/// let report = audit(&broker, &AuditOptions::default());
/// assert!(!report.failed(), "{report}");
/// std::fs::remove_file(&broker.paths().crl).unwrap();
/// assert!(audit(&broker, &AuditOptions::default()).failed());
/// let mut options = AuditOptions::default();
/// options.fix = true;
/// let fixed = audit(&broker, &options);
/// assert!(!fixed.failed(), "{fixed}");
/// assert_eq!(fixed.actions.len(), 1);
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
pub fn audit(broker: &Broker, options: &AuditOptions) -> Report {
    let (report, crl_needs_refresh) = check(broker, options);
    if !options.fix || !crl_needs_refresh {
        return report;
    }
    let mut actions = Vec::new();
    match broker.refresh_crl() {
        Ok(crl) => actions.push(format!(
            "signed a fresh CRL: number {}, {} revoked, next update {}",
            crl.number(),
            crl.revoked_serials().len(),
            crl.next_update().date()
        )),
        Err(e) => actions.push(format!("could not sign a fresh CRL: {e}")),
    }
    let (mut again, _) = check(broker, options);
    again.actions = actions;
    again
}

fn check(broker: &Broker, options: &AuditOptions) -> (Report, bool) {
    let mut r = Report::new(format!("tunnelbroker audit: {}", broker.dir().display()));
    let snap = match read(broker) {
        Ok(s) => {
            r.pass("database", format!("{} clients read", s.clients.len()));
            s
        }
        Err(e) => {
            r.fail(
                "database",
                e.to_string(),
                "restore clients.db from a backup; the broker cannot work with it",
            );
            return (r, false);
        }
    };
    check_assignments(broker, &snap, &mut r);
    let crl = check_crl_file(broker, &mut r);
    let mut refresh = crl.as_ref().is_none_or(|(_, stale)| *stale);
    check_certificates(broker, &snap, crl.as_ref().map(|(c, _)| c), options, &mut r);
    if let Some((crl, _)) = &crl {
        refresh |= check_revoked_listed(&snap, crl, &mut r);
    }
    (r, refresh)
}

fn read(broker: &Broker) -> crate::Result<Snapshot> {
    let mut snap = None;
    broker.store().read(&mut |tx| {
        let mut clients = Vec::new();
        for c in tx.clients()? {
            let cert = tx.latest_certificate(&c.id)?;
            clients.push((c, cert));
        }
        snap = Some(Snapshot {
            clients,
            revoked: tx.revoked_certificates()?,
        });
        Ok(())
    })?;
    snap.ok_or_else(|| crate::Error::Database {
        reason: "the read produced no result".into(),
    })
}

fn check_assignments(broker: &Broker, snap: &Snapshot, r: &mut Report) {
    let settings = broker.settings();
    let mut plan = Allocator::new(settings.pool);
    let mut owners: BTreeMap<_, &ClientId> = BTreeMap::new();
    let mut ports: BTreeMap<u16, &ClientId> = BTreeMap::new();
    let mut bad = 0;
    for (c, _) in &snap.clients {
        let prefix = c.assignment.prefix();
        if let Err(e) = plan.insert(&c.assignment) {
            bad += 1;
            let other = owners
                .get(&prefix)
                .map(|o| format!(" (also held by {o})"))
                .unwrap_or_default();
            r.fail(
                "assignment",
                format!("client {}: {e}{other}", c.id),
                "two clients share an assignment: revoke and purge one of them, then add it again",
            );
        }
        owners.entry(prefix).or_insert(&c.id);
        match (settings.mode, c.port) {
            (ServerMode::PerClient, None) => {
                bad += 1;
                r.fail(
                    "port",
                    format!("client {} has no UDP port in per-client mode", c.id),
                    "the database was altered: revoke, purge and add the client again",
                );
            }
            (ServerMode::PerClient, Some(p)) => {
                if let Some(o) = ports.insert(p, &c.id) {
                    bad += 1;
                    r.fail(
                        "port",
                        format!("clients {o} and {} share UDP port {p}", c.id),
                        "the database was altered: revoke, purge and add one of them again",
                    );
                }
            }
            (ServerMode::Shared, Some(p)) => r.warn(
                "port",
                format!("client {} has UDP port {p}, but the server is shared", c.id),
                "harmless; the port is not used in shared mode",
            ),
            (ServerMode::Shared, None) => {}
        }
    }
    if bad == 0 {
        r.pass(
            "assignment",
            format!(
                "{} assignments in {}, all unique",
                snap.clients.len(),
                settings.pool
            ),
        );
    }
}

/// The CRL, and whether it should be re-signed (near or past nextUpdate,
/// foreign). `None` (also to be re-signed) when it cannot be read.
fn check_crl_file(broker: &Broker, r: &mut Report) -> Option<(Crl, bool)> {
    let fix = "sign a fresh one: `tunnelbroker crl` (or `tunnelbroker audit --fix`)";
    let crl = match broker.crl() {
        Ok(c) => c,
        Err(e) => {
            r.fail("crl", format!("the CRL cannot be read: {e}"), fix);
            return None;
        }
    };
    let mut stale = false;
    match broker.ca().check_crl(&crl) {
        Ok(()) => r.pass(
            "crl",
            format!("CRL number {} is signed by this CA", crl.number()),
        ),
        Err(e) => {
            stale = true;
            r.fail("crl", e.to_string(), fix);
        }
    }
    let now = OffsetDateTime::now_utc();
    let crl_days = broker.settings().validity.crl_days;
    // "Near": within a quarter of the CRL's period (at least one day).
    let near = Duration::days(i64::from((crl_days / 4).max(1)));
    let next = crl.next_update();
    if next <= now {
        stale = true;
        r.fail(
            "crl-next-update",
            format!(
                "the CRL's nextUpdate {} has passed: OpenVPN refuses every client",
                next.date()
            ),
            format!(
                "{fix}; run it from cron at least every {} days",
                (crl_days / 2).max(1)
            ),
        );
    } else if next - now < near {
        stale = true;
        r.warn(
            "crl-next-update",
            format!(
                "the CRL's nextUpdate is near: {} ({} days)",
                next.date(),
                (next - now).whole_days()
            ),
            format!(
                "{fix}; run it from cron at least every {} days",
                (crl_days / 2).max(1)
            ),
        );
    } else {
        r.pass(
            "crl-next-update",
            format!("the CRL is good until {}", next.date()),
        );
    }
    Some((crl, stale))
}

fn check_certificates(
    broker: &Broker,
    snap: &Snapshot,
    crl: Option<&Crl>,
    options: &AuditOptions,
    r: &mut Report,
) {
    let now = OffsetDateTime::now_utc();
    let soon = now + Duration::days(i64::from(options.days));
    let mut good = 0usize;
    let mut expiring = 0usize;
    for (c, rec) in snap
        .clients
        .iter()
        .filter(|(c, _)| c.state == ClientState::Active)
    {
        let id = &c.id;
        let Some(rec) = rec else {
            r.fail(
                "certificate",
                format!("client {id} has no certificate"),
                "the database was altered: revoke, purge and add the client again",
            );
            continue;
        };
        if rec.state != CertState::Current {
            r.fail(
                "certificate",
                format!(
                    "active client {id}: its latest certificate {} is marked revoked",
                    rec.serial
                ),
                format!("give it a new one: `tunnelbroker client renew {id}`"),
            );
            continue;
        }
        let cert = match Certificate::from_pem(&rec.pem) {
            Ok(c) => c,
            Err(e) => {
                r.fail(
                    "certificate",
                    format!("client {id}: {e}"),
                    format!("give it a new one: `tunnelbroker client renew {id}`"),
                );
                continue;
            }
        };
        if let Some(problem) = cert_problem(broker, id, rec, &cert, crl) {
            r.fail(
                "certificate",
                format!("client {id}: {problem}"),
                format!(
                    "give it a new one: `tunnelbroker client renew {id}` and send the new bundle"
                ),
            );
            continue;
        }
        good += 1;
        if cert.info().not_after <= soon {
            expiring += 1;
            r.warn(
                "expiry",
                format!(
                    "client {id}: its certificate expires in {} days, on {}",
                    (cert.info().not_after - now).whole_days(),
                    cert.info().not_after.date()
                ),
                format!("`tunnelbroker client renew {id}` and send the new bundle"),
            );
        }
    }
    let active = snap
        .clients
        .iter()
        .filter(|(c, _)| c.state == ClientState::Active)
        .count();
    if good == active {
        r.pass(
            "certificate",
            format!("all {active} active clients have a valid, unrevoked certificate of this CA"),
        );
    }
    if expiring == 0 {
        r.pass(
            "expiry",
            format!("no certificate expires within {} days", options.days),
        );
    }
}

fn cert_problem(
    broker: &Broker,
    id: &ClientId,
    rec: &CertRecord,
    cert: &Certificate,
    crl: Option<&Crl>,
) -> Option<String> {
    if cert.info().common_name != id.as_str() {
        return Some(format!(
            "its certificate is for {}",
            shown(&cert.info().common_name)
        ));
    }
    if cert.serial() != &rec.serial {
        return Some(format!(
            "the certificate's serial {} differs from the database's {}",
            cert.serial(),
            rec.serial
        ));
    }
    if let Err(e) = broker.ca().verify(cert) {
        return Some(e.to_string());
    }
    if crl.is_some_and(|crl| crl.is_revoked(cert.serial())) {
        return Some(format!("its certificate {} is on the CRL", cert.serial()));
    }
    None
}

/// Every unexpired revoked certificate of the database must be on the CRL.
/// Returns whether one is missing.
fn check_revoked_listed(snap: &Snapshot, crl: &Crl, r: &mut Report) -> bool {
    let now = OffsetDateTime::now_utc();
    let listed: BTreeSet<Serial> = crl.revoked_serials().into_iter().collect();
    let mut missing = Vec::new();
    for rc in snap.revoked.iter().filter(|rc| rc.not_after > now) {
        if !listed.contains(&rc.serial) {
            missing.push(rc.serial.to_string());
        }
    }
    for (c, rec) in &snap.clients {
        if c.state == ClientState::Revoked
            && let Some(rec) = rec.as_ref().filter(|rec| rec.state == CertState::Current)
        {
            r.fail(
                "revocation",
                format!(
                    "revoked client {}: its certificate {} is not marked revoked",
                    c.id, rec.serial
                ),
                "the database was altered: restore it from a backup",
            );
        }
    }
    if missing.is_empty() {
        r.pass(
            "revocation",
            format!("the CRL lists all {} revoked certificates", listed.len()),
        );
        false
    } else {
        r.fail(
            "revocation",
            format!(
                "{} revoked certificates are not on the CRL: {}",
                missing.len(),
                missing.join(", ")
            ),
            "sign a fresh CRL: `tunnelbroker crl` (or `tunnelbroker audit --fix`)",
        );
        true
    }
}
