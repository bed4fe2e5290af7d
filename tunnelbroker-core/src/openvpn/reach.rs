//! Whether OpenVPN can reach the rendered server directory at run time,
//! as Debian's `openvpn-server@.service` runs it (DESIGN.md §3, §5).
//!
//! OpenVPN reads the CRL and the CCD entries again at every connection,
//! after it has dropped its privileges to `nobody`: every directory from
//! `/` down to the rendered directory must be searchable by others (`o+x`),
//! or revocation silently stops working and shared mode refuses every
//! client. Debian's unit also hides some trees from OpenVPN altogether:
//! `ProtectHome=true` hides `/root`, `/home` and `/run/user`, and
//! `PrivateTmp=true` gives it its own `/tmp` and `/var/tmp`.
//!
//! [`reach`] applies both rules to a directory, and `problems` adds the
//! files OpenVPN re-reads: `server render` refuses the first rule's
//! breaches and warns about the second; `audit` FAILs and WARNs on all.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// What [`reach`] found about a directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reach {
    /// The directory.
    pub dir: PathBuf,
    /// The directory and those of its ancestors that others cannot search
    /// (no `o+x`), from the top down: OpenVPN, as `nobody`, cannot re-read
    /// the CRL or the CCD entries below them.
    pub unsearchable: Vec<PathBuf>,
    /// The tree that hides the directory from Debian's
    /// `openvpn-server@.service`, and the unit setting that hides it
    /// (`ProtectHome` for `/root`, `/home`, `/run/user`; `PrivateTmp` for
    /// `/tmp`, `/var/tmp`).
    pub hidden_by: Option<(&'static str, &'static str)>,
}

/// The trees Debian's `openvpn-server@.service` hides, and the setting
/// that hides each.
const HIDDEN: [(&str, &str); 5] = [
    ("/root", "ProtectHome"),
    ("/home", "ProtectHome"),
    ("/run/user", "ProtectHome"),
    ("/tmp", "PrivateTmp"),
    ("/var/tmp", "PrivateTmp"),
];

/// Checks how OpenVPN reaches `dir` (give it absolute, ideally canonical):
/// which of `dir` and its ancestors others cannot search, and whether
/// Debian's unit hides it. Reads only metadata; a path that cannot be
/// examined counts as searchable (the caller will fail on it anyway).
///
/// ```
/// use std::path::Path;
/// use tunnelbroker_core::openvpn::reach;
/// let r = reach(Path::new("/tmp"));
/// assert!(r.unsearchable.is_empty());
/// assert_eq!(r.hidden_by, Some(("/tmp", "PrivateTmp")));
/// assert!(r.refusal().is_none());
/// assert!(r.warning().unwrap().contains("PrivateTmp"));
/// assert_eq!(reach(Path::new("/etc/openvpn/server")).hidden_by, None);
/// ```
pub fn reach(dir: &Path) -> Reach {
    let mut unsearchable: Vec<PathBuf> = dir
        .ancestors()
        .filter(|d| {
            fs::metadata(d).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o001 == 0)
        })
        .map(Path::to_path_buf)
        .collect();
    unsearchable.reverse();
    let hidden_by = HIDDEN
        .iter()
        .find(|(tree, _)| dir.starts_with(tree))
        .copied();
    Reach {
        dir: dir.to_owned(),
        unsearchable,
        hidden_by,
    }
}

impl Reach {
    /// The error `server render` refuses with (and `audit` FAILs with) when
    /// OpenVPN could not reach the directory after dropping privileges.
    pub fn refusal(&self) -> Option<Error> {
        if self.unsearchable.is_empty() {
            return None;
        }
        Some(Error::ServerDirUnreachable {
            path: self.dir.clone(),
            blocked: self.unsearchable.clone(),
        })
    }

    /// The warning for a directory that Debian's unit hides from OpenVPN.
    pub fn warning(&self) -> Option<String> {
        let (tree, setting) = self.hidden_by?;
        Some(format!(
            "{} is under {tree}, which {setting}=true of Debian's openvpn-server@.service hides from OpenVPN; render to /etc/openvpn/server instead",
            crate::error::flatten(&self.dir.to_string_lossy())
        ))
    }
}

