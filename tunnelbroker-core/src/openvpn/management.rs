//! A minimal client of OpenVPN's management interface on a unix socket
//! (`management PATH unix`), used to end sessions when a client is revoked.
//!
//! See OpenVPN's `management-notes.txt`: commands are single lines, answered
//! by a line starting with `SUCCESS:` or `ERROR:`; lines starting with `>`
//! are real-time notifications and are skipped.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::values::CommonName;
use crate::error::{Error, Result, one_line};

/// A connection to one OpenVPN instance's management socket.
#[derive(Debug)]
pub struct Management {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    deadline: Instant,
}

impl Management {
    /// How long to wait for the socket and for each answer.
    pub const TIMEOUT: Duration = Duration::from_secs(5);
    /// How long one connection may take in all, from connecting to the last
    /// answer: a server that keeps sending notifications (`>INFO:`,
    /// `>BYTECOUNT:`) but never answers cannot hold the caller longer.
    /// Past it a command fails with [`Management::DEADLINE_PASSED`] in its
    /// reason.
    pub const DEADLINE: Duration = Duration::from_secs(10);
    /// The reason of the [`Error::Management`] a command fails with when
    /// [`DEADLINE`](Self::DEADLINE) has passed.
    pub const DEADLINE_PASSED: &str = "no answer within 10 s";

    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> Result<Self> {
        let deadline = Instant::now() + Self::DEADLINE;
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
            deadline,
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
            let Some(answer) = self.next_line()? else {
                return Err(self.fail("the server closed the connection"));
            };
            let answer = answer.trim_end();
            // The server's words reach messages and reports: one line, so
            // flattened (a NUL or an escape sequence stays visible text).
            if let Some(ok) = answer.strip_prefix("SUCCESS:") {
                return Ok(one_line(ok.trim()));
            }
            if let Some(err) = answer.strip_prefix("ERROR:") {
                return Err(self.fail(format!("{line:?} failed: {}", one_line(err.trim()))));
            }
            // `>INFO:` banners and other notifications: keep reading.
        }
    }

    /// The next line from the server (`None` at the end of the stream):
    /// each read waits at most [`TIMEOUT`](Self::TIMEOUT), and none starts
    /// after the [`DEADLINE`](Self::DEADLINE), however the server trickles
    /// its bytes.
    fn next_line(&mut self) -> Result<Option<String>> {
        const MAX_LINE: usize = 64 << 10;
        let mut line = Vec::new();
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.fail(Self::DEADLINE_PASSED));
            }
            if let Err(e) = self
                .reader
                .get_ref()
                .set_read_timeout(Some(left.min(Self::TIMEOUT)))
            {
                return Err(self.fail(e.to_string()));
            }
            let (used, done) = match self.reader.fill_buf() {
                Ok([]) => (0, true),
                Ok(buf) => match buf.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        line.extend_from_slice(&buf[..=i]);
                        (i + 1, true)
                    }
                    None => {
                        line.extend_from_slice(buf);
                        (buf.len(), false)
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => (0, false),
                Err(_) if Instant::now() >= self.deadline => {
                    return Err(self.fail(Self::DEADLINE_PASSED));
                }
                Err(e) => return Err(self.fail(e.to_string())),
            };
            self.reader.consume(used);
            if done {
                return Ok((!line.is_empty()).then(|| String::from_utf8_lossy(&line).into_owned()));
            }
            if line.len() > MAX_LINE {
                return Err(self.fail("the server sent a line longer than 64 KiB"));
            }
        }
    }

    /// Disconnects every session of the client with common name `cn`
    /// (`kill CN`, shared mode). Fails if no such client is connected.
    pub fn kill_client(&mut self, cn: &CommonName) -> Result<String> {
        self.command(&format!("kill {cn}"))
    }

    /// The live sessions of this instance (`status 3`, read up to its
    /// `END` line; see [`parse_status`](super::parse_status)). The reply
    /// is bounded like every answer: lines of at most 64 KiB, and the
    /// connection's [`DEADLINE`](Self::DEADLINE).
    pub fn status(&mut self) -> Result<Vec<super::LiveSession>> {
        /// The most lines one reply may have (beyond `--max-clients`' 1024
        /// many times over).
        const MAX_LINES: usize = 200_000;
        let text = self.reply("status 3", MAX_LINES)?;
        super::parse_status(&text).map_err(|e| self.fail(e.to_string()))
    }

    /// The session of a per-client (point-to-point) instance, which has no
    /// client list: `state` tells whether its peer is connected, since
    /// when and from where ([`parse_state`](super::parse_state)), and
    /// `status` the bytes of its link
    /// ([`parse_link_bytes`](super::parse_link_bytes)). `None` while no
    /// peer is connected. Bytes received first, then sent.
    pub fn peer(&mut self) -> Result<Option<(super::PeerLink, u64, u64)>> {
        /// `state` answers one line, `status` some ten.
        const MAX_LINES: usize = 100;
        let state = self.reply("state", MAX_LINES)?;
        let Some(link) = super::parse_state(&state).map_err(|e| self.fail(e.to_string()))? else {
            return Ok(None);
        };
        let status = self.reply("status", MAX_LINES)?;
        let (received, sent) =
            super::parse_link_bytes(&status).map_err(|e| self.fail(e.to_string()))?;
        Ok(Some((link, received, sent)))
    }

    /// Sends `command` and reads its multi-line reply up to its `END`
    /// line (not included), at most `max_lines` lines; notifications
    /// before the reply are skipped, an `ERROR:` is the command failing.
    fn reply(&mut self, command: &str, max_lines: usize) -> Result<String> {
        self.writer
            .write_all(format!("{command}\n").as_bytes())
            .map_err(|e| self.fail(e.to_string()))?;
        let mut text = String::new();
        let mut lines = 0usize;
        loop {
            let Some(line) = self.next_line()? else {
                return Err(self.fail(format!(
                    "the server closed the connection in its {command:?} reply"
                )));
            };
            let trimmed = line.trim_end();
            if lines == 0 {
                // Notifications may come before the reply, never inside it.
                if trimmed.starts_with('>') {
                    continue;
                }
                if let Some(err) = trimmed.strip_prefix("ERROR:") {
                    return Err(self.fail(format!("{command:?} failed: {}", one_line(err.trim()))));
                }
            }
            if trimmed == "END" {
                return Ok(text);
            }
            lines += 1;
            if lines > max_lines {
                return Err(self.fail(format!(
                    "the {command:?} reply is longer than {max_lines} lines"
                )));
            }
            text.push_str(trimmed);
            text.push('\n');
        }
    }

    /// Ends the whole instance (`signal SIGTERM`, per-client mode).
    pub fn terminate(&mut self) -> Result<String> {
        self.command("signal SIGTERM")
    }
}
