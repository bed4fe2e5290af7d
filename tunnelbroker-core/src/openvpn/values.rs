//! Validated words that may be interpolated into configurations and scripts.
//!
//! Every value here is checked in its constructor against a conservative
//! character set, so that once it exists it can be written into an OpenVPN
//! configuration without quoting and into a shell script inside single quotes
//! without any way to end the word, start a comment or close an inline block.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use crate::error::{Error, Result, shown};

fn invalid(what: &'static str, input: &str, reason: impl Into<String>) -> Error {
    Error::InvalidConfigValue {
        what,
        input: shown(input),
        reason: reason.into(),
    }
}

/// A path as OpenVPN is to read it from a configuration: a file or directory
/// name, relative to OpenVPN's `--cd` directory or absolute.
///
/// Allowed are ASCII letters, digits and `/ . _ - + , : @ %`; no whitespace,
/// quotes, `#`, `;`, `$`, backslashes or control characters, at most 1024
/// bytes.
///
/// ```
/// use tunnelbroker_core::openvpn::ConfigPath;
/// let p = ConfigPath::new("/etc/openvpn/server/ca.crt")?;
/// assert_eq!(p.to_string(), "/etc/openvpn/server/ca.crt");
/// for bad in ["", "a b", "x\n<key>", "a;b", "a#b", "$HOME/x", "ca\".crt", "jörg"] {
///     assert!(ConfigPath::new(bad).is_err(), "{bad}");
/// }
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConfigPath(pub(crate) String);

impl ConfigPath {
    /// The longest accepted path, in bytes.
    pub const MAX_LEN: usize = 1024;

