//! The systemd units that keep the CRL fresh (issue 17, finding 2): a
//! daily timer and the service it starts, `tunnelbroker --dir BROKER crl`,
//! which signs a fresh CRL and writes it to the broker and to the rendered
//! server directory. Without them the CRL's nextUpdate passes after
//! `validity.crl_days` and OpenVPN refuses every client.
//!
//! Paths are written as systemd reads command lines (`systemd.service(5)`,
//! "Command lines"): `%` and `$` doubled, a word with blanks, quotes or
//! backslashes double-quoted with C escapes; control characters are refused.

use std::path::{Path, PathBuf};

use super::RenderedFile;
use crate::error::{Error, Result, flatten, shown};

/// Where the units expect the `tunnelbroker` binary unless told otherwise.
pub const DEFAULT_BINARY: &str = "/usr/local/bin/tunnelbroker";

/// `tunnelbroker-crl.service` and `tunnelbroker-crl.timer`.
///
/// ```
/// use std::path::Path;
/// use tunnelbroker_core::openvpn::CrlRefreshUnits;
/// let u = CrlRefreshUnits::new(Path::new("/usr/bin/tunnelbroker"), Path::new("/var/lib/tunnelbroker"))?;
/// let files = u.emit()?;
/// assert_eq!(files[0].name, "systemd/tunnelbroker-crl.service");
/// assert!(files[0].text.contains("\nExecStart=/usr/bin/tunnelbroker --dir /var/lib/tunnelbroker crl\n"));
/// assert!(files[1].text.contains("\nPersistent=true\n"));
/// assert!(CrlRefreshUnits::new(Path::new("tunnelbroker"), Path::new("/b")).is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlRefreshUnits {
    binary: PathBuf,
    broker_dir: PathBuf,
}

impl CrlRefreshUnits {
    /// The directory below the rendered directory that holds the units.
    pub const DIR: &'static str = "systemd";
    /// The unit name, without `.service` or `.timer`.
    pub const NAME: &'static str = "tunnelbroker-crl";

    /// Units that run `binary --dir broker_dir crl`; both paths absolute.
    pub fn new(binary: &Path, broker_dir: &Path) -> Result<Self> {
        for (what, p) in [
            ("tunnelbroker binary", binary),
            ("broker directory", broker_dir),
        ] {
            unit_word(what, p)?;
        }
        Ok(CrlRefreshUnits {
            binary: binary.to_owned(),
            broker_dir: broker_dir.to_owned(),
        })
    }

    /// The binary that the `ExecStart=` line of a service written by
    /// [`service`](Self::service) runs, if `text` is one.
    ///
    /// ```
    /// use std::path::Path;
    /// use tunnelbroker_core::openvpn::CrlRefreshUnits;
    /// let u = CrlRefreshUnits::new(Path::new("/opt/my tb/50%/tunnelbroker"), Path::new("/b"))?;
    /// assert_eq!(
    ///     CrlRefreshUnits::binary_of(&u.service()?).as_deref(),
    ///     Some(Path::new("/opt/my tb/50%/tunnelbroker"))
    /// );
    /// assert_eq!(CrlRefreshUnits::binary_of("[Service]\n"), None);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn binary_of(text: &str) -> Option<PathBuf> {
        let line = text.lines().find_map(|l| l.strip_prefix("ExecStart="))?;
        let word = if let Some(rest) = line.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = rest.chars();
            loop {
                match chars.next()? {
                    '\\' => out.push(chars.next()?),
                    '"' => break out,
                    c => out.push(c),
                }
            }
        } else {
            line.split(' ').next()?.to_owned()
        };
        let path = PathBuf::from(word.replace("%%", "%").replace("$$", "$"));
        path.is_absolute().then_some(path)
    }

    /// The service: one CRL refresh.
    pub fn service(&self) -> Result<String> {
        let bin = unit_word("tunnelbroker binary", &self.binary)?;
        let dir = unit_word("broker directory", &self.broker_dir)?;
        Ok(format!(
            "# tunnelbroker: signs a fresh CRL for the broker in {broker} and copies it\n\
             # to the rendered server directory (OpenVPN refuses every client once it expires).\n\
             # Install: cp systemd/{name}.service systemd/{name}.timer /etc/systemd/system/\n\
             #          systemctl daemon-reload && systemctl enable --now {name}.timer\n\
             [Unit]\n\
             Description=Refresh the tunnelbroker CRL\n\
             \n\
             [Service]\n\
             Type=oneshot\n\
             ExecStart={bin} --dir {dir} crl\n\
             # `crl` prints the new CRL; the journal needs only errors.\n\
             StandardOutput=null\n",
            broker = flatten(&self.broker_dir.to_string_lossy()),
            name = Self::NAME,
        ))
    }

    /// The timer: daily, catching up on missed runs.
    pub fn timer(&self) -> String {
        format!(
            "# tunnelbroker: starts {name}.service once a day; Persistent=true catches up\n\
             # on a run missed while the machine was off.\n\
             [Unit]\n\
             Description=Daily refresh of the tunnelbroker CRL\n\
             \n\
             [Timer]\n\
             OnCalendar=daily\n\
             Persistent=true\n\
             RandomizedDelaySec=1h\n\
             \n\
             [Install]\n\
             WantedBy=timers.target\n",
            name = Self::NAME,
        )
    }

    /// `systemd/tunnelbroker-crl.service` and `systemd/tunnelbroker-crl.timer`.
    pub fn emit(&self) -> Result<Vec<RenderedFile>> {
        Ok(vec![
            RenderedFile::config(
                format!("{}/{}.service", Self::DIR, Self::NAME),
                self.service()?,
            ),
            RenderedFile::config(format!("{}/{}.timer", Self::DIR, Self::NAME), self.timer()),
        ])
    }
}

