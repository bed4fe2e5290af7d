//! Printing: human text or JSON on stdout, and errors as one line on stderr
//! with the exit status that matches their kind.
//!
//! Writing to stdout never decides the exit status by itself: when stdout
//! goes away (`tunnelbroker audit | head -1`, a full disk), the command still
//! finishes and a failure stays a failure; a command that succeeded but
//! whose output was lost exits 1 with one line on stderr.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;

use serde::Serialize;
use tunnelbroker_core::{Error, ErrorKind, flatten};

/// Where a command's result goes: text for people, or JSON with `--json`.
#[derive(Debug)]
pub struct Output {
    json: bool,
    /// The first error writing to stdout; nothing more is written after it.
    lost: RefCell<Option<io::Error>>,
}

impl Output {
    /// Text unless `json`.
    pub fn new(json: bool) -> Self {
        Output {
            json,
            lost: RefCell::new(None),
        }
    }

    /// Whether `--json` was given.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints `value` as pretty JSON with `--json`, else its `Display` text
    /// with every line [`flatten`]ed: a CA subject or a path with a control
    /// character (an escape sequence, a newline) never reaches the terminal
    /// raw. (JSON escapes them itself.)
    pub fn show<T: Serialize + fmt::Display>(&self, value: &T) -> Result<(), Failure> {
        let text = if self.json {
            serde_json::to_string_pretty(value).map_err(|e| Failure::other(e.to_string()))?
        } else {
            value
                .to_string()
                .lines()
                .map(|l| flatten(l) + "\n")
                .collect()
        };
        self.print(&format!("{}\n", text.trim_end()));
        Ok(())
    }

    /// Writes `text` to stdout as it is. A write error (the reader went
    /// away, a full disk) is kept for [`finish`], never returned: the
    /// command goes on to its own result.
    pub fn print(&self, text: &str) {
        let mut lost = self.lost.borrow_mut();
        if lost.is_some() {
            return;
        }
        let mut stdout = io::stdout().lock();
        if let Err(e) = stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
        {
            *lost = Some(e);
        }
    }
}

/// Why a command failed: a message and the exit status it earns.
#[derive(Debug)]
pub struct Failure {
    message: String,
    status: u8,
}

impl Failure {
    /// Bad input from the user: exit status 2.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            status: 2,
        }
    }

    /// The same failure, its message prefixed with `prefix` (a path).
    pub fn with_prefix(self, prefix: &str) -> Self {
        Failure {
            message: format!("{prefix}: {}", self.message),
            status: self.status,
        }
    }

    /// Any other failure: exit status 1.
    pub fn other(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            status: 1,
        }
    }
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        Failure {
            message: err.to_string(),
            status: exit_status(err.kind()),
        }
    }
}

/// The one rule ([`crate::args::EXIT_STATUS`]): exit status 2 for bad input
/// (text that does not parse or breaks a rule, a name or directory that does
/// not exist or exists already, a directory given to `init` that is not
/// empty, a certificate, key or request that fails its checks); status 1 for
/// the rest (pool exhausted, I/O, database, internal failures).
fn exit_status(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::InvalidInput
        | ErrorKind::NotFound
        | ErrorKind::AlreadyExists
        | ErrorKind::Crypto => 2,
        _ => 1,
    }
}

/// Reads a file the user named on the command line (at most `max` bytes of
/// text, see [`tunnelbroker_core::read_text`]); whatever is wrong with it is
/// bad input: exit 2.
pub fn read_input(path: &std::path::Path, max: u64) -> Result<String, Failure> {
    tunnelbroker_core::read_text(path, max).map_err(|e| Failure::invalid_input(e.to_string()))
}

/// Opens the broker in `dir`, and says on stderr what opening it found
/// worth a warning (a stale cached copy of the shared settings).
pub fn open_broker(dir: &std::path::Path) -> Result<tunnelbroker_core::Broker, Failure> {
    let broker = tunnelbroker_core::Broker::open(dir)?;
    for w in broker.open_warnings() {
        warn(w);
    }
    Ok(broker)
}

/// Writes `tunnelbroker: warning: <text>` on one line of stderr.
pub fn warn(text: &str) {
    let line = text.replace(['\n', '\r'], " ");
    let _ = writeln!(io::stderr().lock(), "tunnelbroker: warning: {line}");
}

/// Turns a command's result into the process's exit status, reporting a
/// failure as `tunnelbroker: error: <message>` on one line of stderr. A
/// failure keeps its status whatever happened to stdout; a success whose
/// output could not be written (stdout closed, disk full) is a failure too:
/// exit 1, and one line saying so.
pub fn finish(out: &Output, result: Result<(), Failure>) -> ExitCode {
    let failure = match (result, out.lost.borrow_mut().take()) {
        (Ok(()), None) => return ExitCode::SUCCESS,
        (Err(f), _) => f,
        (Ok(()), Some(e)) => Failure::other(format!("cannot write output: {e}")),
    };
    let line = flatten(&failure.message);
    // If stderr is gone too there is no one left to tell.
    let _ = writeln!(io::stderr().lock(), "tunnelbroker: error: {line}");
    ExitCode::from(failure.status)
}

/// A time as the CLI prints it: RFC 3339 (its `Display` if that fails).
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_exit_2_and_others_1() {
        let bad = "hello".parse::<tunnelbroker_core::Pool>().unwrap_err();
        assert_eq!(Failure::from(bad).status, 2);
        assert_eq!(Failure::other("x").status, 1);
    }
}