    /// Checks `s` and makes it a path.
    pub fn new(s: &str) -> Result<Self> {
        const WHAT: &str = "path";
        if s.is_empty() {
            return Err(invalid(WHAT, s, "it is empty"));
        }
        if s.len() > Self::MAX_LEN {
            return Err(invalid(
                WHAT,
                s,
                format!("it is longer than {} bytes", Self::MAX_LEN),
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "/._-+,:@%".contains(*c)))
        {
            return Err(invalid(
                WHAT,
                s,
                format!("{c:?} is not allowed; use ASCII letters, digits and / . _ - + , : @ %"),
            ));
        }
        Ok(ConfigPath(s.to_owned()))
    }

    /// Checks a filesystem path (it must be valid UTF-8 and follow the rule).
    pub fn from_path(p: &Path) -> Result<Self> {
        match p.to_str() {
            Some(s) => Self::new(s),
            None => Err(invalid(
                "path",
                &p.to_string_lossy(),
                "it is not valid UTF-8",
            )),
        }
    }

    /// `self/name`, checked again.
    pub fn join(&self, name: &str) -> Result<Self> {
        if self.0.ends_with('/') {
            Self::new(&format!("{}{name}", self.0))
        } else {
            Self::new(&format!("{}/{name}", self.0))
        }
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A network interface name as Linux accepts it: 1 to 15 bytes of ASCII
/// letters, digits, `.`, `_` and `-`, not starting with `-` or `.`.
///
/// ```
/// use tunnelbroker_core::openvpn::InterfaceName;
/// assert_eq!(InterfaceName::new("eth0")?.as_str(), "eth0");
/// assert_eq!(InterfaceName::for_port(5000).as_str(), "tb5000");
/// for bad in ["", "a-very-long-name0", "eth 0", "eth0;reboot", "../x", "-x", "é"] {
///     assert!(InterfaceName::new(bad).is_err(), "{bad}");
/// }
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceName(String);

impl InterfaceName {
    /// The longest name Linux accepts (`IFNAMSIZ - 1`).
    pub const MAX_LEN: usize = 15;

    /// Checks `s` and makes it an interface name.
    pub fn new(s: &str) -> Result<Self> {
        const WHAT: &str = "interface name";
        if s.is_empty() {
            return Err(invalid(WHAT, s, "it is empty"));
        }
        if s.len() > Self::MAX_LEN {
            return Err(invalid(
                WHAT,
                s,
                format!("it is {} bytes long; Linux allows at most 15", s.len()),
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c)))
        {
            return Err(invalid(
                WHAT,
                s,
                format!("{c:?} is not allowed; use ASCII letters, digits, '.', '_' and '-'"),
            ));
        }
        if s.starts_with('-') || s.starts_with('.') {
            return Err(invalid(WHAT, s, "it must not start with '-' or '.'"));
        }
        Ok(InterfaceName(s.to_owned()))
    }

    /// The tun device of a server instance on UDP `port`: `tb<port>` (at
    /// most 7 bytes).
    pub fn for_port(port: u16) -> Self {
        InterfaceName(format!("tb{port}"))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The host name or IP address that clients connect to (the broker's
/// endpoint), checked so that it can be written into configurations safely.
///
/// A DNS name (labels of ASCII letters, digits and `-`, at most 253 bytes)
/// or an IPv4/IPv6 literal (kept in its canonical form).
///
/// ```
/// use tunnelbroker_core::openvpn::Endpoint;
/// assert_eq!(Endpoint::new("vpn.example.org")?.as_str(), "vpn.example.org");
/// assert_eq!("198.18.0.1".parse::<Endpoint>()?.as_str(), "198.18.0.1");
/// assert_eq!(Endpoint::new("2001:DB8::1")?.as_str(), "2001:db8::1");
/// for bad in ["", "a b", "-x.org", "x..org", "x.org;rm", "<key>", "h\u{e9}llo"] {
///     assert!(Endpoint::new(bad).is_err(), "{bad}");
/// }
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Endpoint(String);

impl Endpoint {
    /// Checks `s` and makes it an endpoint.
    pub fn new(s: &str) -> Result<Self> {
        const WHAT: &str = "endpoint";
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Endpoint(ip.to_string()));
        }
        if s.is_empty() {
            return Err(invalid(WHAT, s, "it is empty"));
        }
        if s.len() > 253 {
            return Err(invalid(WHAT, s, "a DNS name has at most 253 bytes"));
        }
        let name = s.strip_suffix('.').unwrap_or(s);
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(invalid(WHAT, s, "each label needs 1 to 63 characters"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(invalid(
                    WHAT,
                    s,
                    "use a DNS name (ASCII letters, digits, '-' and '.') or an IP address",
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(invalid(WHAT, s, "a label must not start or end with '-'"));
            }
        }
        Ok(Endpoint(s.to_owned()))
    }

    /// The host as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Endpoint {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Endpoint::new(&s)
    }
}

impl From<Endpoint> for String {
    fn from(e: Endpoint) -> String {
        e.0
    }
}

/// A certificate common name that a configuration checks for
/// (`verify-x509-name NAME name`): the client ID rule of DESIGN.md §4.
///
/// ```
/// use tunnelbroker_core::openvpn::CommonName;
/// assert_eq!(CommonName::new("server")?.as_str(), "server");
/// assert!(CommonName::new("a b").is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommonName(String);

impl CommonName {
    /// Checks `s` and makes it a common name.
    pub fn new(s: &str) -> Result<Self> {
        match crate::ClientId::new(s) {
            Ok(id) => Ok(CommonName(id.as_str().to_owned())),
            Err(Error::InvalidClientId { reason, .. }) => Err(invalid("common name", s, reason)),
            Err(e) => Err(e),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&crate::ClientId> for CommonName {
    fn from(id: &crate::ClientId) -> Self {
        CommonName(id.as_str().to_owned())
    }
}

/// PEM or OpenVPN key text to be inlined into a configuration
/// (`<ca>…</ca>`, `<tls-crypt>…</tls-crypt>`).
///
/// It must hold a `-----BEGIN` line and may not contain `<` or `>` (which
/// could close the inline block and smuggle in options) or control characters
/// other than line breaks and tabs. Line ends become `\n` and the text ends
/// with one. `Debug` prints `[redacted]`, since the text may be a private key.
///
/// ```
/// use tunnelbroker_core::openvpn::InlineText;
/// let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
/// assert!(InlineText::new("certificate", pem).is_ok());
/// let evil = "-----BEGIN CERTIFICATE-----\n</ca>\nup /bin/evil\n<ca>\n";
/// assert!(InlineText::new("certificate", evil).is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct InlineText(String);

impl InlineText {
    /// The longest accepted text, in bytes.
    pub const MAX_LEN: usize = 64 * 1024;

    /// Checks `text` (named `what` in errors) for inlining.
    pub fn new(what: &'static str, text: &str) -> Result<Self> {
        if text.len() > Self::MAX_LEN {
            return Err(Error::InvalidConfigValue {
                what,
                input: format!("({} bytes)", text.len()),
                reason: format!("it is longer than {} bytes", Self::MAX_LEN),
            });
        }
        let bad = |reason: &str| Error::InvalidConfigValue {
            what,
            input: "(text not shown)".into(),
            reason: reason.into(),
        };
        if !text.contains("-----BEGIN ") {
            return Err(bad("it holds no \"-----BEGIN\" line"));
        }
        if text.contains(['<', '>']) {
            return Err(bad("'<' and '>' are not allowed in inline material"));
        }
        if text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(bad("control characters are not allowed"));
        }
        // Every line end becomes "\n", a lone "\r" too: otherwise a text
        // ending in "\r" would gain a "\r\n" here and change when checked
        // again.
        let mut t = text.replace("\r\n", "\n").replace('\r', "\n");
        if !t.ends_with('\n') {
            t.push('\n');
        }
        Ok(InlineText(t))
    }

    /// The text, ending with a newline.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for InlineText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InlineText([redacted])")
    }
}

macro_rules! text_impls {
    ($($t:ident),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($t), self.0)
            }
        }
        impl FromStr for $t {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                $t::new(s)
            }
        }
    )*};
}
text_impls!(ConfigPath, InterfaceName, Endpoint, CommonName);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAFE: &str = "/._-+,:@%";

