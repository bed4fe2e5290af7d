//! Several OpenVPN servers in one broker (issue 13, DESIGN §7).
//!
//! A broker has one CA, one client database and named servers. Each server
//! has its own endpoint, mode, port and pool, a slice of the broker's
//! address space laid out by the address plan on its own, and its own
//! certificate, whose name its clients' bundles check
//! (`verify-x509-name`), so that a bundle for one server is refused by
//! another. A client belongs to one server.
//!
//! Every broker has the server `main`: `init` makes it from its own pool,
//! endpoint, mode and port (the settings), and a broker made before
//! servers existed gets it from its settings when it is opened. `main`
//! keeps the broker's `server.crt`; every other server's certificate and
//! key are kept in the client database, so that any host of the broker can
//! render that server's files.

use std::path::PathBuf;

use ipnet::Ipv6Net;
use serde::Serialize;
use time::OffsetDateTime;

use super::allocation::Taken;
use super::lifecycle::{load_client, require_state};
use super::{
    Broker, Client, ClientState, Endpoint, RenderOptions, RenderReport, SERVER_CN, ServerMode,
    ServerRenewal, ServerSettings,
};
use crate::client_id::ClientId;
use crate::error::{Error, Result, shown};
use crate::openvpn::ServerNames;
use crate::plan::{ClientKind, Pool};
use crate::store::{MAIN_SERVER, ServerRecord, Transaction};

/// The shared value that holds the broker's parent prefix, if it has one.
const PARENT: &str = "servers.parent";

/// The length of a pool taken from the parent prefix when none is given.
pub const DEFAULT_POOL_LENGTH: u8 = 56;

/// Checks a server name: 1 to 32 ASCII letters, digits, `.`, `-` and `_`,
/// starting with a letter or digit (it names a certificate, files and
/// systemd units).
///
/// ```
/// use tunnelbroker_core::broker::validate_server_name;
/// assert!(validate_server_name("vpn-2.example").is_ok());
/// for bad in ["", "../etc", "a b", "a;rm", "-x", "ä", &"x".repeat(33)] {
///     assert!(validate_server_name(bad).is_err(), "{bad}");
/// }
/// ```
pub fn validate_server_name(name: &str) -> Result<()> {
    crate::openvpn::check_server_name(name)
}

/// The names of server `name`'s files on its host ([`ServerNames`]):
/// `main` keeps the names it always had (`tb-shared`, `ccd/`,
/// `server.crt`, ...), every other server's carry its name
/// (`tb-shared-NAME`, `ccd-NAME/`, `server-NAME.crt`, ...). The one
/// function to ask for a server's instance name, CCD directory or socket.
///
/// ```
/// use tunnelbroker_core::broker::server_names;
/// assert_eq!(server_names("main")?.shared_instance(), "tb-shared");
/// assert_eq!(server_names("b")?.shared_instance(), "tb-shared-b");
/// assert!(server_names("../b").is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
pub fn server_names(name: &str) -> Result<ServerNames> {
    if name == MAIN_SERVER {
        Ok(ServerNames::main())
    } else {
        ServerNames::named(name)
    }
}

/// The common name of server `name`'s certificate, which its clients'
/// bundles check: `tunnelbroker-server` for `main` (the broker's
/// `server.crt`), `tunnelbroker-server-NAME` for every other.
///
/// ```
/// use tunnelbroker_core::broker::server_common_name;
/// assert_eq!(server_common_name("main"), "tunnelbroker-server");
/// assert_eq!(server_common_name("b"), "tunnelbroker-server-b");
/// ```
pub fn server_common_name(name: &str) -> String {
    if name == MAIN_SERVER {
        SERVER_CN.to_owned()
    } else {
        format!("{SERVER_CN}-{name}")
    }
}

