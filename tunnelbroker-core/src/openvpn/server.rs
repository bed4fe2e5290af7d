//! Server side: one instance per client (per-client mode) or one instance
//! for all clients with `client-config-dir` entries (shared mode).

use std::fmt;
use std::net::Ipv6Addr;

use super::text::{ConfigText, ScriptText, Step, ip_addr};
use super::values::{CommonName, ConfigPath, InterfaceName};
use super::{ConfigFile, KEEPALIVE, RenderedFile, Script};
use crate::error::{Error, Result, shown};
use crate::words::TlsCryptVersion;
use crate::{Assignment, ClientId, Pool};

/// The name of OpenVPN's plugin that runs the `down` script as root after
/// the server has dropped its privileges (found in OpenVPN's plugin
/// directory).
pub const DOWN_ROOT_PLUGIN: &str = "openvpn-plugin-down-root.so";

/// Where a server configuration finds its keys and certificates.
///
/// Paths are as OpenVPN reads them; the broker renders them absolute, in
/// the rendered directory ([`ServerFiles::in_dir`]), so that nothing
/// OpenVPN reads at run time lies in the broker directory. The CRL is
/// re-read at every connection after OpenVPN has become `nobody`, so it and
/// every directory above it must be readable by others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    /// The CA certificate (`ca`).
    pub ca: ConfigPath,
    /// The server certificate (`cert`).
    pub cert: ConfigPath,
    /// The server's private key (`key`), mode 0600.
    pub key: ConfigPath,
    /// The `tls-crypt` key, mode 0600 (tls-crypt v1).
    pub tls_crypt: ConfigPath,
    /// The `tls-crypt-v2` server key, mode 0600 (tls-crypt v2).
    pub tls_crypt_v2: ConfigPath,
    /// The `tls-crypt-v2-verify` program (tls-crypt v2), mode 0755, and
    /// beside it the list of current clients it reads.
    pub tls_crypt_v2_verify: ConfigPath,
    /// The CRL (`crl-verify`), mode 0644.
    pub crl: ConfigPath,
}

impl ServerFiles {
    /// The CA certificate (with its issuers).
    pub const CA: &'static str = "ca.crt";
    /// The server certificate.
    pub const CERT: &'static str = "server.crt";
    /// The server's private key.
    pub const KEY: &'static str = "server.key";
    /// The `tls-crypt` key.
    pub const TLS_CRYPT: &'static str = "tls-crypt.key";
    /// The `tls-crypt-v2` server key.
    pub const TLS_CRYPT_V2: &'static str = "tls-crypt-v2-server.key";
    /// The `tls-crypt-v2-verify` program ([`TlsCryptV2Verify`](super::TlsCryptV2Verify)).
    pub const TLS_CRYPT_V2_VERIFY: &'static str = "tls-crypt-v2-verify";
    /// The list of current clients the verify program reads, kept current
    /// with the CRL.
    pub const TLS_CRYPT_V2_CLIENTS: &'static str = "tls-crypt-v2-clients";
    /// The broker's copy of its CRL, kept current by every CRL it signs.
    pub const CRL: &'static str = "crl.pem";

    /// `ca.crt`, `server.crt`, `server.key`, `tls-crypt.key` and `crl.pem`
    /// in `dir`.
    ///
    /// ```
    /// use tunnelbroker_core::openvpn::{ConfigPath, ServerFiles};
    /// let f = ServerFiles::in_dir(&ConfigPath::new("/etc/openvpn/server")?)?;
    /// assert_eq!(f.crl.as_str(), "/etc/openvpn/server/crl.pem");
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn in_dir(dir: &ConfigPath) -> Result<Self> {
        Self::for_server(dir, &ServerNames::main())
    }

    /// The files of the server `names` names in `dir`: its own certificate,
    /// key and verify program, the broker's shared files.
    ///
    /// ```
    /// use tunnelbroker_core::openvpn::{ConfigPath, ServerFiles, ServerNames};
    /// let dir = ConfigPath::new("/etc/openvpn/server")?;
    /// let f = ServerFiles::for_server(&dir, &ServerNames::named("b")?)?;
    /// assert_eq!(f.cert.as_str(), "/etc/openvpn/server/server-b.crt");
    /// assert_eq!(f.crl.as_str(), "/etc/openvpn/server/crl.pem");
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn for_server(dir: &ConfigPath, names: &ServerNames) -> Result<Self> {
        Ok(ServerFiles {
            ca: dir.join(Self::CA)?,
            cert: dir.join(&names.cert())?,
            key: dir.join(&names.key())?,
            tls_crypt: dir.join(Self::TLS_CRYPT)?,
            tls_crypt_v2: dir.join(Self::TLS_CRYPT_V2)?,
            tls_crypt_v2_verify: dir.join(&names.tls_crypt_v2_verify())?,
            crl: dir.join(Self::CRL)?,
        })
    }
}