/// `tunnelbroker-agent.service`: the server host's agent (issue 14),
/// `tunnelbroker --dir BROKER agent -o DIR`, restarted whenever it stops.
/// It needs no CA key; it reads the broker directory and the database and
/// writes the rendered directory.
///
/// ```
/// use std::path::Path;
/// use tunnelbroker_core::openvpn::AgentUnit;
/// let u = AgentUnit::new(Path::new("/usr/bin/tunnelbroker"), Path::new("/var/lib/tunnelbroker"), Path::new("/etc/openvpn/server"))?;
/// let f = u.emit()?;
/// assert_eq!(f.name, "systemd/tunnelbroker-agent.service");
/// assert!(f.text.contains("\nExecStart=/usr/bin/tunnelbroker --dir /var/lib/tunnelbroker agent -o /etc/openvpn/server\n"));
/// assert!(AgentUnit::new(Path::new("/b"), Path::new("/b"), Path::new("/x\nExecStart=/evil")).is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
///
/// The agent of a server other than `main` is `tunnelbroker-agent-NAME`,
/// and its command names the server and the run directory:
///
/// ```
/// use std::path::Path;
/// use tunnelbroker_core::openvpn::AgentUnit;
/// let u = AgentUnit::new(Path::new("/usr/bin/tunnelbroker"), Path::new("/b"), Path::new("/etc/openvpn/b"))?
///     .for_server("b", Path::new("/run/openvpn-server"))?;
/// let f = u.emit()?;
/// assert_eq!(f.name, "systemd/tunnelbroker-agent-b.service");
/// assert!(f.text.contains("\nExecStart=/usr/bin/tunnelbroker --dir /b agent --server b -o /etc/openvpn/b --run-dir /run/openvpn-server\n"));
/// let u = AgentUnit::new(Path::new("/b"), Path::new("/b"), Path::new("/b"))?;
/// assert!(u.clone().for_server("b --evil", Path::new("/run")).is_err());
/// assert!(u.for_server("b", Path::new("/run\nExecStart=/evil")).is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentUnit {
    binary: PathBuf,
    broker_dir: PathBuf,
    out_dir: PathBuf,
    /// A server other than `main`, and its run directory.
    server: Option<(String, PathBuf)>,
}

impl AgentUnit {
    /// The unit name, without `.service`.
    pub const NAME: &'static str = "tunnelbroker-agent";

    /// A unit that runs `binary --dir broker_dir agent -o out_dir`; all
    /// three paths absolute.
    pub fn new(binary: &Path, broker_dir: &Path, out_dir: &Path) -> Result<Self> {
        for (what, p) in [
            ("tunnelbroker binary", binary),
            ("broker directory", broker_dir),
            ("server directory", out_dir),
        ] {
            unit_word(what, p)?;
        }
        Ok(AgentUnit {
            binary: binary.to_owned(),
            broker_dir: broker_dir.to_owned(),
            out_dir: out_dir.to_owned(),
            server: None,
        })
    }

    /// The same unit for server `name` (not `main`), whose instances keep
    /// their management sockets in `run_dir` (absolute).
    pub fn for_server(mut self, name: &str, run_dir: &Path) -> Result<Self> {
        super::check_server_name(name)?;
        unit_word("run directory", run_dir)?;
        self.server = Some((name.to_owned(), run_dir.to_owned()));
        Ok(self)
    }

