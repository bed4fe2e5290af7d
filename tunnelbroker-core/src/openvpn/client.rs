//! Client side: the configuration a client starts OpenVPN with, its scripts
//! and the README of its bundle.

use std::fmt;
use std::net::Ipv6Addr;

use super::facts::BundleFacts;
use super::text::{ConfigText, ScriptText, Step, Word, ip_addr};
use super::values::{CommonName, Endpoint, InlineText, InterfaceName};
use super::{ConfigFile, KEEPALIVE, RenderedFile, Script};
use crate::error::{Error, Result, shown};
use crate::words::{ClientOs, ServerMode, TlsCryptVersion};
use crate::{Assignment, ClientId, Pool};

/// The environment variable that overrides the LAN interface in a subnet
/// client's scripts.
pub const LAN_INTERFACE_ENV: &str = "TUNNELBROKER_LAN_IF";

/// The server's address on the tunnel of a client with `assignment` in
/// `pool` of a broker in server `mode`: what the server configuration sets on
/// its tun device and what the client's `doctor` pings.
///
/// * per-client mode, subnet: the routing net's server end `routing::H:1`;
/// * per-client mode, hermit: the link-local `fe80::1`;
/// * shared mode: the routing /64's `::1`, for every client
///   ([`SharedServer::server_address`](super::SharedServer::server_address)).
///
/// ```
/// use tunnelbroker_core::openvpn::server_address;
/// use tunnelbroker_core::broker::ServerMode;
/// use tunnelbroker_core::{Assignment, Pool};
/// let pool: Pool = "2001:db8:0:f100::/56".parse()?;
/// let s = Assignment::Subnet(pool.subnet("2001:db8:0:f1ab::/64".parse().unwrap())?);
/// let h = Assignment::Hermit(pool.hermit("2001:db8:0:f1ff::7".parse().unwrap())?);
/// let addr = |m: ServerMode, a| server_address(m, &pool, &a).to_string();
/// assert_eq!(addr(ServerMode::PerClient, s), "2001:db8:0:f100::f1ab:1");
/// assert_eq!(addr(ServerMode::PerClient, h), "fe80::1");
/// assert_eq!(addr(ServerMode::Shared, s), "2001:db8:0:f100::1");
/// assert_eq!(addr(ServerMode::Shared, h), "2001:db8:0:f100::1");
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
pub fn server_address(mode: ServerMode, pool: &Pool, assignment: &Assignment) -> Ipv6Addr {
    match mode {
        ServerMode::PerClient => per_client_server_address(assignment),
        ServerMode::Shared => super::server::shared_server_address(pool),
    }
}

/// The server end a per-client instance sets (`ifconfig-ipv6 SERVER/LEN ..`).
fn per_client_server_address(assignment: &Assignment) -> Ipv6Addr {
    match assignment {
        Assignment::Subnet(s) => s.server_end(),
        Assignment::Hermit(h) => h.server_link_local(),
    }
}

/// A client's key and certificate material, inlined into its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMaterial {
    /// The broker's CA certificate.
    pub ca: InlineText,
    /// The client's certificate.
    pub cert: InlineText,
    /// The client's private key; `None` when the client made its own key
    /// (it sent a CSR): the configuration then reads `<id>.key` from its
    /// directory.
    pub key: Option<InlineText>,
    /// The control channel key: the broker's `tls-crypt` key (v1), or
    /// the client's own `tls-crypt-v2` client key (v2).
    pub tls_crypt: InlineText,
    /// Which of the two [`tls_crypt`](Self::tls_crypt) holds: inlined as
    /// `<tls-crypt>` (v1) or `<tls-crypt-v2>` (v2).
    pub tls_crypt_version: TlsCryptVersion,
}

impl ClientMaterial {
    /// Checks PEM and key texts for inlining.
    pub fn new(ca: &str, cert: &str, key: Option<&str>, tls_crypt: &str) -> Result<Self> {
        Ok(ClientMaterial {
            ca: InlineText::new("CA certificate", ca)?,
            cert: InlineText::new("client certificate", cert)?,
            key: key.map(|k| InlineText::new("client key", k)).transpose()?,
            tls_crypt: InlineText::new("tls-crypt key", tls_crypt)?,
            tls_crypt_version: TlsCryptVersion::V1,
        })
    }

