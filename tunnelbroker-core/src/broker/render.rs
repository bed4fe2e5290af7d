//! Rendering the server side of a broker and ending live sessions
//! (issues 5 and 17): glue between the [`Broker`] and [`crate::openvpn`].

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::ownership::{self, State, Survey, Want, broker_id};
use super::{Broker, Client, ClientState, ServerMode, ServerSettings, Settings, TlsCryptVersion};
use crate::client_id::ClientId;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::openvpn::{
    AgentUnit, CommonName, ConfigPath, CrlRefreshUnits, DEFAULT_BINARY, Management,
    PerClientServer, RenderedFile, ServerFiles, ServerOptions, SharedServer, TlsCryptV2Verify,
    reach,
};
use crate::pki::Serial;

/// How [`Broker::render_server_with`] renders the server side.
///
/// ```
/// use tunnelbroker_core::broker::RenderOptions;
/// let mut o = RenderOptions::default();
/// o.dir = Some("/etc/openvpn/server".into());
/// o.run_dir = Some("/run/openvpn-server".into());
/// assert!(o.binary.is_none());
/// assert!(!o.force);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RenderOptions {
    /// The output directory; `None`: the recorded one
    /// ([`ServerSettings::dir`]), else `<broker>/server`.
    pub dir: Option<PathBuf>,
    /// The run directory of the management sockets; `None`: the recorded
    /// one, else `/run/openvpn-server`.
    pub run_dir: Option<PathBuf>,
    /// The `tunnelbroker` binary the CRL refresh service runs; `None`: the
    /// one the rendered service names already, else
    /// [`DEFAULT_BINARY`](crate::openvpn::DEFAULT_BINARY).
    pub binary: Option<PathBuf>,
    /// Replace files in the way that this broker did not write (and own
    /// them from then on) instead of refusing. Symbolic links are refused
    /// even so.
    pub force: bool,
}

impl RenderOptions {
    /// The defaults: the recorded directories, foreign files refused.
    pub fn new() -> Self {
        Self::default()
    }
}

/// What [`Broker::render_server`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RenderReport {
    /// The output directory.
    pub dir: PathBuf,
    /// The run directory of the management sockets.
    pub run_dir: PathBuf,
    /// Files written because they were new or had changed.
    pub written: Vec<PathBuf>,
    /// Files left untouched because they were already up to date.
    pub unchanged: Vec<PathBuf>,
    /// Files of clients that are no longer active, removed.
    pub removed: Vec<PathBuf>,
    /// The instance names to start (`openvpn-server@NAME`).
    pub instances: Vec<String>,
    /// Things the operator should know (for example an output directory
    /// that Debian's unit hides from OpenVPN).
    pub warnings: Vec<String>,
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
    /// Ending the session failed; the text says why (one line).
    Failed(String),
}

/// What [`Broker::revoke`] did: the revoked client, and what became of its
/// live session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Revocation {
    /// The client, now revoked.
    pub client: Client,
    /// Its live session on this host, ended through the recorded run
    /// directory ([`Broker::end_session`]).
    pub session: SessionEnd,
}

impl SessionEnd {
    /// Why a revoked client's session could not be ended and what ends it,
    /// one line; `None` when it was ended, was not there, or no server runs
    /// on this host (the CRL then refuses the client at its next
    /// connection). The CLI and Python report the same sentence.
    ///
    /// ```
    /// use tunnelbroker_core::broker::SessionEnd;
    /// assert!(SessionEnd::NotConnected.not_ended().is_none());
    /// let why = SessionEnd::Failed("permission denied".into()).not_ended().unwrap();
    /// assert!(why.starts_with("permission denied; restart"));
    /// ```
    pub fn not_ended(&self) -> Option<String> {
        let (why, restart) = match self {
            SessionEnd::Unanswered { socket, instance } => (
                format!(
                    "the OpenVPN server at {} did not answer within {} s",
                    socket.display(),
                    Management::DEADLINE.as_secs()
                ),
                format!("its server (systemctl restart openvpn-server@{instance})"),
            ),
            SessionEnd::Failed(why) => (why.clone(), "its OpenVPN server".to_owned()),
            _ => return None,
        };
        Some(crate::error::flatten(&format!(
            "{why}; restart {restart} to end it (the server refuses the client from then on)"
        )))
    }

    /// Whether the server ended a live session.
    pub fn ended(&self) -> bool {
        matches!(self, SessionEnd::Ended(_))
    }

