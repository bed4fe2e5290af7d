//! # tunnelbroker-core
//!
//! The library behind `tunnelbroker`, an OpenVPN-based IPv6 tunnel broker:
//! each client gets a certificate from the broker's CA, a fixed IPv6
//! assignment (a /128 for a lone "hermit" host, a routed /64 for a "subnet"
//! client that serves a LAN) and an OpenVPN setup.
//!
//! The address plan:
//!
//! ```
//! use tunnelbroker_core::{Allocator, ClientKind, Pool};
//!
//! let pool: Pool = "2001:db8:0:f100::/56".parse()?;
//! let mut plan = Allocator::new(pool);
//! let subnet = plan.allocate(ClientKind::Subnet)?;
//! let s = subnet.as_subnet().unwrap();
//! assert_eq!(s.prefix().to_string(), "2001:db8:0:f101::/64");
//! assert_eq!(s.server_end().to_string(), "2001:db8:0:f100::f101:1");
//! assert_eq!(s.client_end().to_string(), "2001:db8:0:f100::f101:2");
//! # Ok::<(), tunnelbroker_core::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod broker;
mod bundle;
mod client_id;
pub mod doctor;
mod error;
#[allow(dead_code)] // the rest is for the PKI, OpenVPN and bundle modules as they land
mod fsutil;
pub mod openvpn;
mod pki;
mod plan;
mod registry;
mod words;

pub use broker::{
    Broker, BrokerPaths, Client, ClientCredentials, ClientOs, ClientState, Endpoint, ImportReport,
    ImportedCa, InitOptions, NewClient, RenderOptions, RenderReport, Revocation, RowError,
    SERVER_CN, ServerMode, ServerRenewal, ServerSettings, SessionEnd, Settings, ValiditySettings,
    check_interface_name,
};
pub use client_id::ClientId;
pub use error::{Error, ErrorKind, Result, flatten};
pub use fsutil::read_text;
pub use pki::{
    Ca, CaParams, CertInfo, Certificate, Crl, Issued, KeyType, MAX_CA_CHAIN, PrivateKey, Purpose,
    RevocationReason, RevokedCert, Serial, Subject, TlsCryptKey, Validity,
};
pub use plan::{
    Allocator, Assignment, ClientKind, Counts, Hermit, Pool, Role, Subnet, parse_prefix,
};

pub use registry::{
    Allocation, CertRecord, CertState, ClientRecord, SqliteStore, Store, Transaction,
};

/// Re-exported so that callers can name prefixes without adding `ipnet`.
pub use ipnet::Ipv6Net;
