//! Rendering the server side of a broker and ending live sessions
//! (issue 5): glue between the [`Broker`] and [`crate::openvpn`].

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::ownership::{self, State, Survey, Want, broker_id};
use super::{Broker, Client, ClientState, ServerMode};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::openvpn::{
    CommonName, ConfigPath, Management, PerClientServer, RenderedFile, ServerFiles, ServerOptions,
    SharedServer,
};

/// What [`Broker::render_server`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RenderReport {
    /// The output directory.
    pub dir: PathBuf,
    /// Files written because they were new or had changed.
    pub written: Vec<PathBuf>,
    /// Files left untouched because they were already up to date.
    pub unchanged: Vec<PathBuf>,
    /// Files of clients that are no longer active, removed.
    pub removed: Vec<PathBuf>,
    /// The instance names to start (`openvpn-server@NAME`).
    pub instances: Vec<String>,
    /// Things the operator should know (for example a CRL that OpenVPN
    /// cannot read after dropping privileges).
    pub warnings: Vec<String>,
}

/// How [`Broker::render_server_with`] renders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RenderOptions {
    /// Replace files in the way that this broker did not write (and own
    /// them from then on) instead of refusing. Symbolic links are refused
    /// even so.
    pub force: bool,
}

impl RenderOptions {
    /// The defaults: refuse foreign files.
    pub fn new() -> Self {
        Self::default()
    }
}

/// What [`Broker::end_session`] achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEnd {
    /// The server ended the session; the text is its answer.
    Ended(String),
    /// The server runs but the client was not connected.
    NotConnected,
    /// No server instance answers on this host (no management socket).
    NoServer(PathBuf),
    /// The server's management socket did not answer within
    /// [`Management::DEADLINE`]: the session may still be live. The
    /// revocation holds; restarting the instance ends the session.
    Unanswered {
        /// The management socket.
        socket: PathBuf,
        /// The instance to restart (`openvpn-server@INSTANCE`).
        instance: String,
    },
}

const KEY_FILES: [&str; 2] = ["server.key", "tls-crypt.key"];

impl Broker {
    /// The server-side options of this broker for files installed in
    /// `config_dir` (absolute).
    fn server_options(&self, config_dir: &Path) -> Result<ServerOptions> {
        let abs = |p: &Path| -> Result<ConfigPath> {
            let p = std::path::absolute(p).map_err(|e| Error::io(p, e))?;
            ConfigPath::from_path(&p)
        };
        Ok(ServerOptions {
            files: ServerFiles {
                crl: abs(&self.paths.crl)?,
                ..ServerFiles::default()
            },
            config_dir: abs(config_dir)?,
            run_dir: abs(&self.paths.run_dir)?,
            log_dir: abs(&self.paths.dir.join("log"))?,
            ..ServerOptions::default()
        })
    }

    /// The rendered files of the server side (without key material).
    pub(super) fn server_files(
        &self,
        config_dir: &Path,
    ) -> Result<(Vec<RenderedFile>, Vec<String>)> {
        let options = self.server_options(config_dir)?;
        let settings = &self.settings;
        let active: Vec<Client> = self
            .clients()?
            .into_iter()
            .filter(|c| c.state == ClientState::Active)
            .collect();
        let mut files = Vec::new();
        let mut instances = Vec::new();
        match settings.mode {
            ServerMode::PerClient => {
                for c in &active {
                    let port = c.port.ok_or_else(|| Error::InvalidSettings {
                        reason: format!("client {} has no UDP port in per-client mode", c.id),
                    })?;
                    let srv =
                        PerClientServer::new(c.id.clone(), c.assignment, port, options.clone())?;
                    instances.push(srv.name());
                    files.extend(srv.emit()?);
                }
            }
            ServerMode::Shared => {
                let srv = SharedServer::new(settings.pool, settings.port, options)?;
                instances.push(srv.name().to_owned());
                files.extend(srv.emit(active.iter().map(|c| (&c.id, &c.assignment)))?);
            }
        }
        Ok((files, instances))
    }