    /// What became of the session, in one word: `ended`, `not-connected`,
    /// `no-server`, `unanswered` or `failed`.
    ///
    /// ```
    /// use tunnelbroker_core::broker::SessionEnd;
    /// assert_eq!(SessionEnd::NotConnected.word(), "not-connected");
    /// assert_eq!(SessionEnd::Ended("SUCCESS".into()).word(), "ended");
    /// ```
    pub fn word(&self) -> &'static str {
        match self {
            SessionEnd::Ended(_) => "ended",
            SessionEnd::NotConnected => "not-connected",
            SessionEnd::NoServer(_) => "no-server",
            SessionEnd::Unanswered { .. } => "unanswered",
            SessionEnd::Failed(_) => "failed",
        }
    }

    /// What became of a revoked client's session, one line, as the CLI
    /// and Python report it.
    ///
    /// ```
    /// use tunnelbroker_core::broker::SessionEnd;
    /// assert_eq!(SessionEnd::Ended("SUCCESS".into()).summary(), "its live session was ended");
    /// assert_eq!(SessionEnd::NotConnected.summary(), "it was not connected");
    /// let failed = SessionEnd::Failed("permission denied".into()).summary();
    /// assert!(failed.starts_with("its live session could not be ended: permission denied"));
    /// ```
    pub fn summary(&self) -> String {
        crate::error::flatten(&match self {
            SessionEnd::Ended(_) => "its live session was ended".to_owned(),
            SessionEnd::NotConnected => "it was not connected".to_owned(),
            SessionEnd::NoServer(socket) => format!(
                "could not end a live session: no OpenVPN server answers at {} on this host; \
                 the server refuses the client at its next connection",
                socket.display()
            ),
            SessionEnd::Unanswered { .. } | SessionEnd::Failed(_) => format!(
                "its live session could not be ended: {}",
                self.not_ended().unwrap_or_default()
            ),
        })
    }
}

const KEY_FILES: [&str; 3] = [
    ServerFiles::KEY,
    ServerFiles::TLS_CRYPT,
    ServerFiles::TLS_CRYPT_V2,
];

/// Where the server side is: the rendered directory and the run directory.
struct Layout {
    dir: PathBuf,
    run_dir: PathBuf,
}

