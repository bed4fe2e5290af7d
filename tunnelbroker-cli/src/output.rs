//! Printing: human text or JSON on stdout, and errors as one line on stderr
//! with the exit status that matches their kind.

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;

use serde::Serialize;
use tunnelbroker_core::{Error, ErrorKind};

/// Where a command's result goes: text for people, or JSON with `--json`.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

impl Output {
    /// Text unless `json`.
    pub fn new(json: bool) -> Self {
        Output { json }
    }

    /// Whether `--json` was given.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints `value` as pretty JSON with `--json`, else its `Display` text.
    pub fn show<T: Serialize + fmt::Display>(&self, value: &T) -> Result<(), Failure> {
        let text = if self.json {
            serde_json::to_string_pretty(value).map_err(|e| Failure::other(e.to_string()))?
        } else {
            value.to_string()
        };
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{}", text.trim_end())
            .and_then(|()| stdout.flush())
            .map_err(Failure::from)
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

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Self {
        if err.kind() == io::ErrorKind::BrokenPipe {
            // The reader went away (`tunnelbroker ... | head`): not our failure.
            return Failure {
                message: String::new(),
                status: 0,
            };
        }
        Failure::other(format!("cannot write output: {err}"))
    }
}

/// Exit status 2 for bad input: text that does not parse or breaks a rule,
/// a name that does not exist or exists already, a certificate, key or
/// request that fails its checks. Status 1 for the rest (pool exhausted, I/O,
/// database, internal failures).
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

/// Turns a command's result into the process's exit status, reporting a
/// failure as `tunnelbroker: error: <message>` on one line of stderr.
pub fn finish(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) if f.status == 0 => ExitCode::SUCCESS,
        Err(f) => {
            let line = f.message.replace(['\n', '\r'], " ");
            // If stderr is gone too there is no one left to tell.
            let _ = writeln!(io::stderr().lock(), "tunnelbroker: error: {line}");
            ExitCode::from(f.status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_exit_2_and_others_1() {
        let bad = "hello".parse::<tunnelbroker_core::Pool>().unwrap_err();
        assert_eq!(Failure::from(bad).status, 2);
        assert_eq!(Failure::other("x").status, 1);
        let pipe = io::Error::from(io::ErrorKind::BrokenPipe);
        assert_eq!(Failure::from(pipe).status, 0);
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        assert_eq!(Failure::from(denied).status, 1);
    }
}
