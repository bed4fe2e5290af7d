//! Which files in a rendered directory belong to this broker (issue 17):
//! `server render` writes and removes only its own files, and never
//! follows a symbolic link.
//!
//! A manifest in the directory, `.tunnelbroker-manifest.<id>` (0644,
//! written atomically), names the broker (the SHA-256 fingerprint of its CA
//! certificate, whose first 16 hex digits are `<id>`) and the relative
//! paths it wrote there. Two brokers rendering into one directory keep two
//! manifests and never touch each other's files or manifest.
//!
//! Each server of a broker has its own manifest (issue 19): `main`'s is
//! `.tunnelbroker-manifest.<id>`, server NAME's
//! `.tunnelbroker-manifest.<id>.NAME`, so that several servers rendered into
//! one directory (one host) do not take each other's files for their own
//! leftovers. A file a sibling (another server of the same broker) lists is
//! never removed; a planned file it lists (the shared `ca.crt`, `crl.pem`,
//! tls-crypt keys, CRL units) is ours to write as well.
//!
//! The rules, for a file the rendering plans to write:
//! * missing: written;
//! * listed in our manifest: ours, rewritten when it differs (unless
//!   another broker's manifest lists it too, after a `--force` there, and
//!   it differs: then it is foreign again);
//! * identical to what would be written: adopted (listed from now on);
//! * a directory rendered before manifests existed (no manifest of ours,
//!   and its `ca.crt` holds this broker's CA certificate): the key and
//!   certificate files, a `crl.pem` (the copy `crl -o` was told to write
//!   there) and the files with the `# tunnelbroker: ` header are ours;
//! * anything else is foreign: the whole rendering is refused before
//!   anything is written, unless forced;
//! * a symbolic link at the path or at a directory on the way, or something
//!   other than a regular file, is refused even when forced.
//!
//! Removed are only files of our manifest that are no longer planned (and,
//! in a directory rendered before manifests, header files named like an
//! instance's).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::openvpn::ServerNames;

/// The start of every manifest's file name.
pub(super) const MANIFEST_PREFIX: &str = ".tunnelbroker-manifest.";
/// The first line of a manifest.
const MANIFEST_HEAD: &str =
    "# tunnelbroker manifest: the files the broker below rendered here; do not edit";
/// The files without a header that a directory rendered before manifests
/// holds of this broker: what every rendering wrote besides the instances'
/// files, and the CRL copy that the operator guide had `crl -o` write there.
const FIXED_FILES: [&str; 5] = [
    "ca.crt",
    "server.crt",
    "server.key",
    "tls-crypt.key",
    "crl.pem",
];

/// The broker's identity: the SHA-256 fingerprint (hex) of its CA
/// certificate.
pub(super) fn broker_id(ca_der: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, ca_der);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The manifest file of the broker `id`'s server `names` in `dir`:
/// `.tunnelbroker-manifest.<id>` for `main`, `.<id>.NAME` for another.
pub(super) fn manifest_path(dir: &Path, id: &str, names: &ServerNames) -> PathBuf {
    dir.join(format!(
        "{MANIFEST_PREFIX}{}{}",
        &id[..16],
        names.manifest_suffix()
    ))
}

/// The start of the name of a server's record of the files render found
/// as it would write them (see [`Seen`]).
pub(super) const SEEN_PREFIX: &str = ".tunnelbroker-seen.";
/// The first line of that record.
const SEEN_HEAD: &str = "# tunnelbroker render cache v1: planned files found as rendered (device inode size ctime-ns text-sha256/128 path); safe to remove";
/// How long before a rendering starts a file must have last changed for
/// the rendering to record it: more than two ticks of the kernel's coarse
/// clock, from which change times are taken, so that no later change of the
/// file can carry the same change time (a change within the tick of a look
/// at the file could).
const SEEN_MARGIN_NS: i128 = 20_000_000;
/// The most of the record that is read (10,000 CCD files take about 0.7 MB).
const MAX_SEEN: u64 = 64 << 20;

/// The record of found files of the broker `id`'s server `names` in `dir`:
/// `.tunnelbroker-seen.<id>` for `main`, `.<id>.NAME` for another.
pub(super) fn seen_path(dir: &Path, id: &str, names: &ServerNames) -> PathBuf {
    dir.join(format!(
        "{SEEN_PREFIX}{}{}",
        &id[..16],
        names.manifest_suffix()
    ))
}