/// The longest server name (its certificate's CN adds `tunnelbroker-server-`).
const MAX_SERVER_NAME: usize = 32;

/// The rule for a server name: 1 to 32 ASCII letters, digits, `.`, `-` and
/// `_`, starting with a letter or digit (it names a certificate, files and
/// systemd units, so it is one plain file name, never `.` or `..`).
/// [`validate_server_name`](crate::broker::validate_server_name) applies it.
pub fn check_server_name(name: &str) -> Result<()> {
    let bad = |reason: &str| Error::InvalidField {
        field: "server name",
        input: shown(name),
        reason: reason.into(),
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() > MAX_SERVER_NAME {
        return Err(bad(&format!("longer than {MAX_SERVER_NAME} characters")));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(bad(
            "only ASCII letters, digits, '.', '-' and '_' are allowed",
        ));
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(bad("it must start with a letter or a digit"));
    }
    Ok(())
}

/// The names of one broker server's files on a host (issue 19): several
/// servers of one broker may be rendered into one directory (one
/// `/etc/openvpn/server` for Debian's `openvpn-server@NAME`), so every name
/// that is the server's own carries its name. `main` keeps the names it
/// always had, so that existing deployments do not move:
///
/// | what | `main` | server `NAME` |
/// |---|---|---|
/// | shared instance (`openvpn-server@…`, status file) | `tb-shared` | `tb-shared-NAME` |
/// | its configuration | `tb-shared.conf` | `tb-shared-NAME.conf` |
/// | CCD directory | `ccd/` | `ccd-NAME/` |
/// | shared management socket | `tb<port>.sock` | `tb-shared-NAME.sock` |
/// | certificate and key | `server.crt`, `server.key` | `server-NAME.crt`, `server-NAME.key` |
/// | tls-crypt-v2 verify program and client list | `tls-crypt-v2-verify`, `tls-crypt-v2-clients` | `tls-crypt-v2-verify-NAME`, `tls-crypt-v2-clients-NAME` |
/// | ownership manifest | `.tunnelbroker-manifest.ID` | `.tunnelbroker-manifest.ID.NAME` |
///
/// What every server of the broker shares (`ca.crt`, `crl.pem`, the
/// tls-crypt keys, the CRL refresh units) has one name. Per-client
/// instances (`tb-client-<id>`, `tb<port>.sock`) are unique in the broker
/// already. The server name is checked ([`check_server_name`], the rule
/// of [`validate_server_name`](crate::broker::validate_server_name)), so
/// every derived name is one plain file name.
/// [`broker::server_names`](crate::broker::server_names) gives a server's
/// names by its name.
///
/// ```
/// use tunnelbroker_core::openvpn::ServerNames;
/// let main = ServerNames::main();
/// assert_eq!((main.shared_instance(), main.ccd_dir()), ("tb-shared".into(), "ccd".into()));
/// let b = ServerNames::named("b")?;
/// assert_eq!(b.shared_instance(), "tb-shared-b");
/// assert_eq!(b.ccd_dir(), "ccd-b");
/// assert_eq!(b.cert(), "server-b.crt");
/// assert!(ServerNames::named("../etc").is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ServerNames {
    /// The server's name, `None` for `main`.
    server: Option<String>,
}

impl ServerNames {
    /// The names of `main`, the names the broker always used.
    pub fn main() -> Self {
        ServerNames::default()
    }

    /// The names of the server `server`, a server other than `main`
    /// (checked with [`check_server_name`]; its names carry `server`).
    pub fn named(server: &str) -> Result<Self> {
        check_server_name(server)?;
        Ok(ServerNames {
            server: Some(server.to_owned()),
        })
    }

    /// Whether these are `main`'s names.
    pub fn is_main(&self) -> bool {
        self.server.is_none()
    }

    /// `base` for main, else `base-NAME`.
    fn suffixed(&self, base: &str) -> String {
        match &self.server {
            None => base.to_owned(),
            Some(name) => format!("{base}-{name}"),
        }
    }

