//! Atomic file writes with the right mode from the first byte.
//!
//! Files are written to a temporary name in the same directory, created with
//! their final mode (`0600` for secrets), synced, and renamed over the target,
//! so that a reader never sees a half-written file and a secret is never
//! readable by others, not even for a moment.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// Mode of private keys and other secrets.
pub(crate) const SECRET: u32 = 0o600;
/// Mode of public files (certificates, configurations, the CRL).
pub(crate) const PUBLIC: u32 = 0o644;
/// Mode of generated scripts.
pub(crate) const EXECUTABLE: u32 = 0o755;

/// Writes `data` to `path` atomically with the given mode.
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::io(path, std::io::Error::other("not a file name")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode; set it exactly.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
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

/// Reads the broker's CRL, which may be larger than its other files (see
/// [`MAX_CRL_PEM`](crate::pki::MAX_CRL_PEM)).
pub(crate) fn read_crl(path: &Path) -> Result<String> {
    read_text(path, crate::pki::MAX_CRL_PEM as u64)
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
    fn failure_names_the_path_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing-dir").join("x");
        let err = write_public(&p, b"x").unwrap_err();
        assert!(err.to_string().contains("missing-dir"), "{err}");
    }
}
