//! Atomic file writes with the right mode from the first byte.
//!
//! Files are written to a temporary name in the same directory, created with
//! their final mode (`0600` for secrets), synced, and renamed over the target,
//! so that a reader never sees a half-written file and a secret is never
//! readable by others, not even for a moment.

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
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::io(path, std::io::Error::other("not a file name")))?;
    refuse_symlink(path)?;
    let (tmp, mut f) = create_temp(dir, name, mode).map_err(|e| Error::io(path, e))?;
    let result = (|| {
        // The umask may have narrowed the mode: set it exactly (fchmod).
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
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

    #[test]
    fn failure_names_the_path_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing-dir").join("x");
        let err = write_public(&p, b"x").unwrap_err();
        assert!(err.to_string().contains("missing-dir"), "{err}");
    }
}
