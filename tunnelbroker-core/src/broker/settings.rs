//! The broker's settings: a commented TOML file in the broker directory.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::openvpn::Endpoint;
pub use crate::words::{ServerMode, TlsCryptVersion};

use crate::error::{Error, Result, shown};
use crate::pki::{KeyType, Subject};
use crate::plan::Pool;
use crate::store::DatabaseUrl;

/// Validity periods, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValiditySettings {
    /// The CA certificate (default 3650).
    pub ca_days: u32,
    /// Server certificates (default 730).
    pub server_days: u32,
    /// Client certificates (default 365).
    pub client_days: u32,
    /// The CRL's nextUpdate (default 30).
    pub crl_days: u32,
}

impl Default for ValiditySettings {
    fn default() -> Self {
        ValiditySettings {
            ca_days: 3650,
            server_days: 730,
            client_days: 365,
            crl_days: 30,
        }
    }
}

/// How long session records are kept (section `[sessions]`, shared).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SessionSettings {
    /// Days a session (and a past assignment) is kept after it ended
    /// (default 400); the agent prunes older ones.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
}

fn default_retention_days() -> u32 {
    400
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            retention_days: default_retention_days(),
        }
    }
}

/// Where the server side runs, as `server render` last recorded it
/// (section `[server]`). Every CRL the broker signs is also written to
/// `dir/crl.pem`, and revocation ends live sessions through the management
/// sockets in `run_dir`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServerSettings {
    /// The rendered server directory (absolute); `None` before the first
    /// rendering.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// The run directory of the management sockets (absolute); `None`:
    /// `/run/openvpn-server`.
    #[serde(default)]
    pub run_dir: Option<PathBuf>,
}

impl ServerSettings {
    /// What `server render` last recorded in the settings file of the
    /// broker at `paths`, read now (a rendering by another process counts).
    pub(crate) fn recorded(paths: &super::BrokerPaths) -> Result<ServerSettings> {
        let text = crate::fsutil::read_to_string(&paths.settings)?;
        Ok(Settings::from_toml(&text)?.server)
    }
}

/// Where this host finds the client database (section `[database]`): a
/// host-local setting, which every host of one broker sets to the same
/// database.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DatabaseSettings {
    /// A PostgreSQL database (never with a password); `None`: SQLite
    /// `clients.db` in the broker directory.
    #[serde(default)]
    pub url: Option<DatabaseUrl>,
}

/// The broker's settings (`tunnelbroker.toml`).
///
/// Most of them are shared: every host of a broker must agree on them, so
/// the client database holds them ([`Broker::open`](crate::Broker::open)
/// reads them from there, and the file is a cache). The sections
/// `[server]` and `[database]` are this host's own.
///
/// ```
/// use tunnelbroker_core::Settings;
/// use tunnelbroker_core::broker::ServerMode;
/// let s = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
/// assert_eq!(s.mode, ServerMode::PerClient);
/// assert_eq!(s.port, 5000);
/// let text = s.to_toml();
/// assert_eq!(Settings::from_toml(&text)?, s);
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Settings {
    /// The IPv6 pool.
    pub pool: Pool,
    /// The host clients connect to.
    pub endpoint: Endpoint,
    /// Per-client or shared server.
    pub mode: ServerMode,
    /// The shared server's UDP port, or the first port of per-client instances.
    pub port: u16,
    /// Key algorithm for new keys.
    pub key_type: KeyType,
    /// The LAN interface of subnet clients.
    pub lan_interface: String,
    /// The CA's subject.
    pub subject: Subject,
    /// Validity periods.
    pub validity: ValiditySettings,
    /// The control channel protection: `v2` (a key per client) for new
    /// brokers; absent in the settings of brokers made before it, which
    /// keep `v1` (one shared `tls-crypt` key) until they are moved.
    #[serde(default)]
    pub tls_crypt: TlsCryptVersion,
    /// How long session records are kept.
    #[serde(default)]
    pub sessions: SessionSettings,
    /// Where the server side was rendered (recorded by `server render`).
    #[serde(default)]
    pub server: ServerSettings,
    /// Where the client database is (this host's own setting).
    #[serde(default)]
    pub database: DatabaseSettings,
}

impl Settings {
    /// Settings with the defaults for everything but pool and endpoint.
    pub fn new(pool: Pool, endpoint: Endpoint) -> Self {
        Settings {
            pool,
            endpoint,
            mode: ServerMode::default(),
            port: 5000,
            key_type: KeyType::default(),
            lan_interface: "eth0".into(),
            subject: Subject::default(),
            validity: ValiditySettings::default(),
            tls_crypt: TlsCryptVersion::V2,
            sessions: SessionSettings::default(),
            server: ServerSettings::default(),
            database: DatabaseSettings::default(),
        }
    }