    /// `stem.ext` for main, else `stem-NAME.ext`.
    fn suffixed_ext(&self, stem: &str, ext: &str) -> String {
        format!("{}.{ext}", self.suffixed(stem))
    }

    /// The shared server's instance name: `tb-shared`, `tb-shared-NAME`.
    pub fn shared_instance(&self) -> String {
        self.suffixed(SharedServer::NAME)
    }

    /// The shared server's CCD directory: `ccd`, `ccd-NAME`.
    pub fn ccd_dir(&self) -> String {
        self.suffixed(SharedServer::CCD_DIR)
    }

    /// The server certificate: `server.crt`, `server-NAME.crt`.
    pub fn cert(&self) -> String {
        self.suffixed_ext("server", "crt")
    }

    /// The server key: `server.key`, `server-NAME.key`.
    pub fn key(&self) -> String {
        self.suffixed_ext("server", "key")
    }

    /// The tls-crypt-v2 verify program: `tls-crypt-v2-verify`,
    /// `tls-crypt-v2-verify-NAME`.
    pub fn tls_crypt_v2_verify(&self) -> String {
        self.suffixed(ServerFiles::TLS_CRYPT_V2_VERIFY)
    }

    /// The list of clients the verify program reads: `tls-crypt-v2-clients`,
    /// `tls-crypt-v2-clients-NAME`.
    pub fn tls_crypt_v2_clients(&self) -> String {
        self.suffixed(ServerFiles::TLS_CRYPT_V2_CLIENTS)
    }

    /// The shared server's management socket, as a file name in the run
    /// directory: `tb<port>.sock` (main), `tb-shared-NAME.sock`.
    pub fn shared_socket(&self, port: u16) -> String {
        match &self.server {
            None => format!("{}.sock", InterfaceName::for_port(port)),
            Some(_) => format!("{}.sock", self.shared_instance()),
        }
    }

    /// The suffix of the server's ownership manifest after the broker's
    /// ID: empty (main), `.NAME`.
    pub fn manifest_suffix(&self) -> String {
        self.server
            .as_ref()
            .map_or_else(String::new, |name| format!(".{name}"))
    }
}

impl Default for ServerFiles {
    /// The files in `/etc/openvpn/server`.
    fn default() -> Self {
        let p = |name: &str| ConfigPath(format!("{}/{name}", ServerOptions::DEFAULT_CONFIG_DIR));
        ServerFiles {
            ca: p(Self::CA),
            cert: p(Self::CERT),
            key: p(Self::KEY),
            tls_crypt: p(Self::TLS_CRYPT),
            tls_crypt_v2: p(Self::TLS_CRYPT_V2),
            tls_crypt_v2_verify: p(Self::TLS_CRYPT_V2_VERIFY),
            crl: p(Self::CRL),
        }
    }
}

/// A user or group name for `user`/`group`: a lowercase letter or `_`, then
/// lowercase letters, digits, `_` and `-`, at most 32 bytes.
///
/// ```
/// use tunnelbroker_core::openvpn::Account;
/// assert_eq!(Account::new("nogroup")?.as_str(), "nogroup");
/// assert!(Account::new("root;id").is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Account(String);

impl Account {
    /// Checks `s` and makes it an account name.
    pub fn new(s: &str) -> Result<Self> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if ok {
            Ok(Account(s.to_owned()))
        } else {
            Err(Error::InvalidConfigValue {
                what: "user or group name",
                input: shown(s),
                reason: "use 1 to 32 lowercase letters, digits, '_' and '-', starting with a letter or '_'".into(),
            })
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Settings shared by every server configuration of a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// Keys and certificates.
    pub files: ServerFiles,
    /// The directory the rendered files are installed in; scripts and the
    /// CCD directory are referenced from here (absolute, so that the
    /// down-root helper finds them whatever OpenVPN's working directory).
    pub config_dir: ConfigPath,
    /// Directory of the management sockets (`tb<port>.sock`). OpenVPN logs
    /// to its standard output (the journal under systemd): no log file.
    pub run_dir: ConfigPath,
    /// Account to drop privileges to (`user`, `group`); `None` keeps root.
    pub drop_to: Option<(Account, Account)>,
    /// The control channel protection: `tls-crypt` (v1) or `tls-crypt-v2`
    /// with its verify program (v2, the default).
    pub tls_crypt: TlsCryptVersion,
}

impl Default for ServerOptions {
    /// Debian's layout: files in `/etc/openvpn/server`, sockets in
    /// `/run/openvpn-server`, `nobody`/`nogroup`.
    fn default() -> Self {
        let p = |s: &str| ConfigPath(s.to_owned());
        ServerOptions {
            files: ServerFiles::default(),
            config_dir: p(Self::DEFAULT_CONFIG_DIR),
            run_dir: p(Self::DEFAULT_RUN_DIR),
            drop_to: Some((Account("nobody".into()), Account("nogroup".into()))),
            tls_crypt: TlsCryptVersion::V2,
        }
    }
}

impl ServerOptions {
    /// Where Debian's `openvpn-server@NAME` runs OpenVPN
    /// (`WorkingDirectory=`).
    pub const DEFAULT_CONFIG_DIR: &'static str = "/etc/openvpn/server";
    /// The run directory Debian's openvpn package creates (tmpfiles.d,
    /// 0710 root) and its `openvpn-server@NAME` writes its status file to.
    pub const DEFAULT_RUN_DIR: &'static str = "/run/openvpn-server";