/// One OpenVPN server of the broker, as [`Broker::servers`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Server {
    /// Its name.
    pub name: String,
    /// The host its clients connect to.
    pub endpoint: Endpoint,
    /// Per-client or shared.
    pub mode: ServerMode,
    /// The shared server's UDP port, or the first port of its per-client instances.
    pub port: u16,
    /// Its pool.
    pub pool: Pool,
    /// The common name of its certificate, which its clients' bundles check.
    pub certificate_name: String,
    /// How many clients it has (active and revoked).
    pub clients: u64,
    /// Free subnet /64s in its pool.
    pub subnets_free: u64,
    /// Free hermit addresses in its pool.
    pub hermits_free: u64,
}

/// A request to add a server ([`Broker::add_server`]).
///
/// ```
/// use tunnelbroker_core::broker::{NewServer, ServerMode};
/// let s = NewServer::new("b", "vpn-b.example.net".parse()?);
/// assert_eq!(s.mode, ServerMode::PerClient);
/// assert_eq!((s.port, s.pool, s.pool_length), (None, None, None));
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewServer {
    /// Its name (see [`validate_server_name`]).
    pub name: String,
    /// The host its clients connect to.
    pub endpoint: Endpoint,
    /// Per-client (default) or shared.
    pub mode: ServerMode,
    /// The shared server's UDP port, or the first port of its per-client
    /// instances; `None`: the broker's (`main`'s), or for a shared server
    /// on a host whose shared servers use it, the next one they do not.
    pub port: Option<u16>,
    /// Its pool; `None`: the next free one of `pool_length` in the
    /// broker's parent prefix.
    pub pool: Option<Pool>,
    /// The length of a pool taken from the parent prefix (default /56).
    pub pool_length: Option<u8>,
}

impl NewServer {
    /// A per-client server named `name` at `endpoint`, with the default
    /// port and a pool from the parent prefix.
    pub fn new(name: &str, endpoint: Endpoint) -> Self {
        NewServer {
            name: name.to_owned(),
            endpoint,
            mode: ServerMode::default(),
            port: None,
            pool: None,
            pool_length: None,
        }
    }
}

/// What [`Broker::move_client`] did: the client before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ClientMove {
    /// The client on its old server.
    pub before: Client,
    /// The client on its new server, with its new assignment and port.
    pub after: Client,
}

impl Broker {
    /// The row of `main` as the settings describe it.
    pub(super) fn main_record(&self) -> ServerRecord {
        ServerRecord {
            name: MAIN_SERVER.to_owned(),
            endpoint: self.settings.endpoint.to_string(),
            mode: self.settings.mode,
            port: self.settings.port,
            pool: self.settings.pool,
            cert_pem: None,
            key_pem: None,
            created_at: OffsetDateTime::now_utc(),
        }
    }

    /// Every server's row, `main` from the settings while it has none.
    pub(super) fn servers_in(&self, tx: &mut dyn Transaction) -> Result<Vec<ServerRecord>> {
        let mut rows = tx.servers()?;
        if !rows.iter().any(|s| s.name == MAIN_SERVER) {
            rows.push(self.main_record());
            rows.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(rows)
    }

    /// What `tx` holds of every server's plan and of the ports.
    pub(super) fn taken(&self, tx: &mut dyn Transaction) -> Result<Taken> {
        let servers = self.servers_in(tx)?;
        Taken::load(tx, servers)
    }

    /// Every server's row (for the audit).
    pub(crate) fn server_records(&self) -> Result<Vec<ServerRecord>> {
        self.store().read_with(|tx| self.servers_in(tx))
    }

    /// Writes the row of `main` from the settings if it has none (a broker
    /// made before servers existed; `init`).
    pub(super) fn ensure_main(&self) -> Result<()> {
        let has = |tx: &mut dyn Transaction| -> Result<bool> {
            Ok(tx.servers()?.iter().any(|s| s.name == MAIN_SERVER))
        };
        if self.store().read_with(has)? {
            return Ok(());
        }
        self.store().write_with(|tx| {
            if !has(tx)? {
                tx.insert_server(&self.main_record())?;
            }
            Ok(())
        })
    }

    /// The name of the server this broker renders for.
    pub(super) fn server_name(&self) -> &str {
        self.scope.as_ref().map_or(MAIN_SERVER, |s| s.name.as_str())
    }

    /// The names of this server's files on its host (`main`'s are the
    /// ones it always had).
    pub(crate) fn server_names(&self) -> Result<ServerNames> {
        server_names(self.server_name())
    }

    /// This broker as server `name` sees it: its endpoint, mode, port and
    /// pool in the settings, its certificate and key, its clients only.
    pub(crate) fn for_server(&self, name: &str) -> Result<Broker> {
        validate_server_name(name)?;
        let record = self
            .store()
            .read_with(|tx| self.servers_in(tx))?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::UnknownServer { name: shown(name) })?;
        let mut settings = self.settings.clone();
        if name != MAIN_SERVER {
            settings.endpoint = record.endpoint.parse()?;
            settings.mode = record.mode;
            settings.port = record.port;
            settings.pool = record.pool;
        }
        Ok(Broker {
            paths: self.paths.clone(),
            settings,
            ca: self.ca.clone(),
            store: self.store.clone(),
            scope: (name != MAIN_SERVER).then_some(record),
            dirs: self.dirs.clone(),
            warnings: Vec::new(),
        })
    }

