//! The command line, as clap derive types. Later commands add a variant to
//! [`Command`] and an `Args` struct here, and a module of their own.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The exit statuses, as `--help` states them (and README.md and the
/// operator guide).
pub const EXIT_STATUS: &str = "\
Exit status: 0 on success; 2 for bad input: a usage error, an invalid value, a file or
directory you named that cannot be used (missing, not a broker, not empty for init),
or a refusal caused by your input (an unknown client, an ID that exists); 1 for
everything else: failures of the system (I/O, database, no free assignment, output
that could not be written) and failing audit or doctor checks.";

/// Run an OpenVPN-based IPv6 tunnel broker: address plan, CA, client configs.
#[derive(Debug, Parser)]
#[command(name = "tunnelbroker", version, about, long_about = None, after_help = EXIT_STATUS)]
pub struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// The broker's directory (CA, client database, configs).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "TUNNELBROKER_DIR",
        default_value = "./broker"
    )]
    pub dir: PathBuf,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the address plan of a pool, or of one subnet of it.
    Plan(PlanArgs),
    /// Create a broker: settings, CA, server certificate, tls-crypt key, client database.
    Init(InitArgs),
    /// Subscribe and manage clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Sign a fresh CRL and write it (to the broker and the rendered server directory,
    /// and to -o FILE or stdout).
    Crl(CrlArgs),
    /// Check a client's tunnel setup on this machine: OpenVPN, kernel, certificates,
    /// addresses, routes. Read-only; sends one ping to the server.
    Doctor(DoctorArgs),
    /// Check that the broker's database, CA, CRL and files agree; --fix makes safe repairs.
    Audit(AuditArgs),
    /// The OpenVPN server side.
    #[command(subcommand)]
    Server(ServerCommand),
    /// The client database: which one, and moving a one-host broker to PostgreSQL.
    #[command(subcommand)]
    Db(DbCommand),
    /// Run the server host's agent: keeps the rendered OpenVPN files, CCD entries and
    /// CRL in step with the client database, ends the live sessions of revoked clients,
    /// records sessions and serves Prometheus metrics. Needs no CA key. Runs until
    /// SIGTERM or SIGINT (or one round with --once).
    Agent(AgentArgs),
    /// Who is connected now: every live session the servers' agents recorded, from
    /// where, since when, with which addresses and how much traffic. Works from any
    /// host on the broker's database.
    Status,
    /// Who had an IPv6 address: the client that held it (its /128, the /64 holding it,
    /// or the routing net of that /64) at a time, with its e-mail, name and sessions
    /// around then. Answers for past times after a purge or a reassignment, back to
    /// the retention (sessions.retention_days).
    Whois(WhoisArgs),
}

/// Arguments of `tunnelbroker whois`.
#[derive(Debug, Args)]
pub struct WhoisArgs {
    /// The IPv6 address, e.g. 2001:db8:0:f101::17.
    #[arg(value_name = "ADDRESS")]
    pub address: String,
    /// The time: RFC 3339 (2026-12-01T14:00:00Z, 2026-12-01T15:00:00+01:00) or
    /// "YYYY-MM-DD HH:MM[:SS]" in UTC [default: now].
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
}

/// `tunnelbroker agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The rendered server directory, as for `server render [NAME] -o` [default: the one
    /// the last render recorded, else <broker>/server; a server other than main needs
    /// one].
    #[arg(short, long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The run directory of the management sockets, as for `server render --run-dir`
    /// [default: the recorded one, else /run/openvpn-server].
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// The server this agent serves: its clients, certificate and sessions [default: the
    /// only server; needed once the broker has several].
    #[arg(long, value_name = "NAME")]
    pub server: Option<String>,
    /// How per-client instances are started and stopped: auto (systemctl when systemd
    /// runs this host), systemd, or report (only say what to start and stop).
    #[arg(long, value_name = "HOW", default_value = "auto", value_parser = ["auto", "systemd", "report"])]
    pub instances: String,
    /// How often to look for changes: 500ms, 1s, 2.5 (seconds); 10ms to 1h.
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = parse_interval)]
    pub interval: std::time::Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9725, [::]:9725).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// One round (reconcile, sessions), print what it did, and exit.
    #[arg(long)]
    pub once: bool,
}

