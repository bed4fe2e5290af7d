//! Where a PostgreSQL client database is: a `postgresql://` URL that the
//! settings record, and that therefore never holds a password.
//!
//! The accepted form is a strict subset of libpq's connection URI:
//!
//! ```text
//! postgresql://USER@HOST[:PORT]/DATABASE[?PARAM=VALUE[&...]]
//! ```
//!
//! (`postgres://` too). `HOST` is a host name, an IPv4 address or a
//! bracketed IPv6 address; the parameters are `host` (an absolute path: the
//! directory of a Unix socket, which then replaces `HOST`), `sslmode`
//! (`disable`, `require`, `verify-ca` or `verify-full`) and `sslrootcert`
//! (an absolute path to the PEM certificates that are trusted to sign the
//! server's). User and database names are letters, digits, `_`, `-` and
//! `.`. Nothing else is accepted: no password (take it from `PGPASSWORD` or
//! a libpq passfile), no spaces, control or non-ASCII characters, no
//! percent-encoding and no quotes, so that a URL copied into a shell command
//! or a log line means what it says.
//!
//! # TLS
//!
//! A connection to a local server (a Unix socket, `localhost` or a loopback
//! address) is plain unless `sslmode` asks for TLS. Any other connection
//! uses TLS, and the server's certificate is always verified (the system's
//! trusted roots, or `sslrootcert`) against the host name: `require` and
//! `verify-ca` mean `verify-full` here, which is stricter than libpq. Only
//! `sslmode=disable` turns TLS off for a remote host (for a network that is
//! private by other means); [`DatabaseUrl::warning`] then says so. libpq's
//! `allow` and `prefer` are refused: they fall back to plain text without a
//! word.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, Result, shown};

/// The longest URL accepted, in bytes.
const MAX_LEN: usize = 1024;
/// The longest user or database name (PostgreSQL's NAMEDATALEN - 1).
const MAX_NAME: usize = 63;

/// Where a PostgreSQL client database is: `postgresql://user@host[:port]/db`
/// with an optional `?sslmode=...`, `?host=/socket/dir` or
/// `?sslrootcert=/path`. It never holds a password.
///
/// # Examples
///
/// ```
/// use tunnelbroker_core::store::DatabaseUrl;
///
/// let url: DatabaseUrl = "postgresql://tb@db.example.net/tunnelbroker".parse()?;
/// assert_eq!(url.to_string(), "postgresql://tb@db.example.net/tunnelbroker");
/// assert_eq!(url.user(), "tb");
/// assert_eq!(url.database(), "tunnelbroker");
///
/// // A password would end up in the settings file: refused.
/// let err = "postgresql://tb:secret@db.example.net/tunnelbroker"
///     .parse::<DatabaseUrl>()
///     .unwrap_err();
/// assert!(err.to_string().contains("PGPASSWORD"));
/// assert!(!err.to_string().contains("secret"));
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DatabaseUrl {
    text: String,
    user: String,
    host: DbHost,
    port: u16,
    database: String,
    sslmode: Option<SslMode>,
    sslrootcert: Option<PathBuf>,
}

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum DbHost {
    /// A host name or address (TCP).
    Tcp(String),
    /// The directory of a Unix socket.
    Socket(PathBuf),
}

/// The `sslmode` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SslMode {
    Disable,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Whether a connection uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tls {
    /// Plain (a local server, or `sslmode=disable`).
    Off,
    /// TLS, with the server's certificate verified against the host name.
    Verified,
}

fn invalid(input: &str, reason: impl Into<String>) -> Error {
    Error::InvalidConfigValue {
        what: "database URL",
        input: shown(&redacted(input)),
        reason: reason.into(),
    }
}

/// `input` with whatever follows a `:` in the user part of a URL replaced,
/// so that no error message repeats a password, whatever else is wrong.
fn redacted(input: &str) -> String {
    let input = &redacted_user(input);
    // A `password=` parameter (refused as unknown) is not repeated either.
    match input.split_once('?') {
        Some((base, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => {
                        format!("{k}=[redacted]")
                    }
                    _ => p.to_owned(),
                })
                .collect();
            format!("{base}?{}", params.join("&"))
        }
        None => input.to_owned(),
    }
}