    /// This broker with the directories an agent was told (`-o DIR`,
    /// `--run-dir`), which win over the recorded ones for rendering,
    /// management sockets and ending sessions; `None` keeps the recorded
    /// one.
    pub(crate) fn with_dirs(mut self, dir: Option<PathBuf>, run_dir: Option<PathBuf>) -> Broker {
        self.dirs = Some(ServerSettings { dir, run_dir });
        self
    }

    /// Every server, in name order, with its clients and free capacity.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// let servers = broker.servers()?;
    /// assert_eq!(servers.len(), 1);
    /// assert_eq!(servers[0].name, "main");
    /// assert_eq!(servers[0].pool.to_string(), "2001:db8:0:f100::/56");
    /// assert_eq!((servers[0].clients, servers[0].subnets_free), (0, 254));
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn servers(&self) -> Result<Vec<Server>> {
        self.store().read_with(|tx| {
            let taken = self.taken(tx)?;
            taken
                .servers()
                .iter()
                .map(|s| {
                    Ok(Server {
                        name: s.name.clone(),
                        endpoint: s.endpoint.parse()?,
                        mode: s.mode,
                        port: s.port,
                        pool: s.pool,
                        certificate_name: server_common_name(&s.name),
                        clients: taken.used(&s.name),
                        subnets_free: taken.free(&s.name, ClientKind::Subnet),
                        hermits_free: taken.free(&s.name, ClientKind::Hermit),
                    })
                })
                .collect()
        })
    }

