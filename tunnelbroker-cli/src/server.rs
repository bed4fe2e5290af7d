//! `tunnelbroker server render` and `server renew`, `tunnelbroker client
//! bundle` and what `client revoke` says about the session: glue over
//! `Broker::render_server_with`, `Broker::renew_server`, `Broker::bundle`
//! and `Broker::revoke`.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tunnelbroker_core::broker::{
    RenderOptions, RenderReport, ServerRenewal, SessionEnd, TlsCryptVersion,
};
use tunnelbroker_core::store::MAIN_SERVER;
use tunnelbroker_core::{Client, ClientId};

use crate::args::{ServerCommand, TlsCryptV2Command};
use crate::output::{Failure, Output, rfc3339};

/// Runs one `server` subcommand on the broker in `dir`.
pub fn run(out: &Output, dir: &Path, cmd: &ServerCommand) -> Result<(), Failure> {
    match cmd {
        ServerCommand::Render {
            name,
            out: to,
            force,
            run_dir,
        } => {
            let broker = crate::output::open_broker(dir)?;
            let mut options = RenderOptions::new();
            options.dir = to.clone();
            options.run_dir = run_dir.clone();
            options.force = *force;
            // The CRL refresh unit runs this very binary.
            options.binary = std::env::current_exe().ok();
            let report = match name {
                Some(name) => broker.render_server_named(name, &options)?,
                None => broker.render_server_with(&options)?,
            };
            out.show(&Rendered::from(report))
        }
        ServerCommand::Renew { name } => {
            let broker = crate::output::open_broker(dir)?;
            match name.as_deref() {
                None | Some(MAIN_SERVER) => {
                    let renewal = broker.renew_server()?;
                    out.show(&Renewed::from(renewal, broker.paths().server_cert.clone()))
                }
                Some(n) => {
                    let renewal = broker.renew_server_named(n)?;
                    out.show(&Renewed::from(
                        renewal,
                        PathBuf::from(format!("(server {n}, in the client database)")),
                    ))
                }
            }
        }
        ServerCommand::Add(a) => crate::servers::add(out, dir, a),
        ServerCommand::List => crate::servers::list(out, dir),
        ServerCommand::Remove { name } => crate::servers::remove(out, dir, name),
        ServerCommand::Parent { prefix } => crate::servers::parent(out, dir, prefix),
        ServerCommand::TlsCryptV2(cmd) => {
            let mut broker = crate::output::open_broker(dir)?;
            let to = match cmd {
                TlsCryptV2Command::Migrate => TlsCryptVersion::V2,
                TlsCryptV2Command::Revert => TlsCryptVersion::V1,
            };
            let change = broker.set_tls_crypt(to)?;
            out.show(&TlsCryptMoved {
                from: change.from.to_string(),
                to: change.to.to_string(),
                changed: change.changed(),
                made_server_key: change.made_server_key,
                server_key: broker.paths().tls_crypt_v2_server_key.clone(),
            })
        }
    }
}

/// What `server tls-crypt-v2 migrate|revert` did, for people and for `--json`.
#[derive(Debug, Serialize)]
struct TlsCryptMoved {
    from: String,
    to: String,
    changed: bool,
    made_server_key: bool,
    server_key: PathBuf,
}

impl fmt::Display for TlsCryptMoved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.made_server_key {
            writeln!(
                f,
                "made the tls-crypt-v2 server key {}",
                self.server_key.display()
            )?;
        }
        if !self.changed {
            return writeln!(f, "the broker uses tls-crypt {} already", self.to);
        }
        writeln!(
            f,
            "the broker now uses tls-crypt {} (was {})",
            self.to, self.from
        )?;
        writeln!(
            f,
            "next: `tunnelbroker server render`, restart the OpenVPN server instances, and give every client a new bundle (`tunnelbroker client bundle ID`): the server accepts only {} clients from then on",
            self.to
        )
    }
}

/// What `server renew` did, for people and for `--json`.
#[derive(Debug, Serialize)]
struct Renewed {
    certificate: PathBuf,
    serial: String,
    not_after: String,
    previous_not_after: Option<String>,
    rendered: Option<Rendered>,
    restart: Vec<String>,
    warnings: Vec<String>,
}

impl Renewed {
    fn from(r: ServerRenewal, certificate: PathBuf) -> Self {
        let info = r.certificate.info();
        Renewed {
            certificate,
            serial: r.certificate.serial().to_string(),
            not_after: rfc3339(info.not_after),
            previous_not_after: r.previous_not_after.map(rfc3339),
            rendered: r.rendered.map(Rendered::from),
            restart: r.restart,
            warnings: r.warnings,
        }
    }
}

impl fmt::Display for Renewed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "renewed the server certificate {} (serial {}), valid until {}",
            self.certificate.display(),
            self.serial,
            self.not_after
        )?;
        match &self.rendered {
            Some(r) => writeln!(
                f,
                "re-rendered {}: {} written, {} unchanged, {} removed",
                r.dir.display(),
                r.written.len(),
                r.unchanged,
                r.removed.len()
            )?,
            None => writeln!(
                f,
                "no rendered server files to update; run `tunnelbroker server render`"
            )?,
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        if !self.restart.is_empty() {
            writeln!(
                f,
                "restart with: systemctl restart {}",
                self.restart.join(" ")
            )?;
        }
        Ok(())
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
    let broker = crate::output::open_broker(dir)?;
    let id: ClientId = id.parse()?;
    let has_key = broker.client(&id)?.has_key;
    let written = broker.bundle(&id, file)?;
    out.show(&Bundled {
        client: id.to_string(),
        bundle: written,
        has_key,
    })
}

#[derive(Debug, Serialize)]
struct Bundled {
    client: String,
    bundle: PathBuf,
    /// Whether the bundle holds the client's key (not for a CSR client).
    has_key: bool,
}

impl fmt::Display for Bundled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let note = if self.has_key {
            "it holds the client's key: hand it over safely"
        } else {
            "it holds no key: the client uses the key of its own request"
        };
        write!(
            f,
            "wrote {} for client {} ({note})",
            self.bundle.display(),
            self.client
        )
    }
}

/// Tells on stderr what a renewal means for the client's live session. The
/// session is not ended: the client needs its new bundle first, and ending
/// it would only cut it off sooner.
pub fn tell_renewed(client: &Client) {
    let id = &client.id;
    let _ = writeln!(
        std::io::stderr().lock(),
        "tunnelbroker: client {id}'s previous certificate is revoked as superseded: a live \
         session goes on until OpenVPN's next TLS renegotiation (hourly by default), and the \
         client cannot reconnect until it uses its new bundle (`tunnelbroker client bundle {id}`)"
    );
}

pub fn tell_session(id: &ClientId, session: &SessionEnd) -> Result<(), Failure> {
    if let Some(why) = session.not_ended() {
        return Err(Failure::other(format!(
            "client {id} is revoked, but its live session could not be ended: {why}"
        )));
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "tunnelbroker: {}",
        session.summary()
    );
    Ok(())
}