/// Something that keeps OpenVPN from the rendered server files when it runs
/// as Debian's `openvpn-server@.service` does and after it drops to
/// `nobody`: one line saying what, and one saying how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// The file or directory concerned.
    pub path: PathBuf,
    /// `false`: OpenVPN cannot reach `path` after dropping to nobody (an
    /// error: revocation and CCD entries fail). `true`: `path` lies under a
    /// directory the unit hides (a warning: it works only outside the unit).
    pub hidden: bool,
    /// What is wrong, one line.
    pub message: String,
    /// How to fix it, one line.
    pub fix: String,
}

/// The one rule for where OpenVPN can read the rendered server side `dir`
/// (used by `audit` and `server render`):
///
/// * `dir` and every directory above it must be searchable by others
///   (`o+x`), and so must the CCD directories `dir/ccd` and every other
///   server's `dir/ccd-NAME`: OpenVPN re-reads the CRL and the CCD entries
///   as `nobody` at every connection;
/// * `crl.pem`, the CCD entries and the configurations `*.conf` must be readable by
///   others, the scripts `*.up` and `*.down` readable and executable (the
///   down script runs as nobody); keys and certificates are read as root
///   at start and are not checked;
/// * `dir` should not lie under /root, /home, /run/user, /tmp or /var/tmp,
///   which Debian's unit hides (`hidden` problems).
///
/// Only what exists is checked: for a `dir` not made yet, the directories
/// above it that exist. Symbolic links are resolved first.
pub(crate) fn problems(dir: &Path) -> Vec<Problem> {
    use std::os::unix::fs::MetadataExt;
    let mut problems = Vec::new();
    // The deepest part of `dir` that exists, resolved.
    let mut existing = dir.to_path_buf();
    let canonical = loop {
        if let Ok(c) = fs::canonicalize(&existing) {
            break c;
        }
        if !existing.pop() {
            return problems;
        }
    };
    let shown = match dir.strip_prefix(&existing) {
        Ok(rest) if !rest.as_os_str().is_empty() => canonical.join(rest),
        _ => canonical.clone(),
    };
    let found = reach(&canonical);
    if let Some((root, setting)) = found.hidden_by {
        problems.push(Problem {
            path: shown.clone(),
            hidden: true,
            message: format!(
                "{} lies under {root}, which Debian's openvpn-server@.service hides ({setting}=true)",
                shown.display()
            ),
            fix: "render to a directory outside /root, /home, /run/user, /tmp and /var/tmp, \
                  such as /etc/openvpn/server"
                .into(),
        });
    }
    let mode_of = |p: &Path| {
        fs::metadata(p)
            .ok()
            .map(|m| (m.mode() & 0o7777, m.is_dir()))
    };
    let unreachable = |p: &Path, mode: u32, what: &str, fix: String| Problem {
        path: p.to_owned(),
        hidden: false,
        message: format!(
            "{} (mode {mode:04o}) is not {what} by others: OpenVPN cannot use it after dropping to nobody",
            p.display()
        ),
        fix,
    };
    for d in &found.unsearchable {
        let (mode, _) = mode_of(d).unwrap_or((0, true));
        problems.push(unreachable(
            d,
            mode,
            "searchable",
            format!(
                "chmod o+x {}, or render to a directory OpenVPN can reach, such as /etc/openvpn/server",
                d.display()
            ),
        ));
    }
    if !dir.is_dir() {
        return problems;
    }
    let mut files: Vec<(PathBuf, u32)> = Vec::new();
    let mut ccds = Vec::new();
    if let Ok(entries) = fs::read_dir(&canonical) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // `ccd`, and the CCD directory of every other server.
            if name == "ccd"
                || name
                    .strip_prefix("ccd-")
                    .is_some_and(|n| super::check_server_name(n).is_ok())
            {
                ccds.push(e.path());
                continue;
            }
            let need = if name == "crl.pem" || name.ends_with(".conf") {
                0o004
            } else if name.ends_with(".up") || name.ends_with(".down") {
                0o005
            } else {
                continue;
            };
            files.push((e.path(), need));
        }
    }
    ccds.sort();
    for ccd in ccds {
        let Some((mode, true)) = mode_of(&ccd) else {
            continue;
        };
        if mode & 0o001 == 0 {
            problems.push(unreachable(
                &ccd,
                mode,
                "searchable",
                format!("chmod o+x {}", ccd.display()),
            ));
        }
        if let Ok(entries) = fs::read_dir(&ccd) {
            files.extend(entries.flatten().map(|e| (e.path(), 0o004)));
        }
    }
    files.sort();
    for (path, need) in files {
        if let Some((mode, false)) = mode_of(&path)
            && mode & need != need
        {
            let (what, chmod) = if need == 0o005 {
                ("readable and executable", "o+rx")
            } else {
                ("readable", "o+r")
            };
            problems.push(unreachable(
                &path,
                mode,
                what,
                format!(
                    "chmod {chmod} {} (files rendered under umask 077 lack it)",
                    path.display()
                ),
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_what_nobody_cannot_reach() {
        let chmod = |p: &Path, mode: u32| {
            fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
        };
        // A private directory under /tmp.
        let tmp = tempfile::tempdir().unwrap();
        let top = fs::canonicalize(tmp.path()).unwrap();
        chmod(&top, 0o700);
        let server = top.join("server");
        let found = |dir: &Path| -> Vec<(PathBuf, bool)> {
            problems(dir)
                .into_iter()
                .map(|r| (r.path, r.hidden))
                .collect()
        };
        // Not made yet: what exists above it is checked.
        assert_eq!(
            found(&server),
            [(server.clone(), true), (top.clone(), false)]
        );
        let all = problems(&server);
        assert!(all[0].message.contains("PrivateTmp"), "{all:?}");
        assert_eq!(
            all[1].message,
            format!(
                "{} (mode 0700) is not searchable by others: OpenVPN cannot use it after dropping to nobody",
                top.display()
            )
        );
        // Rendered under umask 077: server/ and ccd/ 0700, a CCD entry 0600.
        chmod(&top, 0o755);
        let ccd = server.join("ccd");
        fs::create_dir_all(&ccd).unwrap();
        chmod(&server, 0o700);
        chmod(&ccd, 0o700);
        // Another server's CCD directory, beside main's (issue 19).
        let ccd_b = server.join("ccd-b");
        fs::create_dir_all(&ccd_b).unwrap();
        chmod(&ccd_b, 0o700);
        fs::write(ccd_b.join("bob"), "x").unwrap();
        chmod(&ccd_b.join("bob"), 0o600);
        for (name, mode) in [
            ("tb-shared.conf", 0o600),
            ("crl.pem", 0o644),
            ("server.key", 0o600),
            ("tb-client-a.down", 0o700),
            ("notes.txt", 0o600),
        ] {
            fs::write(server.join(name), "x").unwrap();
            chmod(&server.join(name), mode);
        }
        fs::write(ccd.join("alice"), "x").unwrap();
        chmod(&ccd.join("alice"), 0o600);
        assert_eq!(
            found(&server),
            [
                (server.clone(), true),
                (server.clone(), false),
                (ccd.clone(), false),
                (ccd_b.clone(), false),
                (ccd.join("alice"), false),
                (ccd_b.join("bob"), false),
                (server.join("tb-client-a.down"), false),
                (server.join("tb-shared.conf"), false),
            ]
        );
        // As render writes it: only the warning about /tmp is left.
        for (p, mode) in [
            (&server, 0o755),
            (&ccd, 0o755),
            (&ccd.join("alice"), 0o644),
            (&ccd_b, 0o755),
            (&ccd_b.join("bob"), 0o644),
            (&server.join("tb-client-a.down"), 0o755),
            (&server.join("tb-shared.conf"), 0o644),
        ] {
            chmod(p, mode);
        }
        assert_eq!(found(&server), [(server.clone(), true)]);
        // A symbolic link is resolved: a private target is named.
        let link = top.join("link");
        std::os::unix::fs::symlink(&server, &link).unwrap();
        chmod(&server, 0o750);
        assert_eq!(
            found(&link),
            [(server.clone(), true), (server.clone(), false)]
        );
    }
}
