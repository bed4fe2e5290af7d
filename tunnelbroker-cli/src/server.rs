//! `tunnelbroker server render`, `tunnelbroker client bundle` and the
//! session ending of `client revoke`: glue over `Broker::render_server`,
//! `Broker::bundle` and `Broker::end_session`.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tunnelbroker_core::{Broker, Client, ClientId, RenderOptions, RenderReport, SessionEnd};

use crate::args::ServerCommand;
use crate::output::{Failure, Output};

/// Runs one `server` subcommand on the broker in `dir`.
pub fn run(out: &Output, dir: &Path, cmd: &ServerCommand) -> Result<(), Failure> {
    match cmd {
        ServerCommand::Render { out: to, force } => {
            let broker = Broker::open(dir)?;
            let mut options = RenderOptions::new();
            options.force = *force;
            let report = broker.render_server_with(to.as_deref(), &options)?;
            out.show(&Rendered::from(report))
        }
    }
}

/// What `server render` did, for people and for `--json`.
#[derive(Debug, Serialize)]
struct Rendered {
    dir: PathBuf,
    instances: Vec<String>,
    written: Vec<PathBuf>,
    unchanged: usize,
    removed: Vec<PathBuf>,
    warnings: Vec<String>,
}

impl From<RenderReport> for Rendered {
    fn from(r: RenderReport) -> Self {
        Rendered {
            dir: r.dir,
            instances: r.instances,
            written: r.written,
            unchanged: r.unchanged.len(),
            removed: r.removed,
            warnings: r.warnings,
        }
    }
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} written, {} unchanged, {} removed",
            self.dir.display(),
            self.written.len(),
            self.unchanged,
            self.removed.len()
        )?;
        for p in &self.written {
            writeln!(f, "  wrote   {}", p.display())?;
        }
        for p in &self.removed {
            writeln!(f, "  removed {}", p.display())?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        if !self.instances.is_empty() {
            writeln!(
                f,
                "start with: systemctl enable --now {}",
                self.instances
                    .iter()
                    .map(|i| format!("openvpn-server@{i}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )?;
        }
        Ok(())
    }
}

/// `client bundle ID [-o FILE]`.
pub fn bundle(out: &Output, dir: &Path, id: &str, file: Option<&Path>) -> Result<(), Failure> {
    let broker = Broker::open(dir)?;
    let id: ClientId = id.parse()?;
    let path = match file {
        Some(p) => p.to_owned(),
        None => PathBuf::from(broker.bundle_file_name(&id)?),
    };
    let written = broker.bundle(&id, &path)?;
    out.show(&Bundled {
        client: id.to_string(),
        bundle: written,
    })
}

#[derive(Debug, Serialize)]
struct Bundled {
    client: String,
    bundle: PathBuf,
}

impl fmt::Display for Bundled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wrote {} for client {} (it holds the client's key: hand it over safely)",
            self.bundle.display(),
            self.client
        )
    }
}

/// Ends a revoked client's live session, never failing the revocation.
pub fn end_session(broker: &Broker, client: &Client) -> Result<SessionEnd, String> {
    broker.end_session(client).map_err(|e| e.to_string())
}

/// Tells on stderr what happened to the revoked client's session. A
/// session that could not be ended (no answer within the management
/// deadline, or another management failure) is a failure, exit 1: the
/// client is revoked, but may stay connected until its server restarts.
pub fn tell_session(id: &ClientId, result: &Result<SessionEnd, String>) -> Result<(), Failure> {
    let not_ended = |why: &str, restart: &str| {
        Failure::other(format!(
            "client {id} is revoked, but its live session could not be ended: {why}; \
             restart {restart} to end it (the server refuses the client from then on)"
        ))
    };
    let line = match result {
        Ok(SessionEnd::Ended(_)) => "its live session was ended".to_owned(),
        Ok(SessionEnd::NotConnected) => "it was not connected".to_owned(),
        Ok(SessionEnd::NoServer(socket)) => format!(
            "could not end a live session: no OpenVPN server answers at {} on this host; \
             the server refuses the client at its next connection",
            socket.display()
        ),
        Ok(SessionEnd::Unanswered { socket, instance }) => {
            return Err(not_ended(
                &format!(
                    "the OpenVPN server at {} did not answer within {} s",
                    socket.display(),
                    tunnelbroker_core::openvpn::Management::DEADLINE.as_secs()
                ),
                &format!("its server (systemctl restart openvpn-server@{instance})"),
            ));
        }
        Ok(_) => "session state unknown".to_owned(),
        Err(e) => return Err(not_ended(e, "its OpenVPN server")),
    };
    let _ = writeln!(std::io::stderr().lock(), "tunnelbroker: {line}");
    Ok(())
}