    /// Every file [`render_server`](Self::render_server) writes into `dir`
    /// (canonical), with its mode, and the instance names.
    fn planned_files(&self, dir: &Path) -> Result<(Vec<Planned>, Vec<String>)> {
        let (mut files, instances) = self.server_files(dir)?;
        let secret = |name: &str, text: String| RenderedFile {
            name: name.into(),
            text,
            executable: false,
        };
        files.push(secret("ca.crt", self.ca.chain_pem()));
        files.push(secret(
            "server.crt",
            self.server_certificate()?.pem().to_owned(),
        ));
        files.push(secret("server.key", self.server_key()?.to_pem().to_owned()));
        files.push(secret(
            "tls-crypt.key",
            self.tls_crypt_key()?.to_text().to_owned(),
        ));
        let planned = files
            .into_iter()
            .map(|f| {
                let mode = if KEY_FILES.contains(&f.name.as_str()) {
                    fsutil::SECRET
                } else if f.executable {
                    fsutil::EXECUTABLE
                } else {
                    fsutil::PUBLIC
                };
                Planned {
                    path: dir.join(&f.name),
                    text: f.text,
                    mode,
                }
            })
            .collect();
        Ok((planned, instances))
    }

    /// Writes the server side into `out_dir` (default
    /// [`paths().server_dir`](super::BrokerPaths::server_dir)) in the layout
    /// Debian's `openvpn-server@NAME` expects of `/etc/openvpn/server`:
    /// `NAME.conf` per instance (per-client mode: `tb-client-<id>.conf` with
    /// its `.up`/`.down` scripts; shared mode: `tb-shared.conf` and
    /// `ccd/<id>`), `ca.crt`, `server.crt`, `server.key` and `tls-crypt.key`
    /// (0600). The CRL is referenced where the broker keeps it, so that a
    /// revocation takes effect at the next connection without re-rendering.
    ///
    /// Idempotent: files whose contents and mode are right are not touched;
    /// files an earlier rendering wrote for clients that are no longer
    /// active are removed.
    ///
    /// It writes and removes only files it owns, listed in its manifest
    /// `.tunnelbroker-manifest.<id>` in the directory (see
    /// [`render_server_with`](Self::render_server_with)); a file in the way
    /// that it did not write is refused
    /// ([`Error::ForeignFile`], before anything is written), and symbolic
    /// links are never followed ([`Error::InvalidFile`]).
    pub fn render_server(&self, out_dir: Option<&Path>) -> Result<RenderReport> {
        self.render_server_with(out_dir, &RenderOptions::default())
    }

    /// [`render_server`](Self::render_server) with options: with
    /// [`force`](RenderOptions::force), files in the way that this broker
    /// did not write (another OpenVPN server's `ca.crt`, another broker's
    /// files) are replaced and owned from then on. A symbolic link is
    /// refused even then.
    ///
    /// Ownership: a planned file is this broker's when its manifest lists
    /// it, when its contents are exactly what would be written (adopted),
    /// or, in a directory rendered before manifests existed (its `ca.crt`
    /// holds this broker's CA certificate and no manifest of ours is
    /// there), when it is one of the key and certificate files or starts
    /// with the `# tunnelbroker: ` header. Removed are only files the
    /// manifest lists (or, before manifests, header files named like an
    /// instance's) that are no longer planned; other brokers' manifests and
    /// files are never touched.
    pub fn render_server_with(
        &self,
        out_dir: Option<&Path>,
        options: &RenderOptions,
    ) -> Result<RenderReport> {
        let dir = out_dir.unwrap_or(&self.paths.server_dir);
        make_dir(dir)?;
        let dir = fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
        make_dir(&self.paths.dir.join("log"))?;
        let (files, instances) = self.planned_files(&dir)?;
        let mut survey = self.survey(&dir, &files)?;
        survey.refuse(options.force)?;
        let ccd = dir.join(SharedServer::CCD_DIR);
        if self.settings.mode == ServerMode::Shared {
            fsutil::refuse_symlink(&ccd)?;
        }
        let mut report = RenderReport {
            dir: dir.clone(),
            instances,
            ..RenderReport::default()
        };
        // Claim every planned file before writing it, so that a rendering
        // cut short leaves nothing of ours unlisted.
        let planned: BTreeSet<PathBuf> = survey.planned.iter().cloned().collect();
        let claimed: BTreeSet<PathBuf> = survey.owned.union(&planned).cloned().collect();
        survey.write_manifest(&claimed)?;
        if self.settings.mode == ServerMode::Shared {
            make_dir(&ccd)?;
        }
        for (f, state) in files.iter().zip(&survey.states) {
            if matches!(
                state,
                State::Ours {
                    same_text: true,
                    same_mode: true
                }
            ) {
                report.unchanged.push(f.path.clone());
                continue;
            }
            if let Some(parent) = f.path.parent() {
                make_dir(parent)?;
            }
            fsutil::write_atomic(&f.path, f.text.as_bytes(), f.mode)?;
            report.written.push(f.path.clone());
        }
        // Remove what earlier renderings wrote and is no longer planned.
        for path in std::mem::take(&mut survey.orphans) {
            fs::remove_file(&path).map_err(|err| Error::io(&path, err))?;
            report.removed.push(path);
        }
        survey.write_manifest(&planned)?;
        report.warnings = survey
            .foreign
            .iter()
            .map(|p| {
                format!(
                    "{} looks like a broker file but was not written by the broker; left in place",
                    p.display()
                )
            })
            .chain(
                survey
                    .kept
                    .iter()
                    .map(|(p, why)| format!("{} not removed: {why}", p.display())),
            )
            .collect();
        report.warnings.extend(self.readability_warnings());
        Ok(report)
    }

