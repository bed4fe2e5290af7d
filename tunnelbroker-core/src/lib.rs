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
//! use tunnelbroker_core::plan::Allocator;
//! use tunnelbroker_core::{ClientKind, Pool};
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
//!
//! The root re-exports the everyday names ([`Broker`], [`Settings`],
//! [`NewClient`], [`Client`], [`ClientId`], [`ClientKind`], [`Pool`],
//! [`Assignment`], [`Error`], [`ErrorKind`], [`Result`], [`Ipv6Net`], plus
//! [`InitOptions`], [`flatten`] and [`read_text`]); everything else is named
//! by its module: [`broker`], [`plan`], [`pki`], [`openvpn`], [`store`],
//! [`doctor`], [`agent`].
//!
//! ## Layers
//!
//! The modules depend one way: each names only modules of the layers above
//! it in this list, never one of its own layer or below (the test
//! `tests/layers.rs` reads this list and the sources and keeps it so):
//!
//! 1. `words`: the shared words (client kind, OS and state, server mode,
//!    pool role), plain values.
//! 2. `error`: the one error type.
//! 3. `client_id`, `fsutil`: client names, careful file reading and writing.
//! 4. `plan`, `pki`: the address plan and the certificates, which know
//!    nothing of each other.
//! 5. `openvpn`: the OpenVPN formats, emitted and parsed (the facts line too).
//! 6. `store`: the client records and the storage trait (SQLite is its
//!    embedded implementation).
//! 7. `broker`: the facade that composes them.
//! 8. `bundle`, `doctor`, `agent`: client archives, diagnostics and the
//!    server host's agent, over the broker.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod agent;
pub mod broker;
// Client bundles only add methods to [`Broker`]; they have no types of their own.
mod bundle;
mod client_id;
pub mod doctor;
mod error;
mod fsutil;
pub mod openvpn;
pub mod pki;
pub mod plan;
pub mod store;
mod words;

// The everyday names; everything else is reached through its module
// (`broker::`, `plan::`, `pki::`, `openvpn::`, `store::`, `doctor::`).
pub use broker::{Broker, Client, NewClient, Settings};
pub use client_id::ClientId;
pub use error::{Error, ErrorKind, Result};
pub use plan::{Assignment, ClientKind, Pool};

/// Re-exported so that callers can name prefixes without adding `ipnet`.
pub use ipnet::Ipv6Net;

// Three more, each needed by every front-end: `InitOptions` is what makes a
// broker at all (beside `Broker` and `Settings`), and `flatten` and
// `read_text` are how a front-end prints and reads hostile text safely; the
// modules they live in (`error`, `fsutil`) are otherwise internal.
pub use broker::InitOptions;
pub use error::flatten;
pub use fsutil::read_text;