/// What only the kernel sets of a file: device, inode, size and change time
/// (nanoseconds). Every write, truncation, `chmod`, `chown`, `utimensat`,
/// link, or rename onto the path gives the file at the path another change
/// time or another inode, and no unprivileged call sets a change time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    ctime_ns: i128,
}

impl Stamp {
    fn of_meta(m: &fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        }
    }

    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    fn of_stat(st: &rustix::fs::Stat) -> Self {
        Stamp {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            size: u64::try_from(st.st_size).unwrap_or(u64::MAX),
            ctime_ns: i128::from(st.st_ctime) * 1_000_000_000 + i128::from(st.st_ctime_nsec),
        }
    }
}

/// A planned file a rendering found on disk as it would write it: its stamp
/// then, and the first 128 bits of the SHA-256 of its text. A later
/// rendering that plans the same text and finds the same stamp needs one
/// `fstatat` instead of reading the file: nothing has changed it since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seen {
    stamp: Stamp,
    hash: [u8; 16],
}

/// The first 128 bits of the SHA-256 of `data`.
fn text_hash(data: &[u8]) -> [u8; 16] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut h = [0; 16];
    h.copy_from_slice(&d.as_ref()[..16]);
    h
}

/// The text of the record of found files.
fn seen_text(id: &str, seen: &[&(PathBuf, Seen)]) -> String {
    use std::fmt::Write;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(SEEN_HEAD.len() + 80 + seen.len() * 96);
    let _ = write!(text, "{SEEN_HEAD}\nbroker sha256:{id}\n");
    for (rel, s) in seen {
        let _ = write!(
            text,
            "{} {} {} {} ",
            s.stamp.dev, s.stamp.ino, s.stamp.size, s.stamp.ctime_ns
        );
        for b in s.hash {
            text.push(char::from(HEX[usize::from(b >> 4)]));
            text.push(char::from(HEX[usize::from(b & 15)]));
        }
        text.push(' ');
        // Plain relative paths of UTF-8 text only are recorded (the survey
        // took them from planned paths, which are).
        text.push_str(&rel.to_string_lossy());
        text.push('\n');
    }
    text
}

/// Parses the record of found files of the broker `id`; `None` when it is
/// another broker's, of another version, or damaged in any way: then every
/// planned file is read.
fn parse_seen(id: &str, text: &str) -> Option<HashMap<OsString, Seen>> {
    let mut lines = text.lines();
    if lines.next()? != SEEN_HEAD || lines.next()?.strip_prefix("broker sha256:")? != id {
        return None;
    }
    let mut out = HashMap::with_capacity(text.len() / 64);
    for line in lines {
        let mut f = line.splitn(6, ' ');
        let dev = f.next()?.parse().ok()?;
        let ino = f.next()?.parse().ok()?;
        let size = f.next()?.parse().ok()?;
        let ctime_ns = f.next()?.parse().ok()?;
        let h = f.next()?;
        let rel = f.next()?;
        if h.len() != 32 || !plain_relative(Path::new(rel)) {
            return None;
        }
        let mut hash = [0u8; 16];
        for (i, b) in hash.iter_mut().enumerate() {
            *b = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        let stamp = Stamp {
            dev,
            ino,
            size,
            ctime_ns,
        };
        out.insert(OsString::from(rel), Seen { stamp, hash });
    }
    Some(out)
}

/// Reads the record of found files at `path`, not through a link and only
/// from a regular file. Empty when missing, unreadable or damaged.
fn read_seen(path: &Path, id: &str) -> HashMap<OsString, Seen> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(f) = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    else {
        return HashMap::new();
    };
    let Some(len) = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len()) else {
        return HashMap::new();
    };
    // Read in one go where the size holds (not doubling from 32 bytes).
    let mut text = String::with_capacity(usize::try_from(len.min(MAX_SEEN) + 1).unwrap_or(0));
    if f.take(MAX_SEEN).read_to_string(&mut text).is_err() {
        return HashMap::new();
    }
    parse_seen(id, &text).unwrap_or_default()
}

/// Nanoseconds since the epoch, as change times count them.
fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

/// The text of a manifest.
fn manifest_text(id: &str, files: &BTreeSet<PathBuf>) -> String {
    use std::fmt::Write;
    let mut text = format!("{MANIFEST_HEAD}\nbroker sha256:{id}\n");
    for f in files {
        // Into the text, not through a string of its own per file.
        let _ = writeln!(text, "file {}", f.display());
    }
    text
}

