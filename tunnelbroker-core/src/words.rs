//! The shared words: a client's kind, operating system and state, how the
//! broker runs OpenVPN, and the role of a /64 in the pool. A leaf module of
//! values that names no other module: the error, plan, store, OpenVPN
//! and broker modules all name them. Their `FromStr` impls are in error.rs,
//! as their refusal is an [`Error::InvalidChoice`](crate::Error::InvalidChoice).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The operating system a client runs, which decides the bundle's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientOs {
    /// Linux (and other Unix): a `.conf` with up/down scripts, in a `.tar.gz`.
    #[default]
    Linux,
    /// Windows: an `.ovpn` without scripts, in a `.zip`.
    Windows,
}

impl ClientOs {
    /// The words `FromStr` accepts.
    pub const CHOICES: &'static str = "linux, windows";
}

impl fmt::Display for ClientOs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientOs::Linux => "linux",
            ClientOs::Windows => "windows",
        })
    }
}

/// Whether a client may connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientState {
    /// Subscribed, with a valid certificate.
    Active,
    /// Revoked: its certificate is on the CRL; its assignment stays reserved
    /// for it until it is purged.
    Revoked,
}

impl fmt::Display for ClientState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientState::Active => "active",
            ClientState::Revoked => "revoked",
        })
    }
}

/// How the broker runs OpenVPN (DESIGN.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerMode {
    /// One OpenVPN server instance per client, each on its own UDP port (JOIN's design).
    #[default]
    PerClient,
    /// One OpenVPN server for all clients, with client-config-dir entries.
    Shared,
}

impl ServerMode {
    /// The words `FromStr` accepts.
    pub const CHOICES: &'static str = "per-client, shared";
}

impl fmt::Display for ServerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerMode::PerClient => "per-client",
            ServerMode::Shared => "shared",
        })
    }
}

/// Which control channel protection a broker's servers and bundles use.
///
/// New brokers use `v2`: a key per client (OpenVPN 2.5 and later), bound
/// to the client and checked before TLS. `v1` is one `tls-crypt` key shared
/// by every bundle, for clients older than OpenVPN 2.5; a broker made
/// before `v2` existed keeps `v1` until it is moved
/// (`tunnelbroker server tls-crypt-v2 migrate`).
///
/// ```
/// use tunnelbroker_core::broker::TlsCryptVersion;
/// assert_eq!("v2".parse::<TlsCryptVersion>()?, TlsCryptVersion::V2);
/// assert_eq!(TlsCryptVersion::V1.to_string(), "v1");
/// assert!("v3".parse::<TlsCryptVersion>().is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsCryptVersion {
    /// `tls-crypt`: one static key shared by the server and every client.
    /// The default when a settings file or database does not say (brokers
    /// made before `v2`).
    #[default]
    V1,
    /// `tls-crypt-v2`: a server key, and a key per client wrapped with it.
    V2,
}

impl TlsCryptVersion {
    /// The words `FromStr` accepts.
    pub const CHOICES: &'static str = "v1, v2";
}

impl fmt::Display for TlsCryptVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsCryptVersion::V1 => "v1",
            TlsCryptVersion::V2 => "v2",
        })
    }
}

/// What a client is given: a single /128 (a lone "hermit" host) or a routed
/// /64 (a "subnet" client that serves a LAN).
///
/// ```
/// use tunnelbroker_core::ClientKind;
/// assert_eq!("subnet".parse::<ClientKind>()?, ClientKind::Subnet);
/// assert_eq!(ClientKind::Hermit.to_string(), "hermit");
/// assert!("router".parse::<ClientKind>().is_err());
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    /// One /128 from the hermit /64.
    Hermit,
    /// One subnet /64 with its routing /112.
    Subnet,
}

impl fmt::Display for ClientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientKind::Hermit => "hermit",
            ClientKind::Subnet => "subnet",
        })
    }
}

/// The role of a /64 inside a [`Pool`](crate::Pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The first /64: point-to-point /112 routing nets for subnet clients.
    Routing,
    /// The /64s in between: one per subnet client.
    Subnet,
    /// The last /64: one /128 per hermit client.
    Hermit,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Routing => "routing",
            Role::Subnet => "subnet",
            Role::Hermit => "hermit",
        })
    }
}