/// `500ms`, `1s`, `2.5s`, `2.5` (seconds), `1m`, within 10 ms to one hour.
pub fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| "expected a duration such as 500ms, 1s or 2.5".to_owned())?;
    let secs = value * scale;
    if !(0.01..=3600.0).contains(&secs) {
        return Err("the interval must be between 10ms and 1h".to_owned());
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// `tunnelbroker db ...`.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Say which client database the broker uses (SQLite file or PostgreSQL URL) and
    /// what it holds.
    Status,
    /// Move the broker's clients from SQLite (clients.db) into a new, empty PostgreSQL
    /// database: everything is copied in one transaction and counted, then
    /// tunnelbroker.toml names the database; clients.db is kept as
    /// clients.db.migrated. Stop other provisioning on this broker first.
    Migrate {
        /// The PostgreSQL database, postgresql://USER@HOST[:PORT]/DB, without a password
        /// (PGPASSWORD or ~/.pgpass give it).
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

/// `tunnelbroker server ...`.
#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Write the OpenVPN server configurations, scripts, keys, a copy of the CRL and
    /// the systemd units that keep it fresh (Debian layout: NAME.conf for
    /// openvpn-server@NAME); unchanged files stay untouched, files of revoked clients
    /// are removed. Records the directory: later CRLs are copied there.
    Render {
        /// Render only this server's side (its clients, certificate and key), for its
        /// host; needs -o DIR unless it is main [default: main].
        #[arg(value_name = "NAME")]
        name: Option<String>,
        /// Output directory, e.g. /etc/openvpn/server [default: the one the last render
        /// recorded, else <broker>/server]. OpenVPN reads everything from here.
        #[arg(short, long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Replace files in DIR that this broker did not write (another
        /// server's ca.crt, ...) instead of refusing; never writes through
        /// a symbolic link.
        #[arg(long)]
        force: bool,
        /// Directory of the management sockets [default: the one the last render
        /// recorded, else /run/openvpn-server].
        #[arg(long, value_name = "DIR")]
        run_dir: Option<PathBuf>,
    },
    /// Issue the OpenVPN server a new certificate and key, re-render the
    /// rendered server files, and say which instances to restart.
    Renew {
        /// The server whose certificate to renew [default: main]; another server's
        /// is kept in the client database: render it again on its host.
        #[arg(value_name = "NAME")]
        name: Option<String>,
    },
    /// Add an OpenVPN server with its own endpoint, mode, port, pool and certificate.
    Add(ServerAddArgs),
    /// List the servers: endpoint, mode, port, pool, clients and free capacity.
    List,
    /// Remove a server that has no clients (never main).
    Remove {
        /// The server's name.
        name: String,
    },
    /// Set the broker's parent prefix (e.g. the institution's /48), from which
    /// `server add` without --pool takes the next free pool.
    Parent {
        /// The parent prefix; it must hold every server's pool.
        prefix: String,
    },
    /// Per-client control channel keys (tls-crypt-v2): move the broker to them, or back.
    #[command(name = "tls-crypt-v2", subcommand)]
    TlsCryptV2(TlsCryptV2Command),
}

/// `tunnelbroker server tls-crypt-v2 ...`.
#[derive(Debug, Subcommand)]
pub enum TlsCryptV2Command {
    /// Move the broker to tls-crypt-v2 (a key per client, checked before TLS; OpenVPN
    /// 2.5+): makes the server key if there is none and records the setting. Then
    /// render the server side, restart it, and give every client a new bundle: one
    /// server accepts v1 or v2 clients, never both (docs/openvpn.md).
    Migrate,
    /// Go back to tls-crypt v1 (one key in every bundle), for clients older than
    /// OpenVPN 2.5; then render, restart, and give every client a new bundle.
    Revert,
}

/// Arguments of `tunnelbroker server add`.
#[derive(Debug, Args)]
pub struct ServerAddArgs {
    /// The server's name: 1 to 32 ASCII letters, digits, '.', '-', '_'.
    pub name: String,
    /// Host name or address that its clients connect to.
    #[arg(long, value_name = "HOST")]
    pub endpoint: String,
    /// Its pool (/48 to /62), which may not overlap another server's [default: the
    /// next free one of --pool-length in the parent prefix].
    #[arg(long, value_name = "PREFIX")]
    pub pool: Option<String>,
    /// The length of a pool taken from the parent prefix [default: 56].
    #[arg(long, value_name = "LEN", conflicts_with = "pool")]
    pub pool_length: Option<u8>,
    /// Server mode: per-client (default) or shared.
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// UDP port of a shared server, or the first port of per-client instances
    /// [default: main's; for a shared server, the next one free on its host].
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
}

/// Arguments of `tunnelbroker init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The IPv6 pool clients get their assignments from (/48 to /62), e.g. 2001:db8:0:f100::/56.
    #[arg(long, value_name = "PREFIX")]
    pub pool: String,
    /// Host name or address that clients connect to.
    #[arg(long, value_name = "HOST")]
    pub endpoint: String,
    /// Server mode: per-client (one OpenVPN instance per client) or shared (one server).
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// Control channel keys: v2 (default; a tls-crypt-v2 key per client, OpenVPN 2.5+)
    /// or v1 (one tls-crypt key in every bundle, for older clients).
    #[arg(long, value_name = "VERSION")]
    pub tls_crypt: Option<String>,
    /// UDP port of the shared server, or the first port of per-client instances [default: 5000].
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Key algorithm of new keys (the CA made, server, clients): p256 (default), p384, ed25519, rsa2048, rsa3072, rsa4096.
    #[arg(long, value_name = "TYPE")]
    pub key_type: Option<String>,
    /// LAN interface of subnet clients [default: eth0].
    #[arg(long, value_name = "IFACE")]
    pub lan_interface: Option<String>,
    /// Use this existing CA (PEM) instead of making one; needs --ca-key. An intermediate CA: the CA, then its issuers up to the root.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// The key (PEM) of --ca-cert.
    #[arg(long, value_name = "FILE")]
    pub ca_key: Option<PathBuf>,
    /// CA subject: two-letter country code (not with --ca-cert).
    #[arg(long, value_name = "CC")]
    pub country: Option<String>,
    /// CA subject: organisation [default: tunnelbroker] (not with --ca-cert).
    #[arg(long, value_name = "NAME")]
    pub organization: Option<String>,
    /// CA subject: organisational unit (not with --ca-cert).
    #[arg(long, value_name = "NAME")]
    pub unit: Option<String>,
    /// CA subject: common name [default: tunnelbroker CA] (not with --ca-cert).
    #[arg(long, value_name = "NAME")]
    pub ca_name: Option<String>,
    /// Keep the clients in this new, empty PostgreSQL database,
    /// postgresql://USER@HOST[:PORT]/DB, instead of SQLite in DIR (for several
    /// provisioning hosts). Never with a password: PGPASSWORD or ~/.pgpass give it.
    #[arg(
        long,
        value_name = "URL",
        env = "TUNNELBROKER_DATABASE",
        hide_env_values = true
    )]
    pub database: Option<String>,
    /// The broker's parent prefix (e.g. the institution's /48), which holds --pool:
    /// `server add` without --pool takes the next free pool from it.
    #[arg(long, value_name = "PREFIX")]
    pub parent: Option<String>,
}