    /// Options for files installed in `config_dir`, which also holds the
    /// keys, certificates and CRL ([`ServerFiles::in_dir`]), with the
    /// management sockets in `run_dir`.
    ///
    /// ```
    /// use tunnelbroker_core::openvpn::{ConfigPath, ServerOptions};
    /// let o = ServerOptions::new(ConfigPath::new("/srv/vpn")?, ConfigPath::new("/run/vpn")?)?;
    /// assert_eq!(o.files.ca.as_str(), "/srv/vpn/ca.crt");
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn new(config_dir: ConfigPath, run_dir: ConfigPath) -> Result<Self> {
        Ok(ServerOptions {
            files: ServerFiles::in_dir(&config_dir)?,
            config_dir,
            run_dir,
            ..ServerOptions::default()
        })
    }

    fn common_head(&self, c: &mut ConfigText, port: u16, dev: &InterfaceName) {
        c.opt_args("port", [port])
            .opt_args("proto", ["udp"])
            .opt_args("dev", [dev.as_str()])
            .opt_args("dev-type", ["tun"]);
    }

    fn tls(&self, c: &mut ConfigText) {
        let f = &self.files;
        c.opt("tls-server")
            .opt_args("ca", [&f.ca])
            .opt_args("cert", [&f.cert])
            .opt_args("key", [&f.key])
            .opt_args("dh", ["none"]);
        match self.tls_crypt {
            TlsCryptVersion::V1 => {
                c.opt_args("tls-crypt", [&f.tls_crypt]);
            }
            TlsCryptVersion::V2 => {
                // The verify program runs (as nobody, after `user`) for
                // every client key before TLS; OpenVPN runs programs only
                // from script-security 2 on.
                c.opt_args("tls-crypt-v2", [&f.tls_crypt_v2])
                    .opt_args("script-security", [2])
                    .opt_args("tls-crypt-v2-verify", [&f.tls_crypt_v2_verify]);
            }
        }
        c.opt_args("crl-verify", [&f.crl])
            .opt_args("remote-cert-tls", ["client"]);
    }

    /// Whether [`tls`](Self::tls) already set `script-security 2`.
    fn scripts_allowed(&self) -> bool {
        self.tls_crypt == TlsCryptVersion::V2
    }

    fn common_tail(&self, c: &mut ConfigText, socket: &ConfigPath) {
        super::tuning::data_channel(c, true);
        c.opt_args("keepalive", KEEPALIVE)
            .opt("persist-key")
            .opt("persist-tun");
        if let Some((user, group)) = &self.drop_to {
            c.opt_args("user", [user]).opt_args("group", [group]);
        }
        c.opt_args("management", [socket.to_string(), "unix".into()])
            .opt_args("verb", [3]);
    }

    /// The management socket `<run_dir>/<device>.sock`, checked against the
    /// length limit of unix socket addresses.
    fn socket(&self, device: &InterfaceName) -> Result<ConfigPath> {
        self.socket_named(&format!("{device}.sock"))
    }