    /// One server.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::ErrorKind;
    /// assert_eq!(broker.server("main")?.certificate_name, "tunnelbroker-server");
    /// assert_eq!(broker.server("nope").unwrap_err().kind(), ErrorKind::NotFound);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn server(&self, name: &str) -> Result<Server> {
        validate_server_name(name)?;
        self.servers()?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::UnknownServer { name: shown(name) })
    }

    /// The broker's parent prefix (the institution's space that server
    /// pools are taken from), if it has one.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// assert_eq!(broker.parent_prefix()?, None);
    /// broker.set_parent_prefix("2001:db8::/48".parse().unwrap())?;
    /// assert_eq!(broker.parent_prefix()?, Some("2001:db8::/48".parse().unwrap()));
    /// // One that does not hold every server's pool is refused.
    /// assert!(broker.set_parent_prefix("2001:db8:1::/48".parse().unwrap()).is_err());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn parent_prefix(&self) -> Result<Option<Ipv6Net>> {
        self.store().read_with(read_parent)
    }

    /// Sets the broker's parent prefix: an IPv6 prefix of length 16 to 62
    /// with its host bits zero that holds every server's pool.
    pub fn set_parent_prefix(&self, parent: Ipv6Net) -> Result<()> {
        check_parent(parent)?;
        self.store().write_with(|tx| {
            for s in self.servers_in(tx)? {
                if !parent.contains(&s.pool.net()) {
                    return Err(Error::OutsideParent {
                        pool: s.pool.net(),
                        parent,
                    });
                }
            }
            tx.set_shared(PARENT, &parent.to_string())
        })
    }

    /// Adds a server: checks its name, that its pool overlaps no other
    /// server's and lies in the parent prefix (if the broker has one), and
    /// that a shared server's port is not another's on the same host;
    /// without a pool, takes the next free one of `pool_length` (default
    /// /56) from the parent prefix. Issues its certificate (CN
    /// `tunnelbroker-server-NAME`) and records it, in one transaction.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::broker::NewServer;
    /// use tunnelbroker_core::{ClientKind, ErrorKind, NewClient};
    /// let mut b = NewServer::new("b", "vpn-b.example.net".parse()?);
    /// b.pool = Some("2001:db8:0:f200::/56".parse()?);
    /// let server = broker.add_server(&b)?;
    /// assert_eq!(server.certificate_name, "tunnelbroker-server-b");
    ///
    /// // A client placed on it gets its assignment from its pool.
    /// let mut req = NewClient::new("alice".parse()?, ClientKind::Subnet);
    /// req.server = Some("b".into());
    /// let alice = broker.add_client(&req)?;
    /// assert_eq!((alice.server.as_str(), alice.assignment.to_string()), ("b", "2001:db8:0:f201::/64".into()));
    ///
    /// // Overlapping pools are refused; without a parent prefix a pool is needed.
    /// b.name = "c".into();
    /// b.pool = Some("2001:db8:0:f200::/60".parse()?);
    /// assert_eq!(broker.add_server(&b).unwrap_err().kind(), ErrorKind::InvalidInput);
    /// b.pool = None;
    /// assert_eq!(broker.add_server(&b).unwrap_err().kind(), ErrorKind::InvalidInput);
    /// broker.set_parent_prefix("2001:db8::/48".parse().unwrap())?;
    /// assert_eq!(broker.add_server(&b)?.pool.to_string(), "2001:db8::/56");
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn add_server(&self, new: &NewServer) -> Result<Server> {
        validate_server_name(&new.name)?;
        if new.port == Some(0) {
            return Err(Error::InvalidField {
                field: "port",
                input: "0".into(),
                reason: "a UDP port is 1 to 65535".into(),
            });
        }
        if let Some(len) = new.pool_length
            && !(Pool::MIN_LEN..=Pool::MAX_LEN).contains(&len)
        {
            return Err(Error::InvalidField {
                field: "pool length",
                input: len.to_string(),
                reason: format!("a pool is /{} to /{}", Pool::MIN_LEN, Pool::MAX_LEN),
            });
        }
        let days = self.settings.validity.server_days;
        let issued =
            self.ca
                .issue_server(&server_common_name(&new.name), self.settings.key_type, days)?;
        self.store().write_with(|tx| {
            let servers = self.servers_in(tx)?;
            if servers.iter().any(|s| s.name == new.name) {
                return Err(Error::ServerExists {
                    name: new.name.clone(),
                });
            }
            let parent = read_parent(tx)?;
            let pool = match new.pool {
                Some(pool) => {
                    if let Some(parent) = parent
                        && !parent.contains(&pool.net())
                    {
                        return Err(Error::OutsideParent {
                            pool: pool.net(),
                            parent,
                        });
                    }
                    if let Some(s) = servers.iter().find(|s| overlap(s.pool.net(), pool.net())) {
                        return Err(Error::PoolsOverlap {
                            pool: pool.net(),
                            server: Some(s.name.clone()),
                        });
                    }
                    pool
                }
                None => next_free_pool(parent, new.pool_length, &servers)?,
            };
            let endpoint = new.endpoint.to_string();
            let port = match new.port {
                Some(p) => {
                    if new.mode == ServerMode::Shared {
                        check_shared_port(tx, &servers, &endpoint, p)?;
                    }
                    p
                }
                None if new.mode == ServerMode::Shared => {
                    let mut p = self.settings.port;
                    while check_shared_port(tx, &servers, &endpoint, p).is_err() {
                        p = p.checked_add(1).ok_or(Error::PortsExhausted {
                            first: self.settings.port,
                        })?;
                    }
                    p
                }
                None => self.settings.port,
            };
            tx.insert_server(&ServerRecord {
                name: new.name.clone(),
                endpoint,
                mode: new.mode,
                port,
                pool,
                cert_pem: Some(issued.certificate.pem().to_owned()),
                key_pem: Some(issued.key.to_pem().to_owned()),
                created_at: OffsetDateTime::now_utc(),
            })?;
            // The saved allocation state names every server: the next
            // writer rebuilds it.
            tx.set_plan_state(None)
        })?;
        self.server(&new.name)
    }

    /// Removes a server that has no clients (revoked ones count: purge
    /// them first). `main`, which the settings describe, is never removed.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::broker::NewServer;
    /// use tunnelbroker_core::{ClientKind, ErrorKind, NewClient};
    /// let mut b = NewServer::new("b", "vpn-b.example.net".parse()?);
    /// b.pool = Some("2001:db8:0:f200::/56".parse()?);
    /// broker.add_server(&b)?;
    /// let mut req = NewClient::new("alice".parse()?, ClientKind::Hermit);
    /// req.server = Some("b".into());
    /// broker.add_client(&req)?;
    /// assert_eq!(broker.remove_server("b").unwrap_err().kind(), ErrorKind::InvalidInput);
    /// assert_eq!(broker.remove_server("main").unwrap_err().kind(), ErrorKind::InvalidInput);
    /// broker.move_client(&"alice".parse()?, "main")?;
    /// broker.remove_server("b")?;
    /// assert_eq!(broker.servers()?.len(), 1);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn remove_server(&self, name: &str) -> Result<Server> {
        let server = self.server(name)?;
        if name == MAIN_SERVER {
            return Err(Error::ServerInUse {
                name: name.into(),
                reason: "main is the server the broker's settings describe".into(),
            });
        }
        self.store().write_with(|tx| {
            let n = tx.clients()?.iter().filter(|c| c.server == name).count();
            if n > 0 {
                return Err(Error::ServerInUse {
                    name: name.into(),
                    reason: format!(
                        "it has {n} client(s); move them (client move) or revoke and purge them first"
                    ),
                });
            }
            tx.delete_server(name)?;
            tx.set_plan_state(None)
        })?;
        Ok(server)
    }

    /// Moves a client to another server: a new assignment from that
    /// server's pool (and a port, for a per-client server), in one
    /// transaction; the old assignment is freed. Its certificate stays;
    /// its next bundle names the new server. Only an active client moves.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::broker::NewServer;
    /// use tunnelbroker_core::{ClientKind, ErrorKind, NewClient};
    /// let mut b = NewServer::new("b", "vpn-b.example.net".parse()?);
    /// b.pool = Some("2001:db8:0:f200::/56".parse()?);
    /// broker.add_server(&b)?;
    /// let alice = broker.add_client(&NewClient::new("alice".parse()?, ClientKind::Subnet))?;
    /// let moved = broker.move_client(&alice.id, "b")?;
    /// assert_eq!(moved.before.assignment.to_string(), "2001:db8:0:f101::/64");
    /// assert_eq!(moved.after.assignment.to_string(), "2001:db8:0:f201::/64");
    /// assert_eq!(broker.client(&alice.id)?.server, "b");
    /// assert_eq!(broker.move_client(&alice.id, "b").unwrap_err().kind(), ErrorKind::InvalidInput);
    /// assert_eq!(broker.move_client(&alice.id, "zz").unwrap_err().kind(), ErrorKind::NotFound);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn move_client(&self, id: &ClientId, server: &str) -> Result<ClientMove> {
        validate_server_name(server)?;
        self.store().write_with(|tx| {
            let before = load_client(tx, id)?;
            require_state(&before, ClientState::Active, "move")?;
            let mut taken = self.taken(tx)?;
            taken.server(server)?;
            if before.server == server {
                return Err(Error::InvalidField {
                    field: "server",
                    input: shown(server),
                    reason: format!("client {id} is on that server already"),
                });
            }
            // The saved allocation state may be stale (written by an older
            // version, or by a host whose write was lost): then it does not
            // hold the client, or calls a taken prefix free. Rebuild it from
            // the rows, inside this transaction, and try once more.
            let mut rebuilt = false;
            let assignment = loop {
                if taken.release(&before.server, &before.assignment, before.port) {
                    let assignment = taken.plan(server)?.allocate(before.kind)?;
                    if tx.prefix_owner(assignment.prefix())?.is_none() {
                        break assignment;
                    }
                }
                if rebuilt {
                    return Err(Error::Database {
                        reason: format!(
                            "the allocation state rebuilt from the rows does not hold client {id}; run `tunnelbroker audit` and report it"
                        ),
                    });
                }
                taken.start_over(tx)?;
                rebuilt = true;
            };
            let port = taken.per_client_port(server)?;
            if let Some(p) = port {
                taken.ports.insert(u64::from(p));
            }
            tx.move_client(id, server, &assignment, port)?;
            taken.save(tx)?;
            let after = load_client(tx, id)?;
            Ok(ClientMove { before, after })
        })
    }

    /// Issues server `name` a new certificate and key ([`renew_server`](Self::renew_server)
    /// for `main`). Another server's are kept in the client database:
    /// render it again on its host (`server render NAME`) and restart the
    /// instances named.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use tunnelbroker_core::broker::NewServer;
    /// let mut b = NewServer::new("b", "vpn-b.example.net".parse()?);
    /// b.pool = Some("2001:db8:0:f200::/56".parse()?);
    /// broker.add_server(&b)?;
    /// let done = broker.renew_server_named("b")?;
    /// assert_eq!(done.certificate.info().common_name, "tunnelbroker-server-b");
    /// assert!(done.previous_not_after.is_some());
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn renew_server_named(&self, name: &str) -> Result<ServerRenewal> {
        let view = self.for_server(name)?;
        if name == MAIN_SERVER {
            return self.renew_server();
        }
        let days = self.settings.validity.server_days;
        let previous_not_after = view.server_certificate().ok().map(|c| c.info().not_after);
        let issued =
            self.ca
                .issue_server(&server_common_name(name), self.settings.key_type, days)?;
        self.store().write_with(|tx| {
            tx.set_server_certificate(name, issued.certificate.pem(), issued.key.to_pem())
        })?;
        Ok(ServerRenewal {
            certificate: issued.certificate,
            previous_not_after,
            rendered: None,
            restart: view
                .instances()?
                .iter()
                .map(|i| format!("openvpn-server@{i}"))
                .collect(),
            warnings: self
                .ca
                .clamp_warning("server certificate", days)
                .into_iter()
                .collect(),
        })
    }

    /// Renders server `name`'s side, with only its clients, its
    /// certificate and key, into `options.dir` (which it needs: another
    /// server's files belong on its own host). `main` renders as
    /// [`render_server_with`](Self::render_server_with) does.
    ///
    /// ```
    /// # use tunnelbroker_core::{Broker, InitOptions, Settings};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let settings = Settings::new("2001:db8:0:f100::/56".parse()?, "vpn.example.net".parse()?);
    /// # let broker = Broker::init(&tmp.path().join("broker"), &InitOptions::new(settings))?;
    /// use std::os::unix::fs::PermissionsExt;
    /// use tunnelbroker_core::broker::{NewServer, RenderOptions};
    /// use tunnelbroker_core::{ClientKind, NewClient};
    /// let mut b = NewServer::new("b", "vpn-b.example.net".parse()?);
    /// b.pool = Some("2001:db8:0:f200::/56".parse()?);
    /// broker.add_server(&b)?;
    /// broker.add_client(&NewClient::new("alice".parse()?, ClientKind::Subnet))?;
    /// let mut bob = NewClient::new("bob".parse()?, ClientKind::Subnet);
    /// bob.server = Some("b".into());
    /// broker.add_client(&bob)?;
    /// std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    /// let mut options = RenderOptions::new();
    /// options.dir = Some(tmp.path().join("b"));
    /// let report = broker.render_server_named("b", &options)?;
    /// assert_eq!(report.instances, ["tb-client-bob"]);
    /// # Ok::<(), tunnelbroker_core::Error>(())
    /// ```
    pub fn render_server_named(&self, name: &str, options: &RenderOptions) -> Result<RenderReport> {
        let view = self.for_server(name)?;
        if name == MAIN_SERVER {
            return self.render_server_with(options);
        }
        if options.dir.is_none() {
            return Err(Error::InvalidField {
                field: "output directory",
                input: String::new(),
                reason: format!(
                    "server {name} is rendered into a directory you name (-o DIR), for its host"
                ),
            });
        }
        view.render_server_with(options)
    }

    /// Whether this broker is the view of a server other than `main`.
    pub(super) fn is_view(&self) -> bool {
        self.scope.is_some()
    }
}