/// A relative path made of plain names only (no `..`, no root), as text.
fn plain_relative(rel: &Path) -> bool {
    !rel.as_os_str().is_empty()
        && rel.components().all(|c| matches!(c, Component::Normal(_)))
        && rel.to_str().is_some_and(|s| !s.contains(['\n', '\r']))
}

/// Parses a manifest: the broker's fingerprint and the files.
fn parse_manifest(path: &Path, text: &str) -> Result<(String, BTreeSet<PathBuf>)> {
    let bad = |n: usize, why: &str| Error::InvalidFile {
        path: path.to_owned(),
        reason: format!(
            "line {n}: {why} (a damaged manifest: remove it, and render adopts the files whose contents match)"
        ),
    };
    let mut broker = None;
    // Collected first: a manifest is written sorted, and a set built from
    // sorted paths compares each once, where inserting them one by one
    // compares each about log2(n) times (issue 19: 10,000 CCD files).
    let mut files = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(id) = line.strip_prefix("broker sha256:") {
            if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(n, "not a SHA-256 fingerprint"));
            }
            broker = Some(id.to_ascii_lowercase());
        } else if let Some(f) = line.strip_prefix("file ") {
            let rel = PathBuf::from(f);
            if !plain_relative(&rel) {
                return Err(bad(n, "not a relative path of plain names"));
            }
            files.push(rel);
        } else {
            return Err(bad(n, "neither a broker nor a file line"));
        }
    }
    let broker = broker.ok_or_else(|| bad(1, "no broker line"))?;
    Ok((broker, files.into_iter().collect()))
}

/// Why a path cannot be written or removed safely: a symbolic link at it
/// or at a directory between `dir` and it, or something that is not a
/// regular file (or, on the way, not a directory). `None` when it is fine.
fn blocked(dir: &Path, rel: &Path) -> Option<(PathBuf, String)> {
    let mut p = dir.to_owned();
    let n = rel.components().count();
    for (i, c) in rel.components().enumerate() {
        p.push(c);
        let last = i + 1 == n;
        match fs::symlink_metadata(&p) {
            Err(_) => return None,
            Ok(m) if m.file_type().is_symlink() => {
                return Some((
                    p,
                    "is a symbolic link; render never writes or removes through links: \
                     replace it with a real directory or file, or remove it"
                        .into(),
                ));
            }
            Ok(m) if !last && !m.is_dir() => return Some((p, "is not a directory".into())),
            Ok(m) if last && !m.is_file() => return Some((p, "is not a regular file".into())),
            Ok(_) => {}
        }
    }
    None
}

/// Why the path of a planned file is blocked: the path at fault and why.
type Blocked = (PathBuf, String);

/// A planned file found on disk: its mode, its stamp, and its contents, or
/// `None` when its stamp is the one recorded with the planned text (the
/// contents are that text).
type Found = (u32, Stamp, Option<Vec<u8>>);