    /// Checks the fields that the type system does not.
    pub fn validate(&self) -> Result<()> {
        crate::openvpn::InterfaceName::new(&self.lan_interface)?;
        if self.port == 0 {
            return Err(Error::InvalidField {
                field: "port",
                input: "0".into(),
                reason: "a UDP port is 1 to 65535".into(),
            });
        }
        let v = &self.validity;
        for (field, days) in [
            ("validity.ca_days", v.ca_days),
            ("validity.server_days", v.server_days),
            ("validity.client_days", v.client_days),
            ("validity.crl_days", v.crl_days),
        ] {
            crate::pki::check_days(field, days)?;
        }
        self.subject.validate()?;
        if !(1..=36_500).contains(&self.sessions.retention_days) {
            return Err(Error::InvalidField {
                field: "sessions.retention_days",
                input: self.sessions.retention_days.to_string(),
                reason: "days to keep sessions, 1 to 36500".into(),
            });
        }
        for (field, dir) in [
            ("server.dir", &self.server.dir),
            ("server.run_dir", &self.server.run_dir),
        ] {
            match dir {
                Some(d) if !d.is_absolute() || d.to_str().is_none() => {
                    return Err(Error::InvalidField {
                        field,
                        input: shown(&d.to_string_lossy()),
                        reason: "an absolute path, as `server render` records it".into(),
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Parses and checks the TOML text.
    pub fn from_toml(text: &str) -> Result<Self> {
        let s: Settings = toml::from_str(text).map_err(|e| Error::InvalidSettings {
            reason: crate::error::one_line(e.message()),
        })?;
        s.validate()?;
        Ok(s)
    }

    /// The settings as commented TOML.
    pub fn to_toml(&self) -> String {
        let q = |v: &str| toml_string(v);
        let opt = |key: &str, v: &Option<String>| match v {
            Some(v) => format!("{key} = {}\n", q(v)),
            None => format!("# {key} = \"\"\n"),
        };
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned());
        let s = &self.subject;
        let v = &self.validity;
        format!(
            "# tunnelbroker settings. Everything above [server] is shared by every host of\n\
             # this broker and kept in the client database: this file is a copy of it, and\n\
             # tunnelbroker writes it again from the database when they differ.\n\
             \n\
             # The IPv6 pool clients get their assignments from (/48 to /62).\n\
             pool = {pool}\n\
             # Host name or address that clients connect to.\n\
             endpoint = {endpoint}\n\
             # \"per-client\": one OpenVPN instance per client, each on its own UDP port;\n\
             # \"shared\": one OpenVPN server for all clients (client-config-dir).\n\
             mode = {mode}\n\
             # UDP port of the shared server, or the first port of per-client instances.\n\
             port = {port}\n\
             # Key algorithm for new keys: p256, p384, ed25519, rsa2048, rsa3072, rsa4096.\n\
             key_type = {key_type}\n\
             # LAN interface on which subnet clients put PREFIX::1/64.\n\
             lan_interface = {lan}\n\
             # Control channel keys: \"v2\", a tls-crypt-v2 key per client, checked before\n\
             # TLS (clients need version 2.5 or later); \"v1\", one tls-crypt key in every\n\
             # bundle. Move a v1 broker with `tunnelbroker server tls-crypt-v2 migrate`.\n\
             tls_crypt = {tls_crypt}\n\
             \n\
             # Subject of the CA certificate.\n\
             [subject]\n\
             {country}{org}{unit}common_name = {cn}\n\
             \n\
             # Validity periods in days; crl_days is how far ahead a CRL's nextUpdate lies.\n\
             [validity]\n\
             ca_days = {ca}\n\
             server_days = {server}\n\
             client_days = {client}\n\
             crl_days = {crl}\n\
             \n\
             # Days a session record (who was connected, from where, with which\n\
             # addresses) and a past assignment are kept after they ended; the agent\n\
             # prunes older ones.\n\
             [sessions]\n\
             retention_days = {retention}\n\
             \n\
             # Where `tunnelbroker server render` wrote the server side (dir) and where the\n\
             # management sockets are (run_dir); rendering records them. Every new CRL is\n\
             # also written to dir/crl.pem, and a revocation ends the live session there.\n\
             [server]\n\
             {server_dir}{run_dir}\
             \n\
             # Where this host finds the client database. Without a url: SQLite, clients.db\n\
             # in this directory (one host). With one, a PostgreSQL database that every\n\
             # provisioning host of this broker names, \"postgresql://USER@HOST[:PORT]/DB\",\n\
             # never with a password: libpq's PGPASSWORD or passfile (~/.pgpass) give it.\n\
             # The settings above are shared: the database holds them and this file is a\n\
             # cache of them; [server] and [database] are this host's own.\n\
             [database]\n\
             {database_url}",
            pool = q(&self.pool.to_string()),
            endpoint = q(self.endpoint.as_str()),
            mode = q(&self.mode.to_string()),
            port = self.port,
            key_type = q(&self.key_type.to_string()),
            lan = q(&self.lan_interface),
            tls_crypt = q(&self.tls_crypt.to_string()),
            country = opt("country", &s.country),
            org = opt("organization", &s.organization),
            unit = opt("organizational_unit", &s.organizational_unit),
            cn = q(&s.common_name),
            ca = v.ca_days,
            server = v.server_days,
            client = v.client_days,
            crl = v.crl_days,
            retention = self.sessions.retention_days,
            server_dir = opt("dir", &path(&self.server.dir)),
            run_dir = opt("run_dir", &path(&self.server.run_dir)),
            database_url = match &self.database.url {
                Some(url) => format!("url = {}\n", q(url.as_str())),
                None => "# url = \"postgresql://tb@db.example.net/tunnelbroker\"\n".into(),
            },
        )
    }
}

/// A TOML basic string with everything escaped.
fn toml_string(v: &str) -> String {
    toml::Value::String(v.to_owned()).to_string()
}