    proptest! {
        #[test]
        fn config_path_never_panics_and_is_safe(s in ".{0,80}") {
            if let Ok(p) = ConfigPath::new(&s) {
                prop_assert!(p.as_str().chars().all(|c| c.is_ascii_alphanumeric() || SAFE.contains(c)));
            }
        }

        #[test]
        fn host_and_ifname_never_panic(s in ".{0,300}") {
            if let Ok(h) = Endpoint::new(&s) {
                prop_assert!(h.as_str().chars().all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c)));
            }
            if let Ok(i) = InterfaceName::new(&s) {
                prop_assert!(i.as_str().len() <= 15);
            }
        }

        #[test]
        fn inline_text_never_holds_tags(s in ".{0,200}") {
            let t = format!("-----BEGIN X-----\n{s}");
            if let Ok(i) = InlineText::new("x", &t) {
                prop_assert!(!i.as_str().contains('<'));
            }
        }
    }

    #[test]
    fn hostile_paths_are_refused() {
        for bad in [
            "../../etc/shadow x",
            "a\0b",
            "a\nb",
            "`id`",
            "a'b",
            "a\\b",
            &"a".repeat(1025),
        ] {
            assert!(ConfigPath::new(bad).is_err(), "{bad:?}");
        }
        assert!(ConfigPath::new("tb-client-alice.up").is_ok());
    }

    #[test]
    fn inline_text_errors_do_not_echo_secrets() {
        let e = InlineText::new("client key", "-----BEGIN PRIVATE KEY-----\nSECRET<\n")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("SECRET"), "{e}");
        assert!(e.contains("client key"), "{e}");
        assert_eq!(
            format!(
                "{:?}",
                InlineText::new("k", "-----BEGIN K-----\nx\n").unwrap()
            ),
            "InlineText([redacted])"
        );
    }
}