/// Reads the planned file `path` (`rel` in `dir`) as [`blocked`] and a read
/// would, with fewer system calls (issue 19: 10,000 CCD files are surveyed
/// at every rendering): the directories on the way are checked once per
/// survey (`checked`) and opened once, and the file is opened relative to
/// that descriptor (no walk of the whole path per file), without following
/// a link and without blocking on a FIFO, then checked and read through
/// that one descriptor. `Ok(Err(..))`: blocked; `Ok(Ok(None))`: missing.
///
/// With `known`, the stamp recorded when a rendering last found the file as
/// planned now, the file is looked at (`fstatat`, not following a link)
/// and only read when it is not a regular file of that stamp.
fn read_planned(
    dir: &Path,
    rel: &Path,
    path: &Path,
    checked: &mut HashMap<PathBuf, DirState>,
    known: Option<Stamp>,
) -> Result<std::result::Result<Option<Found>, Blocked>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut parent_fd = None;
    if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
        let state = match checked.get(parent) {
            Some(s) => s.clone(),
            None => {
                let s = dir_state(dir, parent);
                checked.insert(parent.to_owned(), s.clone());
                s
            }
        };
        match state {
            DirState::Missing => return Ok(Ok(None)),
            DirState::Blocked(b) => return Ok(Err(b)),
            DirState::Fine(fd) => parent_fd = fd,
        }
    }
    if let Some(known) = known {
        use rustix::fs::{AtFlags, FileType};
        let st = match (&parent_fd, rel.file_name()) {
            (Some(fd), Some(name)) => rustix::fs::statat(&**fd, name, AtFlags::SYMLINK_NOFOLLOW),
            _ => rustix::fs::statat(rustix::fs::CWD, path, AtFlags::SYMLINK_NOFOLLOW),
        };
        if let Ok(st) = st {
            #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
            let mode = st.st_mode as u32;
            if FileType::from_raw_mode(mode) == FileType::RegularFile
                && Stamp::of_stat(&st) == known
            {
                return Ok(Ok(Some((mode & 0o7777, known, None))));
            }
        }
    }
    let file = match (&parent_fd, rel.file_name()) {
        (Some(fd), Some(name)) => {
            use rustix::fs::{Mode, OFlags};
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
            rustix::fs::openat(&**fd, name, flags, Mode::empty())
                .map(fs::File::from)
                .map_err(std::io::Error::from)
        }
        _ => fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path),
    };
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ok(None)),
        // A link at the path (O_NOFOLLOW), or something else odd: the
        // slow, exact check says what.
        Err(e) => {
            return match blocked(dir, rel) {
                Some(b) => Ok(Err(b)),
                None => Err(Error::io(path, e)),
            };
        }
    };
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Ok(Err((path.to_owned(), "is not a regular file".into())));
    }
    // Exactly the size fstat gave, in as few reads as it takes (a
    // `read_to_end` asks for the size and position again, and reads once
    // more to see the end).
    let len = usize::try_from(meta.len()).unwrap_or(usize::MAX);
    let mut data = vec![0; len.min(MAX_PLANNED_SIZE)];
    let mut n = 0;
    while n < data.len() {
        match file.read(&mut data[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    data.truncate(n);
    Ok(Ok(Some((
        meta.permissions().mode() & 0o7777,
        Stamp::of_meta(&meta),
        Some(data),
    ))))
}

/// The most of a planned file that is read to compare it: more than the
/// largest file the broker renders (a CRL copy), so a larger file simply
/// differs.
const MAX_PLANNED_SIZE: usize = crate::fsutil::MAX_CRL_PEM + 1;

/// What a directory on the way to planned files is.
#[derive(Debug, Clone)]
enum DirState {
    /// A real directory, and so is every one above it; opened (not
    /// following a link) where that worked, for opening the files in it.
    Fine(Option<std::rc::Rc<std::os::fd::OwnedFd>>),
    /// It (or one above it) does not exist: neither does anything below.
    Missing,
    /// A link or not a directory: every file below is blocked, as
    /// [`blocked`] says.
    Blocked(Blocked),
}

/// The state of the directory `rel` in `dir`, checked component by
/// component as [`blocked`] does.
fn dir_state(dir: &Path, rel: &Path) -> DirState {
    let mut p = dir.to_owned();
    for c in rel.components() {
        p.push(c);
        match fs::symlink_metadata(&p) {
            Err(_) => return DirState::Missing,
            Ok(m) if m.file_type().is_symlink() => {
                return DirState::Blocked((
                    p,
                    "is a symbolic link; render never writes or removes through links: \
                     replace it with a real directory or file, or remove it"
                        .into(),
                ));
            }
            Ok(m) if !m.is_dir() => return DirState::Blocked((p, "is not a directory".into())),
            Ok(_) => {}
        }
    }
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    DirState::Fine(
        rustix::fs::open(&p, flags, Mode::empty())
            .ok()
            .map(std::rc::Rc::new),
    )
}

/// What a planned file's path holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum State {
    /// Nothing: to be written.
    Missing,
    /// A regular file of ours (listed, adopted or rendered before
    /// manifests), with whether its contents and mode are right.
    Ours {
        /// The contents are what would be written.
        same_text: bool,
        /// The mode is what would be set.
        same_mode: bool,
    },
    /// A regular file that is not ours and differs: the reason says whose.
    Foreign(String),
    /// A path that is never written (a symbolic link on the way, not a
    /// regular file): the path at fault and why.
    Blocked(PathBuf, String),
}

/// One planned file: absolute path in the directory, contents and mode.
pub(super) struct Want<'a> {
    pub path: &'a Path,
    pub data: &'a [u8],
    pub mode: u32,
}

