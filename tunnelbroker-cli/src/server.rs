//! `tunnelbroker server render`, `tunnelbroker client bundle` and what
//! `client revoke` says about the session: glue over
//! `Broker::render_server_with`, `Broker::bundle` and `Broker::revoke`.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tunnelbroker_core::{Broker, ClientId, RenderOptions, RenderReport, SessionEnd};

use crate::args::ServerCommand;
use crate::output::{Failure, Output};

/// Runs one `server` subcommand on the broker in `dir`.
pub fn run(out: &Output, dir: &Path, cmd: &ServerCommand) -> Result<(), Failure> {
    match cmd {
        ServerCommand::Render { out: to, run_dir } => {
            let broker = Broker::open(dir)?;
            let mut options = RenderOptions::default();
            options.dir = to.clone();
            options.run_dir = run_dir.clone();
            // The CRL refresh unit runs this very binary.
            options.binary = std::env::current_exe().ok();
            let report = broker.render_server_with(&options)?;
            out.show(&Rendered::from(report))
        }
    }
}

/// What `server render` did, for people and for `--json`.
#[derive(Debug, Serialize)]
struct Rendered {
    dir: PathBuf,
    run_dir: PathBuf,
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
            run_dir: r.run_dir,
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
        writeln!(
            f,
            "keep the CRL fresh: cp {dir}/systemd/tunnelbroker-crl.service {dir}/systemd/tunnelbroker-crl.timer /etc/systemd/system/ && systemctl daemon-reload && systemctl enable --now tunnelbroker-crl.timer",
            dir = self.dir.display()
        )?;
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

/// Tells on stderr what happened to the revoked client's session.
pub fn tell_session(session: &SessionEnd) {
    let line = match session {
        SessionEnd::Ended(_) => "its live session was ended".to_owned(),
        SessionEnd::NotConnected => "it was not connected".to_owned(),
        SessionEnd::NoServer(socket) => format!(
            "could not end a live session: no OpenVPN server answers at {} on this host; \
             the server refuses the client at its next connection",
            socket.display()
        ),
        SessionEnd::Failed(e) => format!("could not end its live session: {e}"),
        _ => "session state unknown".to_owned(),
    };
    let _ = writeln!(std::io::stderr().lock(), "tunnelbroker: {line}");
}