    /// Like [`new`](Self::new), with the client's own `tls-crypt-v2` key
    /// (PEM) instead of the shared `tls-crypt` key.
    ///
    /// ```
    /// use tunnelbroker_core::openvpn::ClientMaterial;
    /// use tunnelbroker_core::broker::TlsCryptVersion;
    /// let pem = "-----BEGIN X-----\nAAAA\n-----END X-----\n";
    /// let m = ClientMaterial::with_tls_crypt_v2(pem, pem, None, pem)?;
    /// assert_eq!(m.tls_crypt_version, TlsCryptVersion::V2);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn with_tls_crypt_v2(
        ca: &str,
        cert: &str,
        key: Option<&str>,
        client_key: &str,
    ) -> Result<Self> {
        Ok(ClientMaterial {
            tls_crypt: InlineText::new("tls-crypt-v2 client key", client_key)?,
            tls_crypt_version: TlsCryptVersion::V2,
            ..Self::new(ca, cert, key, client_key)?
        })
    }
}

/// A client's OpenVPN configuration (`<id>.conf` on Linux, `<id>.ovpn` on
/// Windows) with its scripts.
///
/// It routes all global IPv6 through the tunnel (`redirect-gateway ipv6
/// !ipv4`) and, in per-client mode, sets the tunnel address itself: a subnet
/// client `routing::H:2/112` (and `fe80::H:2/64` from its `up` script on
/// Linux), a hermit its address as `/64` (OpenVPN's shortest accepted length
/// that holds it) with `fe80::1` as the gateway. A Linux subnet client's
/// scripts turn on IPv6 forwarding and put `PREFIX::1/64` on its LAN
/// interface, which the variable [`LAN_INTERFACE_ENV`] overrides (OpenVPN
/// hands scripts only its own variables, so set it with `setenv` in the
/// configuration or `--setenv` on the command line); `down` undoes `up`.
///
/// ```
/// use tunnelbroker_core::openvpn::*;
/// use tunnelbroker_core::broker::{ClientOs, ServerMode};
/// use tunnelbroker_core::{Assignment, Pool};
/// let pool: Pool = "2001:db8:0:f100::/56".parse()?;
/// let a = Assignment::Hermit(pool.hermit("2001:db8:0:f1ff::7".parse().unwrap())?);
/// let pem = "-----BEGIN X-----\nAAAA\n-----END X-----\n";
/// let cfg = ClientConfig {
///     client: "bob".parse()?,
///     assignment: a,
///     os: ClientOs::Windows,
///     mode: ServerMode::PerClient,
///     server_address: server_address(ServerMode::PerClient, &pool, &a),
///     remote: Endpoint::new("vpn.example.org")?,
///     port: 5001,
///     server_name: CommonName::new("server")?,
///     lan_interface: InterfaceName::new("eth0")?,
///     material: ClientMaterial::new(pem, pem, Some(pem), pem)?,
/// };
/// assert_eq!(cfg.file_name(), "bob.ovpn");
/// let text = cfg.config().to_string();
/// assert!(text.contains("\nifconfig-ipv6 2001:db8:0:f1ff::7/64 fe80::1\n"));
/// assert!(!text.contains("\nup "));
/// assert!(text.contains("\n# tunnelbroker-doctor: id=bob kind=hermit prefix=2001:db8:0:f1ff::7/128 \
///     tunnel=2001:db8:0:f1ff::7 server=fe80::1\n"));
/// assert_eq!(cfg.facts().server.to_string(), "fe80::1");
/// // In per-client mode the server address follows from the assignment.
/// let wrong = ClientConfig { server_address: "2001:db8:0:f100::1".parse().unwrap(), ..cfg };
/// assert!(wrong.emit().is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The client.
    pub client: ClientId,
    /// Its assignment.
    pub assignment: Assignment,
    /// Linux or Windows.
    pub os: ClientOs,
    /// Per-client or shared server.
    pub mode: ServerMode,
    /// The server's address on the tunnel, as the server configuration sets
    /// it ([`server_address()`]); written into the configuration's
    /// `# tunnelbroker-doctor:` line for `doctor` to ping. In per-client mode
    /// it must be the assignment's server end ([`emit`](Self::emit) checks).
    pub server_address: Ipv6Addr,
    /// The broker's public host name or address.
    pub remote: Endpoint,
    /// The server's UDP port for this client.
    pub port: u16,
    /// The server certificate's CN (`verify-x509-name`).
    pub server_name: CommonName,
    /// The LAN interface of a subnet client (Linux scripts).
    pub lan_interface: InterfaceName,
    /// CA, certificate, key, tls-crypt key.
    pub material: ClientMaterial,
}