/// How a directory stands against what is to be rendered into it.
#[derive(Debug)]
pub(super) struct Survey {
    /// The broker's identity.
    pub id: String,
    /// Our manifest in the directory.
    pub manifest: PathBuf,
    /// Its text now, if it exists.
    pub manifest_now: Option<String>,
    /// The relative paths we own now (manifest, or rendered before
    /// manifests).
    pub owned: BTreeSet<PathBuf>,
    /// The state of each planned file, in order.
    pub states: Vec<State>,
    /// The relative path of each planned file, in order.
    pub planned: Vec<PathBuf>,
    /// Regular files of ours that are no longer planned (to remove).
    pub orphans: Vec<PathBuf>,
    /// Files named like the broker's, not planned and nobody's we know of.
    pub foreign: Vec<PathBuf>,
    /// Files of ours that are not removed, with why.
    pub kept: Vec<(PathBuf, String)>,
    /// The record of found files in the directory.
    pub seen_path: PathBuf,
    /// What it holds now.
    pub seen_before: HashMap<OsString, Seen>,
    /// The planned files found as planned, in order, long enough after
    /// their last change to be recorded ([`Survey::write_seen`]).
    pub seen: Vec<(PathBuf, Seen)>,
}

/// Surveys `dir` (canonical) for the server `names` of the broker `id`
/// with CA certificate `ca_pem`, against the planned files `wants` (all
/// inside `dir`). Reads only.
pub(super) fn survey(
    dir: &Path,
    id: &str,
    names: &ServerNames,
    ca_pem: &str,
    wants: &[Want<'_>],
) -> Result<Survey> {
    look_around(dir, id, names, ca_pem)?.survey(wants)
}

/// What [`look_around`] found in a directory before the planned files are
/// looked at: the manifests, the record of found files and the files named
/// like ours.
pub(super) struct Around<'a> {
    dir: &'a Path,
    id: &'a str,
    /// When the look started (ns since the epoch).
    started: i128,
    manifest: PathBuf,
    manifest_now: Option<String>,
    owned: BTreeSet<PathBuf>,
    others: BTreeMap<PathBuf, PathBuf>,
    siblings: BTreeSet<PathBuf>,
    legacy: bool,
    seen_path: PathBuf,
    seen_before: HashMap<OsString, Seen>,
    named_like_ours: Vec<PathBuf>,
}

/// The first half of [`survey`], which needs no planned file: reads the
/// manifests in `dir` (canonical), the record of found files and the
/// names of the files there, for the server `names` of the broker `id`
/// with CA certificate `ca_pem`. A rendering does this while it plans
/// (issue 19). Reads only.
pub(super) fn look_around<'a>(
    dir: &'a Path,
    id: &'a str,
    names: &ServerNames,
    ca_pem: &str,
) -> Result<Around<'a>> {
    // Before the first look at any file: a file changed at least
    // SEEN_MARGIN_NS before this is recorded (see `Seen`).
    let started = now_ns();
    let manifest = manifest_path(dir, id, names);
    // Our manifest, and what the others claim.
    let mut manifest_now = None;
    let mut owned = BTreeSet::new();
    let mut others: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    // What the broker's other servers rendered here.
    let mut siblings: BTreeSet<PathBuf> = BTreeSet::new();
    let mut has_sibling = false;
    if let Some((p, why)) = blocked(dir, Path::new(manifest.file_name().unwrap_or_default())) {
        return Err(Error::InvalidFile {
            path: p,
            reason: why,
        });
    }
    let entries = fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(MANIFEST_PREFIX) || !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path = e.path();
        let text = crate::fsutil::read_to_string(&path)?;
        if path == manifest {
            let (broker, files) = parse_manifest(&path, &text)?;
            if broker != id {
                return Err(Error::InvalidFile {
                    path,
                    reason: format!(
                        "names the broker sha256:{broker}, not this one (sha256:{id}); remove it if that broker is gone"
                    ),
                });
            }
            owned = files;
            manifest_now = Some(text);
        } else if let Ok((broker, files)) = parse_manifest(&path, &text) {
            if broker == id {
                // Another server of this broker: its files stay, and the
                // shared ones are ours to write too.
                has_sibling = true;
                siblings.extend(files);
            } else {
                // Another broker's: its files are never ours to touch.
                for f in files {
                    others.insert(f, path.clone());
                }
            }
        }
    }
    // A directory `main` rendered before manifests existed: its ca.crt
    // holds our CA certificate (another server, and a directory where one
    // rendered, had manifests from the start).
    let legacy = manifest_now.is_none()
        && names.is_main()
        && !has_sibling
        && !others.contains_key(Path::new("ca.crt"))
        && blocked(dir, Path::new("ca.crt")).is_none()
        && fs::read_to_string(dir.join("ca.crt")).is_ok_and(|t| t.contains(ca_pem.trim()));
    // What earlier renderings found, trusted only along with our manifest
    // (without it every file is read, as before manifests).
    let seen_path = seen_path(dir, id, names);
    let seen_before = if manifest_now.is_some() {
        read_seen(&seen_path, id)
    } else {
        HashMap::new()
    };
    Ok(Around {
        dir,
        id,
        started,
        manifest,
        manifest_now,
        owned,
        others,
        siblings,
        legacy,
        seen_path,
        seen_before,
        named_like_ours: named_like_ours(dir, names),
    })
}

