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

/// Reads a file to a string, naming the path in the error.
pub(crate) fn read_to_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

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
