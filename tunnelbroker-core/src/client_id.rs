//! Client identifiers.
//!
//! A client ID becomes a file name, a certificate CN, a word in generated
//! shell scripts and a key in the client database, so it is held to one
//! strict rule (DESIGN.md §4): 1 to 64 ASCII letters, digits, `.`, `-` and
//! `_`, not starting with `.` or `-`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, shown};

/// A validated client identifier.
///
/// ```
/// use tunnelbroker_core::ClientId;
/// let id: ClientId = "alice.lab-1_b".parse()?;
/// assert_eq!(id.as_str(), "alice.lab-1_b");
///
/// for bad in ["", "../etc/passwd", "-rf", ".hidden", "a b", "a;rm -rf /", "jörg", &"x".repeat(65)] {
///     assert!(bad.parse::<ClientId>().is_err(), "{bad}");
/// }
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClientId(String);

impl ClientId {
    /// The longest accepted ID (the X.509 upper bound for a common name).
    pub const MAX_LEN: usize = 64;

    /// Checks `s` against the rule and makes it an ID.
    pub fn new(s: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidClientId {
            input: shown(s),
            reason,
        };
        if s.is_empty() {
            return Err(bad("it is empty".into()));
        }
        if s.len() > Self::MAX_LEN {
            return Err(bad(format!(
                "it is {} bytes long; at most {} are allowed",
                s.len(),
                Self::MAX_LEN
            )));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Err(bad(format!(
                "{c:?} is not allowed; use ASCII letters, digits, '.', '-' and '_'"
            )));
        }
        if s.starts_with('.') || s.starts_with('-') {
            return Err(bad("it must not start with '.' or '-'".into()));
        }
        Ok(ClientId(s.to_owned()))
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Why Windows cannot use this ID as a file name, if it cannot: it is a
    /// device name that Windows reserves (`CON`, `PRN`, `AUX`, `NUL`,
    /// `COM0`-`COM9`, `LPT0`-`LPT9`, in any case, also with an extension such
    /// as `con.txt`), or it ends in a dot, which Windows strips. (A space,
    /// which Windows strips too, is refused by the rule for every ID.)
    ///
    /// The broker refuses such an ID for a Windows client, whose bundle,
    /// configuration and key file are named after it.
    ///
    /// ```
    /// use tunnelbroker_core::ClientId;
    /// let id = |s: &str| s.parse::<ClientId>().unwrap();
    /// assert!(id("alice").windows_problem().is_none());
    /// assert!(id("console").windows_problem().is_none());
    /// for bad in ["CON", "nul", "Com1", "lpt9.lab", "aux.tar", "alice."] {
    ///     assert!(id(bad).windows_problem().is_some(), "{bad}");
    /// }
    /// ```
    pub fn windows_problem(&self) -> Option<String> {
        if self.0.ends_with('.') {
            return Some("Windows strips a trailing '.' from file names".into());
        }
        let stem = self.0.split('.').next().unwrap_or_default();
        let upper = stem.to_ascii_uppercase();
        let reserved = matches!(upper.as_str(), "CON" | "PRN" | "AUX" | "NUL")
            || (upper.len() == 4
                && (upper.starts_with("COM") || upper.starts_with("LPT"))
                && upper.as_bytes()[3].is_ascii_digit());
        reserved
            .then(|| format!("Windows reserves the device name {upper} (also with an extension)"))
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({:?})", self.0)
    }
}

impl FromStr for ClientId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ClientId::new(s)
    }
}

impl TryFrom<String> for ClientId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        ClientId::new(&s)
    }
}

impl From<ClientId> for String {
    fn from(id: ClientId) -> String {
        id.0
    }
}

impl AsRef<str> for ClientId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn each_rule_has_its_reason() {
        let msg = |s: &str| ClientId::new(s).unwrap_err().to_string();
        assert!(msg("").contains("empty"));
        assert!(msg(&"a".repeat(65)).contains("at most 64"));
        assert!(msg("a/b").contains("'/'"));
        assert!(msg("$(reboot)").contains("'$'"));
        assert!(msg(".x").contains("must not start"));
        assert!(msg("-x").contains("must not start"));
        assert!(msg("a\nb").contains("invalid client id \"a\\nb\""));
        assert!(ClientId::new(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn windows_reserved_names_are_found_in_any_case_and_with_extensions() {
        let problem = |s: &str| ClientId::new(s).unwrap().windows_problem();
        for bad in [
            "CON",
            "con",
            "Prn",
            "aux",
            "NUL",
            "nul.txt",
            "con.tar.gz",
            "COM0",
            "com9",
            "LPT1",
            "lpt5.x",
            "alice.",
            "a..",
        ] {
            assert!(problem(bad).is_some(), "{bad}");
        }
        for good in [
            "alice", "con1", "com10", "lpt", "comx", "nul_", "aux-1", "a.con", "conx.txt", "a.b",
        ] {
            assert_eq!(problem(good), None, "{good}");
        }
        assert!(problem("lpt1.lab").unwrap().contains("device name LPT1"));
        assert!(problem("x.").unwrap().contains("trailing '.'"));
    }

    proptest! {
        #[test]
        fn never_panics_and_accepts_only_safe_text(s in ".{0,80}") {
            if let Ok(id) = ClientId::new(&s) {
                prop_assert!(id.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
                prop_assert_eq!(id.to_string().parse::<ClientId>().ok(), Some(id));
            }
        }
    }
}