impl Around<'_> {
    /// The second half of [`survey`]: looks at the planned files `wants`
    /// (all inside the directory).
    pub(super) fn survey(self, wants: &[Want<'_>]) -> Result<Survey> {
        let Around {
            dir,
            id,
            started,
            manifest,
            manifest_now,
            mut owned,
            others,
            siblings,
            legacy,
            seen_path,
            seen_before,
            named_like_ours,
        } = self;

        // Looked up by hash, by their text: a look-up in the ordered set
        // compares paths component by component about log2(n) times, and a
        // Path hashes component by component (issue 19).
        let owned_set: HashSet<&OsStr> = owned.iter().map(|p| p.as_os_str()).collect();
        let look = Look {
            dir,
            started,
            seen_before: &seen_before,
            owned: &owned_set,
            siblings: &siblings,
            others: &others,
            legacy,
        };
        // Each planned file looked at (a system call or more each, 10,000 CCD
        // files at a rendering: issue 19), in a few threads on a large
        // directory, each over a run of the files in order.
        let threads = if wants.len() < PARALLEL_LOOK_MIN {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_LOOK_THREADS))
        };
        let runs: Vec<Result<Looked>> = if threads == 1 {
            vec![look.run(wants)]
        } else {
            let per = wants.len().div_ceil(threads);
            std::thread::scope(|scope| {
                let handles: Vec<_> = wants
                    .chunks(per)
                    .map(|run| scope.spawn(|| look.run(run)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            })
        };
        let mut states = Vec::with_capacity(wants.len());
        let mut planned = Vec::with_capacity(wants.len());
        let mut seen = Vec::new();
        for run in runs {
            let run = run?;
            states.extend(run.states);
            planned.extend(run.planned);
            seen.extend(run.seen);
        }

        // Leftovers: ours to remove, and files named like ours that are nobody's.
        let planned_set: HashSet<&OsStr> = planned.iter().map(|p| p.as_os_str()).collect();
        let mut orphans = Vec::new();
        let mut kept = Vec::new();
        let mut before_manifests = Vec::new();
        let mut foreign = Vec::new();
        for rel in named_like_ours {
            if planned_set.contains(rel.as_os_str())
                || owned_set.contains(rel.as_os_str())
                || others.contains_key(&rel)
                || siblings.contains(&rel)
            {
                continue;
            }
            if ours_before_manifests(legacy, &rel, &dir.join(&rel)) {
                before_manifests.push(rel);
            } else {
                foreign.push(dir.join(rel));
            }
        }
        // Ours (in order; those of a directory rendered before manifests are
        // not in the manifest).
        let mut candidates: Vec<&Path> = owned.iter().map(PathBuf::as_path).collect();
        if !before_manifests.is_empty() {
            candidates.extend(before_manifests.iter().map(PathBuf::as_path));
            candidates.sort();
        }
        for rel in candidates {
            // Not planned any more, and not another broker's (or another
            // server's) now either.
            if planned_set.contains(rel.as_os_str())
                || others.contains_key(rel)
                || siblings.contains(rel)
            {
                continue;
            }
            let path = dir.join(rel);
            match blocked(dir, rel) {
                Some((p, why)) => kept.push((path, format!("{} {why}", p.display()))),
                None if fs::symlink_metadata(&path).is_ok() => orphans.push(path),
                None => {}
            }
        }
        if legacy {
            owned.extend(
                planned
                    .iter()
                    .zip(&states)
                    .filter(|(_, s)| matches!(s, State::Ours { .. }))
                    .map(|(rel, _)| rel.clone()),
            );
        }
        Ok(Survey {
            id: id.to_owned(),
            manifest,
            manifest_now,
            owned,
            states,
            planned,
            orphans,
            foreign,
            kept,
            seen_path,
            seen_before,
            seen,
        })
    }
}

