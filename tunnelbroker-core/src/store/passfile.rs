//! Where the password of a PostgreSQL connection comes from: never the
//! settings, but `PGPASSWORD` or a libpq password file, as libpq does.
//!
//! The file (`PGPASSFILE`, else `~/.pgpass`) has lines of
//! `hostname:port:database:username:password`; `*` as a whole field matches
//! anything, `\` escapes the next character (`\:`, `\\`, `\*`), lines
//! starting with `#` and lines with fewer fields are skipped, and the first
//! matching line wins. As with libpq, a file that others can read (any
//! group or other permission bit) is not used; unlike libpq, which warns
//! and goes on without it, that is an error here: a broker that silently
//! ignored its password would fail later with a less helpful message.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, shown_path};

/// The largest password file read.
const MAX_SIZE: u64 = 1 << 20;

/// The host, port, database and user a password is looked up for. A Unix
/// socket's host is its directory; it also matches `localhost`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub host: &'a str,
    pub socket: bool,
    pub port: u16,
    pub database: &'a str,
    pub user: &'a str,
}

/// The password for `target`: `pgpassword` when set and not empty, else
/// the first matching line of the password file (`pgpassfile`, else
/// `home/.pgpass`), else none.
pub(crate) fn password(
    target: Target<'_>,
    pgpassword: Option<&[u8]>,
    pgpassfile: Option<&Path>,
    home: Option<&Path>,
) -> Result<Option<Vec<u8>>> {
    if let Some(pw) = pgpassword.filter(|p| !p.is_empty()) {
        return Ok(Some(pw.to_vec()));
    }
    let path: PathBuf = match (pgpassfile, home) {
        (Some(p), _) => p.to_owned(),
        (None, Some(h)) => h.join(".pgpass"),
        (None, None) => return Ok(None),
    };
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let refuse = |reason: String| Error::Database {
        reason: format!("password file {}: {reason}", shown_path(&path)),
    };
    if !meta.is_file() {
        return Err(refuse("not a regular file".into()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(refuse(format!(
            "others may read it (mode {mode:04o}); chmod 0600 it, as libpq requires"
        )));
    }
    if meta.len() > MAX_SIZE {
        return Err(refuse(format!("larger than {MAX_SIZE} bytes")));
    }
    let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    Ok(lookup(&text, target))
}

/// The password of the first line of `text` that matches `target`.
pub(crate) fn lookup(text: &[u8], target: Target<'_>) -> Option<Vec<u8>> {
    let port = target.port.to_string();
    text.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.starts_with(b"#"))
        .filter_map(fields)
        .find(|f| {
            let host_ok = f[0].matches(target.host.as_bytes())
                || (target.socket && f[0].matches(b"localhost"));
            host_ok
                && f[1].matches(port.as_bytes())
                && f[2].matches(target.database.as_bytes())
                && f[3].matches(target.user.as_bytes())
        })
        .map(|f| f[4].text.clone())
}

/// One field of a line: its unescaped text, and whether it was a bare `*`.
struct Field {
    text: Vec<u8>,
    any: bool,
}

impl Field {
    fn matches(&self, value: &[u8]) -> bool {
        self.any || self.text == value
    }
}

/// The five fields of a line, or `None` when it has fewer. The password is
/// the fifth field: up to the next unescaped `:` or the end of the line.
fn fields(line: &[u8]) -> Option<[Field; 5]> {
    let mut out: Vec<Field> = Vec::with_capacity(5);
    let mut text = Vec::new();
    let mut escaped = false;
    let mut i = 0;
    loop {
        let byte = line.get(i).copied();
        i += 1;
        match byte {
            Some(b'\\') => {
                escaped = true;
                if let Some(&b) = line.get(i) {
                    text.push(b);
                    i += 1;
                }
            }
            Some(b':') | None => {
                let any = text == b"*" && !escaped;
                out.push(Field {
                    text: std::mem::take(&mut text),
                    any,
                });
                escaped = false;
                if byte.is_none() || out.len() == 5 {
                    break;
                }
            }
            Some(b) => text.push(b),
        }
    }
    out.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const T: Target<'static> = Target {
        host: "db.example.net",
        socket: false,
        port: 5432,
        database: "tunnelbroker",
        user: "tb",
    };

    fn pw(text: &str, target: Target<'_>) -> Option<String> {
        lookup(text.as_bytes(), target).map(|p| String::from_utf8(p).unwrap())
    }

    #[test]
    fn first_matching_line_wins_with_wildcards() {
        let file = "# comment\n\
                    other.example.net:5432:tunnelbroker:tb:no\n\
                    db.example.net:5433:*:*:wrong-port\n\
                    db.example.net:5432:*:tb:first\n\
                    *:*:*:*:fallback\n";
        assert_eq!(pw(file, T).as_deref(), Some("first"));
        let other = Target { user: "admin", ..T };
        assert_eq!(pw(file, other).as_deref(), Some("fallback"));
        assert_eq!(
            pw("db.example.net:5432:tunnelbroker:tb:\n", T).as_deref(),
            Some("")
        );
        assert_eq!(pw("", T), None);
        assert_eq!(pw("# only:a:comment:here:x", T), None);
    }

    #[test]
    fn escapes_and_crlf() {
        assert_eq!(
            pw("db.example.net:5432:tunnelbroker:tb:a\\:b\\\\c\r\n", T).as_deref(),
            Some("a:b\\c")
        );
        // An unescaped colon ends the password, as in libpq.
        assert_eq!(
            pw("db.example.net:5432:tunnelbroker:tb:a:b", T).as_deref(),
            Some("a")
        );
        // \* is a literal star, not a wildcard.
        let star = Target { user: "*", ..T };
        assert_eq!(
            pw("db.example.net:5432:tunnelbroker:\\*:lit", star).as_deref(),
            Some("lit")
        );
        assert_eq!(pw("db.example.net:5432:tunnelbroker:\\*:lit", T), None);
        // A * that is part of a field is literal.
        assert_eq!(pw("db.example.net:5432:tunnel*:tb:x", T), None);
        // Escaped host characters.
        let v6 = Target {
            host: "2001:db8::5",
            ..T
        };
        assert_eq!(
            pw("2001\\:db8\\:\\:5:5432:*:*:six", v6).as_deref(),
            Some("six")
        );
    }

    #[test]
    fn short_hostile_and_binary_lines_are_skipped() {
        for line in [
            "db.example.net:5432:tunnelbroker:tb",
            "db.example.net:5432:tunnelbroker",
            "db.example.net",
            ":::",
            "\\",
            "db.example.net:5432:tunnelbroker:tb\\:x",
        ] {
            assert_eq!(pw(line, T), None, "{line:?}");
        }
        let binary = b"\xff\xfe:\x00:\n*:*:*:*:\xc3\x28\x01";
        assert_eq!(lookup(binary, T), Some(b"\xc3\x28\x01".to_vec()));
        let long = format!("{}:*:*:*:x\n*:*:*:*:y", "a".repeat(100_000));
        assert_eq!(pw(&long, T).as_deref(), Some("y"));
    }

    #[test]
    fn a_socket_matches_its_directory_and_localhost() {
        let sock = Target {
            host: "/run/postgresql",
            socket: true,
            ..T
        };
        assert_eq!(pw("localhost:5432:*:*:loc", sock).as_deref(), Some("loc"));
        assert_eq!(
            pw("/run/postgresql:5432:*:*:dir", sock).as_deref(),
            Some("dir")
        );
        let tcp = Target {
            host: "127.0.0.1",
            ..T
        };
        assert_eq!(pw("localhost:5432:*:*:loc", tcp), None);
    }

    #[test]
    fn pgpassword_first_then_the_file_with_mode_0600_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "*:*:*:*:from-file\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let got = password(T, Some(b"env"), Some(&file), None).unwrap();
        assert_eq!(got.as_deref(), Some(&b"env"[..]));
        let got = password(T, Some(b""), Some(&file), None).unwrap();
        assert_eq!(got.as_deref(), Some(&b"from-file"[..]));
        // ~/.pgpass when PGPASSFILE is not set.
        std::fs::copy(&file, dir.path().join(".pgpass")).unwrap();
        let got = password(T, None, None, Some(dir.path())).unwrap();
        assert_eq!(got.as_deref(), Some(&b"from-file"[..]));
        // No file: no password.
        let none = password(T, None, Some(&dir.path().join("missing")), None).unwrap();
        assert_eq!(none, None);
        assert_eq!(password(T, None, None, None).unwrap(), None);
        // Readable by others: refused, without the password in the message.
        for mode in [0o644, 0o640, 0o604, 0o601] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = password(T, None, Some(&file), None)
                .unwrap_err()
                .to_string();
            assert!(e.contains("chmod 0600"), "{e}");
            assert!(!e.contains("from-file") && !e.contains('\n'), "{e}");
        }
        // A directory is refused.
        let e = password(T, None, Some(dir.path()), None).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
