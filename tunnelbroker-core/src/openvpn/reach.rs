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
//! [`reach`] applies both rules; `server render` refuses the first and
//! warns about the second, and `audit` FAILs and WARNs on them.

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