    /// The management socket `<run_dir>/<file>`, checked against the length
    /// limit of unix socket addresses.
    fn socket_named(&self, file: &str) -> Result<ConfigPath> {
        let path = self.run_dir.join(file)?;
        if path.as_str().len() > MAX_SOCKET_PATH {
            return Err(Error::InvalidConfigValue {
                what: "management socket path",
                input: shown(path.as_str()),
                reason: format!(
                    "a unix socket path has at most {MAX_SOCKET_PATH} bytes; use a shorter run directory"
                ),
            });
        }
        Ok(path)
    }
}

/// The longest unix socket path (`sun_path` holds 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

fn check_port(port: u16) -> Result<()> {
    if port == 0 {
        return Err(Error::InvalidConfigValue {
            what: "port",
            input: "0".into(),
            reason: "use a UDP port from 1 to 65535".into(),
        });
    }
    Ok(())
}

pub(crate) fn describe(assignment: &Assignment) -> String {
    match assignment {
        Assignment::Subnet(s) => describe_subnet(&s.prefix(), &s.client_end(), &s.routing_net()),
        Assignment::Hermit(h) => describe_hermit(&h.prefix()),
    }
}

/// [`describe`] of a subnet, from its prefix, tunnel address and routing
/// net, each formatted by the caller or not.
fn describe_subnet(
    prefix: &dyn fmt::Display,
    end: &dyn fmt::Display,
    routing: &dyn fmt::Display,
) -> String {
    format!("subnet {prefix}, tunnel address {end} (routing net {routing})")
}

/// [`describe`] of a hermit, from its /128.
fn describe_hermit(prefix: &dyn fmt::Display) -> String {
    format!("hermit {prefix}")
}

/// A per-client server instance (DESIGN.md §3, JOIN's original layout): one
/// point-to-point TLS server for one client on its own UDP port and its own
/// tun device `tb<port>`, accepting only that client's certificate.
///
/// * subnet client: `ifconfig-ipv6 routing::H:1/112 routing::H:2`,
///   `route-ipv6 PREFIX/64`, and `up`/`down` scripts for the link-local
///   address `fe80::H:1/64` (OpenVPN sets only one address itself);
/// * hermit client: `ifconfig-ipv6 fe80::1/64 ADDRESS` and
///   `route-ipv6 ADDRESS/128`; no scripts.
///
/// ```
/// use tunnelbroker_core::openvpn::{PerClientServer, ServerOptions};
/// use tunnelbroker_core::{Assignment, ClientId, Pool};
/// let pool: Pool = "2001:db8:0:f100::/56".parse()?;
/// let a = Assignment::Subnet(pool.subnet("2001:db8:0:f1ab::/64".parse().unwrap())?);
/// let srv = PerClientServer::new("alice".parse()?, a, 5000, ServerOptions::default())?;
/// assert_eq!(srv.name(), "tb-client-alice");
/// let conf = srv.config()?.to_string();
/// assert!(conf.contains("\nverify-x509-name alice name\n"));
/// assert!(conf.contains("\nifconfig-ipv6 2001:db8:0:f100::f1ab:1/112 2001:db8:0:f100::f1ab:2\n"));
/// assert!(srv.up_script().unwrap().to_string().contains("'fe80::f1ab:1/64'"));
/// assert!(PerClientServer::new("alice".parse()?, a, 0, ServerOptions::default()).is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerClientServer {
    client: ClientId,
    assignment: Assignment,
    port: u16,
    options: ServerOptions,
}

impl PerClientServer {
    /// The instance for `client` with `assignment` on UDP `port` (not 0).
    pub fn new(
        client: ClientId,
        assignment: Assignment,
        port: u16,
        options: ServerOptions,
    ) -> Result<Self> {
        check_port(port)?;
        Ok(PerClientServer {
            client,
            assignment,
            port,
            options,
        })
    }

    /// The instance name, `tb-client-<id>`: the configuration is `NAME.conf`,
    /// started by `openvpn-server@NAME`.
    pub fn name(&self) -> String {
        instance_name(&self.client)
    }

    /// The tun device, `tb<port>`.
    pub fn device(&self) -> InterfaceName {
        InterfaceName::for_port(self.port)
    }

    /// The client.
    pub fn client(&self) -> &ClientId {
        &self.client
    }

    /// The UDP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The management socket of the instance, `<run_dir>/tb<port>.sock`.
    pub fn management_socket(&self) -> Result<ConfigPath> {
        self.options.socket(&self.device())
    }

    fn script_path(&self, which: &str) -> Result<ConfigPath> {
        self.options
            .config_dir
            .join(&format!("{}.{which}", self.name()))
    }

