//! `tunnelbroker client ...`: subscribe, list, show, revoke, renew, purge and
//! import clients. Glue only: every action is a `Broker` method.

use std::fmt;
use std::io::IsTerminal;
use std::path::Path;

use serde::Serialize;
use tunnelbroker_core::broker::{ClientMove, ImportReport};
use tunnelbroker_core::plan::parse_prefix;
use tunnelbroker_core::{Assignment, Broker, Client, ClientId, ClientKind, NewClient};

use crate::args::{ClientAddArgs, ClientCommand};
use crate::output::{Failure, Output};

/// Runs one `client` subcommand on the broker in `dir`.
pub fn run(out: &Output, dir: &Path, cmd: &ClientCommand) -> Result<(), Failure> {
    match cmd {
        ClientCommand::Add(a) => add(out, dir, a),
        ClientCommand::List => {
            let broker = crate::output::open_broker(dir)?;
            out.show(&ClientTable(broker.clients()?))
        }
        ClientCommand::Show { id } => {
            let broker = crate::output::open_broker(dir)?;
            out.show(&ClientView(broker.client(&id.parse()?)?))
        }
        ClientCommand::Revoke { id, reason } => {
            let broker = crate::output::open_broker(dir)?;
            let reason = match reason {
                Some(r) => r.parse()?,
                None => Default::default(),
            };
            let revocation = broker.revoke(&id.parse()?, reason)?;
            let id = revocation.client.id.clone();
            out.show(&RevokeView {
                session: revocation.session.word(),
                session_ended: revocation.session.ended(),
                client: revocation.client,
            })?;
            crate::server::tell_session(&id, &revocation.session)
        }
        ClientCommand::Renew { id, csr } => {
            let broker = crate::output::open_broker(dir)?;
            let csr = csr.as_deref().map(read_csr).transpose()?;
            let client = broker.renew(&id.parse()?, csr.as_deref())?;
            out.show(&ClientView(client.clone()))?;
            crate::server::tell_renewed(&client);
            warn_if_cut_short(&broker);
            Ok(())
        }
        ClientCommand::Purge { id } => {
            let broker = crate::output::open_broker(dir)?;
            let client = broker.purge(&id.parse()?)?;
            out.show(&Purged(client))
        }
        ClientCommand::Import { file } => import(out, dir, file),
        ClientCommand::Move {
            id,
            server,
            out: file,
        } => {
            let broker = crate::output::open_broker(dir)?;
            let id: ClientId = id.parse()?;
            let moved = broker.move_client(&id, server)?;
            let bundle = broker.bundle(&id, file.as_deref())?;
            out.show(&Moved {
                moved,
                bundle: bundle.clone(),
            })
        }
        ClientCommand::Bundle { id, out: file } => {
            crate::server::bundle(out, dir, id, file.as_deref())
        }
    }
}

/// A CSR is a few hundred bytes; anything near a megabyte is not one.
const MAX_CSR: u64 = 1 << 20;
/// A CSV of users: about 60 bytes a row, so room for a million rows.
const MAX_CSV: u64 = 256 << 20;

fn read_csr(path: &Path) -> Result<String, Failure> {
    crate::output::read_input(path, MAX_CSR)
}

fn add(out: &Output, dir: &Path, a: &ClientAddArgs) -> Result<(), Failure> {
    let id: ClientId = a.id.parse()?;
    let kind = if a.hermit {
        ClientKind::Hermit
    } else {
        ClientKind::Subnet
    };
    let mut req = NewClient::new(id, kind);
    if let Some(os) = &a.os {
        req.os = os.parse()?;
    }
    req.email = a.email.clone();
    req.name = a.name.clone();
    req.prefix = a.prefix.as_deref().map(parse_prefix).transpose()?;
    req.csr = a.csr.as_deref().map(read_csr).transpose()?;
    req.server = a.server.clone();
    let broker = crate::output::open_broker(dir)?;
    let client = broker.add_client(&req)?;
    out.show(&ClientView(client))?;
    warn_if_cut_short(&broker);
    Ok(())
}

/// Tells on stderr when client certificates end with the CA, shorter than
/// the settings ask for.
fn warn_if_cut_short(broker: &Broker) {
    if let Some(w) = broker.client_lifetime_warning() {
        crate::output::warn(&w);
    }
}