impl ClientConfig {
    /// `<id>.conf` (Linux) or `<id>.ovpn` (Windows).
    pub fn file_name(&self) -> String {
        match self.os {
            ClientOs::Linux => format!("{}.conf", self.client),
            ClientOs::Windows => format!("{}.ovpn", self.client),
        }
    }

    /// The key file a CSR client supplies itself: `<id>.key`.
    pub fn key_file_name(&self) -> String {
        format!("{}.key", self.client)
    }

    /// What `doctor` should find on the client, as the configuration's
    /// `# tunnelbroker-doctor:` line says it ([`BundleFacts`]). The LAN
    /// interface is named only for Linux, where the scripts use it.
    pub fn facts(&self) -> BundleFacts {
        BundleFacts {
            id: Some(self.client.clone()),
            kind: self.assignment.kind(),
            prefix: self.assignment.prefix(),
            tunnel: self.assignment.tunnel_address(),
            server: self.server_address,
            lan: self.has_scripts().then(|| self.lan_interface.to_string()),
        }
    }

    /// Checks [`server_address`](Self::server_address) against the
    /// assignment and the tunnel kind.
    fn check_server_address(&self) -> Result<()> {
        let addr = self.server_address;
        let bad = |reason: String| {
            Err(Error::InvalidConfigValue {
                what: "server address",
                input: shown(&addr.to_string()),
                reason,
            })
        };
        match self.mode {
            ServerMode::PerClient => {
                let want = per_client_server_address(&self.assignment);
                if addr != want {
                    return bad(format!(
                        "a per-client server of {} has the address {want}",
                        super::server::describe(&self.assignment)
                    ));
                }
            }
            ServerMode::Shared => {
                if addr.is_unspecified() || addr.is_loopback() || addr.is_multicast() {
                    return bad("not a unicast address".into());
                }
                if self.assignment.prefix().contains(&addr) {
                    return bad(format!(
                        "it lies in the client's own {}",
                        self.assignment.prefix()
                    ));
                }
            }
        }
        Ok(())
    }

    fn has_scripts(&self) -> bool {
        self.os == ClientOs::Linux && self.assignment.as_subnet().is_some()
    }

    /// The configuration text.
    pub fn config(&self) -> ConfigFile {
        let mut c = ConfigText::default();
        c.comment(format!(
            "tunnelbroker: client {} ({})",
            self.client,
            super::server::describe(&self.assignment)
        ));
        c.comment(self.facts().to_string());
        match self.os {
            ClientOs::Linux => c.comment(format!(
                "start: openvpn --cd DIR --config {} (or copy to /etc/openvpn/client/ and use openvpn-client@{})",
                self.file_name(),
                self.client
            )),
            ClientOs::Windows => c.comment(
                "import this file into OpenVPN for Windows (OpenVPN GUI or OpenVPN Connect)",
            ),
        };
        c.blank();
        match self.mode {
            ServerMode::PerClient => c.opt("tls-client"),
            ServerMode::Shared => c.opt("client"),
        };
        c.opt_args("dev", ["tun"])
            .opt_args("proto", ["udp"])
            .opt_args("remote", [self.remote.to_string(), self.port.to_string()])
            .opt("nobind")
            .opt_args("remote-cert-tls", ["server"])
            .opt_args("verify-x509-name", [self.server_name.as_str(), "name"]);
        if self.mode == ServerMode::PerClient {
            match &self.assignment {
                Assignment::Subnet(s) => c.opt_args(
                    "ifconfig-ipv6",
                    [
                        format!("{}/112", s.client_end()),
                        s.server_end().to_string(),
                    ],
                ),
                Assignment::Hermit(h) => c.opt_args(
                    "ifconfig-ipv6",
                    [
                        format!("{}/64", h.address()),
                        h.server_link_local().to_string(),
                    ],
                ),
            };
        }
        c.opt_args("redirect-gateway", ["ipv6", "!ipv4"]);
        if self.has_scripts() {
            c.comment(format!(
                "another LAN interface than {}: setenv {LAN_INTERFACE_ENV} <name>",
                self.lan_interface
            ));
            c.opt_args("script-security", [2])
                .opt_args("up", [format!("{}.up", self.client)])
                .opt_args("down", [format!("{}.down", self.client)]);
        }
        super::tuning::data_channel(&mut c, self.os == ClientOs::Linux);
        c.opt_args("keepalive", KEEPALIVE)
            .opt("persist-key")
            .opt("persist-tun")
            .opt_args("verb", [3]);
        let m = &self.material;
        c.inline("ca", &m.ca).inline("cert", &m.cert);
        match &m.key {
            Some(k) => c.inline("key", k),
            None => c.opt_args("key", [self.key_file_name()]),
        };
        match m.tls_crypt_version {
            TlsCryptVersion::V1 => c.inline("tls-crypt", &m.tls_crypt),
            TlsCryptVersion::V2 => c.inline("tls-crypt-v2", &m.tls_crypt),
        };
        ConfigFile(c)
    }