/// `input` with whatever follows a `:` in the user part replaced.
fn redacted_user(input: &str) -> String {
    let Some(start) = input.find("://").map(|i| i + 3) else {
        return input.to_owned();
    };
    let rest = &input[start..];
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    match authority.rfind('@') {
        Some(at) => match authority[..at].find(':') {
            Some(colon) => format!(
                "{}{}:[redacted]{}",
                &input[..start],
                &authority[..colon],
                &input[start + at..]
            ),
            None => input.to_owned(),
        },
        None => input.to_owned(),
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

fn check_name(input: &str, what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(invalid(input, format!("it names no {what}")));
    }
    if name.len() > MAX_NAME {
        return Err(invalid(
            input,
            format!("the {what} name is longer than {MAX_NAME} characters"),
        ));
    }
    if let Some(c) = name.chars().find(|&c| !is_name_char(c)) {
        return Err(invalid(
            input,
            format!("{c:?} in the {what} name (allowed: letters, digits, _, - and .)"),
        ));
    }
    Ok(())
}

fn check_path(input: &str, what: &str, value: &str) -> Result<PathBuf> {
    let ok = value.starts_with('/')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '.'))
        && !value.split('/').any(|part| part == "..");
    if !ok {
        return Err(invalid(
            input,
            format!(
                "{what} must be an absolute path of letters, digits, /, _, - and . (without ..)"
            ),
        ));
    }
    Ok(PathBuf::from(value))
}

fn parse_host(input: &str, host: &str) -> Result<String> {
    if let Some(inner) = host.strip_prefix('[') {
        let addr = inner
            .strip_suffix(']')
            .and_then(|a| a.parse::<Ipv6Addr>().ok())
            .ok_or_else(|| invalid(input, "a bracketed host must be an IPv6 address"))?;
        return Ok(addr.to_string());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(invalid(
            input,
            "the host must be a host name, an IPv4 address or a bracketed IPv6 address",
        ));
    }
    Ok(host.to_owned())
}

impl FromStr for DatabaseUrl {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        if input.is_empty() {
            return Err(invalid(input, "it is empty"));
        }
        if input.len() > MAX_LEN {
            return Err(invalid(input, format!("it is longer than {MAX_LEN} bytes")));
        }
        if let Some(c) = input.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(invalid(
                input,
                format!("{c:?}: only printable ASCII without spaces is allowed"),
            ));
        }
        let rest = input
            .strip_prefix("postgresql://")
            .or_else(|| input.strip_prefix("postgres://"))
            .ok_or_else(|| invalid(input, "it must start with postgresql:// or postgres://"))?;
        let (main, query) = match rest.split_once('?') {
            Some((m, q)) => (m, Some(q)),
            None => (rest, None),
        };
        let (authority, database) = main
            .split_once('/')
            .ok_or_else(|| invalid(input, "it names no database (…/DATABASE)"))?;
        let (user, hostport) = authority
            .rsplit_once('@')
            .ok_or_else(|| invalid(input, "it names no user (USER@HOST)"))?;
        if user.contains(':') {
            return Err(invalid(
                input,
                "a password in the URL would be written to the settings; remove it and set PGPASSWORD or put it in a libpq passfile (PGPASSFILE or ~/.pgpass, mode 0600)",
            ));
        }
        check_name(input, "user", user)?;
        check_name(input, "database", database)?;
        let (host, port) = if hostport.starts_with('[') {
            match hostport.rsplit_once("]:") {
                Some((h, p)) => (format!("{h}]"), Some(p)),
                None => (hostport.to_owned(), None),
            }
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (hostport.to_owned(), None),
            }
        };
        let port = match port {
            None => 5432,
            Some(p) => Some(p)
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|&p| p != 0)
                .ok_or_else(|| invalid(input, "the port must be a number from 1 to 65535"))?,
        };
        let mut socket = None;
        let mut sslmode = None;
        let mut sslrootcert = None;
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| invalid(input, "a parameter must be KEY=VALUE"))?;
            let duplicate = || invalid(input, format!("the parameter {key} is given twice"));
            match key {
                "host" => {
                    if socket.is_some() {
                        return Err(duplicate());
                    }
                    socket = Some(check_path(input, "host", value)?);
                }
                "sslrootcert" => {
                    if sslrootcert.is_some() {
                        return Err(duplicate());
                    }
                    sslrootcert = Some(check_path(input, "sslrootcert", value)?);
                }
                "sslmode" => {
                    if sslmode.is_some() {
                        return Err(duplicate());
                    }
                    sslmode = Some(match value {
                        "disable" => SslMode::Disable,
                        "require" => SslMode::Require,
                        "verify-ca" => SslMode::VerifyCa,
                        "verify-full" => SslMode::VerifyFull,
                        "allow" | "prefer" => {
                            return Err(invalid(
                                input,
                                format!(
                                    "sslmode={value} falls back to plain text without a word; use verify-full, or disable on a private network"
                                ),
                            ));
                        }
                        _ => {
                            return Err(invalid(
                                input,
                                "sslmode must be disable, require, verify-ca or verify-full",
                            ));
                        }
                    });
                }
                _ => {
                    return Err(invalid(
                        input,
                        format!(
                            "unknown parameter {} (known: host, sslmode, sslrootcert)",
                            shown(key)
                        ),
                    ));
                }
            }
        }
        let host = match socket {
            Some(dir) => {
                if !host.is_empty() {
                    return Err(invalid(
                        input,
                        "give either a host or ?host=/socket/dir, not both",
                    ));
                }
                DbHost::Socket(dir)
            }
            None if host.is_empty() => {
                return Err(invalid(
                    input,
                    "it names no host (USER@HOST, or USER@/DATABASE?host=/socket/dir)",
                ));
            }
            None => DbHost::Tcp(parse_host(input, &host)?),
        };
        if sslrootcert.is_some() && sslmode == Some(SslMode::Disable) {
            return Err(invalid(
                input,
                "sslrootcert with sslmode=disable means nothing",
            ));
        }
        Ok(DatabaseUrl {
            text: input.to_owned(),
            user: user.to_owned(),
            host,
            port,
            database: database.to_owned(),
            sslmode,
            sslrootcert,
        })
    }
}