/// Below this many planned files, they are looked at in one thread.
const PARALLEL_LOOK_MIN: usize = 2_000;
/// The most threads that look at planned files.
const MAX_LOOK_THREADS: usize = 4;

/// What [`survey`] needs to look at planned files (shared by its threads).
struct Look<'a> {
    dir: &'a Path,
    /// When the survey started (ns since the epoch).
    started: i128,
    seen_before: &'a HashMap<OsString, Seen>,
    owned: &'a HashSet<&'a OsStr>,
    siblings: &'a BTreeSet<PathBuf>,
    others: &'a BTreeMap<PathBuf, PathBuf>,
    /// The directory was rendered before manifests.
    legacy: bool,
}

/// What a run of planned files was found to be, in order.
struct Looked {
    states: Vec<State>,
    planned: Vec<PathBuf>,
    seen: Vec<(PathBuf, Seen)>,
}

impl Look<'_> {
    /// Looks at each of `wants`: its state, its relative path, and whether
    /// it is recorded as found ([`Seen`]).
    fn run(&self, wants: &[Want<'_>]) -> Result<Looked> {
        let dir = self.dir;
        let mut states = Vec::with_capacity(wants.len());
        let mut planned = Vec::with_capacity(wants.len());
        let mut seen = Vec::new();
        let mut dirs_checked = HashMap::new();
        for w in wants {
            let rel = w
                .path
                .strip_prefix(dir)
                .ok()
                .filter(|r| plain_relative(r))
                .ok_or_else(|| Error::InvalidFile {
                    path: w.path.to_owned(),
                    reason: format!("is not a plain path inside {}", dir.display()),
                })?
                .to_owned();
            // The recorded stamp counts only for the same planned text.
            let mut hash = None;
            let known = self.seen_before.get(rel.as_os_str()).and_then(|s| {
                let h = *hash.get_or_insert_with(|| text_hash(w.data));
                (s.hash == h).then_some(s.stamp)
            });
            let state = match read_planned(dir, &rel, w.path, &mut dirs_checked, known)? {
                Err((p, why)) => State::Blocked(p, why),
                Ok(None) => State::Missing,
                Ok(Some((mode, stamp, now))) => {
                    let same_text = now.is_none_or(|now| now == w.data);
                    let same_mode = mode == w.mode;
                    if same_text && stamp.ctime_ns + SEEN_MARGIN_NS < self.started {
                        let hash = *hash.get_or_insert_with(|| text_hash(w.data));
                        seen.push((rel.clone(), Seen { stamp, hash }));
                    }
                    // Listed by another broker too (taken over with
                    // --force) and not as we would write it: contested,
                    // never overwritten silently.
                    let contested = self.others.contains_key(&rel) && !same_text;
                    if (self.owned.contains(rel.as_os_str()) || self.siblings.contains(&rel))
                        && !contested
                    {
                        State::Ours {
                            same_text,
                            same_mode,
                        }
                    } else if let Some(m) = self.others.get(&rel) {
                        State::Foreign(format!(
                            "belongs to another broker (listed in {})",
                            m.display()
                        ))
                    } else if same_text || ours_before_manifests(self.legacy, &rel, w.path) {
                        State::Ours {
                            same_text,
                            same_mode,
                        }
                    } else {
                        State::Foreign("exists and was not written by this broker".into())
                    }
                }
            };
            states.push(state);
            planned.push(rel);
        }
        Ok(Looked {
            states,
            planned,
            seen,
        })
    }
}

impl Survey {
    /// Refuses what cannot be rendered: a blocked path always, a foreign
    /// file unless `force`. One line, naming the first file.
    pub fn refuse(&self, force: bool) -> Result<()> {
        if let Some((p, why)) = self.states.iter().find_map(|s| match s {
            State::Blocked(p, why) => Some((p, why)),
            _ => None,
        }) {
            return Err(Error::InvalidFile {
                path: p.clone(),
                reason: why.clone(),
            });
        }
        if force {
            return Ok(());
        }
        let foreign: Vec<_> = self
            .planned
            .iter()
            .zip(&self.states)
            .filter_map(|(rel, s)| match s {
                State::Foreign(why) => Some((rel, why)),
                _ => None,
            })
            .collect();
        match foreign.first() {
            None => Ok(()),
            Some((rel, why)) => {
                let more = match foreign.len() - 1 {
                    0 => String::new(),
                    n => format!(" (and {n} more)"),
                };
                Err(Error::ForeignFile {
                    path: self.manifest.parent().unwrap_or(Path::new("/")).join(rel),
                    reason: format!("{why}{more}"),
                })
            }
        }
    }