    fn marker(&self) -> String {
        format!("/run/tunnelbroker-{}.forwarding", self.client)
    }

    fn lan_step(&self) -> Step {
        Step::EnvDefault {
            var: "lan",
            env: LAN_INTERFACE_ENV,
            default: self.lan_interface.to_string(),
        }
    }

    /// The Linux `up` script of a subnet client (`None` otherwise).
    pub fn up_script(&self) -> Option<Script> {
        if !self.has_scripts() {
            return None;
        }
        let s = self.assignment.as_subnet()?;
        let mut t = ScriptText::default();
        t.header(format!(
            "tunnelbroker: up script of client {} (subnet {})",
            self.client,
            s.prefix()
        ))
        .header(format!(
            "LAN interface: {} unless {LAN_INTERFACE_ENV} names another",
            self.lan_interface
        ));
        t.step(self.lan_step());
        if self.mode == ServerMode::PerClient {
            t.run(ip_addr(
                "replace",
                format!("{}/64", s.client_link_local()),
                "dev",
            ));
        }
        // Without its LAN interface the client is still a host on the
        // tunnel: the LAN steps are skipped with one line in the log, and
        // forwarding stays as it was (down restores only what up changed).
        t.step(Step::IfInterface {
            var: "lan",
            steps: vec![
                Step::EnableForwarding {
                    marker: self.marker(),
                },
                Step::Run(ip_addr("replace", format!("{}/64", s.lan_address()), "lan")),
            ],
            missing: vec![
                Word::Lit(format!("tunnelbroker: client {}: the LAN interface ", self.client)),
                Word::Var("lan"),
                Word::Lit(format!(
                    " does not exist: the tunnel is up for this host only and the LAN got no prefix ({}); \
                     name the LAN interface with `setenv {LAN_INTERFACE_ENV} IFACE` in the configuration",
                    s.prefix()
                )),
            ],
        });
        Some(Script(t))
    }

    /// The Linux `down` script of a subnet client: undoes
    /// [`up_script`](Self::up_script).
    pub fn down_script(&self) -> Option<Script> {
        if !self.has_scripts() {
            return None;
        }
        let s = self.assignment.as_subnet()?;
        let mut t = ScriptText::default();
        t.header(format!(
            "tunnelbroker: down script of client {} (subnet {})",
            self.client,
            s.prefix()
        ))
        .header("Undoes the up script.");
        t.step(self.lan_step());
        t.step(Step::RunTolerant(ip_addr(
            "del",
            format!("{}/64", s.lan_address()),
            "lan",
        )));
        t.step(Step::RestoreForwarding {
            marker: self.marker(),
        });
        if self.mode == ServerMode::PerClient {
            t.step(Step::RunTolerant(ip_addr(
                "del",
                format!("{}/64", s.client_link_local()),
                "dev",
            )));
        }
        Some(Script(t))
    }

    /// The bundle's README.
    pub fn readme(&self) -> Readme<'_> {
        Readme(self)
    }

    /// Every file of the client's bundle: the configuration, the scripts
    /// (executable) and `README.txt`. Fails on port 0 and on a
    /// [`server_address`](Self::server_address) that cannot be the server's.
    pub fn emit(&self) -> Result<Vec<RenderedFile>> {
        if self.port == 0 {
            return Err(Error::InvalidConfigValue {
                what: "port",
                input: "0".into(),
                reason: "use a UDP port from 1 to 65535".into(),
            });
        }
        self.check_server_address()?;
        let mut files = vec![RenderedFile::config(
            self.file_name(),
            self.config().to_string(),
        )];
        if let (Some(up), Some(down)) = (self.up_script(), self.down_script()) {
            files.push(RenderedFile::script(
                format!("{}.up", self.client),
                up.to_string(),
            ));
            files.push(RenderedFile::script(
                format!("{}.down", self.client),
                down.to_string(),
            ));
        }
        files.push(RenderedFile::config(
            "README.txt".into(),
            self.readme().to_string(),
        ));
        Ok(files)
    }
}