    /// Who owns what in `dir` (canonical) against the planned `files`.
    fn survey(&self, dir: &Path, files: &[Planned]) -> Result<Survey> {
        let wants: Vec<Want<'_>> = files
            .iter()
            .map(|f| Want {
                path: &f.path,
                data: f.text.as_bytes(),
                mode: f.mode,
            })
            .collect();
        let cert = self.ca.certificate();
        ownership::survey(dir, &broker_id(cert.der()), cert.pem(), &wants)
    }

    /// How the server files in `out_dir` (default
    /// [`paths().server_dir`](super::BrokerPaths::server_dir)) compare with
    /// what [`render_server`](Self::render_server) would write now. Reads
    /// only.
    pub(crate) fn check_server_files(&self, out_dir: Option<&Path>) -> Result<ServerFilesState> {
        let dir = out_dir.unwrap_or(&self.paths.server_dir);
        if !dir.is_dir() {
            return Ok(ServerFilesState {
                dir: dir.to_owned(),
                ..ServerFilesState::default()
            });
        }
        let dir = fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
        let (files, _) = self.planned_files(&dir)?;
        let survey = self.survey(&dir, &files)?;
        let mut state = ServerFilesState {
            dir: dir.clone(),
            exists: true,
            ..ServerFilesState::default()
        };
        for (f, s) in files.into_iter().zip(survey.states) {
            match s {
                State::Missing => state.missing.push(f.path),
                State::Ours {
                    same_text: true,
                    same_mode: true,
                } => state.matching += 1,
                State::Ours {
                    same_text: false, ..
                } => state
                    .differing
                    .push((f.path, "differs from what would be rendered now".into())),
                State::Ours { .. } => {
                    let now = fs::symlink_metadata(&f.path)
                        .map(|m| m.permissions().mode() & 0o7777)
                        .unwrap_or(0);
                    state.differing.push((
                        f.path,
                        format!("has mode {now:04o}, should have {:04o}", f.mode),
                    ));
                }
                State::Foreign(why) => state.conflicts.push((
                    f.path,
                    format!("{why}; render refuses to replace it without --force"),
                )),
                State::Blocked(p, why) => {
                    state
                        .conflicts
                        .push((p, format!("{why}; render refuses it")));
                }
            }
        }
        let ccd = dir.join(SharedServer::CCD_DIR);
        if self.settings.mode == ServerMode::Shared && fsutil::refuse_symlink(&ccd).is_err() {
            state.conflicts.push((
                ccd,
                "is a symbolic link; render never writes through links".into(),
            ));
        }
        state.orphans = survey.orphans;
        state.foreign = survey.foreign;
        Ok(state)
    }