/// The parent prefix in the database, if any.
fn read_parent(tx: &mut dyn Transaction) -> Result<Option<Ipv6Net>> {
    tx.shared(PARENT)?
        .map(|text| {
            text.parse().map_err(|_| Error::Database {
                reason: format!("the shared value {PARENT} is not a prefix"),
            })
        })
        .transpose()
}

/// Checks a parent prefix: length 16 to 62, host bits zero.
pub(super) fn check_parent(parent: Ipv6Net) -> Result<()> {
    let bad = |reason: &str| Error::InvalidField {
        field: "parent prefix",
        input: parent.to_string(),
        reason: reason.into(),
    };
    if !(16..=Pool::MAX_LEN).contains(&parent.prefix_len()) {
        return Err(bad("a parent prefix is /16 to /62"));
    }
    if parent.trunc() != parent {
        return Err(bad("its host bits are set"));
    }
    Ok(())
}

/// Writes the parent prefix (init).
pub(super) fn write_parent(tx: &mut dyn Transaction, parent: Ipv6Net) -> Result<()> {
    tx.set_shared(PARENT, &parent.to_string())
}

fn overlap(a: Ipv6Net, b: Ipv6Net) -> bool {
    a.contains(&b) || b.contains(&a)
}

/// The first pool of `len` (default /56) in `parent` that overlaps no
/// server's pool.
fn next_free_pool(
    parent: Option<Ipv6Net>,
    len: Option<u8>,
    servers: &[ServerRecord],
) -> Result<Pool> {
    let parent = parent.ok_or_else(|| Error::InvalidField {
        field: "pool",
        input: String::new(),
        reason: "the broker has no parent prefix to take one from; give --pool, or set a parent prefix (server parent PREFIX)".into(),
    })?;
    let len = len.unwrap_or(DEFAULT_POOL_LENGTH);
    let subnets = parent.subnets(len).map_err(|_| Error::InvalidField {
        field: "pool length",
        input: len.to_string(),
        reason: format!("a pool in {parent} is /{} to /62", parent.prefix_len()),
    })?;
    for net in subnets {
        if !servers.iter().any(|s| overlap(s.pool.net(), net)) {
            return Pool::new(net);
        }
    }
    Err(Error::InvalidField {
        field: "pool",
        input: String::new(),
        reason: format!("no /{len} of the parent prefix {parent} is free"),
    })
}

/// Refuses a shared server's port that another shared server at the same
/// endpoint, or a per-client instance anywhere in the broker, uses.
fn check_shared_port(
    tx: &mut dyn Transaction,
    servers: &[ServerRecord],
    endpoint: &str,
    port: u16,
) -> Result<()> {
    let mut taken_by = servers
        .iter()
        .find(|s| s.mode == ServerMode::Shared && s.endpoint == endpoint && s.port == port)
        .map(|s| format!("server {}", s.name));
    if taken_by.is_none() {
        taken_by = tx.port_owner(port)?.map(|id| format!("client {id}"));
    }
    match taken_by {
        Some(owner) => Err(Error::InvalidField {
            field: "port",
            input: port.to_string(),
            reason: format!("{owner} uses it at {endpoint}"),
        }),
        None => Ok(()),
    }
}
