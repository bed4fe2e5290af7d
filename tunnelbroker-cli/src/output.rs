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
    #[allow(dead_code)] // for commands that check their own arguments
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            status: 2,
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
            status: if err.kind() == ErrorKind::InvalidInput {
                2
            } else {
                1
            },
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