    /// Whether OpenVPN, after becoming `nobody`, can still read the CRL.
    fn readability_warnings(&self) -> Vec<String> {
        let crl = match std::path::absolute(&self.paths.crl) {
            Ok(p) => p,
            Err(_) => return Vec::new(),
        };
        let mut warnings = Vec::new();
        match fs::metadata(&crl) {
            Ok(m) if m.permissions().mode() & 0o004 == 0 => warnings.push(format!(
                "{} is not readable by others; OpenVPN re-reads it as nobody at every connection",
                crl.display()
            )),
            Err(e) => warnings.push(format!("{}: {e}", crl.display())),
            _ => {}
        }
        for dir in crl.ancestors().skip(1) {
            if let Ok(m) = fs::metadata(dir)
                && m.permissions().mode() & 0o001 == 0
            {
                warnings.push(format!(
                    "{} is not searchable by others, so OpenVPN cannot re-read the CRL after dropping privileges (chmod o+x it)",
                    dir.display()
                ));
            }
        }
        warnings
    }

    /// Ends a client's live session on this host, for example after
    /// [`revoke`](Broker::revoke): in per-client mode its instance is told
    /// to terminate (`signal SIGTERM`), in shared mode the server is told to
    /// `kill` its common name. Both go through the management socket in the
    /// broker's run directory.
    pub fn end_session(&self, client: &Client) -> Result<SessionEnd> {
        let options = self.server_options(&self.paths.server_dir)?;
        match self.settings.mode {
            ServerMode::PerClient => {
                let port = match client.port {
                    Some(p) => p,
                    None => return Ok(SessionEnd::NoServer(self.paths.run_dir.clone())),
                };
                let srv =
                    PerClientServer::new(client.id.clone(), client.assignment, port, options)?;
                let socket = PathBuf::from(srv.management_socket()?.as_str());
                let Some(mut m) = connect(&socket)? else {
                    return Ok(SessionEnd::NoServer(socket));
                };
                unanswered(m.terminate().map(SessionEnd::Ended), socket, srv.name())
            }
            ServerMode::Shared => {
                let srv = SharedServer::new(self.settings.pool, self.settings.port, options)?;
                let socket = PathBuf::from(srv.management_socket()?.as_str());
                let Some(mut m) = connect(&socket)? else {
                    return Ok(SessionEnd::NoServer(socket));
                };
                let ended = match m.kill_client(&CommonName::from(&client.id)) {
                    Ok(text) => Ok(SessionEnd::Ended(text)),
                    Err(Error::Management { reason, .. }) if reason.contains("not found") => {
                        Ok(SessionEnd::NotConnected)
                    }
                    Err(e) => Err(e),
                };
                unanswered(ended, socket, srv.name().to_owned())
            }
        }
    }
}

/// A management exchange that ran past [`Management::DEADLINE`] as
/// [`SessionEnd::Unanswered`]; other results as they are.
fn unanswered(result: Result<SessionEnd>, socket: PathBuf, instance: String) -> Result<SessionEnd> {
    match result {
        Err(Error::Management { reason, .. }) if reason == Management::DEADLINE_PASSED => {
            Ok(SessionEnd::Unanswered { socket, instance })
        }
        other => other,
    }
}

/// Connects to a management socket; `None` when nothing listens there.
fn connect(socket: &Path) -> Result<Option<Management>> {
    match Management::connect(socket) {
        Ok(m) => Ok(Some(m)),
        Err(_) if !socket.exists() => Ok(None),
        Err(Error::Management { reason, .. }) if reason.contains("refused") => Ok(None),
        Err(e) => Err(e),
    }
}

/// One file of the server side, as [`Broker::render_server`] writes it.
struct Planned {
    path: PathBuf,
    text: String,
    mode: u32,
}

/// What [`Broker::check_server_files`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ServerFilesState {
    /// The directory (canonical when it exists).
    pub dir: PathBuf,
    /// Whether it exists at all.
    pub exists: bool,
    /// How many files are as they would be rendered now.
    pub matching: usize,
    /// Files that would be rendered but do not exist.
    pub missing: Vec<PathBuf>,
    /// Files whose contents or mode differ, with how.
    pub differing: Vec<(PathBuf, String)>,
    /// Files an earlier rendering wrote for clients that are no longer
    /// active (rendering removes them).
    pub orphans: Vec<PathBuf>,
    /// Files named like the broker's but not written by it (rendering
    /// leaves them alone).
    pub foreign: Vec<PathBuf>,
    /// Planned paths that rendering refuses: files it did not write that
    /// differ (replaced only with `--force`), symbolic links and the like
    /// (never written through), with why.
    pub conflicts: Vec<(PathBuf, String)>,
}

fn make_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| Error::io(dir, e))
}
