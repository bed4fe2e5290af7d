//! Atomic file writes with the right mode from the first byte.
//!
//! Files are written to a temporary name in the same directory, created with
//! their final mode (`0600` for secrets), synced, and renamed over the target,
//! so that a reader never sees a half-written file and a secret is never
//! readable by others, not even for a moment.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Mode of private keys and other secrets.
pub(crate) const SECRET: u32 = 0o600;
/// Mode of public files (certificates, configurations, the CRL).
pub(crate) const PUBLIC: u32 = 0o644;
/// Mode of generated scripts.
pub(crate) const EXECUTABLE: u32 = 0o755;

/// Writes `data` to `path` atomically with exactly the given mode.
///
/// The data goes to a fresh temporary name in the same directory, created
/// with `O_CREAT | O_EXCL | O_NOFOLLOW` (a link planted there is never
/// followed) and `fchmod`ed to `mode` (the umask cannot change it), synced,
/// and renamed over `path`: a reader sees the old file or the new one, never
/// half of one. A symbolic link at `path` is refused
/// ([`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput)) rather than
/// replaced; its target is never written either way, since `rename`
/// replaces a link and does not follow it.
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    refuse_symlink(path)?;
    replace_file(path, data, mode, true)
}

/// Writes `data` to a fresh temporary name beside `path` with exactly
/// `mode`, and renames it over `path`; with `durable`, the file is synced
/// before the rename and its directory after it. The temporary file is
/// removed on failure.
fn replace_file(path: &Path, data: &[u8], mode: u32, durable: bool) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::io(path, std::io::Error::other("not a file name")))?;
    let (tmp, mut f) = create_temp(dir, name, mode).map_err(|e| Error::io(path, e))?;
    let result = (|| {
        // The umask may have narrowed the mode: set it exactly (fchmod).
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        drop(f);
        fs::rename(&tmp, path)?;
        if durable && let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// One file of a batch for [`write_files`] and [`replace_dir`]: where (a
/// path for `write_files`, a name in the directory for `replace_dir`), what,
/// and its mode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewFile<'a> {
    /// The target.
    pub path: &'a Path,
    /// The contents.
    pub data: &'a [u8],
    /// The exact mode.
    pub mode: u32,
}

/// Writes every file of `files` atomically, each as [`write_atomic`] writes
/// one, with one sync for all of them instead of two per file:
///
/// 1. each file goes to a fresh temporary name in its directory, created
///    with its mode, and is written, not synced;
/// 2. one `syncfs(2)` per filesystem makes all of them durable at once (one
///    journal commit and one cache flush, where a sync per file costs a
///    flush each: about 5 ms per file on the development machine);
/// 3. each is renamed over its target, then each directory synced once.
///
/// A reader, and a crash, see each file old or new, never half of one (and
/// maybe temporary `.NAME.tmp.*` files that nothing reads). The batch as a
/// whole is not one step: a crash between the renames leaves some files
/// new and some old; [`replace_dir`] switches a whole directory. A failure
/// before the renames removes the temporary files and changes nothing.
/// Symbolic links at a target are refused, as by [`write_atomic`].
pub(crate) fn write_files(files: &[NewFile<'_>]) -> Result<()> {
    if let [one] = files {
        return write_atomic(one.path, one.data, one.mode);
    }
    let mut temps: Vec<PathBuf> = Vec::with_capacity(files.len());
    let result = (|| {
        let mut synced = BTreeSet::new();
        let mut to_sync = Vec::new();
        for f in files {
            let (dir, name) = split(f.path)?;
            refuse_symlink(f.path)?;
            let (tmp, mut file) =
                create_temp(dir, name, f.mode).map_err(|e| Error::io(f.path, e))?;
            temps.push(tmp);
            (|| {
                file.set_permissions(fs::Permissions::from_mode(f.mode))?;
                file.write_all(f.data)?;
                let dev = std::os::unix::fs::MetadataExt::dev(&file.metadata()?);
                if synced.insert(dev) {
                    to_sync.push(file);
                }
                Ok(())
            })()
            .map_err(|e| Error::io(f.path, e))?;
        }
        for file in &to_sync {
            rustix::fs::syncfs(file).map_err(|e| Error::io(files[0].path, e.into()))?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        for t in &temps {
            let _ = fs::remove_file(t);
        }
        return Err(e);
    }
    let mut dirs = BTreeSet::new();
    for (i, (f, tmp)) in files.iter().zip(&temps).enumerate() {
        if let Err(e) = fs::rename(tmp, f.path) {
            for t in &temps[i..] {
                let _ = fs::remove_file(t);
            }
            return Err(Error::io(f.path, e));
        }
        dirs.insert(split(f.path)?.0);
    }
    for d in dirs {
        sync_dir(d).map_err(|e| Error::io(d, e))?;
    }
    Ok(())
}

/// The directory and the file name of `path`.
fn split(path: &Path) -> Result<(&Path, &std::ffi::OsStr)> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::io(path, std::io::Error::other("not a file name")))?;
    Ok((dir, name))
}

/// Syncs a directory (its entries).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes a file, then syncs its directory; a missing file is no error.
pub(crate) fn remove_synced(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    }
    let (dir, _) = split(path)?;
    sync_dir(dir).map_err(|e| Error::io(dir, e))
}

/// What [`replace_dir`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Replaced {
    /// The new tree is in place.
    Switched,
    /// Nothing was changed: the directory holds something the switch cannot
    /// carry over (a subdirectory, a socket), or the filesystem cannot
    /// hard-link; the text says what. Write the files one by one instead.
    Unsupported(String),
}