    /// Records the files found as planned ([`Seen`]), leaving out those in
    /// `changed` (written since), if the record does not say that already.
    /// The record is a cache: written without a sync, and a failure to
    /// write it is no failure of the rendering (the next one reads more).
    pub fn write_seen(&self, changed: &HashSet<&Path>) {
        let seen: Vec<&(PathBuf, Seen)> = self
            .seen
            .iter()
            .filter(|(rel, _)| !changed.contains(rel.as_path()))
            .collect();
        let same = seen.len() == self.seen_before.len()
            && seen
                .iter()
                .all(|(rel, s)| self.seen_before.get(rel.as_os_str()) == Some(s));
        if !same {
            let text = seen_text(&self.id, &seen);
            let _ = crate::fsutil::write_unsynced(&self.seen_path, text.as_bytes());
        }
    }

    /// Writes our manifest listing `files` (relative) if it does not say
    /// that already.
    pub fn write_manifest(&mut self, files: &BTreeSet<PathBuf>) -> Result<()> {
        let text = manifest_text(&self.id, files);
        if self.manifest_now.as_deref() != Some(text.as_str()) {
            crate::fsutil::write_public(&self.manifest, text.as_bytes())?;
            self.manifest_now = Some(text);
        }
        Ok(())
    }
}

/// Relative paths in `dir` named like the files the broker writes: the
/// instances' files in `dir`, and every regular file or link in the
/// server's CCD directory when that is a real directory.
fn named_like_ours(dir: &Path, names: &ServerNames) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let ccd_dir = names.ccd_dir();
    let ccd = Path::new(&ccd_dir);
    let ccd_is_dir = fs::symlink_metadata(dir.join(ccd)).is_ok_and(|m| m.is_dir());
    for (sub, pick) in [
        (Path::new(""), is_instance_file as fn(&str) -> bool),
        (ccd, |_: &str| true),
    ] {
        if sub == ccd && !ccd_is_dir {
            continue;
        }
        let Ok(entries) = fs::read_dir(dir.join(sub)) else {
            continue;
        };
        let mut names = Vec::new();
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            let name = e.file_name().to_string_lossy().into_owned();
            if (t.is_file() || t.is_symlink()) && !name.starts_with('.') && pick(&name) {
                names.push(e.file_name());
            }
        }
        // Names in one directory sort as their paths do, and comparing
        // names is cheaper: the sort below then merges sorted runs.
        names.sort_unstable();
        found.extend(names.into_iter().map(|n| sub.join(n)));
    }
    found.sort();
    found
}

/// Whether the file `path` (`rel` in the directory) counts as ours in a
/// directory rendered before manifests (`legacy`): one of the fixed files,
/// or a file that starts like ours.
fn ours_before_manifests(legacy: bool, rel: &Path, path: &Path) -> bool {
    legacy && (FIXED_FILES.iter().any(|f| rel == Path::new(f)) || written_by_broker(path))
}

/// Whether a file starts like the files the broker renders: a
/// `# tunnelbroker:` comment on its first line, or on its second after a
/// script's `#!/bin/sh`. Only regular files; links are not followed.
fn written_by_broker(path: &Path) -> bool {
    if !fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut head = [0u8; 256];
    let n = fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&head[..n]);
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("");
    let line = if first == "#!/bin/sh" {
        lines.next().unwrap_or("")
    } else {
        first
    };
    line.starts_with("# tunnelbroker: ")
}

/// Files this crate writes per instance in the output directory:
/// `tb-client-<id>.conf|.up|.down`, `tb-shared.conf`, `tb-shared-NAME.conf`.
pub(crate) fn is_instance_file(name: &str) -> bool {
    name.starts_with("tb-client-")
        && (name.ends_with(".conf") || name.ends_with(".up") || name.ends_with(".down"))
        || name == "tb-shared.conf"
        || name
            .strip_prefix("tb-shared-")
            .and_then(|n| n.strip_suffix(".conf"))
            .is_some_and(|n| super::validate_server_name(n).is_ok())
}