    /// The unit's name, without `.service`: [`NAME`](Self::NAME), or
    /// `tunnelbroker-agent-SERVER` for a server other than `main`.
    pub fn unit_name(&self) -> String {
        match &self.server {
            Some((name, _)) => format!("{}-{name}", Self::NAME),
            None => Self::NAME.to_owned(),
        }
    }

    /// The service text.
    pub fn service(&self) -> Result<String> {
        let bin = unit_word("tunnelbroker binary", &self.binary)?;
        let dir = unit_word("broker directory", &self.broker_dir)?;
        let out = unit_word("server directory", &self.out_dir)?;
        let (server, run) = match &self.server {
            Some((name, run_dir)) => (
                format!(" --server {name}"),
                format!(" --run-dir {}", unit_word("run directory", run_dir)?),
            ),
            None => (String::new(), String::new()),
        };
        Ok(format!(
            "# tunnelbroker: the server host's agent. It keeps the OpenVPN files in\n\
             # {shown} (configs, CCD entries, the CRL) in step with the client database,\n\
             # ends the live sessions of revoked clients, records sessions and, with\n\
             # --metrics ADDR added below, serves Prometheus metrics. It never needs the CA key.\n\
             # Install: cp systemd/{name}.service /etc/systemd/system/\n\
             #          systemctl daemon-reload && systemctl enable --now {name}.service\n\
             [Unit]\n\
             Description=tunnelbroker agent: keeps OpenVPN in step with the client database\n\
             After=network-online.target\n\
             Wants=network-online.target\n\
             \n\
             [Service]\n\
             Type=simple\n\
             ExecStart={bin} --dir {dir} agent{server} -o {out}{run}\n\
             Restart=always\n\
             RestartSec=2\n\
             \n\
             [Install]\n\
             WantedBy=multi-user.target\n",
            shown = flatten(&self.out_dir.to_string_lossy()),
            name = self.unit_name(),
        ))
    }

    /// `systemd/tunnelbroker-agent.service` (`-SERVER` before `.service`
    /// for a server other than `main`).
    pub fn emit(&self) -> Result<RenderedFile> {
        Ok(RenderedFile::config(
            format!("{}/{}.service", CrlRefreshUnits::DIR, self.unit_name()),
            self.service()?,
        ))
    }
}

/// An absolute path as one word of a systemd command line.
fn unit_word(what: &'static str, p: &Path) -> Result<String> {
    let bad = |reason: &str| Error::InvalidConfigValue {
        what,
        input: shown(&p.to_string_lossy()),
        reason: reason.into(),
    };
    let s = p.to_str().ok_or_else(|| bad("it is not valid UTF-8"))?;
    if !p.is_absolute() {
        return Err(bad("a systemd unit needs an absolute path"));
    }
    if s.chars().any(char::is_control) {
        return Err(bad("control characters are not allowed"));
    }
    let word = s.replace('%', "%%").replace('$', "$$");
    if word.contains(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '\\')) {
        Ok(format!(
            "\"{}\"",
            word.replace('\\', "\\\\").replace('"', "\\\"")
        ))
    } else {
        Ok(word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_as_systemd_reads_them() {
        let w = |s: &str| unit_word("x", Path::new(s));
        assert_eq!(w("/usr/bin/tunnelbroker").unwrap(), "/usr/bin/tunnelbroker");
        assert_eq!(w("/srv/50%").unwrap(), "/srv/50%%");
        assert_eq!(w("/srv/$HOME").unwrap(), "/srv/$$HOME");
        assert_eq!(w("/srv/my broker").unwrap(), "\"/srv/my broker\"");
        assert_eq!(w("/srv/a\"b\\c").unwrap(), "\"/srv/a\\\"b\\\\c\"");
        assert!(w("/srv/a\nExecStart=/bin/evil").is_err());
        assert!(w("relative/dir").is_err());
    }

    #[test]
    fn crl_refresh_units() {
        let u = CrlRefreshUnits::new(
            Path::new("/usr/local/bin/tunnelbroker"),
            Path::new("/var/lib/tunnelbroker"),
        )
        .unwrap();
        let text: String = u
            .emit()
            .unwrap()
            .iter()
            .map(|f| format!("===== {} =====\n{}", f.name, f.text))
            .collect();
        insta::assert_snapshot!(text);
    }
}