/// `tunnelbroker client ...`.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Subscribe a client: assignment, certificate and record, all or nothing.
    Add(ClientAddArgs),
    /// List every client.
    List,
    /// Show one client.
    Show {
        /// The client's ID.
        id: String,
    },
    /// Revoke a client's certificate (its assignment stays reserved until purge).
    Revoke {
        /// The client's ID.
        id: String,
        /// unspecified, key-compromise, affiliation-changed, superseded, cessation-of-operation.
        #[arg(long, value_name = "REASON")]
        reason: Option<String>,
    },
    /// Give a client a new key and certificate; assignment and port stay.
    Renew {
        /// The client's ID.
        id: String,
        /// Sign this new request (PEM) of a client that makes its own keys.
        #[arg(long, value_name = "FILE")]
        csr: Option<PathBuf>,
    },
    /// Remove a revoked client and free its assignment.
    Purge {
        /// The client's ID.
        id: String,
    },
    /// Write a client's bundle: its OpenVPN configuration, scripts and README
    /// (.tar.gz for Linux, .zip for Windows).
    Bundle {
        /// The client's ID.
        id: String,
        /// The archive to write, or a directory to write <id>.tar.gz or
        /// <id>.zip into [default: ./<id>.tar.gz or ./<id>.zip].
        #[arg(short, long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Move a client to another server: a new assignment from its pool (and a port),
    /// printed old and new, and a new bundle.
    Move {
        /// The client's ID.
        id: String,
        /// The server to move it to.
        #[arg(long, value_name = "NAME")]
        server: String,
        /// Where to write the new bundle (a file, or a directory) [default: ./<id>.tar.gz
        /// or ./<id>.zip].
        #[arg(short, long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Subscribe many clients from a CSV file: id,kind,os,email,name[,prefix].
    Import {
        /// The CSV file.
        file: PathBuf,
    },
}

/// Arguments of `tunnelbroker client add`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("kind").required(true).args(["hermit", "subnet"])))]
pub struct ClientAddArgs {
    /// The client's ID: letters, digits, '.', '-', '_' (also its certificate's CN).
    pub id: String,
    /// A lone host: one /128 from the hermit /64.
    #[arg(long)]
    pub hermit: bool,
    /// A router for a LAN: a routed /64 and its routing /112.
    #[arg(long)]
    pub subnet: bool,
    /// The client's OS: linux (default) or windows.
    #[arg(long, value_name = "OS")]
    pub os: Option<String>,
    /// Contact e-mail.
    #[arg(long, value_name = "EMAIL")]
    pub email: Option<String>,
    /// Contact name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// A specific assignment instead of the lowest free one (a /64, or an address for a hermit).
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Issue the certificate for this request (PEM) made by the client; no key is kept.
    #[arg(long, value_name = "FILE")]
    pub csr: Option<PathBuf>,
    /// The server it belongs to [default: the only one, else the one whose pool holds
    /// --prefix, else the one with the most free assignments of its kind].
    #[arg(long, value_name = "NAME")]
    pub server: Option<String>,
}

/// Arguments of `tunnelbroker crl`.
#[derive(Debug, Args)]
pub struct CrlArgs {
    /// Also write the CRL to this file.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Arguments of `tunnelbroker doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The client's OpenVPN configuration (the .conf or .ovpn of its extracted bundle).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The LAN interface of a subnet client [default: from the configuration, else eth0].
    #[arg(long, value_name = "IFACE")]
    pub lan: Option<String>,
    /// Do not ping the server's end of the tunnel.
    #[arg(long)]
    pub no_ping: bool,
}

/// Arguments of `tunnelbroker audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// List certificates that expire within this many days.
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub days: u32,
    /// Make the safe repairs (sign a fresh CRL, re-render server files) and say what was done.
    #[arg(long)]
    pub fix: bool,
    /// Where the rendered server files are (what `server render --out DIR` wrote) [default: <broker>/server].
    #[arg(long, value_name = "DIR")]
    pub server_dir: Option<PathBuf>,
}

/// Arguments of `tunnelbroker plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The pool: an IPv6 prefix of length /48 to /62, e.g. 2001:db8:0:f100::/56.
    #[arg(long, value_name = "PREFIX")]
    pub pool: String,

    /// Show this subnet /64 of the pool: its routing net, both ends and link-local addresses.
    #[arg(long, value_name = "SUBNET")]
    pub subnet: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