/// The marker in the names of the temporary trees of [`replace_dir`]:
/// `.<dir name>.tb-new.<pid>.<random>`.
const TREE_MARK: &str = ".tb-new.";

/// Makes the directory `dir` hold the files `write` (names in it: new or
/// changed) and no longer hold the names in `remove`, keeping every other
/// entry as it is (the same inode), switched in one step: OpenVPN opening
/// `dir/NAME`, and a crash at any moment, find the old tree or the new one,
/// never a mix of both.
///
/// How: a new directory `.<name>.tb-new.<pid>.<random>` beside `dir` gets
/// a hard link to every entry that is kept and the new files (created with
/// their modes, not synced one by one), then one `syncfs(2)` makes it
/// durable, `renameat2(RENAME_EXCHANGE)` swaps it with `dir` in one step,
/// the parent directory is synced, and the old tree (now under the
/// temporary name) is removed. The new directory gets the old one's mode
/// and owner (0755 when `dir` is new). A `dir` that does not exist yet is
/// renamed into place (`RENAME_NOREPLACE`). On a filesystem without
/// `RENAME_EXCHANGE`, two renames do it, and for a moment `dir` is
/// missing. Temporary trees left by a crashed process are removed first.
///
/// A symbolic link at `dir`, or something other than a directory, is
/// refused. When `dir` holds something other than regular files and
/// symbolic links, or a hard link cannot be made, nothing is changed and
/// [`Replaced::Unsupported`] says why.
pub(crate) fn replace_dir(
    dir: &Path,
    write: &[NewFile<'_>],
    remove: &[&std::ffi::OsStr],
) -> Result<Replaced> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let (parent, name) = split(dir)?;
    refuse_symlink(dir)?;
    sweep_trees(parent, name);
    let old = match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Some(m),
        Ok(_) => {
            return Err(Error::InvalidFile {
                path: dir.to_owned(),
                reason: "is not a directory".into(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(dir, e)),
    };
    let written: BTreeSet<&std::ffi::OsStr> = write.iter().map(|f| f.path.as_os_str()).collect();
    let dropped: BTreeSet<&std::ffi::OsStr> = remove.iter().copied().collect();
    let mut keep = Vec::new();
    if old.is_some() {
        for e in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let e = e.map_err(|e| Error::io(dir, e))?;
            let n = e.file_name();
            if written.contains(n.as_os_str()) || dropped.contains(n.as_os_str()) {
                continue;
            }
            let t = e.file_type().map_err(|err| Error::io(e.path(), err))?;
            if !t.is_file() && !t.is_symlink() {
                return Ok(Replaced::Unsupported(format!(
                    "{} is neither a regular file nor a symbolic link",
                    e.path().display()
                )));
            }
            keep.push(n);
        }
    }
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        "{TREE_MARK}{}.{:016x}",
        std::process::id(),
        getrandom::u64().map_err(|e| Error::io(dir, std::io::Error::other(e)))?
    ));
    let tmp = parent.join(&tmp_name);
    let mode = old.as_ref().map_or(0o755, |m| m.mode() & 0o7777);
    fs::DirBuilder::new()
        .mode(mode)
        .create(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    let built = (|| -> Result<Option<String>> {
        let io = |p: &Path| {
            let p = p.to_owned();
            move |e| Error::io(&p, e)
        };
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(io(&tmp))?;
        if let Some(m) = &old {
            let now = fs::symlink_metadata(&tmp).map_err(io(&tmp))?;
            if (now.uid(), now.gid()) != (m.uid(), m.gid()) {
                std::os::unix::fs::lchown(&tmp, Some(m.uid()), Some(m.gid())).map_err(io(&tmp))?;
            }
        }
        for n in &keep {
            if let Err(e) = fs::hard_link(dir.join(n), tmp.join(n)) {
                return Ok(Some(format!(
                    "cannot hard-link {}: {e}",
                    dir.join(n).display()
                )));
            }
        }
        for f in write {
            let path = tmp.join(f.path);
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .mode(f.mode)
                .open(&path)
                .map_err(io(&dir.join(f.path)))?;
            file.set_permissions(fs::Permissions::from_mode(f.mode))
                .and_then(|()| file.write_all(f.data))
                .map_err(io(&dir.join(f.path)))?;
        }
        let d = File::open(&tmp).map_err(io(&tmp))?;
        rustix::fs::syncfs(&d).map_err(|e| Error::io(&tmp, e.into()))?;
        Ok(None)
    })();
    match built {
        Ok(None) => {}
        Ok(Some(why)) => {
            let _ = fs::remove_dir_all(&tmp);
            return Ok(Replaced::Unsupported(why));
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    }
    let parent_fd = File::open(parent).map_err(|e| Error::io(parent, e))?;
    let flags = if old.is_some() {
        rustix::fs::RenameFlags::EXCHANGE
    } else {
        rustix::fs::RenameFlags::NOREPLACE
    };
    let switched = match rustix::fs::renameat_with(&parent_fd, &tmp_name, &parent_fd, name, flags) {
        Ok(()) => Ok(()),
        // No renameat2 flags here (an old kernel or another filesystem):
        // two renames, with a moment without `dir`.
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            let aside = parent.join(format!("{}.old", tmp_name.to_string_lossy()));
            if old.is_some() {
                fs::rename(dir, &aside).map_err(|e| Error::io(dir, e))?;
            }
            match fs::rename(&tmp, dir) {
                Ok(()) if old.is_some() => fs::rename(&aside, &tmp),
                Ok(()) => Ok(()),
                Err(e) => {
                    // Put the old tree back.
                    if old.is_some() {
                        let _ = fs::rename(&aside, dir);
                    }
                    Err(e)
                }
            }
        }
        Err(e) => Err(e.into()),
    };
    if let Err(e) = switched {
        if dir.is_dir() {
            let _ = fs::remove_dir_all(&tmp);
        }
        return Err(Error::io(dir, e));
    }
    parent_fd.sync_all().map_err(|e| Error::io(parent, e))?;
    // The old tree, now under the temporary name: what fails to go here is
    // swept by the next switch.
    let _ = fs::remove_dir_all(&tmp);
    Ok(Replaced::Switched)
}

