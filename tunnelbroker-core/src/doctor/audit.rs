//! `audit`: the broker-side checks, and the safe repairs of `--fix`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime, PrimitiveDateTime};

use super::Report;
use crate::broker::{
    Broker, BrokerPaths, ClientState, ServerFilesState, ServerMode, ServerSettings, Settings,
    TlsCryptVersion,
};
use crate::client_id::ClientId;
use crate::error::{Error, shown};
use crate::fsutil;
use crate::openvpn::ServerFiles;
use crate::pki::{Ca, Certificate, Crl, RevokedCert, Serial, TlsCryptV2ServerKey};
use crate::plan::Allocator;
use crate::store::{CertRecord, CertState, ClientRecord};

/// The names of the checks [`audit`] and [`audit_dir`] can report, in the
/// order they report them. `settings`, `port` and `host-limits` appear only
/// when something is wrong with them; every other check is there in every report (as SKIP
/// when what it needs cannot be read).
pub const AUDIT_CHECKS: &[&str] = &[
    "database",
    "settings",
    "permissions",
    "assignment",
    "port",
    "ca",
    "server-certificate",
    "tls-crypt-v2",
    "crl",
    "crl-next-update",
    "certificate",
    "expiry",
    "revocation",
    "server-files",
    "orphan-files",
    "server-access",
    "host-limits",
];

/// How long before its nextUpdate a CRL is "near" (WARN), at most: a week,
/// so that a failed daily refresh is noticed days before OpenVPN refuses
/// every client. A CRL that lives two weeks or less is near in the second
/// half of its life instead, so that a fresh one never warns.
const CRL_NEAR: Duration = Duration::days(7);

/// What to do when the CA expires: there is no renewal in place.
const CA_HINT: &str = "a CA cannot be renewed in place: before it expires, make a new broker (or import a renewed CA) and give every client a new bundle";

/// What to do about the server certificate.
const SERVER_HINT: &str = "`tunnelbroker server renew`, then restart the OpenVPN server instances";

/// Why the database-bound checks are skipped.
const NO_DATABASE: &str = "the client database cannot be read";

/// What `audit` is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditOptions {
    /// List certificates that expire within this many days (default 30).
    pub days: u32,
    /// Make the safe repairs (sign a fresh CRL, re-render server files) and
    /// say what was done.
    pub fix: bool,
    /// Where the rendered server files are (what `server render --out DIR`
    /// wrote); default the broker's
    /// [`paths().server_dir`](crate::broker::BrokerPaths::server_dir).
    pub server_dir: Option<PathBuf>,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            days: 30,
            fix: false,
            server_dir: None,
        }
    }
}