impl DatabaseUrl {
    /// The URL as given (it never holds a password).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The database name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The TCP port (also the number in the name of a Unix socket).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A warning for the operator about this URL, if any: plain text to a
    /// host that is not local (`sslmode=disable`).
    ///
    /// ```
    /// use tunnelbroker_core::store::DatabaseUrl;
    /// let url: DatabaseUrl = "postgresql://tb@db.example.net/tb?sslmode=disable".parse()?;
    /// assert!(url.warning().unwrap().contains("without TLS"));
    /// let url: DatabaseUrl = "postgresql://tb@127.0.0.1/tb".parse()?;
    /// assert_eq!(url.warning(), None);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn warning(&self) -> Option<String> {
        match (&self.host, self.tls()) {
            (DbHost::Tcp(h), Tls::Off) if !self.is_local() => Some(format!(
                "the client database on {h} is reached without TLS (sslmode=disable): client keys cross the network in clear text"
            )),
            _ => None,
        }
    }

    pub(crate) fn host(&self) -> &DbHost {
        &self.host
    }

    pub(crate) fn sslrootcert(&self) -> Option<&Path> {
        self.sslrootcert.as_deref()
    }

    /// Whether the server is on this host: a Unix socket, `localhost` or a
    /// loopback address.
    pub(crate) fn is_local(&self) -> bool {
        match &self.host {
            DbHost::Socket(_) => true,
            DbHost::Tcp(h) => {
                h == "localhost" || h.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())
            }
        }
    }

    /// Whether the connection uses TLS (see the module documentation).
    pub(crate) fn tls(&self) -> Tls {
        if let DbHost::Socket(_) = self.host {
            // PostgreSQL speaks no TLS on a Unix socket.
            return Tls::Off;
        }
        match self.sslmode {
            Some(SslMode::Disable) => Tls::Off,
            Some(_) => Tls::Verified,
            None if self.is_local() => Tls::Off,
            None => Tls::Verified,
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl TryFrom<String> for DatabaseUrl {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<DatabaseUrl> for String {
    fn from(u: DatabaseUrl) -> String {
        u.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn ok(s: &str) -> DatabaseUrl {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        let e = s.parse::<DatabaseUrl>().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        let text = e.to_string();
        assert!(!text.contains('\n'), "{text}");
        text
    }

    #[test]
    fn accepted_forms_round_trip() {
        for s in [
            "postgresql://tb@db.example.net/tunnelbroker",
            "postgres://tb@db.example.net:6543/tunnelbroker",
            "postgresql://tb@127.0.0.1:55432/tb_1?sslmode=disable",
            "postgresql://tb@[2001:db8::5]:5432/tb?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem",
            "postgresql://tb@/tb?host=/var/run/postgresql",
            "postgresql://tb.admin@localhost/tb-prod",
        ] {
            let url = ok(s);
            assert_eq!(url.to_string(), s);
            assert_eq!(url.as_str(), s);
            assert_eq!(ok(&url.to_string()), url);
        }
        let url = ok("postgresql://tb@[2001:db8::5]:6000/tb");
        assert_eq!(url.host(), &DbHost::Tcp("2001:db8::5".into()));
        assert_eq!(url.port(), 6000);
        let url = ok("postgresql://tb@/tb?host=/run/pg");
        assert_eq!(url.host(), &DbHost::Socket("/run/pg".into()));
        assert_eq!(url.port(), 5432);
    }

    #[test]
    fn serde_is_a_string() {
        let url = ok("postgresql://tb@db.example.net/tb");
        let json = serde_json::to_string(&url).unwrap();
        assert_eq!(json, "\"postgresql://tb@db.example.net/tb\"");
        let back: DatabaseUrl = serde_json::from_str(&json).unwrap();
        assert_eq!(back, url);
        let bad = serde_json::from_str::<DatabaseUrl>("\"postgresql://tb:pw@h/tb\"")
            .unwrap_err()
            .to_string();
        assert!(bad.contains("PGPASSWORD") && !bad.contains("pw@"), "{bad}");
    }

    #[test]
    fn a_password_is_refused_and_never_repeated() {
        for s in [
            "postgresql://tb:hunter2@db.example.net/tb",
            "postgres://tb:hunter2@db.example.net:5432/tb?sslmode=require",
            "postgresql://tb:hunter2@/tb?host=/run/pg",
            "postgresql://tb:hunter2@@db/tb",
        ] {
            let text = err(s);
            assert!(text.contains("PGPASSWORD"), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
        // Whatever else is wrong, the password is not repeated.
        for s in [
            "mysql://tb:hunter2@db/tb",
            "postgresql://tb:hunter2@db:99999/tb",
            "postgresql://tb:hunter2@db/tb?x=1",
        ] {
            let text = err(s);
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn other_schemes_empty_and_overlong_are_refused() {
        assert!(err("").contains("empty"));
        for s in [
            "sqlite:///srv/broker/clients.db",
            "mysql://tb@db/tb",
            "PostgreSQL://tb@db/tb",
            "postgresql:/tb@db/tb",
            "/srv/broker/clients.db",
            "host=db;dbname=tb",
        ] {
            assert!(err(s).contains("must start with"), "{s}");
        }
        let long = format!("postgresql://tb@db/{}", "a".repeat(2000));
        let text = err(&long);
        assert!(text.contains("longer than 1024"), "{text}");
        assert!(text.len() < 300, "{text}");
        let name = format!("postgresql://tb@db/{}", "a".repeat(64));
        assert!(err(&name).contains("longer than 63"));
    }

    #[test]
    fn control_non_ascii_and_shell_metacharacters_are_refused() {
        for s in [
            "postgresql://tb@db/tb\n",
            "postgresql://tb@db/tb\u{1b}[31m",
            "postgresql://tb@db/t\0b",
            "postgresql://tb@db/ tb",
            "postgresql://tb@dé.example/tb",
            "postgresql://tb@db/tb\u{202e}",
        ] {
            let text = err(s);
            assert!(text.contains("printable ASCII"), "{s:?}: {text}");
            assert!(!text.contains('\u{1b}') && !text.contains('\n'), "{text}");
        }
        for s in [
            "postgresql://tb@db/tb;rm",
            "postgresql://tb@db/$(id)",
            "postgresql://tb@db/`id`",
            "postgresql://t'b@db/tb",
            "postgresql://tb@db|x/tb",
            "postgresql://tb@db/tb?host=/tmp;id",
            "postgresql://tb@db/tb?sslmode=disable&&",
            "postgresql://tb@db/tb?sslrootcert=/etc/../etc/passwd",
            "postgresql://tb@db/tb?sslrootcert=relative.pem",
            "postgresql://tb@db/t%62",
            "postgresql://tb@db/tb/x",
            "postgresql://tb@d*b/tb",
            "postgresql://tb@-db/tb",
        ] {
            err(s);
        }
    }

    #[test]
    fn missing_parts_ports_and_parameters() {
        assert!(err("postgresql://db/tb").contains("no user"));
        assert!(err("postgresql://tb@db").contains("no database"));
        assert!(err("postgresql://tb@db/").contains("no database"));
        assert!(err("postgresql://tb@/tb").contains("no host"));
        assert!(err("postgresql://@db/tb").contains("no user"));
        for p in ["0", "65536", "-1", "", "5432x", "+5432"] {
            let text = err(&format!("postgresql://tb@db:{p}/tb"));
            assert!(text.contains("port"), "{p}: {text}");
        }
        assert!(err("postgresql://tb@db/tb?sslmode=prefer").contains("plain text"));
        assert!(err("postgresql://tb@db/tb?sslmode=allow").contains("plain text"));
        assert!(err("postgresql://tb@db/tb?sslmode=bogus").contains("sslmode must be"));
        assert!(err("postgresql://tb@db/tb?sslmode=disable&sslmode=require").contains("twice"));
        assert!(err("postgresql://tb@db/tb?password=x").contains("unknown parameter"));
        // A password in a parameter is not repeated either.
        let text = err("postgresql://tb@db/tb?sslmode=require&Password=s3cr3t&x=1");
        assert!(
            !text.contains("s3cr3t") && text.contains("Password=[redacted]"),
            "{text}"
        );
        assert!(err("postgresql://tb@db/tb?host=/run/pg").contains("not both"));
        assert!(err("postgresql://tb@[db]/tb").contains("IPv6"));
        assert!(err("postgresql://tb@db/tb?sslmode").contains("KEY=VALUE"));
        assert!(
            err("postgresql://tb@db/tb?sslmode=disable&sslrootcert=/ca.pem")
                .contains("means nothing")
        );
    }

    #[test]
    fn tls_is_off_only_for_local_servers_or_when_disabled() {
        let tls = |s: &str| ok(s).tls();
        assert_eq!(tls("postgresql://tb@/tb?host=/run/pg"), Tls::Off);
        assert_eq!(
            tls("postgresql://tb@/tb?host=/run/pg&sslmode=require"),
            Tls::Off
        );
        assert_eq!(tls("postgresql://tb@localhost/tb"), Tls::Off);
        assert_eq!(tls("postgresql://tb@127.0.0.1/tb"), Tls::Off);
        assert_eq!(tls("postgresql://tb@127.8.9.10/tb"), Tls::Off);
        assert_eq!(tls("postgresql://tb@[::1]/tb"), Tls::Off);
        assert_eq!(tls("postgresql://tb@db.example.net/tb"), Tls::Verified);
        assert_eq!(tls("postgresql://tb@10.0.0.5/tb"), Tls::Verified);
        assert_eq!(tls("postgresql://tb@[2001:db8::5]/tb"), Tls::Verified);
        // "localhost.example.net" is not local.
        assert_eq!(
            tls("postgresql://tb@localhost.example.net/tb"),
            Tls::Verified
        );
        // sslmode wins both ways; require is verified too.
        assert_eq!(
            tls("postgresql://tb@127.0.0.1/tb?sslmode=require"),
            Tls::Verified
        );
        assert_eq!(tls("postgresql://tb@db/tb?sslmode=require"), Tls::Verified);
        assert_eq!(
            tls("postgresql://tb@db/tb?sslmode=verify-ca"),
            Tls::Verified
        );
        assert_eq!(tls("postgresql://tb@db/tb?sslmode=disable"), Tls::Off);
        assert!(
            ok("postgresql://tb@db/tb?sslmode=disable")
                .warning()
                .is_some()
        );
        assert!(
            ok("postgresql://tb@localhost/tb?sslmode=disable")
                .warning()
                .is_none()
        );
        assert!(ok("postgresql://tb@db/tb").warning().is_none());
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redacted("postgresql://a:b@h/d"),
            "postgresql://a:[redacted]@h/d"
        );
        assert_eq!(redacted("x://a:b@c@h/d"), "x://a:[redacted]@h/d");
        assert_eq!(redacted("postgresql://a@h/d"), "postgresql://a@h/d");
        assert_eq!(redacted("no scheme:x@y"), "no scheme:x@y");
    }
}