/// Removes the temporary trees of [`replace_dir`] for `name` in `parent`
/// that a process no longer running left behind (a crash before or after
/// the switch); the trees of running processes are left alone.
fn sweep_trees(parent: &Path, name: &std::ffi::OsStr) {
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(TREE_MARK);
    let Some(prefix) = prefix.to_str().map(str::to_owned) else {
        return;
    };
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name();
        let Some(rest) = n.to_str().and_then(|n| n.strip_prefix(prefix.as_str())) else {
            continue;
        };
        let Some(pid) = rest.split('.').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive && e.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Refuses a symbolic link at `path`, naming it: the broker never writes
/// through a link, nor replaces one it did not make.
pub(crate) fn refuse_symlink(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(Error::InvalidFile {
            path: path.to_owned(),
            reason: "is a symbolic link; refusing to write through it or replace it \
                     (remove the link, or name the file it points to)"
                .into(),
        }),
        _ => Ok(()),
    }
}

/// Creates a new temporary file `.<name>.tmp.<pid>.<random>` in `dir`
/// with `mode`, never following a link and never reusing a name.
fn create_temp(dir: &Path, name: &std::ffi::OsStr, mode: u32) -> std::io::Result<(PathBuf, File)> {
    let mut last = None;
    for _ in 0..16 {
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(
            ".tmp.{}.{:016x}",
            std::process::id(),
            getrandom::u64().map_err(std::io::Error::other)?
        ));
        let tmp = dir.join(tmp_name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .mode(mode)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free temporary name")))
}

/// Replaces `path` with `data` (mode 0644) by a rename, without syncing:
/// for a cache that may be lost or found empty after a crash (its reader
/// then falls back to the real thing), never for a file that counts.
pub(crate) fn write_unsynced(path: &Path, data: &[u8]) -> Result<()> {
    replace_file(path, data, PUBLIC, false)
}

/// Writes a secret (mode 0600) atomically.
pub(crate) fn write_secret(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic(path, data, SECRET)
}

/// Writes a public file (mode 0644) atomically.
pub(crate) fn write_public(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic(path, data, PUBLIC)
}

/// The most the broker reads of one of its own files (settings, PEMs, the
/// CRL, which grows with the revocations).
const MAX_BROKER_FILE: u64 = 64 << 20;

/// Reads one of the broker's own files to a string, naming the path in the
/// error.
pub(crate) fn read_to_string(path: &Path) -> Result<String> {
    read_text(path, MAX_BROKER_FILE)
}

/// Largest CRL (PEM) the broker reads: a CRL grows with the revocations,
/// about 75 bytes of PEM per entry, so 256 MiB holds over three million
/// entries; the broker must read back every CRL it writes (see
/// [`Ca::crl`](crate::pki::Ca::crl) for when entries leave it). Here, below the
/// PKI, so that reading a file needs nothing of it.
pub(crate) const MAX_CRL_PEM: usize = 256 << 20;

/// Reads the broker's CRL, which may be larger than its other files (see
/// [`MAX_CRL_PEM`]).
pub(crate) fn read_crl(path: &Path) -> Result<String> {
    read_text(path, MAX_CRL_PEM as u64)
}

/// Why a file cannot be read as text, or an I/O error; the path is left to
/// the caller to name.
pub(crate) enum Refusal {
    /// Not a regular file, too large, or not UTF-8.
    Invalid(String),
    /// What the operating system said.
    Io(std::io::Error),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Invalid(why) => f.write_str(why),
            Refusal::Io(e) => e.fmt(f),
        }
    }
}