/// The README of a client's bundle: the guide's three steps.
#[derive(Debug)]
pub struct Readme<'a>(&'a ClientConfig);

impl fmt::Display for Readme<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        let id = &c.client;
        let title = format!("IPv6 tunnel for client {id}");
        writeln!(f, "{title}\n{}", "=".repeat(title.len()))?;
        writeln!(f)?;
        match &c.assignment {
            Assignment::Subnet(s) => {
                writeln!(f, "Your network:        {}", s.prefix())?;
                writeln!(f, "Your tunnel address: {}", s.client_end())?;
                writeln!(
                    f,
                    "Your LAN router:     {} (on your LAN interface)",
                    s.lan_address()
                )?;
            }
            Assignment::Hermit(h) => {
                writeln!(f, "Your address: {}", h.address())?;
            }
        }
        writeln!(f, "Server:       {} UDP port {}", c.remote, c.port)?;
        writeln!(f)?;
        match c.os {
            ClientOs::Linux => {
                writeln!(
                    f,
                    "1. Install OpenVPN 2.6 or later, e.g. `apt-get install openvpn`."
                )?;
                writeln!(
                    f,
                    "2. Copy every file of this bundle to /etc/openvpn/client/"
                )?;
                writeln!(f, "   (keep the scripts executable).")?;
                if c.material.key.is_none() {
                    writeln!(
                        f,
                        "   Put your own private key there as {} (mode 0600).",
                        c.key_file_name()
                    )?;
                }
                writeln!(f, "3. Start it: `systemctl start openvpn-client@{id}`")?;
                writeln!(
                    f,
                    "   or by hand: `openvpn --cd /etc/openvpn/client --config {}`.",
                    c.file_name()
                )?;
                if c.assignment.as_subnet().is_some() {
                    writeln!(f)?;
                    writeln!(
                        f,
                        "The scripts {id}.up and {id}.down turn IPv6 forwarding on (and off"
                    )?;
                    writeln!(
                        f,
                        "again) and give your LAN interface ({}) the router address.",
                        c.lan_interface
                    )?;
                    writeln!(
                        f,
                        "To use another interface, set {LAN_INTERFACE_ENV} for the scripts: add"
                    )?;
                    writeln!(
                        f,
                        "`setenv {LAN_INTERFACE_ENV} lan0` to {} (or pass `--setenv {LAN_INTERFACE_ENV} lan0`;",
                        c.file_name()
                    )?;
                    writeln!(f, "OpenVPN does not hand its own environment to scripts).")?;
                    writeln!(
                        f,
                        "Without that interface the tunnel still comes up for this host alone;"
                    )?;
                    writeln!(f, "the up script then logs that the LAN got no prefix.")?;
                }
            }
            ClientOs::Windows => {
                writeln!(
                    f,
                    "1. Install OpenVPN for Windows 2.6 or later (https://openvpn.net/community-downloads/)."
                )?;
                writeln!(
                    f,
                    "2. Copy {} to C:\\Program Files\\OpenVPN\\config\\",
                    c.file_name()
                )?;
                if c.material.key.is_none() {
                    writeln!(
                        f,
                        "   together with your own private key as {}.",
                        c.key_file_name()
                    )?;
                }
                writeln!(f, "3. Start OpenVPN GUI and connect \"{id}\".")?;
                if let Some(s) = c.assignment.as_subnet() {
                    writeln!(f)?;
                    writeln!(
                        f,
                        "To route your network, enable forwarding and set the router address"
                    )?;
                    writeln!(
                        f,
                        "on your LAN adapter (an administrator prompt; \"LAN\" is its name):"
                    )?;
                    writeln!(
                        f,
                        "  netsh interface ipv6 set interface \"LAN\" forwarding=enabled advertise=enabled"
                    )?;
                    writeln!(
                        f,
                        "  netsh interface ipv6 add address \"LAN\" {}/64",
                        s.lan_address()
                    )?;
                    writeln!(
                        f,
                        "  netsh interface ipv6 set interface \"OpenVPN\" forwarding=enabled"
                    )?;
                }
            }
        }
        Ok(())
    }
}