/// The repairs a check found needed (and, for re-rendering, safe).
#[derive(Debug, Default)]
struct Repairs {
    crl: bool,
    render: Option<PathBuf>,
    /// Broker files whose modes are too open, with the mode to set.
    modes: Vec<(PathBuf, u32)>,
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
/// * the rendered server files are what
///   [`Broker::render_server`] would write now: a missing file or one whose
///   contents or mode differ FAILs, naming it (`server-files`), and so
///   does a file in the way that the broker did not write or a symbolic
///   link, which rendering refuses (ownership as in
///   [`Broker::render_server_with`]); files of its manifest rendered for
///   clients that are no longer active, and files named like the broker's
///   that it did not write, WARN (`orphan-files`).
///
/// With `fix`, a fresh CRL is signed when the CRL is missing, foreign,
/// stale or incomplete; the server files are re-rendered when they differ
/// and the database is consistent (which removes the orphans the broker
/// wrote, never other files); then the report is made again.
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
    let (report, repairs) = check(broker, options);
    if !options.fix || (!repairs.crl && repairs.render.is_none() && repairs.modes.is_empty()) {
        return report;
    }
    let mut actions = chmod(&repairs.modes);
    if repairs.crl {
        match broker.refresh_crl() {
            Ok(crl) => actions.push(format!(
                "signed a fresh CRL: number {}, {} revoked, next update {}",
                crl.number(),
                crl.revoked_serials().len(),
                crl.next_update().date()
            )),
            Err(e) => actions.push(format!("could not sign a fresh CRL: {e}")),
        }
    }
    if let Some(dir) = &repairs.render {
        match broker.render_server(Some(dir)) {
            Ok(done) => {
                let names = |paths: &[PathBuf]| {
                    paths
                        .iter()
                        .map(|p| relative(&done.dir, p))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let mut line = format!("re-rendered {}:", done.dir.display());
                if !done.written.is_empty() {
                    line.push_str(&format!(" wrote {}", names(&done.written)));
                }
                if !done.removed.is_empty() {
                    if !done.written.is_empty() {
                        line.push(';');
                    }
                    line.push_str(&format!(" removed {}", names(&done.removed)));
                }
                actions.push(line);
                let restart = to_restart(&done.dir, &done.written, &done.instances);
                if !restart.is_empty() {
                    actions.push(format!(
                        "restart the OpenVPN instances whose files changed: {}",
                        restart
                            .iter()
                            .map(|i| format!("openvpn-server@{i}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ));
                }
            }
            Err(e) => actions.push(format!("could not re-render {}: {e}", dir.display())),
        }
    }
    let (mut again, _) = check(broker, options);
    again.actions = actions.iter().map(|a| crate::error::flatten(a)).collect();
    again
}

/// Audits the broker in `dir` as [`audit`] does, also when it cannot be
/// opened: an unreadable or missing client database, CA or settings file
/// gives a report with that FAIL (and the checks that need it as SKIP), not
/// an error. A missing `clients.db` is reported, never created.
///
/// Only a `dir` that holds no broker at all (no `tunnelbroker.toml`) is an
/// error, [`Error::NotABroker`].
///
/// ```
/// use tunnelbroker_core::{Broker, InitOptions, Settings};
/// use tunnelbroker_core::doctor::audit_dir;
/// let dir = tempfile::tempdir().unwrap();
/// let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
/// let broker = Broker::init(&dir.path().join("b"), &InitOptions::new(settings))?;
/// std::fs::remove_file(&broker.paths().database).unwrap();
/// let report = audit_dir(broker.dir(), &Default::default())?;
/// assert_eq!(report.status_of("database"), Some(tunnelbroker_core::doctor::Status::Fail));
/// assert!(!broker.paths().database.exists());
/// assert!(audit_dir(dir.path(), &Default::default()).is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
pub fn audit_dir(dir: &Path, options: &AuditOptions) -> crate::Result<Report> {
    let paths = BrokerPaths::new(dir);
    let err = match open_for_audit(&paths)? {
        Ok(broker) => return Ok(audit(&broker, options)),
        Err(err) => err,
    };
    let (report, modes) = unopened(&paths, err.as_ref(), options);
    if !options.fix || modes.is_empty() {
        return Ok(report);
    }
    // The modes may be what kept the broker closed: set them, then again.
    let actions = chmod(&modes);
    let mut again = match open_for_audit(&paths)? {
        Ok(broker) => audit(&broker, options),
        Err(err) => unopened(&paths, err.as_ref(), options).0,
    };
    let done = actions.iter().map(|a| crate::error::flatten(a));
    again.actions.splice(0..0, done);
    Ok(again)
}

/// The broker, or why it cannot be opened (`None`: its database is
/// missing, and opening it would make a new, empty one). Err only when
/// there is no broker.
fn open_for_audit(paths: &BrokerPaths) -> crate::Result<Result<Broker, Option<Error>>> {
    // A broker on PostgreSQL has no clients.db; one on SQLite must.
    let on_sqlite = fsutil::read_to_string(&paths.settings)
        .and_then(|text| Settings::from_toml(&text))
        .map_or(true, |s| s.database.url.is_none());
    if on_sqlite && paths.settings.exists() && !paths.database.exists() {
        return Ok(Err(None));
    }
    match Broker::open(&paths.dir) {
        Ok(broker) => Ok(Ok(broker)),
        Err(e @ Error::NotABroker { .. }) => Err(e),
        Err(e) => Ok(Err(Some(e))),
    }
}

/// The report on a broker that cannot be opened: `err` is why (`None`: its
/// database is missing). Returns the too-open modes too.
fn unopened(
    paths: &BrokerPaths,
    err: Option<&Error>,
    options: &AuditOptions,
) -> (Report, Vec<(PathBuf, u32)>) {
    let mut r = Report::new(format!("tunnelbroker audit: {}", paths.dir.display()));
    let restore = "restore clients.db from a backup; only `tunnelbroker init` creates a database, and a new one would forget every client, assignment and revocation";
    let settings = fsutil::read_to_string(&paths.settings).and_then(|text| {
        Settings::from_toml(&text).map_err(|e| match e {
            Error::InvalidSettings { reason } => Error::InvalidSettings {
                reason: format!("{}: {reason}", paths.settings.display()),
            },
            other => other,
        })
    });
    let ca = settings.as_ref().ok().map(|_| {
        fsutil::read_to_string(&paths.ca_cert)
            .and_then(|cert| Ok((cert, fsutil::read_to_string(&paths.ca_key)?)))
            .and_then(|(cert, key)| Ca::from_pem(&cert, &key))
            .map_err(|e| match e {
                Error::InvalidKey { .. } | Error::UnsupportedKey { .. } => naming(&paths.ca_key, e),
                Error::CaExpired { .. } | Error::CaKeyMismatch { .. } => e,
                _ => naming(&paths.ca_cert, e),
            })
    });
    let why = match (&settings, &ca) {
        (Err(_), _) => "the settings cannot be read",
        (_, Some(Err(_))) => "the CA cannot be loaded",
        _ => NO_DATABASE,
    };
    match (err, &ca) {
        (None, _) => r.fail(
            "database",
            format!("{} is missing", paths.database.display()),
            restore,
        ),
        (Some(e), Some(Ok(_))) => {
            let text = e.to_string();
            let named = if text.contains(&paths.database.display().to_string()) {
                text
            } else {
                format!("{}: {text}", paths.database.display())
            };
            r.fail("database", named, restore);
        }
        (Some(_), _) => r.skip("database", format!("not opened: {why}")),
    }
    if let Err(e) = &settings {
        r.fail(
            "settings",
            e.to_string(),
            "restore tunnelbroker.toml from a backup, or correct it",
        );
    }
    let modes = check_permissions(paths, &mut r);
    r.skip("assignment", why);
    match &ca {
        Some(Ok(ca)) => {
            check_ca(ca, options, &mut r);
            check_server_certificate(&paths.server_cert, ca, options, &mut r);
            r.skip("tls-crypt-v2", why);
            check_crl_file(ca, &paths.crl, &mut r);
        }
        Some(Err(e)) => {
            let hint = match e {
                Error::CaExpired { .. } => CA_HINT,
                _ => "restore ca.crt and private/ca.key from a backup",
            };
            r.fail("ca", e.to_string(), hint);
            for name in [
                "server-certificate",
                "tls-crypt-v2",
                "crl",
                "crl-next-update",
            ] {
                r.skip(name, why);
            }
        }
        None => {
            for name in [
                "ca",
                "server-certificate",
                "tls-crypt-v2",
                "crl",
                "crl-next-update",
            ] {
                r.skip(name, why);
            }
        }
    }
    for name in [
        "certificate",
        "expiry",
        "revocation",
        "server-files",
        "orphan-files",
    ] {
        r.skip(name, why);
    }
    check_server_access(&server_dir(paths, options), &mut r);
    (r, modes)
}

/// `err`, naming `path` when its message does not already.
fn naming(path: &Path, err: Error) -> Error {
    let text = err.to_string();
    if text.contains(&path.display().to_string()) {
        return err;
    }
    Error::InvalidFile {
        path: path.to_owned(),
        reason: text,
    }
}

/// Sets the modes `--fix` found needed; one action line each.
fn chmod(modes: &[(PathBuf, u32)]) -> Vec<String> {
    modes
        .iter()
        .map(
            |(path, mode)| match fs::set_permissions(path, fs::Permissions::from_mode(*mode)) {
                Ok(()) => format!("chmod {mode:04o} {}", path.display()),
                Err(e) => format!("could not chmod {mode:04o} {}: {e}", path.display()),
            },
        )
        .collect()
}

/// The instances that read one of the `written` files at start: an
/// instance's own `NAME.conf`/`.up`/`.down`, and every instance for the
/// shared keys and certificates. CCD entries and the list of clients the
/// tls-crypt-v2 verify program reads are read at each connection.
fn to_restart<'a>(dir: &Path, written: &[PathBuf], instances: &'a [String]) -> Vec<&'a str> {
    let names: Vec<String> = written.iter().map(|p| relative(dir, p)).collect();
    let shared = names.iter().any(|n| {
        // CCD entries (`ccd/`, another server's `ccd-NAME/`) and the
        // tls-crypt-v2 client lists are read at each connection.
        let per_connection = (n.starts_with("ccd") && n.contains('/'))
            || n.starts_with(ServerFiles::TLS_CRYPT_V2_CLIENTS);
        !n.starts_with("tb-") && !per_connection
    });
    instances
        .iter()
        .filter(|i| {
            shared
                || names.iter().any(|n| {
                    n.strip_prefix(i.as_str())
                        .is_some_and(|rest| matches!(rest, ".conf" | ".up" | ".down"))
                })
        })
        .map(String::as_str)
        .collect()
}

/// `path` relative to `dir`, for messages.
fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}

fn check(broker: &Broker, options: &AuditOptions) -> (Report, Repairs) {
    let mut r = Report::new(format!("tunnelbroker audit: {}", broker.dir().display()));
    let mut repairs = Repairs::default();
    let paths = broker.paths();
    let snap = match read(broker) {
        Ok(s) => {
            r.pass("database", format!("{} clients read", s.clients.len()));
            Some(s)
        }
        Err(e) => {
            r.fail(
                "database",
                e.to_string(),
                "restore clients.db from a backup; the broker cannot work with it",
            );
            None
        }
    };
    repairs.modes = check_permissions(paths, &mut r);
    let consistent = match &snap {
        Some(snap) => check_assignments(broker, snap, &mut r),
        None => {
            r.skip("assignment", NO_DATABASE);
            false
        }
    };
    check_ca(broker.ca(), options, &mut r);
    check_server_certificate(&paths.server_cert, broker.ca(), options, &mut r);
    check_tls_crypt_v2(broker, options, &mut r);
    let crl = check_crl_file(broker.ca(), &paths.crl, &mut r);
    match &snap {
        Some(snap) => {
            repairs.crl = crl.as_ref().is_none_or(|(_, stale)| *stale);
            check_certificates(broker, snap, crl.as_ref().map(|(c, _)| c), options, &mut r);
            match &crl {
                Some((crl, _)) => repairs.crl |= check_revoked_listed(snap, crl, &mut r),
                None => r.skip("revocation", "the CRL cannot be read"),
            }
        }
        None => {
            for name in ["certificate", "expiry", "revocation"] {
                r.skip(name, NO_DATABASE);
            }
        }
    }
    match &snap {
        Some(snap) if consistent => {
            repairs.render = check_server_files(broker, snap, options, &mut r);
        }
        _ => {
            let why = if snap.is_some() {
                "the database is inconsistent: what to render is unclear until the FAILs above are fixed"
            } else {
                NO_DATABASE
            };
            for name in ["server-files", "orphan-files"] {
                r.skip(name, why);
            }
        }
    }
    check_server_access(&server_dir(paths, options), &mut r);
    if let Some(snap) = &snap {
        let active = snap
            .clients
            .iter()
            .filter(|(c, _)| c.state == ClientState::Active)
            .count();
        check_host_limits(active, &|path| fs::read_to_string(path).ok(), &mut r);
    }
    (r, repairs)
}

/// How a broker file's mode is judged.
#[derive(Clone, Copy)]
enum Want {
    /// A secret: 0600, nothing for group or others.
    Secret,
    /// `private/`: 0700.
    PrivateDir,
    /// The CRL: 0644, readable by others, writable by no one else.
    Crl,
    /// Settings, certificates and the broker directory: writable by no
    /// one else.
    NotWritable,
}

/// The broker's own files: secrets (`private/` 0700, the keys 0600,
/// `clients.db` and its `-wal`/`-shm` 0600) must not be open to others;
/// the CRL must be 0644; settings, certificates and the broker directory
/// must not be writable by group or others. A too-open mode FAILs, naming
/// the path and the mode it should have; returns the modes `--fix` sets.
fn check_permissions(paths: &BrokerPaths, r: &mut Report) -> Vec<(PathBuf, u32)> {
    let side = |suffix: &str| {
        let mut p = paths.database.clone().into_os_string();
        p.push(suffix);
        PathBuf::from(p)
    };
    let files = [
        (paths.dir.clone(), Want::NotWritable, ""),
        (
            paths.private_dir.clone(),
            Want::PrivateDir,
            "it holds the keys",
        ),
        (paths.ca_key.clone(), Want::Secret, "the CA key"),
        (paths.server_key.clone(), Want::Secret, "the server key"),
        (
            paths.tls_crypt_key.clone(),
            Want::Secret,
            "the tls-crypt key",
        ),
        (
            paths.tls_crypt_v2_server_key.clone(),
            Want::Secret,
            "the tls-crypt-v2 server key",
        ),
        (paths.database.clone(), Want::Secret, "it holds client keys"),
        (side("-wal"), Want::Secret, "it holds client keys"),
        (side("-shm"), Want::Secret, "it holds client keys"),
        (paths.crl.clone(), Want::Crl, "OpenVPN reads it as nobody"),
        (paths.settings.clone(), Want::NotWritable, ""),
        (paths.ca_cert.clone(), Want::NotWritable, ""),
        (paths.server_cert.clone(), Want::NotWritable, ""),
    ];
    let mut fixes = Vec::new();
    let mut checked = 0;
    for (path, want, why) in files {
        // A missing file is the other checks' business.
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        checked += 1;
        let mode = meta.mode() & 0o7777;
        let target = match want {
            Want::Secret => 0o600,
            Want::PrivateDir => 0o700,
            Want::Crl => 0o644,
            Want::NotWritable => mode & !0o022,
        };
        let bad = match want {
            Want::Secret | Want::PrivateDir => mode & 0o077 != 0,
            Want::Crl => mode & 0o022 != 0 || mode & 0o004 == 0,
            Want::NotWritable => mode & 0o022 != 0,
        };
        if !bad {
            continue;
        }
        let why = match (want, why) {
            (Want::NotWritable, _) => ": no one else may write it".to_owned(),
            (_, why) => format!(": {why}"),
        };
        r.fail(
            "permissions",
            format!(
                "{} has mode {mode:04o}, should be {target:04o}{why}",
                path.display()
            ),
            format!(
                "chmod {target:04o} {} (or `tunnelbroker audit --fix`)",
                path.display()
            ),
        );
        fixes.push((path, target));
    }
    if fixes.is_empty() {
        r.pass(
            "permissions",
            format!("the modes of all {checked} broker files are safe"),
        );
    }
    fixes
}

/// The CA certificate: FAIL when expired, WARN when it expires within
/// `days`.
fn check_ca(ca: &Ca, options: &AuditOptions, r: &mut Report) {
    // An imported intermediate ends no later than the first of its chain
    // to end: a root may expire before the intermediate it signed.
    let (i, cert) = ca.first_to_end();
    let info = cert.info();
    let cn = shown(&info.common_name);
    let what = if i == 0 {
        format!("the CA certificate {cn}")
    } else {
        format!("the CA's issuer {cn} (certificate {} of ca.crt)", i + 1)
    };
    expiry_check("ca", &what, info.not_after, options, CA_HINT, r);
}

/// The OpenVPN server's certificate: readable, of this CA, and FAIL when
/// expired, WARN when it expires within `days`.
fn check_server_certificate(path: &Path, ca: &Ca, options: &AuditOptions, r: &mut Report) {
    let cert = match fsutil::read_to_string(path).and_then(|pem| Certificate::from_pem(&pem)) {
        Ok(c) => c,
        Err(e) => {
            r.fail(
                "server-certificate",
                naming(path, e).to_string(),
                SERVER_HINT,
            );
            return;
        }
    };
    match ca.verify(&cert) {
        Ok(()) | Err(Error::CertificateExpired { .. }) => {}
        Err(e) => {
            r.fail(
                "server-certificate",
                format!("{}: {e}", path.display()),
                SERVER_HINT,
            );
            return;
        }
    }
    expiry_check(
        "server-certificate",
        "the server certificate",
        cert.info().not_after,
        options,
        SERVER_HINT,
        r,
    );
}

/// The `tls-crypt-v2` server key of a broker that uses v2: present, well
/// formed and the same as the rendered copy the server reads (that it is
/// private, 0600, is the `permissions` check's). A v1 broker passes,
/// saying how to move.
fn check_tls_crypt_v2(broker: &Broker, options: &AuditOptions, r: &mut Report) {
    const NAME: &str = "tls-crypt-v2";
    if broker.settings().tls_crypt != TlsCryptVersion::V2 {
        r.pass(
            NAME,
            "the broker uses tls-crypt v1 (one key in every bundle); `tunnelbroker server tls-crypt-v2 migrate` moves it to a key per client",
        );
        return;
    }
    let path = &broker.paths().tls_crypt_v2_server_key;
    let key = match broker.tls_crypt_v2_server_key() {
        Ok(k) => k,
        Err(e) => {
            r.fail(
                NAME,
                naming(path, e).to_string(),
                "restore private/tls-crypt-v2-server.key from a backup (a new one, from `tunnelbroker server tls-crypt-v2 migrate` after removing it, needs new bundles for every client)",
            );
            return;
        }
    };
    // Its mode (0600) is the `permissions` check's, which lists it.
    let rendered = server_dir(broker.paths(), options).join(ServerFiles::TLS_CRYPT_V2);
    match fsutil::read_to_string(&rendered) {
        Err(_) if !rendered.exists() => r.pass(
            NAME,
            format!(
                "the server key is well formed; {} is not rendered yet",
                rendered.display()
            ),
        ),
        Ok(text) if TlsCryptV2ServerKey::parse(&text).ok().as_ref() == Some(&key) => r.pass(
            NAME,
            format!(
                "the server key is well formed and the one in {}",
                rendered.display()
            ),
        ),
        Ok(_) => r.fail(
            NAME,
            format!(
                "{} is not the broker's tls-crypt-v2 server key",
                rendered.display()
            ),
            "`tunnelbroker server render` writes it, then restart the OpenVPN server instances",
        ),
        Err(e) => r.fail(
            NAME,
            e.to_string(),
            "`tunnelbroker server render` writes it",
        ),
    }
}

/// PASS, WARN within `options.days`, FAIL once `not_after` has passed.
fn expiry_check(
    name: &str,
    what: &str,
    not_after: OffsetDateTime,
    options: &AuditOptions,
    hint: &str,
    r: &mut Report,
) {
    let now = OffsetDateTime::now_utc();
    if not_after <= now {
        r.fail(
            name,
            format!(
                "{what} expired on {}: OpenVPN refuses every connection",
                not_after.date()
            ),
            hint,
        );
    } else if not_after <= soon(now, options.days) {
        r.warn(
            name,
            format!(
                "{what} expires in {} days, on {}",
                (not_after - now).whole_days(),
                not_after.date()
            ),
            hint,
        );
    } else {
        r.pass(name, format!("{what} is valid until {}", not_after.date()));
    }
}

/// `now` plus `days`; `days` may reach past the last date `time` can hold
/// (year 9999): then everything expires "within `days`".
fn soon(now: OffsetDateTime, days: u32) -> OffsetDateTime {
    now.checked_add(Duration::days(i64::from(days)))
        .unwrap_or_else(|| PrimitiveDateTime::MAX.assume_utc())
}

/// The rendered server directory that `server-access` looks at:
/// `--server-dir`, else the directory `server render` recorded, else its
/// default (keep in step with
/// the default [`Broker::check_server_files`] compares).
fn server_dir(paths: &BrokerPaths, options: &AuditOptions) -> PathBuf {
    // The one `server render` recorded, as for `server-files`.
    let recorded = || ServerSettings::recorded(paths).ok()?.dir;
    options
        .server_dir
        .clone()
        .or_else(recorded)
        .unwrap_or_else(|| paths.server_dir.clone())
}

/// Whether OpenVPN can reach the rendered server side in `dir` after
/// dropping to nobody, under Debian's `openvpn-server@.service`
/// ([`crate::openvpn::reach::problems`]).
fn check_server_access(dir: &Path, r: &mut Report) {
    if !dir.is_dir() {
        r.skip("server-access", format!("{} does not exist", dir.display()));
        return;
    }
    let problems = crate::openvpn::reach::problems(dir);
    for p in &problems {
        if p.hidden {
            r.warn("server-access", &p.message, &p.fix);
        } else {
            r.fail("server-access", &p.message, &p.fix);
        }
    }
    if problems.is_empty() {
        r.pass(
            "server-access",
            format!(
                "OpenVPN can read the files in {} after dropping to nobody, also under Debian's openvpn-server@.service",
                fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned()).display()
            ),
        );
    }
}

/// From how many active clients audit checks the host's limits
/// (`host-limits`): below, the defaults serve.
pub(crate) const HOST_LIMITS_FROM: usize = 100;

/// The host settings a server at scale needs (docs/operator-guide.md, "Host
/// settings at scale"), read through `read` (a `/proc/sys` path to its
/// text) for `clients` active clients: a WARN for each one too low, nothing
/// at all when they are fine, cannot be read, or the broker has fewer than
/// [`HOST_LIMITS_FROM`] clients.
///
/// * `net.core.rmem_max`/`wmem_max` at least the rendered `rcvbuf`/`sndbuf`
///   ([`SOCKET_BUFFER`](crate::openvpn::SOCKET_BUFFER)): the kernel caps
///   the socket buffers there, and a busy server drops datagrams;
/// * `net.ipv4.neigh.default.gc_thresh3` and the IPv6 one at least twice the
///   clients: clients that reach the server over one link (a LAN, a bridge)
///   need a neighbour entry each, and a full table refuses new ones
///   ("neighbor table overflow").
pub(crate) fn check_host_limits(
    clients: usize,
    read: &dyn Fn(&str) -> Option<String>,
    r: &mut Report,
) {
    if clients < HOST_LIMITS_FROM {
        return;
    }
    let value = |key: &str| {
        read(&format!("/proc/sys/{}", key.replace('.', "/")))
            .and_then(|t| t.trim().parse::<u64>().ok())
    };
    let buffer = u64::from(crate::openvpn::SOCKET_BUFFER);
    for key in ["net.core.rmem_max", "net.core.wmem_max"] {
        match value(key) {
            Some(v) if v < buffer => r.warn(
                "host-limits",
                format!(
                    "{key} is {v}, below the {buffer} bytes of the rendered rcvbuf/sndbuf: the kernel caps OpenVPN's socket buffer there, and a busy server drops datagrams (UdpRcvbufErrors)"
                ),
                format!("sysctl -w {key}={buffer}, and set it in /etc/sysctl.d/"),
            ),
            _ => {}
        }
    }
    let want = 2 * clients as u64;
    for family in ["ipv4", "ipv6"] {
        let key = format!("net.{family}.neigh.default.gc_thresh3");
        match value(&key) {
            Some(v) if v < want => r.warn(
                "host-limits",
                format!(
                    "{key} is {v}, less than twice the {clients} active clients: clients that reach the server over one link need a neighbour entry each, and a full table refuses new ones (\"neighbor table overflow\")"
                ),
                format!(
                    "sysctl -w net.{family}.neigh.default.gc_thresh1={clients} net.{family}.neigh.default.gc_thresh2={want} {key}={}, and set them in /etc/sysctl.d/",
                    2 * want
                ),
            ),
            _ => {}
        }
    }
}

fn read(broker: &Broker) -> crate::Result<Snapshot> {
    broker.store().read_with(|tx| {
        let mut clients = Vec::new();
        for c in tx.clients()? {
            let cert = tx.latest_certificate(&c.id)?;
            clients.push((c, cert));
        }
        Ok(Snapshot {
            clients,
            revoked: tx.revoked_certificates()?,
        })
    })
}

/// Returns whether assignments and ports are consistent.
fn check_assignments(broker: &Broker, snap: &Snapshot, r: &mut Report) -> bool {
    let settings = broker.settings();
    // Each server's plan and mode, by name (issue 13).
    let mut plans: BTreeMap<String, (Allocator, ServerMode)> = match broker.server_records() {
        Ok(servers) => servers
            .into_iter()
            .map(|s| (s.name, (Allocator::new(s.pool), s.mode)))
            .collect(),
        Err(e) => {
            r.fail(
                "assignment",
                format!("the servers cannot be read: {e}"),
                "restore the database",
            );
            return false;
        }
    };
    let n_servers = plans.len();
    let mut owners: BTreeMap<_, &ClientId> = BTreeMap::new();
    let mut ports: BTreeMap<u16, &ClientId> = BTreeMap::new();
    let mut bad = 0;
    for (c, _) in &snap.clients {
        let prefix = c.assignment.prefix();
        let Some((plan, mode)) = plans.get_mut(&c.server) else {
            bad += 1;
            r.fail(
                "assignment",
                format!(
                    "client {} belongs to server {}, which does not exist",
                    c.id, c.server
                ),
                "the database was altered: move the client to a server (client move)",
            );
            continue;
        };
        let mode = *mode;
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
        match (mode, c.port) {
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
            if n_servers > 1 {
                format!(
                    "{} assignments in the pools of {n_servers} servers, all unique",
                    snap.clients.len()
                )
            } else {
                format!(
                    "{} assignments in {}, all unique",
                    snap.clients.len(),
                    settings.pool
                )
            },
        );
    }
    bad == 0
}

/// The CRL, and whether it should be re-signed (near or past nextUpdate,
/// foreign). `None` (also to be re-signed) when it cannot be read.
fn check_crl_file(ca: &Ca, path: &Path, r: &mut Report) -> Option<(Crl, bool)> {
    let fix = "sign a fresh one: `tunnelbroker crl` (or `tunnelbroker audit --fix`)";
    let crl = match fsutil::read_to_string(path).and_then(|pem| Crl::from_pem(&pem)) {
        Ok(c) => c,
        Err(e) => {
            r.fail("crl", format!("the CRL cannot be read: {e}"), fix);
            r.skip("crl-next-update", "the CRL cannot be read");
            return None;
        }
    };
    let mut stale = false;
    match ca.check_crl(&crl) {
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
    let next = crl.next_update();
    let near = CRL_NEAR.min((next - crl.this_update()) / 2);
    let refresh = format!(
        "{fix}; keep it fresh with the tunnelbroker-crl.timer that `tunnelbroker server render` writes (see the operator guide)"
    );
    if next <= now {
        stale = true;
        r.fail(
            "crl-next-update",
            format!(
                "the CRL's nextUpdate {} has passed: OpenVPN refuses every client",
                next.date()
            ),
            refresh,
        );
    } else if next - now <= near {
        stale = true;
        r.warn(
            "crl-next-update",
            format!(
                "the CRL's nextUpdate is near: {} (in {} hours); OpenVPN refuses every client after it",
                next.date(),
                (next - now).whole_hours()
            ),
            refresh,
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
    let soon = soon(now, options.days);
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
            format!("no client certificate expires within {} days", options.days),
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

/// Compares the rendered server files with what would be rendered now.
/// Returns the directory to re-render when that is needed.
fn check_server_files(
    broker: &Broker,
    snap: &Snapshot,
    options: &AuditOptions,
    r: &mut Report,
) -> Option<PathBuf> {
    let render = "`tunnelbroker server render` (or `tunnelbroker audit --fix`)";
    let state: ServerFilesState = match broker.check_server_files(options.server_dir.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            r.fail(
                "server-files",
                format!("the server files cannot be compared: {e}"),
                "fix the cause, then run `tunnelbroker server render`",
            );
            r.skip("orphan-files", "the server files could not be compared");
            return None;
        }
    };
    let dir = state.dir.display().to_string();
    if !state.exists {
        r.warn(
            "server-files",
            format!("{dir} does not exist: the server side was never rendered there"),
            "`tunnelbroker server render` writes it; if you render elsewhere (--out DIR), audit that with --server-dir DIR",
        );
        r.skip("orphan-files", format!("{dir} does not exist"));
        return None;
    }
    for p in &state.missing {
        r.fail(
            "server-files",
            format!("{} is missing", p.display()),
            format!("{render} writes it"),
        );
    }
    for (p, how) in &state.differing {
        r.fail(
            "server-files",
            format!("{} {how}", p.display()),
            format!("{render} rewrites it; edits by hand are lost, so make them in the broker"),
        );
    }
    for (p, why) in &state.conflicts {
        r.fail(
            "server-files",
            format!("{} {why}", p.display()),
            "move it away (or, for a file that is not a link, `tunnelbroker server render --force` replaces it)",
        );
    }
    if state.missing.is_empty() && state.differing.is_empty() && state.conflicts.is_empty() {
        r.pass(
            "server-files",
            format!(
                "all {} server files in {dir} are as the database renders them",
                state.matching
            ),
        );
    }
    for p in &state.orphans {
        r.warn(
            "orphan-files",
            format!(
                "{} was rendered for {}; nothing uses it",
                p.display(),
                owner(&state.dir, p, broker, snap)
            ),
            format!("{render} removes it"),
        );
    }
    for p in &state.foreign {
        r.warn(
            "orphan-files",
            format!(
                "{} is named like a file of {} but was not written by the broker",
                p.display(),
                owner(&state.dir, p, broker, snap)
            ),
            "the broker never removes files it did not write: check it and remove it by hand",
        );
    }
    if state.orphans.is_empty() && state.foreign.is_empty() {
        r.pass(
            "orphan-files",
            format!("{dir} holds no files of former clients"),
        );
    }
    // With conflicts, --fix tries and reports why rendering refused.
    let needed = !(state.missing.is_empty()
        && state.differing.is_empty()
        && state.orphans.is_empty()
        && state.conflicts.is_empty());
    needed.then_some(state.dir)
}

/// Whose a leftover server file is, in words: from its name
/// (`tb-client-<id>.conf|.up|.down`, `ccd/<id>`, `tb-shared.conf`,
/// another server's `tb-shared-NAME.conf` and `ccd-NAME/<id>`) and the
/// database.
fn owner(dir: &Path, path: &Path, broker: &Broker, snap: &Snapshot) -> String {
    let rel = relative(dir, path);
    if rel == "tb-shared.conf" {
        return format!(
            "the shared server, but the broker runs in {} mode",
            broker.settings().mode
        );
    }
    if let Some(server) = rel
        .strip_prefix("tb-shared-")
        .and_then(|r| r.strip_suffix(".conf"))
        .or_else(|| {
            rel.strip_prefix("ccd-")
                .and_then(|r| r.split_once('/'))
                .map(|(s, _)| s)
        })
    {
        return format!("the shared server {}", shown(server));
    }
    let stem = rel
        .strip_prefix("ccd/")
        .or_else(|| {
            rel.strip_prefix("tb-client-").map(|r| {
                r.trim_end_matches(".conf")
                    .trim_end_matches(".up")
                    .trim_end_matches(".down")
            })
        })
        .unwrap_or(&rel);
    let Ok(id) = stem.parse::<ClientId>() else {
        return format!("client {}", shown(stem));
    };
    match snap.clients.iter().find(|(c, _)| c.id == id) {
        Some((c, _)) if c.state == ClientState::Revoked => format!("revoked client {id}"),
        Some(_) => format!(
            "client {id} in the other server mode (the broker runs in {} mode)",
            broker.settings().mode
        ),
        None => format!("client {id}, which is no longer in the database"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    /// CCD entries and tls-crypt-v2 client lists (main's and another
    /// server's, issue 19) are read per connection: no restart; an
    /// instance's own configuration restarts it; a shared key or
    /// certificate restarts every instance.
    #[test]
    fn to_restart_knows_every_servers_per_connection_files() {
        let dir = Path::new("/etc/openvpn/server");
        let instances = ["tb-shared".to_owned(), "tb-shared-b".to_owned()];
        let restart = |written: &[&str]| -> Vec<String> {
            let written: Vec<PathBuf> = written.iter().map(|w| dir.join(w)).collect();
            to_restart(dir, &written, &instances)
                .into_iter()
                .map(str::to_owned)
                .collect()
        };
        let none: Vec<String> = Vec::new();
        assert_eq!(
            restart(&[
                "ccd/alice",
                "ccd-b/bob",
                "tls-crypt-v2-clients",
                "tls-crypt-v2-clients-b"
            ]),
            none
        );
        assert_eq!(restart(&["tb-shared-b.conf"]), ["tb-shared-b"]);
        assert_eq!(restart(&["tb-shared.conf"]), ["tb-shared"]);
        assert_eq!(restart(&["server-b.crt"]), ["tb-shared", "tb-shared-b"]);
        // A file named like a CCD directory, not in one, is not per connection.
        assert_eq!(restart(&["ccd-notes"]), ["tb-shared", "tb-shared-b"]);
    }

    /// The host-limits findings for `clients` on a host whose /proc/sys
    /// says `values`.
    fn host(clients: usize, values: &[(&str, &str)]) -> Report {
        let values: BTreeMap<String, String> = values
            .iter()
            .map(|(k, v)| (format!("/proc/sys/{}", k.replace('.', "/")), v.to_string()))
            .collect();
        let mut r = Report::new("host");
        check_host_limits(clients, &|p| values.get(p).cloned(), &mut r);
        r
    }

    const DEFAULTS: [(&str, &str); 4] = [
        ("net.core.rmem_max", "212992\n"),
        ("net.core.wmem_max", "212992\n"),
        ("net.ipv4.neigh.default.gc_thresh3", "1024\n"),
        ("net.ipv6.neigh.default.gc_thresh3", "1024\n"),
    ];

    #[test]
    fn host_limits_warn_when_too_low_for_the_clients() {
        // A small broker: nothing to say, whatever the host.
        assert!(host(HOST_LIMITS_FROM - 1, &DEFAULTS).checks.is_empty());
        // 1,000 clients on a default host: the socket buffers and both
        // neighbour tables are too small.
        let r = host(1000, &DEFAULTS);
        assert_eq!(r.count(Status::Warn), 4, "{r}");
        let text = r.to_string();
        assert!(
            text.contains("net.core.rmem_max is 212992, below the 4194304 bytes"),
            "{text}"
        );
        assert!(
            text.contains("sysctl -w net.core.wmem_max=4194304"),
            "{text}"
        );
        assert!(
            text.contains("net.ipv6.neigh.default.gc_thresh3 is 1024, less than twice the 1000"),
            "{text}"
        );
        assert!(
            text.contains("net.ipv4.neigh.default.gc_thresh3=4000"),
            "{text}"
        );
        // A host set up as the operator guide says: nothing.
        let tuned = [
            ("net.core.rmem_max", "4194304"),
            ("net.core.wmem_max", "8388608"),
            ("net.ipv4.neigh.default.gc_thresh3", "4096"),
            ("net.ipv6.neigh.default.gc_thresh3", "4096"),
        ];
        assert!(host(1000, &tuned).checks.is_empty());
        // ... until it grows past its neighbour tables.
        let r = host(3000, &tuned);
        assert_eq!(r.count(Status::Warn), 2, "{r}");
        // Values that cannot be read or parsed are not guessed at.
        let odd = [("net.core.rmem_max", "lots"), ("net.core.wmem_max", "")];
        assert!(host(1000, &odd).checks.is_empty());
    }
}