/// Reads a regular file or a pipe (`<(command)`, `/dev/stdin` from a pipe)
/// of at most `max` bytes as UTF-8 text. Devices, sockets and directories
/// are refused before anything is read, and no more than `max + 1` bytes
/// are ever read (from a pipe, or a file that grows meanwhile).
pub(crate) fn read_limited(path: &Path, max: u64) -> std::result::Result<String, Refusal> {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;
    let meta = fs::metadata(path).map_err(Refusal::Io)?;
    if !meta.is_file() && !meta.file_type().is_fifo() {
        return Err(Refusal::Invalid("not a regular file or a pipe".into()));
    }
    let too_large = || Refusal::Invalid(format!("larger than {max} bytes"));
    if meta.len() > max {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    File::open(path)
        .and_then(|f| f.take(max.saturating_add(1)).read_to_end(&mut bytes))
        .map_err(Refusal::Io)?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|_| Refusal::Invalid("not UTF-8 text".into()))
}

/// Reads a text file given as input (a CSR, a CSV of users, an imported CA)
/// of at most `max` bytes, from a regular file or a pipe: a device such as
/// `/dev/zero`, a directory, more text or text that is not UTF-8 is refused
/// as bad input
/// ([`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput)) before it
/// can fill the memory; a missing or unreadable file is an I/O error.
///
/// ```
/// use tunnelbroker_core::{ErrorKind, read_text};
/// let err = read_text("/dev/zero".as_ref(), 1 << 20).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::InvalidInput);
/// assert_eq!(err.to_string(), "/dev/zero: not a regular file or a pipe");
/// ```
pub fn read_text(path: &Path, max: u64) -> Result<String> {
    read_limited(path, max).map_err(|r| match r {
        Refusal::Invalid(reason) => Error::InvalidFile {
            path: path.to_owned(),
            reason,
        },
        Refusal::Io(e) => Error::io(path, e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn read_text_takes_only_small_regular_text_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        fs::write(p("ok"), "x".repeat(100)).unwrap();
        assert_eq!(read_text(&p("ok"), 100).unwrap().len(), 100);
        let refused = |path: &Path, max: u64, why: &str| {
            let e = read_text(path, max).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            assert_eq!(e.to_string(), format!("{}: {why}", path.display()));
        };
        refused(&p("ok"), 99, "larger than 99 bytes");
        // A sparse file claims 1 TiB: refused by its size, nothing read.
        File::create(p("huge")).unwrap().set_len(1 << 40).unwrap();
        refused(&p("huge"), 1 << 20, "larger than 1048576 bytes");
        fs::write(p("bin"), [0xff, 0xfe, 0]).unwrap();
        refused(&p("bin"), 100, "not UTF-8 text");
        let other = "not a regular file or a pipe";
        refused(dir.path(), 100, other);
        refused(Path::new("/dev/zero"), 100, other);
        // A symlink to a device is the device.
        std::os::unix::fs::symlink("/dev/zero", p("link")).unwrap();
        refused(&p("link"), 100, other);
        // A pipe is read, but never more than max + 1 bytes of it.
        let fifo = p("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        for (text, max) in [("from a pipe", 100), ("x".repeat(5000).as_str(), 100)] {
            let writer = {
                let (fifo, text) = (fifo.clone(), text.to_owned());
                std::thread::spawn(move || {
                    // The reader may stop early: a broken pipe is expected.
                    let _ = File::options()
                        .write(true)
                        .open(&fifo)
                        .and_then(|mut f| f.write_all(text.as_bytes()));
                })
            };
            let got = read_text(&fifo, max);
            if text.len() as u64 <= max {
                assert_eq!(got.unwrap(), text);
            } else {
                let e = got.unwrap_err();
                assert_eq!(
                    e.to_string(),
                    format!("{}: larger than 100 bytes", fifo.display())
                );
            }
            writer.join().unwrap();
        }
        let missing = read_text(&p("missing"), 100).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::Io);
    }

    #[test]
    fn secrets_are_0600_and_replace_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key.pem");
        write_secret(&p, b"one").unwrap();
        write_secret(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn atomic_writes_never_go_through_a_symlink_and_set_the_mode_exactly() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, "keep").unwrap();
        let link = dir.path().join("crl.pem");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = write_public(&link, b"new").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(fs::read(&target).unwrap(), b"keep");
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        // An existing file of another mode gets exactly the asked one, as a
        // new inode.
        let p = dir.path().join("f");
        fs::write(&p, "old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).unwrap();
        let before = fs::metadata(&p).unwrap().ino();
        write_public(&p, b"new").unwrap();
        let m = fs::metadata(&p).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o644);
        assert_ne!(m.ino(), before);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_batch_is_written_with_exact_modes_and_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&b, "old").unwrap();
        let files = [
            NewFile {
                path: &a,
                data: b"one",
                mode: SECRET,
            },
            NewFile {
                path: &b,
                data: b"two",
                mode: EXECUTABLE,
            },
        ];
        write_files(&files).unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"one");
        assert_eq!(fs::read(&b).unwrap(), b"two");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!((mode(&a), mode(&b)), (SECRET, EXECUTABLE));
        assert_eq!(names(dir.path()), ["a", "b"]);
        // A link among the targets: refused before anything is renamed,
        // and no temporary file stays.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&a, &link).unwrap();
        let files = [
            NewFile {
                path: &b,
                data: b"three",
                mode: PUBLIC,
            },
            NewFile {
                path: &link,
                data: b"x",
                mode: PUBLIC,
            },
        ];
        let err = write_files(&files).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(fs::read(&b).unwrap(), b"two");
        assert_eq!(fs::read(&a).unwrap(), b"one");
        assert_eq!(names(dir.path()), ["a", "b", "link"]);
        write_files(&[]).unwrap();
    }

    #[test]
    fn a_directory_is_replaced_in_one_step_keeping_what_did_not_change() {
        use std::os::unix::fs::MetadataExt;
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("ccd");
        let ino = |p: &Path| fs::symlink_metadata(p).unwrap().ino();
        let new = |name: &'static str, data: &'static [u8]| NewFile {
            path: Path::new(name),
            data,
            mode: PUBLIC,
        };
        // A new directory is renamed into place, 0755.
        assert_eq!(
            replace_dir(&dir, &[new("alice", b"a1"), new("bob", b"b1")], &[]).unwrap(),
            Replaced::Switched
        );
        assert_eq!(names(&dir), ["alice", "bob"]);
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o7777,
            0o755
        );
        // Another process's file and a link are carried over as they are;
        // the mode of the directory is kept.
        fs::write(dir.join("operator"), "mine").unwrap();
        std::os::unix::fs::symlink("/nowhere", dir.join("link")).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
        let (alice, operator, old_dir) = (
            ino(&dir.join("alice")),
            ino(&dir.join("operator")),
            ino(&dir),
        );
        let gone = [std::ffi::OsStr::new("bob")];
        let r = replace_dir(&dir, &[new("carol", b"c1"), new("dave", b"d1")], &gone).unwrap();
        assert_eq!(r, Replaced::Switched);
        assert_eq!(names(&dir), ["alice", "carol", "dave", "link", "operator"]);
        assert_eq!(
            ino(&dir.join("alice")),
            alice,
            "an unchanged file keeps its inode"
        );
        assert_eq!(ino(&dir.join("operator")), operator);
        assert!(
            dir.join("link")
                .symlink_metadata()
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_ne!(ino(&dir), old_dir, "a new directory took its place");
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o7777,
            0o750
        );
        assert_eq!(names(top.path()), ["ccd"], "no temporary tree stays");
        // A file that changes gets a new inode.
        replace_dir(&dir, &[new("alice", b"a2"), new("erin", b"e1")], &[]).unwrap();
        assert_eq!(fs::read(dir.join("alice")).unwrap(), b"a2");
        assert_ne!(ino(&dir.join("alice")), alice);
    }

    #[test]
    fn replacing_a_directory_sweeps_dead_trees_and_declines_what_it_cannot_carry() {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("ccd");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("alice"), "a1").unwrap();
        // A tree left by a crashed process (no such PID), and one of a
        // running process (this one): only the first is removed.
        let dead = top.path().join(".ccd.tb-new.999999999.00000000000000aa");
        let live = top.path().join(format!(
            ".ccd.tb-new.{}.00000000000000bb",
            std::process::id()
        ));
        for d in [&dead, &live] {
            fs::create_dir(d).unwrap();
            fs::write(d.join("half"), "x").unwrap();
        }
        let one = [NewFile {
            path: Path::new("bob"),
            data: b"b1",
            mode: PUBLIC,
        }];
        assert_eq!(replace_dir(&dir, &one, &[]).unwrap(), Replaced::Switched);
        assert!(!dead.exists());
        assert!(live.exists());
        fs::remove_dir_all(&live).unwrap();
        // A subdirectory cannot be hard-linked: nothing changes.
        fs::create_dir(dir.join("sub")).unwrap();
        let before = names(&dir);
        let r = replace_dir(&dir, &one, &[std::ffi::OsStr::new("alice")]).unwrap();
        assert!(
            matches!(r, Replaced::Unsupported(ref why) if why.contains("sub")),
            "{r:?}"
        );
        assert_eq!(names(&dir), before);
        assert_eq!(names(top.path()), ["ccd"]);
        // A link in place of the directory is refused, and not followed.
        let elsewhere = top.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        let link = top.path().join("linked");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let err = replace_dir(&link, &one, &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(names(&elsewhere).is_empty());
    }

    #[test]
    fn failure_names_the_path_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing-dir").join("x");
        let err = write_public(&p, b"x").unwrap_err();
        assert!(err.to_string().contains("missing-dir"), "{err}");
    }
}
