//! A minimal client of OpenVPN's management interface on a unix socket
//! (`management PATH unix`), used to end sessions when a client is revoked.
//!
//! See OpenVPN's `management-notes.txt`: commands are single lines, answered
//! by a line starting with `SUCCESS:` or `ERROR:`; lines starting with `>`
//! are real-time notifications and are skipped.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::values::CommonName;
use crate::error::{Error, Result};

/// A connection to one OpenVPN instance's management socket.
#[derive(Debug)]
pub struct Management {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Management {
    /// How long to wait for the socket and for each answer.
    pub const TIMEOUT: Duration = Duration::from_secs(5);

    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> Result<Self> {
        let fail = |e: std::io::Error| Error::Management {
            socket: path.to_owned(),
            reason: e.to_string(),
        };
        let stream = UnixStream::connect(path).map_err(fail)?;
        stream.set_read_timeout(Some(Self::TIMEOUT)).map_err(fail)?;
        stream
            .set_write_timeout(Some(Self::TIMEOUT))
            .map_err(fail)?;
        let writer = stream.try_clone().map_err(fail)?;
        Ok(Management {
            path: path.to_owned(),
            reader: BufReader::new(stream),
            writer,
        })
    }

    fn fail(&self, reason: impl Into<String>) -> Error {
        Error::Management {
            socket: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// Sends one command line and returns the text after `SUCCESS: `.
    fn command(&mut self, line: &str) -> Result<String> {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .map_err(|e| self.fail(e.to_string()))?;
        loop {
            let mut answer = String::new();
            let n = self
                .reader
                .read_line(&mut answer)
                .map_err(|e| self.fail(e.to_string()))?;
            if n == 0 {
                return Err(self.fail("the server closed the connection"));
            }
            let answer = answer.trim_end();
            if let Some(ok) = answer.strip_prefix("SUCCESS:") {
                return Ok(ok.trim().to_owned());
            }
            if let Some(err) = answer.strip_prefix("ERROR:") {
                return Err(self.fail(format!("{line:?} failed: {}", err.trim())));
            }
            // `>INFO:` banners and other notifications: keep reading.
        }
    }

    /// Disconnects every session of the client with common name `cn`
    /// (`kill CN`, shared mode). Fails if no such client is connected.
    pub fn kill_client(&mut self, cn: &CommonName) -> Result<String> {
        self.command(&format!("kill {cn}"))
    }

    /// Ends the whole instance (`signal SIGTERM`, per-client mode).
    pub fn terminate(&mut self) -> Result<String> {
        self.command("signal SIGTERM")
    }
}