fn import(out: &Output, dir: &Path, file: &Path) -> Result<(), Failure> {
    let text = crate::output::read_input(file, MAX_CSV)?;
    let broker = crate::output::open_broker(dir)?;
    let bar = if std::io::stderr().is_terminal() && !out.is_json() {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} subscribing [{bar:40}] {pos}/{len} clients ({per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Some(bar)
    } else {
        None
    };
    let report = broker.import_csv(&text, &mut |done, total| {
        if let Some(b) = &bar {
            b.set_length(total as u64);
            b.set_position(done as u64);
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let failed = report.errors.len();
    out.show(&ImportView(report))?;
    warn_if_cut_short(&broker);
    if failed > 0 {
        return Err(Failure::invalid_input(format!(
            "{failed} row(s) of {} were not imported; the other rows were",
            file.display()
        )));
    }
    Ok(())
}

/// A revoked client and what became of its live session: the client's
/// fields, plus `session` (`ended`, `not-connected`, `no-server`,
/// `unanswered` or `failed`) and `session_ended`, as Python's `Revocation`.
#[derive(Serialize)]
struct RevokeView {
    #[serde(flatten)]
    client: Client,
    session: &'static str,
    session_ended: bool,
}

impl fmt::Display for RevokeView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        ClientView(self.client.clone()).fmt(f)
    }
}

/// One client, in full.
#[derive(Serialize)]
#[serde(transparent)]
struct ClientView(Client);

impl fmt::Display for ClientView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.0;
        writeln!(
            f,
            "client        {} ({}, {}, {})",
            c.id, c.kind, c.os, c.state
        )?;
        writeln!(f, "server        {}", c.server)?;
        match &c.assignment {
            Assignment::Subnet(s) => {
                writeln!(f, "subnet        {}", s.prefix())?;
                writeln!(f, "routing net   {}", s.routing_net())?;
                writeln!(
                    f,
                    "server end    {}  (link-local {})",
                    s.server_end(),
                    s.server_link_local()
                )?;
                writeln!(
                    f,
                    "client end    {}  (link-local {})",
                    s.client_end(),
                    s.client_link_local()
                )?;
            }
            Assignment::Hermit(h) => {
                writeln!(f, "address       {}", h.prefix())?;
                writeln!(f, "server end    {}  (link-local)", h.server_link_local())?;
            }
        }
        if let Some(p) = c.port {
            writeln!(f, "port          {p}/udp")?;
        }
        writeln!(f, "serial        {}", c.serial)?;
        writeln!(f, "expires       {}", c.not_after.date())?;
        writeln!(
            f,
            "key           {}",
            if c.has_key {
                "kept by the broker, bundled"
            } else {
                "the client's own (CSR)"
            }
        )?;
        if let Some(e) = &c.email {
            writeln!(f, "email         {e}")?;
        }
        if let Some(n) = &c.name {
            writeln!(f, "name          {n}")?;
        }
        if let Some(t) = c.revoked_at {
            writeln!(f, "revoked       {}", t.date())?;
        }
        Ok(())
    }
}

/// Every client, one line each.
#[derive(Serialize)]
#[serde(transparent)]
struct ClientTable(Vec<Client>);

impl fmt::Display for ClientTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(
                f,
                "no clients yet; subscribe one with `tunnelbroker client add ID --subnet`"
            );
        }
        let w = self
            .0
            .iter()
            .map(|c| c.id.as_str().len())
            .max()
            .unwrap_or(2)
            .max(2);
        writeln!(
            f,
            "{:w$}  {:6}  {:7}  {:7}  {:5}  ASSIGNMENT",
            "ID", "KIND", "OS", "STATE", "PORT"
        )?;
        for c in &self.0 {
            let port = c.port.map_or_else(|| "-".to_string(), |p| p.to_string());
            writeln!(
                f,
                "{:w$}  {:6}  {:7}  {:7}  {:5}  {}",
                c.id.as_str(),
                c.kind.to_string(),
                c.os.to_string(),
                c.state.to_string(),
                port,
                c.assignment
            )?;
        }
        Ok(())
    }
}

/// What `client move` did: the client before and after, and the new bundle.
#[derive(Serialize)]
struct Moved {
    #[serde(flatten)]
    moved: ClientMove,
    bundle: std::path::PathBuf,
}

impl fmt::Display for Moved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (b, a) = (&self.moved.before, &self.moved.after);
        let port = |p: Option<u16>| p.map(|p| format!(" port {p}/udp")).unwrap_or_default();
        writeln!(f, "moved client {} to server {}", a.id, a.server)?;
        writeln!(
            f,
            "old           {} on {}{}",
            b.assignment,
            b.server,
            port(b.port)
        )?;
        writeln!(
            f,
            "new           {} on {}{}",
            a.assignment,
            a.server,
            port(a.port)
        )?;
        writeln!(f, "bundle        {}", self.bundle.display())
    }
}

#[derive(Serialize)]
struct Purged(Client);

impl fmt::Display for Purged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "purged client {}; {} is free again",
            self.0.id, self.0.assignment
        )
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct ImportView(ImportReport);

impl fmt::Display for ImportView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "subscribed {} client(s)", self.0.added.len())?;
        for e in &self.0.errors {
            writeln!(f, "line {}: {}", e.line, e.error)?;
        }
        Ok(())
    }
}
