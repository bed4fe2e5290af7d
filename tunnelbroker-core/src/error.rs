//! The crate's one error type.
//!
//! Every fallible function of `tunnelbroker-core` returns [`Result<T>`]. An
//! [`Error`] is a value with a voice: its `Display` is one lowercase line that
//! says what was wrong and, where it helps, what is allowed instead. Programs
//! that need to react to a class of error (the CLI's exit status, the Python
//! exception hierarchy) ask [`Error::kind`].

use std::net::Ipv6Addr;
use std::path::PathBuf;

use ipnet::Ipv6Net;

use crate::plan::{ClientKind, Pool, Role};

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The broad class of an [`Error`], for callers that map errors to exit
/// statuses or exception types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller gave input that is not acceptable (bad text, out of pool,
    /// wrong role, bad client ID). Retrying with the same input fails again.
    InvalidInput,
    /// Something that was asked for does not exist (an unknown client, a
    /// prefix that is not assigned).
    NotFound,
    /// Something that was to be created exists already (a client ID, an
    /// assigned prefix, a broker directory).
    AlreadyExists,
    /// The pool has no free assignment of the requested kind.
    Exhausted,
    /// A certificate, key or request failed a cryptographic check.
    Crypto,
    /// Reading or writing a file failed.
    Io,
    /// The client database failed.
    Database,
    /// Anything else.
    Other,
}

/// Every error that `tunnelbroker-core` reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ----- address plan -----------------------------------------------------
    /// A pool could not be parsed or is not an acceptable pool.
    #[error("invalid pool {input}: {reason}")]
    InvalidPool {
        /// The offending input, quoted and shortened for display.
        input: String,
        /// What is wrong with it and what is allowed.
        reason: String,
    },
    /// An address or prefix could not be parsed or has the wrong shape.
    #[error("invalid prefix {input}: {reason}")]
    InvalidPrefix {
        /// The offending input, quoted and shortened for display.
        input: String,
        /// What is wrong with it and what is allowed.
        reason: String,
    },
    /// An address or prefix lies outside the pool.
    #[error("{prefix} is outside the pool {pool}")]
    OutsidePool {
        /// The prefix (or address as a /128) that was asked for.
        prefix: Ipv6Net,
        /// The pool it should have been in.
        pool: Pool,
    },
    /// An address or prefix lies in a part of the pool reserved for another role.
    #[error("{prefix} lies in the {found} /64 of the pool, not in a {expected} /64")]
    WrongRole {
        /// The prefix (or address as a /128) that was asked for.
        prefix: Ipv6Net,
        /// The role of the /64 it lies in.
        found: Role,
        /// The role it should have had.
        expected: Role,
    },
    /// An address that the plan never hands out (for example a subnet-router
    /// anycast address).
    #[error("{address} is reserved: {why}")]
    Reserved {
        /// The reserved address.
        address: Ipv6Addr,
        /// Why it is reserved.
        why: &'static str,
    },
    /// The requested assignment is live already.
    #[error("{prefix} is already assigned{}", owner_suffix(.owner))]
    AlreadyAssigned {
        /// The prefix that is taken.
        prefix: Ipv6Net,
        /// Its owner, where the caller knows it.
        owner: Option<String>,
    },
    /// An assignment that was to be released or looked up is not live.
    #[error("{prefix} is not assigned")]
    NotAssigned {
        /// The prefix that is not assigned.
        prefix: Ipv6Net,
    },
    /// No free assignment of the requested kind is left.
    #[error("pool {pool} has no free {kind} assignment left (all {capacity} are in use)")]
    PoolExhausted {
        /// The pool.
        pool: Pool,
        /// The kind of assignment asked for.
        kind: ClientKind,
        /// How many assignments of that kind the pool holds.
        capacity: u64,
    },
    /// A word that should name a kind, mode, OS or key type is not one of them.
    #[error("invalid {what} {input}: expected one of {expected}")]
    InvalidChoice {
        /// What was being parsed ("client kind", "server mode", ...).
        what: &'static str,
        /// The offending input, quoted and shortened for display.
        input: String,
        /// The accepted words, comma separated.
        expected: &'static str,
    },

    // ----- clients ---------------------------------------------------------
    /// A client ID breaks the naming rule.
    #[error("invalid client id {input}: {reason}")]
    InvalidClientId {
        /// The offending input, quoted and shortened for display.
        input: String,
        /// Which part of the rule it breaks.
        reason: String,
    },

    // ----- openvpn ---------------------------------------------------------
    /// A value to be written into an OpenVPN configuration or script breaks
    /// its rule.
    #[error("invalid {what} {input}: {reason}")]
    InvalidConfigValue {
        /// What was being checked ("path", "host", "interface name", ...).
        what: &'static str,
        /// The offending input, quoted and shortened (never a secret).
        input: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// Talking to an OpenVPN management interface failed.
    #[error("openvpn management socket {}: {reason}", .socket.display())]
    Management {
        /// The management socket.
        socket: PathBuf,
        /// What went wrong.
        reason: String,
    },

    // ----- files -----------------------------------------------------------
    /// Reading or writing a file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

fn owner_suffix(owner: &Option<String>) -> String {
    match owner {
        Some(o) => format!(" to {o}"),
        None => String::new(),
    }
}

impl Error {
    /// The broad class of this error.
    ///
    /// ```
    /// use tunnelbroker_core::{ErrorKind, Pool};
    /// let err = "2001:db8::1/56".parse::<Pool>().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidPool { .. }
            | Error::InvalidPrefix { .. }
            | Error::OutsidePool { .. }
            | Error::WrongRole { .. }
            | Error::Reserved { .. }
            | Error::InvalidChoice { .. }
            | Error::InvalidClientId { .. }
            | Error::InvalidConfigValue { .. } => ErrorKind::InvalidInput,
            Error::Management { .. } => ErrorKind::Other,
            Error::AlreadyAssigned { .. } => ErrorKind::AlreadyExists,
            Error::NotAssigned { .. } => ErrorKind::NotFound,
            Error::PoolExhausted { .. } => ErrorKind::Exhausted,
            Error::Io { .. } => ErrorKind::Io,
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Quotes untrusted text for an error message: escapes control and
/// non-printable characters and shortens it to a readable length, so that no
/// input can forge extra lines or flood a terminal.
pub(crate) fn shown(input: &str) -> String {
    const MAX: usize = 64;
    let mut cut: String = input.chars().take(MAX).collect();
    if cut.len() < input.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_escapes_and_shortens() {
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
        let long = "x".repeat(200);
        let s = shown(&long);
        assert!(s.chars().count() < 70, "{s}");
        assert!(s.contains('…'));
    }
}