    /// The server configuration (`NAME.conf`).
    pub fn config(&self) -> Result<ConfigFile> {
        let name = self.name();
        let mut c = ConfigText::default();
        c.comment(format!(
            "tunnelbroker: per-client server for client {}",
            self.client
        ))
        .comment(describe(&self.assignment))
        .comment(format!("started by: systemctl start openvpn-server@{name}"))
        .blank();
        self.options.common_head(&mut c, self.port, &self.device());
        c.opt("float");
        self.options.tls(&mut c);
        c.opt_args("verify-x509-name", [self.client.as_str(), "name"]);
        match &self.assignment {
            Assignment::Subnet(s) => {
                c.opt_args(
                    "ifconfig-ipv6",
                    [with_len(s.server_end(), 112), s.client_end().to_string()],
                )
                .opt_args(
                    "route-ipv6",
                    [s.prefix().to_string(), s.client_end().to_string()],
                );
                if !self.options.scripts_allowed() {
                    c.opt_args("script-security", [2]);
                }
                c.opt_args("up", [self.script_path("up")?]).opt_args(
                    "plugin",
                    [
                        DOWN_ROOT_PLUGIN.to_string(),
                        self.script_path("down")?.to_string(),
                    ],
                );
            }
            Assignment::Hermit(h) => {
                c.opt_args(
                    "ifconfig-ipv6",
                    [with_len(h.server_link_local(), 64), h.address().to_string()],
                )
                .opt_args("route-ipv6", [h.prefix().to_string()]);
            }
        }
        self.options.common_tail(&mut c, &self.management_socket()?);
        Ok(ConfigFile(c))
    }

    /// The `up` script, for subnet clients: adds the server's link-local
    /// address `fe80::H:1/64` to the tun device.
    pub fn up_script(&self) -> Option<Script> {
        let s = self.assignment.as_subnet()?;
        let mut t = ScriptText::default();
        t.header(format!(
            "tunnelbroker: up script of {} (subnet {})",
            self.name(),
            s.prefix()
        ))
        .header("OpenVPN sets the routing net address; this adds the link-local one.");
        t.run(ip_addr(
            "replace",
            with_len(s.server_link_local(), 64),
            "dev",
        ));
        Some(Script(t))
    }

    /// The `down` script (run as root by the down-root plugin): undoes
    /// [`up_script`](Self::up_script).
    pub fn down_script(&self) -> Option<Script> {
        let s = self.assignment.as_subnet()?;
        let mut t = ScriptText::default();
        t.header(format!(
            "tunnelbroker: down script of {} (subnet {})",
            self.name(),
            s.prefix()
        ))
        .header("Undoes the up script.");
        t.step(Step::RunTolerant(ip_addr(
            "del",
            with_len(s.server_link_local(), 64),
            "dev",
        )));
        Some(Script(t))
    }

    /// Every file of this instance: `NAME.conf` and, for subnet clients,
    /// the executable `NAME.up` and `NAME.down`.
    pub fn emit(&self) -> Result<Vec<RenderedFile>> {
        let name = self.name();
        let mut files = vec![RenderedFile::config(
            format!("{name}.conf"),
            self.config()?.to_string(),
        )];
        if let (Some(up), Some(down)) = (self.up_script(), self.down_script()) {
            files.push(RenderedFile::script(format!("{name}.up"), up.to_string()));
            files.push(RenderedFile::script(
                format!("{name}.down"),
                down.to_string(),
            ));
        }
        Ok(files)
    }
}

/// The shared server's tun address: interface ID 1 of the routing /64.
pub(crate) fn shared_server_address(pool: &Pool) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(pool.routing_net().network()) | 1)
}

/// The per-client instance name of `client`: `tb-client-<id>`.
pub fn instance_name(client: &ClientId) -> String {
    format!("tb-client-{client}")
}

fn with_len(addr: Ipv6Addr, len: u8) -> String {
    format!("{addr}/{len}")
}

/// The shared server (DESIGN.md §3, modern layout): one OpenVPN server for
/// all clients, each client's assignment in its `client-config-dir` entry
/// ([`CcdEntry`]) named after its certificate CN; clients without one are
/// refused (`ccd-exclusive`).
///
/// The server's tun address is `ROUTING::1/64` (the routing /64's interface
/// ID 1, never a routing-net end), and the whole pool is routed into the tun
/// device (`route-ipv6 POOL`).
///
/// ```
/// use tunnelbroker_core::openvpn::{ServerOptions, SharedServer};
/// let srv = SharedServer::new("2001:db8:0:f100::/56".parse()?, 5000, ServerOptions::default())?;
/// assert_eq!(srv.server_address().to_string(), "2001:db8:0:f100::1");
/// let conf = srv.config()?.to_string();
/// assert!(conf.contains("\nroute-ipv6 2001:db8:0:f100::/56\n"));
/// assert!(conf.contains("\nccd-exclusive\n"));
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedServer {
    pool: Pool,
    port: u16,
    options: ServerOptions,
    /// The number of clients it serves, for its sizing.
    clients: usize,
    /// The names of its files ([`ServerNames`]): `main`'s unless
    /// [`named`](Self::named).
    names: ServerNames,
}