impl Broker {
    /// Where the server side was rendered, as `server render` last recorded
    /// it in the settings file (read now, so that a rendering by another
    /// process counts).
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use std::os::unix::fs::PermissionsExt;
    /// use tunnelbroker_core::ErrorKind;
    /// assert_eq!(broker.recorded_server()?.dir, None);
    /// // OpenVPN (as nobody) must be able to reach the rendered directory.
    /// std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    /// let out = tmp.path().join("server");
    /// broker.render_server(Some(&out))?;
    /// assert_eq!(broker.recorded_server()?.dir, Some(out.canonicalize().unwrap()));
    ///
    /// // A damaged settings file is refused.
    /// std::fs::write(&broker.paths().settings, "pool = 1").unwrap();
    /// assert_eq!(broker.recorded_server().unwrap_err().kind(), ErrorKind::InvalidInput);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn recorded_server(&self) -> Result<ServerSettings> {
        ServerSettings::recorded(&self.paths)
    }

    /// The recorded layout, with the defaults where nothing is recorded.
    fn layout(&self, dir: Option<&Path>, run_dir: Option<&Path>) -> Result<Layout> {
        let mut rec = self.recorded_server()?;
        if let Some(told) = &self.dirs {
            rec.dir = told.dir.clone().or(rec.dir);
            rec.run_dir = told.run_dir.clone().or(rec.run_dir);
        }
        let dir = match dir {
            Some(d) => d.to_owned(),
            None => rec.dir.unwrap_or_else(|| self.paths.server_dir.clone()),
        };
        let run_dir = match run_dir {
            Some(d) => d.to_owned(),
            None => rec
                .run_dir
                .unwrap_or_else(|| PathBuf::from(ServerOptions::DEFAULT_RUN_DIR)),
        };
        let abs = |p: &Path| std::path::absolute(p).map_err(|e| Error::io(p, e));
        Ok(Layout {
            dir: abs(&dir)?,
            run_dir: abs(&run_dir)?,
        })
    }

    /// The server-side options of this broker for files installed in
    /// `layout.dir` (absolute).
    fn server_options(&self, layout: &Layout) -> Result<ServerOptions> {
        let dir = ConfigPath::from_path(&layout.dir)?;
        let mut options = ServerOptions::new(dir.clone(), ConfigPath::from_path(&layout.run_dir)?)?;
        // This server's own certificate, key and verify program.
        options.files = ServerFiles::for_server(&dir, &self.server_names()?)?;
        options.tls_crypt = self.settings.tls_crypt;
        Ok(options)
    }

    /// The rendered files of the server side (without key material).
    fn server_files(&self, layout: &Layout) -> Result<(Vec<RenderedFile>, Vec<String>)> {
        self.server_rows(layout)?.emit()
    }

    /// What [`server_files`](Self::server_files) renders from: the active
    /// clients of this server (one query; rendering needs no certificate)
    /// and the server's options.
    fn server_rows(&self, layout: &Layout) -> Result<ServerRows> {
        let options = self.server_options(layout)?;
        let active = self
            .store()
            .read_with(|tx| tx.rendered_clients(self.server_name()))?;
        Ok(ServerRows {
            mode: self.settings.mode,
            pool: self.settings.pool,
            port: self.settings.port,
            names: self.server_names()?,
            options,
            active,
        })
    }

    /// The instance names of the server side (`openvpn-server@NAME`), as
    /// rendered into the recorded layout.
    pub(super) fn instances(&self) -> Result<Vec<String>> {
        let layout = self.layout(None, None)?;
        Ok(self.server_files(&layout)?.1)
    }

    /// Every file [`render_server`](Self::render_server) writes into
    /// `layout.dir` (canonical), with its mode, and the instance names.
    /// The CRL copy is among them only when the broker's CRL can be read.
    fn planned_files(&self, layout: &Layout, binary: &Path) -> Result<Plan> {
        // The instances' files are made (10,000 CCD texts: issue 19) while
        // the list of tls-crypt-v2 clients is read.
        let rows = self.server_rows(layout)?;
        let (server, tls_crypt) = std::thread::scope(|scope| {
            let server = scope.spawn(|| rows.emit());
            let tls_crypt = self.tls_crypt_files(layout);
            let server = server
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (server, tls_crypt)
        });
        let (mut files, instances) = server?;
        let (tls_crypt, v2_plan) = tls_crypt?;
        let names = self.server_names()?;
        let plain = |name: &str, text: String| RenderedFile {
            name: name.into(),
            text,
            executable: false,
        };
        files.push(plain(ServerFiles::CA, self.ca.chain_pem()));
        files.push(plain(
            &names.cert(),
            self.server_certificate()?.pem().to_owned(),
        ));
        files.push(plain(&names.key(), self.server_key()?.to_pem().to_owned()));
        files.extend(tls_crypt);
        // The copy of the CRL; when the broker's own cannot be read (the
        // `crl` check says so), the copy stays what it is rather than
        // being taken for a file of a former client.
        let crl = fsutil::read_crl(&self.paths.crl)
            .or_else(|_| fsutil::read_crl(&layout.dir.join(ServerFiles::CRL)))
            .unwrap_or_default();
        files.push(plain(ServerFiles::CRL, crl));
        let broker_dir =
            std::path::absolute(&self.paths.dir).map_err(|e| Error::io(&self.paths.dir, e))?;
        files.extend(CrlRefreshUnits::new(binary, &broker_dir)?.emit()?);
        // The agent of another server names it, its directory and its run
        // directory (nothing is recorded for it).
        let mut agent = AgentUnit::new(binary, &broker_dir, &layout.dir)?;
        if self.is_view() {
            agent = agent.for_server(self.server_name(), &layout.run_dir)?;
        }
        files.push(agent.emit()?);
        let files = files
            .into_iter()
            .map(|f| {
                let mode = if KEY_FILES.contains(&f.name.as_str()) || f.name == names.key() {
                    fsutil::SECRET
                } else if f.executable {
                    fsutil::EXECUTABLE
                } else {
                    fsutil::PUBLIC
                };
                Planned {
                    path: layout.dir.join(&f.name),
                    text: f.text,
                    mode,
                }
            })
            .collect();
        Ok(Plan {
            files,
            instances,
            v2_plan,
        })
    }

    /// [`render_server_with`](Self::render_server_with) into `out_dir`
    /// (default: the recorded directory, else `<broker>/server`), with the
    /// recorded run directory.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use std::os::unix::fs::PermissionsExt;
    /// use tunnelbroker_core::{ClientKind, ErrorKind, NewClient};
    /// broker.add_client(&NewClient::new("alice".parse()?, ClientKind::Subnet))?;
    /// std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    /// let report = broker.render_server(Some(&tmp.path().join("server")))?;
    /// assert_eq!(report.instances.len(), 1);
    /// assert!(report.dir.join("server.key").exists());
    /// // Again, into the recorded directory: nothing to write.
    /// assert!(broker.render_server(None)?.written.is_empty());
    ///
    /// // A directory OpenVPN could not reach as nobody is refused.
    /// let hidden = tmp.path().join("hidden");
    /// std::fs::create_dir(&hidden).unwrap();
    /// std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o700)).unwrap();
    /// let err = broker.render_server(Some(&hidden.join("server"))).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// assert!(!hidden.join("server").exists());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn render_server(&self, out_dir: Option<&Path>) -> Result<RenderReport> {
        self.render_server_with(&RenderOptions {
            dir: out_dir.map(Path::to_path_buf),
            ..RenderOptions::default()
        })
    }

    /// Writes the server side into one directory, in the layout Debian's
    /// `openvpn-server@NAME` expects of `/etc/openvpn/server`: `NAME.conf`
    /// per instance (per-client mode: `tb-client-<id>.conf` with its
    /// `.up`/`.down` scripts; shared mode: `tb-shared.conf` and `ccd/<id>`),
    /// `ca.crt`, `server.crt`, `server.key` and `tls-crypt.key` (0600), a
    /// copy of the CRL (`crl.pem`, 0644) and the units that keep it fresh
    /// (`systemd/tunnelbroker-crl.service` and `.timer`). The configs name
    /// every file by its absolute path in that directory, and nothing in the
    /// broker directory, which may therefore be private; management sockets
    /// go to the run directory, logs to OpenVPN's standard output (the
    /// journal). A server other than `main` ([`render_server_named`](Self::render_server_named))
    /// names its own files after it (`tb-shared-NAME.conf`, `ccd-NAME/`,
    /// `server-NAME.crt`, ...: [`ServerNames`](crate::openvpn::ServerNames)),
    /// so that several servers can be rendered into one directory.
    ///
    /// The directory and run directory are recorded in the settings
    /// (`[server]`): every CRL the broker signs from then on is also written
    /// to the directory's `crl.pem`, so a revocation takes effect at the
    /// next connection without re-rendering, and [`revoke`](Self::revoke)
    /// ends live sessions through the run directory.
    ///
    /// Refused ([`Error::ServerDirUnreachable`]) when OpenVPN, after
    /// dropping to `nobody`, could not reach the directory (it or an
    /// ancestor not searchable by others); warned about when Debian's unit
    /// hides it (under `/root`, `/home`, `/run/user`, `/tmp`, `/var/tmp`).
    ///
    /// Idempotent: files whose contents and mode are right are not touched;
    /// files an earlier rendering wrote for clients that are no longer
    /// active are removed.
    ///
    /// It writes and removes only files it owns, listed in its manifest
    /// `.tunnelbroker-manifest.<id>` in the directory; a file in the way
    /// that it did not write is refused ([`Error::ForeignFile`], before
    /// anything is written) unless [`force`](RenderOptions::force) is set,
    /// and symbolic links are never followed ([`Error::InvalidFile`]), not
    /// even then.
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
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use std::os::unix::fs::PermissionsExt;
    /// use tunnelbroker_core::ErrorKind;
    /// use tunnelbroker_core::broker::RenderOptions;
    /// std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    /// let mut options = RenderOptions::new();
    /// options.dir = Some(tmp.path().join("server"));
    /// options.run_dir = Some(tmp.path().join("run"));
    /// let report = broker.render_server_with(&options)?;
    /// assert!(report.dir.join("ca.crt").exists());
    ///
    /// // A file in the way that the broker did not write is refused (unless
    /// // `force`), and nothing is written.
    /// let other = tmp.path().join("other");
    /// std::fs::create_dir(&other).unwrap();
    /// std::fs::write(other.join("ca.crt"), "mine").unwrap();
    /// options.dir = Some(other.clone());
    /// let err = broker.render_server_with(&options).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    /// assert_eq!(std::fs::read_to_string(other.join("ca.crt")).unwrap(), "mine");
    /// assert!(!other.join("server.key").exists());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn render_server_with(&self, options: &RenderOptions) -> Result<RenderReport> {
        let layout = self.layout(options.dir.as_deref(), options.run_dir.as_deref())?;
        // Refused before anything is created (checked again once the path
        // is canonical).
        if let Some(err) = reach(&layout.dir).refusal() {
            return Err(err);
        }
        make_dir(&layout.dir)?;
        let dir = fs::canonicalize(&layout.dir).map_err(|e| Error::io(&layout.dir, e))?;
        let layout = Layout {
            dir: dir.clone(),
            run_dir: layout.run_dir,
        };
        // Unless told, the unit keeps the binary it names.
        let binary = options.binary.clone().unwrap_or_else(|| {
            let unit = dir
                .join(CrlRefreshUnits::DIR)
                .join(format!("{}.service", CrlRefreshUnits::NAME));
            fsutil::read_to_string(&unit)
                .ok()
                .and_then(|text| CrlRefreshUnits::binary_of(&text))
                .unwrap_or_else(|| PathBuf::from(DEFAULT_BINARY))
        });
        // Everything is checked before anything is written. What is in the
        // directory (manifests, the record of found files, the names of
        // files there) is read while the files are planned (issue 19: each
        // is about a fifth of a re-rendering of 10,000 clients).
        let names = self.server_names()?;
        let cert = self.ca.certificate();
        let id = broker_id(cert.der());
        let (plan, around) = std::thread::scope(|scope| {
            let around = scope.spawn(|| ownership::look_around(&dir, &id, &names, cert.pem()));
            let plan = self.planned_files(&layout, &binary);
            let around = around
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (plan, around)
        });
        let Plan {
            files,
            instances,
            v2_plan,
        } = plan?;
        let dir_reach = reach(&dir);
        if let Some(err) = dir_reach.refusal() {
            return Err(err);
        }
        let mut survey = around?.survey(&wants(&files))?;
        survey.refuse(options.force)?;
        let mut subdirs = vec![dir.join(CrlRefreshUnits::DIR)];
        if self.settings.mode == ServerMode::Shared {
            subdirs.push(dir.join(names.ccd_dir()));
        }
        for sub in &subdirs {
            fsutil::refuse_symlink(sub)?;
        }
        for sub in &subdirs {
            make_dir(sub)?;
        }
        if let Some(err) = subdirs.iter().find_map(|d| reach(d).refusal()) {
            return Err(err);
        }
        let mut report = RenderReport {
            dir: dir.clone(),
            run_dir: layout.run_dir.clone(),
            instances,
            ..RenderReport::default()
        };
        // Claim every planned file before writing it, so that a rendering
        // cut short leaves nothing of ours unlisted.
        let planned: BTreeSet<PathBuf> = survey.planned.iter().cloned().collect();
        let claimed: BTreeSet<PathBuf> = survey.owned.union(&planned).cloned().collect();
        survey.write_manifest(&claimed)?;
        let crl_copy = dir.join(ServerFiles::CRL);
        let v2_clients = dir.join(names.tls_crypt_v2_clients());
        let ccd = dir.join(names.ccd_dir());
        let mut changed = Vec::new();
        for (f, state) in files.iter().zip(&survey.states) {
            if f.path == crl_copy || f.path == v2_clients {
                continue;
            }
            if matches!(
                state,
                State::Ours {
                    same_text: true,
                    same_mode: true
                }
            ) {
                report.unchanged.push(f.path.clone());
            } else {
                changed.push(f);
            }
        }
        let orphans = std::mem::take(&mut survey.orphans);
        let in_ccd = |p: &Path| p.parent() == Some(ccd.as_path());
        let (ccd_orphans, other_orphans): (Vec<PathBuf>, Vec<PathBuf>) =
            orphans.into_iter().partition(|p| in_ccd(p));
        let (ccd_files, other_files): (Vec<&Planned>, Vec<&Planned>) =
            changed.into_iter().partition(|f| in_ccd(&f.path));
        let parents: BTreeSet<&Path> = other_files.iter().filter_map(|f| f.path.parent()).collect();
        for parent in parents {
            make_dir(parent)?;
        }
        fsutil::write_files(&other_files.iter().map(|f| f.new_file()).collect::<Vec<_>>())?;
        report
            .written
            .extend(other_files.iter().map(|f| f.path.clone()));
        write_ccd(&ccd, &ccd_files, &ccd_orphans)?;
        report
            .written
            .extend(ccd_files.iter().map(|f| f.path.clone()));
        report.removed.extend(ccd_orphans);
        // The CRL copy (and the list of clients tls-crypt-v2 accepts) is
        // written under the database's write lock, so that it never
        // replaces a newer one written by a revocation meanwhile.
        // The list as planned is written unless the database has other
        // current certificates by now (no second list built; no query when
        // nothing was committed since).
        let mut v2_written = None;
        let copied = self.store().write_with(|tx| {
            let crl = fsutil::read_crl(&self.paths.crl)?;
            let copied = !up_to_date(&crl_copy, crl.as_bytes(), fsutil::PUBLIC);
            if copied {
                fsutil::write_public(&crl_copy, crl.as_bytes())?;
            }
            v2_written = self.write_tls_crypt_v2_clients(tx, &v2_clients, v2_plan.as_ref())?;
            Ok(copied)
        })?;
        match v2_written {
            Some(true) => report.written.push(v2_clients),
            Some(false) => report.unchanged.push(v2_clients),
            None => {}
        }
        if copied {
            report.written.push(crl_copy);
        } else {
            report.unchanged.push(crl_copy);
        }
        // Remove what earlier renderings wrote and is no longer planned.
        for path in other_orphans {
            fs::remove_file(&path).map_err(|err| Error::io(&path, err))?;
            report.removed.push(path);
        }
        survey.write_manifest(&planned)?;
        // What was found as planned and not written since, for the next
        // rendering to look at instead of reading (issue 19).
        let written: HashSet<&Path> = report
            .written
            .iter()
            .filter_map(|p| p.strip_prefix(&dir).ok())
            .collect();
        survey.write_seen(&written);
        self.record_server(&layout)?;
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
        report.warnings.extend(dir_reach.warning());
        if !layout.run_dir.is_dir() {
            report.warnings.push(format!(
                "the run directory {} does not exist; OpenVPN cannot create its management socket there (Debian's openvpn package creates /run/openvpn-server at boot; else mkdir -m 0710 it)",
                layout.run_dir.display()
            ));
        }
        Ok(report)
    }

    /// The control channel files of the server side: `tls-crypt.key` (v1),
    /// or the `tls-crypt-v2` server key, its verify program and the list of
    /// current clients (v2), with the current serials that list was made
    /// of.
    fn tls_crypt_files(&self, layout: &Layout) -> Result<(Vec<RenderedFile>, Option<V2Plan>)> {
        let plain = |name: &str, text: String| RenderedFile {
            name: name.into(),
            text,
            executable: false,
        };
        Ok(match self.settings.tls_crypt {
            TlsCryptVersion::V1 => (
                vec![plain(
                    ServerFiles::TLS_CRYPT,
                    self.tls_crypt_key()?.to_text().to_owned(),
                )],
                None,
            ),
            TlsCryptVersion::V2 => {
                let names = self.server_names()?;
                let list =
                    ConfigPath::from_path(&layout.dir)?.join(&names.tls_crypt_v2_clients())?;
                let (serials, stamp) = self.store().read_with(|tx| {
                    let serials = tx.current_serials(self.server_name())?;
                    Ok((serials, tx.data_stamp()?))
                })?;
                let text = self.tls_crypt_v2_clients_of(serials.clone()).to_string();
                let files = vec![
                    plain(
                        ServerFiles::TLS_CRYPT_V2,
                        self.tls_crypt_v2_server_key()?.to_pem(),
                    ),
                    RenderedFile {
                        name: names.tls_crypt_v2_verify(),
                        text: TlsCryptV2Verify::new(list).to_string(),
                        executable: true,
                    },
                    plain(&names.tls_crypt_v2_clients(), text.clone()),
                ];
                (
                    files,
                    Some(V2Plan {
                        serials,
                        stamp,
                        text,
                    }),
                )
            }
        })
    }

    /// Writes the list of current clients to `path` if this broker uses v2
    /// (inside the transaction `tx`): `Some(written)`, or `None` for v1.
    /// `planned`: a list made in an earlier transaction, written as it is
    /// if nothing was committed since (the store's
    /// [`data_stamp`](crate::store::Transaction::data_stamp)) or its
    /// serials are still the current ones.
    pub(super) fn write_tls_crypt_v2_clients(
        &self,
        tx: &mut dyn crate::store::Transaction,
        path: &Path,
        planned: Option<&V2Plan>,
    ) -> Result<Option<bool>> {
        use std::borrow::Cow;
        if self.settings.tls_crypt != TlsCryptVersion::V2 {
            return Ok(None);
        }
        let text = match planned {
            Some(plan) if plan.stamp.is_some() && tx.data_stamp()? == plan.stamp => {
                Cow::Borrowed(plan.text.as_str())
            }
            _ => {
                let now = tx.current_serials(self.server_name())?;
                match planned {
                    Some(plan) if plan.serials == now => Cow::Borrowed(plan.text.as_str()),
                    _ => Cow::Owned(self.tls_crypt_v2_clients_of(now).to_string()),
                }
            }
        };
        let write = !up_to_date(path, text.as_bytes(), fsutil::PUBLIC);
        if write {
            fsutil::write_public(path, text.as_bytes())?;
        }
        Ok(Some(write))
    }

    /// Records the rendered layout in the settings file (atomically), if it
    /// changed.
    fn record_server(&self, layout: &Layout) -> Result<()> {
        // Another server's rendering is for its own host: [server] is main's.
        if self.is_view() {
            return Ok(());
        }
        let text = fsutil::read_to_string(&self.paths.settings)?;
        let mut settings = Settings::from_toml(&text)?;
        let want = ServerSettings {
            dir: Some(layout.dir.clone()),
            run_dir: Some(layout.run_dir.clone()),
        };
        if settings.server != want {
            settings.server = want;
            fsutil::write_public(&self.paths.settings, settings.to_toml().as_bytes())?;
        }
        Ok(())
    }

    /// Writes `crl` (just signed) to the recorded server directory's
    /// `crl.pem`, if a rendering recorded one.
    pub(super) fn copy_crl(&self, pem: &str) -> Result<()> {
        if let Some(dir) = self.recorded_server()?.dir {
            fsutil::write_public(&dir.join(ServerFiles::CRL), pem.as_bytes())?;
        }
        Ok(())
    }

    /// Who owns what in `dir` (canonical) against the planned `files`.
    fn survey(&self, dir: &Path, files: &[Planned]) -> Result<Survey> {
        let cert = self.ca.certificate();
        ownership::survey(
            dir,
            &broker_id(cert.der()),
            &self.server_names()?,
            cert.pem(),
            &wants(files),
        )
    }

    /// How the server files in `out_dir` (default: the recorded directory,
    /// else `<broker>/server`) compare with what
    /// [`render_server`](Self::render_server) would write now. Reads only.
    /// The systemd units are not compared (their binary path depends on who
    /// rendered them).
    pub(crate) fn check_server_files(&self, out_dir: Option<&Path>) -> Result<ServerFilesState> {
        let layout = self.layout(out_dir, None)?;
        let dir = layout.dir.clone();
        if !dir.is_dir() {
            return Ok(ServerFilesState {
                dir,
                ..ServerFilesState::default()
            });
        }
        let dir = fs::canonicalize(&dir).map_err(|e| Error::io(&dir, e))?;
        let layout = Layout {
            dir: dir.clone(),
            run_dir: layout.run_dir,
        };
        let files = self
            .planned_files(&layout, Path::new(DEFAULT_BINARY))?
            .files;
        let units = dir.join(CrlRefreshUnits::DIR);
        let survey = self.survey(&dir, &files)?;
        let mut state = ServerFilesState {
            dir: dir.clone(),
            exists: true,
            ..ServerFilesState::default()
        };
        // The list of clients tls-crypt-v2 accepts is live data, like the
        // CRL copy: rewritten with every CRL and rendering, and stale after
        // `client add` only where the new client's own files are missing.
        let names = self.server_names()?;
        let v2_clients = dir.join(names.tls_crypt_v2_clients());
        for (f, s) in files.into_iter().zip(survey.states) {
            if (f.path.starts_with(&units) || f.path == v2_clients)
                && matches!(s, State::Ours { .. })
            {
                continue;
            }
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
        let ccd = dir.join(names.ccd_dir());
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

    /// Ends a client's live session on this host, for example after
    /// [`revoke`](Broker::revoke) (which calls it): in per-client mode its
    /// instance is told to terminate (`signal SIGTERM`), in shared mode the
    /// server is told to `kill` its common name. Both go through the
    /// management socket in the recorded run directory (default
    /// `/run/openvpn-server`).
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use std::os::unix::fs::PermissionsExt;
    /// use tunnelbroker_core::broker::{RenderOptions, SessionEnd};
    /// use tunnelbroker_core::{ClientKind, ErrorKind, NewClient};
    /// let alice = broker.add_client(&NewClient::new("alice".parse()?, ClientKind::Hermit))?;
    /// std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    /// let mut options = RenderOptions::new();
    /// options.dir = Some(tmp.path().join("server"));
    /// options.run_dir = Some(tmp.path().join("run"));
    /// broker.render_server_with(&options)?;
    /// // No OpenVPN runs here: no management socket answers.
    /// assert!(matches!(broker.end_session(&alice)?, SessionEnd::NoServer(_)));
    ///
    /// // The run directory comes from the settings file; a damaged one is refused.
    /// std::fs::write(&broker.paths().settings, "pool = 1").unwrap();
    /// assert_eq!(broker.end_session(&alice).unwrap_err().kind(), ErrorKind::InvalidInput);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn end_session(&self, client: &Client) -> Result<SessionEnd> {
        let layout = self.layout(None, None)?;
        // Another server's sessions run on its own host.
        if client.server != self.server_name() {
            return Ok(SessionEnd::NoServer(layout.run_dir));
        }
        let options = self.server_options(&layout)?;
        match self.settings.mode {
            ServerMode::PerClient => {
                let port = match client.port {
                    Some(p) => p,
                    None => return Ok(SessionEnd::NoServer(layout.run_dir)),
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
                let srv = SharedServer::new(self.settings.pool, self.settings.port, options)?
                    .named(self.server_names()?);
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
                unanswered(ended, socket, srv.name())
            }
        }
    }
}

impl Broker {
    /// The management sockets of the server side on this host, by
    /// instance name: the shared server's, or one per active client's
    /// instance in per-client mode. Paths in the recorded run directory
    /// (default `/run/openvpn-server`); whether anything listens there is
    /// not checked.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::{ClientKind, NewClient};
    /// broker.add_client(&NewClient::new("alice".parse()?, ClientKind::Hermit))?;
    /// let sockets = broker.management_sockets()?;
    /// assert_eq!(sockets[0].0, "tb-client-alice");
    /// assert!(sockets[0].1.starts_with("/run/openvpn-server"));
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn management_sockets(&self) -> Result<Vec<(String, PathBuf)>> {
        let layout = self.layout(None, None)?;
        let options = self.server_options(&layout)?;
        match self.settings.mode {
            ServerMode::Shared => {
                let srv = SharedServer::new(self.settings.pool, self.settings.port, options)?
                    .named(self.server_names()?);
                let socket = PathBuf::from(srv.management_socket()?.as_str());
                Ok(vec![(srv.name(), socket)])
            }
            ServerMode::PerClient => Ok(self
                .client_sockets()?
                .into_iter()
                .map(|(_, name, socket)| (name, socket))
                .collect()),
        }
    }

    /// Per-client mode: each active client of this server with its
    /// instance's name and management socket (as
    /// [`management_sockets`](Self::management_sockets)); shared mode:
    /// none.
    pub(crate) fn client_sockets(&self) -> Result<Vec<(Client, String, PathBuf)>> {
        if self.settings.mode != ServerMode::PerClient {
            return Ok(Vec::new());
        }
        let layout = self.layout(None, None)?;
        let options = self.server_options(&layout)?;
        let mut out = Vec::new();
        for c in self.clients()? {
            let (ClientState::Active, Some(port)) = (c.state, c.port) else {
                continue;
            };
            if c.server != self.server_name() {
                continue;
            }
            let srv = PerClientServer::new(c.id.clone(), c.assignment, port, options.clone())?;
            let socket = PathBuf::from(srv.management_socket()?.as_str());
            out.push((c, srv.name(), socket));
        }
        Ok(out)
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

/// The list of tls-crypt-v2 clients a rendering plans, and what it was
/// made of: the current certificates' serials of the server's active
/// clients (as
/// [`Transaction::current_serials`](crate::store::Transaction::current_serials)
/// gave them) and the store's
/// [`data_stamp`](crate::store::Transaction::data_stamp) then.
pub(super) struct V2Plan {
    pub(super) serials: Vec<(ClientId, Serial)>,
    pub(super) stamp: Option<String>,
    pub(super) text: String,
}

/// What a rendering plans: the files, the instance names, and (v2) what
/// the list of tls-crypt-v2 clients among the files was made of.
struct Plan {
    files: Vec<Planned>,
    instances: Vec<String>,
    v2_plan: Option<V2Plan>,
}

/// The active clients of a server and what else its files are made of.
struct ServerRows {
    mode: ServerMode,
    pool: crate::plan::Pool,
    port: u16,
    names: crate::openvpn::ServerNames,
    options: ServerOptions,
    /// ID, assignment and UDP port of each active client.
    active: Vec<(ClientId, crate::plan::Assignment, Option<u16>)>,
}

impl ServerRows {
    /// The files of the server's instances, and their names.
    fn emit(&self) -> Result<(Vec<RenderedFile>, Vec<String>)> {
        let mut files = Vec::new();
        let mut instances = Vec::new();
        match self.mode {
            ServerMode::PerClient => {
                for (id, assignment, port) in &self.active {
                    let port = port.ok_or_else(|| Error::InvalidSettings {
                        reason: format!("client {id} has no UDP port in per-client mode"),
                    })?;
                    let srv =
                        PerClientServer::new(id.clone(), *assignment, port, self.options.clone())?;
                    instances.push(srv.name());
                    files.extend(srv.emit()?);
                }
            }
            ServerMode::Shared => {
                let srv = SharedServer::new(self.pool, self.port, self.options.clone())?
                    .named(self.names.clone());
                instances.push(srv.name());
                files.extend(srv.emit(self.active.iter().map(|(id, a, _)| (id, a)))?);
            }
        }
        Ok((files, instances))
    }
}

/// The planned `files` as the survey of a directory takes them.
fn wants(files: &[Planned]) -> Vec<Want<'_>> {
    files
        .iter()
        .map(|f| Want {
            path: &f.path,
            data: f.text.as_bytes(),
            mode: f.mode,
        })
        .collect()
}

/// One file of the server side, as [`Broker::render_server`] writes it.
struct Planned {
    path: PathBuf,
    text: String,
    mode: u32,
}

impl Planned {
    fn new_file(&self) -> fsutil::NewFile<'_> {
        fsutil::NewFile {
            path: &self.path,
            data: self.text.as_bytes(),
            mode: self.mode,
        }
    }
}

/// Brings the CCD directory `ccd` up to date: writes `files` (changed or
/// new entries) and removes `orphans`. One change is one atomic file
/// replacement or removal; more are switched as one new tree
/// ([`fsutil::replace_dir`]: the unchanged entries keep their inodes, a
/// crash leaves the old tree or the new one), or, where the directory holds
/// what a switch cannot carry, written one by one with one sync
/// ([`fsutil::write_files`]). See docs/operator-guide.md, "How render
/// writes".
fn write_ccd(ccd: &Path, files: &[&Planned], orphans: &[PathBuf]) -> Result<()> {
    match (files, orphans) {
        ([], []) => return Ok(()),
        ([one], []) => return fsutil::write_atomic(&one.path, one.text.as_bytes(), one.mode),
        ([], [one]) => return fsutil::remove_synced(one),
        _ => {}
    }
    let name = |p: &'_ Path| -> Result<PathBuf> {
        p.file_name()
            .map(PathBuf::from)
            .ok_or_else(|| Error::InvalidFile {
                path: p.to_owned(),
                reason: "not a file name".into(),
            })
    };
    let names: Vec<PathBuf> = files.iter().map(|f| name(&f.path)).collect::<Result<_>>()?;
    let writes: Vec<fsutil::NewFile<'_>> = files
        .iter()
        .zip(&names)
        .map(|(f, n)| fsutil::NewFile {
            path: n,
            data: f.text.as_bytes(),
            mode: f.mode,
        })
        .collect();
    let gone: Vec<PathBuf> = orphans.iter().map(|p| name(p)).collect::<Result<_>>()?;
    let gone: Vec<&std::ffi::OsStr> = gone.iter().map(|p| p.as_os_str()).collect();
    match fsutil::replace_dir(ccd, &writes, &gone)? {
        fsutil::Replaced::Switched => Ok(()),
        fsutil::Replaced::Unsupported(_) => {
            fsutil::write_files(&files.iter().map(|f| f.new_file()).collect::<Vec<_>>())?;
            for p in orphans {
                fsutil::remove_synced(p)?;
            }
            Ok(())
        }
    }
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

fn up_to_date(path: &Path, data: &[u8], mode: u32) -> bool {
    match (fs::read(path), fs::symlink_metadata(path)) {
        (Ok(old), Ok(meta)) => {
            meta.file_type().is_file() && old == data && meta.permissions().mode() & 0o7777 == mode
        }
        _ => false,
    }
}

/// Creates `dir` and its missing ancestors with mode 0755, whatever the
/// umask (OpenVPN as `nobody` must search them); existing directories keep
/// their mode.
fn make_dir(dir: &Path) -> Result<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && fs::metadata(d).is_err())
        .collect();
    for d in missing.into_iter().rev() {
        match fs::DirBuilder::new().mode(0o755).create(d) {
            Ok(()) => fs::set_permissions(d, fs::Permissions::from_mode(0o755))
                .map_err(|e| Error::io(d, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(d, e)),
        }
    }
    Ok(())
}