impl SharedServer {
    /// The instance name of `main`'s shared server, `tb-shared`; another
    /// server's is `tb-shared-NAME` ([`ServerNames`]).
    pub const NAME: &'static str = "tb-shared";
    /// `main`'s CCD directory, below [`ServerOptions::config_dir`];
    /// another server's is `ccd-NAME`.
    pub const CCD_DIR: &'static str = "ccd";

    /// The server for `pool` on UDP `port` (not 0).
    pub fn new(pool: Pool, port: u16, options: ServerOptions) -> Result<Self> {
        check_port(port)?;
        Ok(SharedServer {
            pool,
            port,
            options,
            clients: 0,
            names: ServerNames::main(),
        })
    }

    /// The same server with the names of the broker server `names` names
    /// ([`ServerNames`]): its instance, CCD directory and management
    /// socket. The key and certificate paths are `options.files`.
    ///
    /// ```
    /// use tunnelbroker_core::openvpn::{ServerNames, ServerOptions, SharedServer};
    /// let srv = SharedServer::new("2001:db8:0:f100::/56".parse()?, 5001, ServerOptions::default())?
    ///     .named(ServerNames::named("b")?);
    /// assert_eq!(srv.name(), "tb-shared-b");
    /// assert_eq!(srv.management_socket()?.as_str(), "/run/openvpn-server/tb-shared-b.sock");
    /// let files: Vec<String> = srv.emit([])?.into_iter().map(|f| f.name).collect();
    /// assert_eq!(files, ["tb-shared-b.conf"]);
    /// assert!(srv.config()?.to_string().contains("\nclient-config-dir /etc/openvpn/server/ccd-b\n"));
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn named(mut self, names: ServerNames) -> Self {
        self.names = names;
        self
    }

    /// The same server, sized for `clients` clients
    /// ([`max_clients`](super::max_clients)); [`emit`](Self::emit) sizes it
    /// for the clients it is given.
    ///
    /// ```
    /// use tunnelbroker_core::openvpn::{ServerOptions, SharedServer};
    /// let srv = SharedServer::new("2001:db8:0:f100::/56".parse()?, 5000, ServerOptions::default())?;
    /// assert_eq!(srv.max_clients(), 1024);
    /// let srv = srv.with_clients(10_000);
    /// assert_eq!(srv.max_clients(), 32768);
    /// assert!(srv.config()?.to_string().contains("\nconnect-freq-initial 32768 10\n"));
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn with_clients(mut self, clients: usize) -> Self {
        self.clients = clients;
        self
    }

    /// The rendered `max-clients`: room for twice the clients, from 1,024,
    /// at most what the pool can assign.
    pub fn max_clients(&self) -> u32 {
        let capacity = self
            .pool
            .subnet_capacity()
            .saturating_add(self.pool.hermit_capacity());
        super::max_clients(self.clients, capacity)
    }

    /// The instance name: `tb-shared` for `main`, `tb-shared-NAME`.
    pub fn name(&self) -> String {
        self.names.shared_instance()
    }

    /// The CCD directory's name below [`ServerOptions::config_dir`]: `ccd`
    /// for `main`, `ccd-NAME`.
    pub fn ccd_dir(&self) -> String {
        self.names.ccd_dir()
    }

    /// The tun device, `tb<port>`.
    pub fn device(&self) -> InterfaceName {
        InterfaceName::for_port(self.port)
    }

    /// The server's tun address: interface ID 1 of the routing /64.
    pub fn server_address(&self) -> Ipv6Addr {
        shared_server_address(&self.pool)
    }

    /// The management socket: `<run_dir>/tb<port>.sock` for `main`,
    /// `<run_dir>/tb-shared-NAME.sock`.
    pub fn management_socket(&self) -> Result<ConfigPath> {
        self.options
            .socket_named(&self.names.shared_socket(self.port))
    }

    /// The server configuration (`tb-shared.conf`, `tb-shared-NAME.conf`).
    pub fn config(&self) -> Result<ConfigFile> {
        let routing = self.pool.routing_net();
        let mut c = ConfigText::default();
        c.comment(format!(
            "tunnelbroker: shared server for pool {}",
            self.pool
        ))
        .comment(format!(
            "each client's assignment is in {}/<client id>",
            self.ccd_dir()
        ))
        .comment(format!(
            "started by: systemctl start openvpn-server@{}",
            self.name()
        ))
        .blank();
        self.options.common_head(&mut c, self.port, &self.device());
        c.opt_args("mode", ["server"])
            .opt_args("topology", ["subnet"]);
        self.options.tls(&mut c);
        c.opt_args(
            "ifconfig-ipv6",
            [
                with_len(self.server_address(), routing.prefix_len()),
                Ipv6Addr::from(u128::from(routing.network()) | 2).to_string(),
            ],
        )
        .opt_args("route-ipv6", [self.pool.net().to_string()])
        .opt_args(
            "client-config-dir",
            [self.options.config_dir.join(&self.ccd_dir())?],
        )
        .opt("ccd-exclusive");
        super::tuning::sizing(&mut c, self.max_clients());
        self.options.common_tail(&mut c, &self.management_socket()?);
        Ok(ConfigFile(c))
    }

    /// The CCD entry of `client`; its assignment must lie in the pool.
    pub fn ccd(&self, client: &ClientId, assignment: &Assignment) -> Result<CcdEntry> {
        let prefix = assignment.prefix();
        if !self.pool.net().contains(&prefix) {
            return Err(Error::OutsidePool {
                prefix,
                pool: self.pool.net(),
            });
        }
        Ok(CcdEntry {
            client: CommonName::from(client),
            assignment: *assignment,
            gateway: self.server_address(),
        })
    }

    /// The server's files: `tb-shared.conf` and `ccd/<id>` for each client
    /// (`tb-shared-NAME.conf` and `ccd-NAME/<id>` when [`named`](Self::named)).
    pub fn emit<'a>(
        &self,
        clients: impl IntoIterator<Item = (&'a ClientId, &'a Assignment)>,
    ) -> Result<Vec<RenderedFile>> {
        let clients: Vec<_> = clients.into_iter().collect();
        let sized = self.clone().with_clients(clients.len());
        let mut files = vec![RenderedFile::config(
            format!("{}.conf", self.name()),
            sized.config()?.to_string(),
        )];
        let ccd = self.ccd_dir();
        // The gateway once, not once per client (issue 19: 10,000 CCD files).
        let gateway = self.server_address().to_string();
        for (id, a) in clients {
            files.push(RenderedFile::config(
                format!("{ccd}/{id}"),
                self.ccd(id, a)?.text_with(&gateway).to_string(),
            ));
        }
        Ok(files)
    }
}

/// A client's `client-config-dir` entry in shared mode, named after its CN.
///
/// * subnet: `ifconfig-ipv6-push routing::H:2/64 ROUTING::1` (the routing
///   /64 is on-link on the server's tun) and `iroute-ipv6 PREFIX/64`;
/// * hermit: `ifconfig-ipv6-push ADDRESS/64 ROUTING::1` (OpenVPN pushes
///   64..124 only; the server routes just the /128 to this client) and
///   `iroute-ipv6 ADDRESS/128`.
///
/// Exactly one `ifconfig-ipv6-push` is written (OpenVPN honours only the
/// last one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcdEntry {
    client: CommonName,
    assignment: Assignment,
    gateway: Ipv6Addr,
}

impl CcdEntry {
    fn text(&self) -> ConfigText {
        self.text_with(&self.gateway.to_string())
    }

    /// The entry with the gateway (`self.gateway`) already formatted. Each
    /// address is formatted once ([`describe`] and the directives share
    /// them): a rendering makes 10,000 of these (issue 19).
    fn text_with(&self, gateway: &str) -> ConfigText {
        let (description, tunnel, iroute) = match &self.assignment {
            Assignment::Subnet(s) => {
                let prefix = s.prefix().to_string();
                let end = s.client_end().to_string();
                let description = describe_subnet(&prefix, &end, &s.routing_net());
                (description, format!("{end}/64"), prefix)
            }
            Assignment::Hermit(h) => {
                let address = h.address().to_string();
                let prefix = format!("{address}/128");
                (describe_hermit(&prefix), format!("{address}/64"), prefix)
            }
        };
        let mut c = ConfigText::default();
        c.comment(format!(
            "tunnelbroker: client {}: {description}",
            self.client
        ));
        c.opt_args("ifconfig-ipv6-push", [tunnel, gateway.to_owned()])
            .opt_args("iroute-ipv6", [iroute]);
        c
    }
}

impl fmt::Display for CcdEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.text(), f)
    }
}
