//! The address plan (DESIGN.md §2): pools, roles, assignments and the allocator.
//!
//! A [`Pool`] is an IPv6 prefix of length 48 to 62. Its /64 networks are
//! numbered `0 .. N-1`: number 0 is the **routing** /64 (point-to-point /112
//! nets for subnet clients), `1 .. N-2` are **subnet** /64s (one per subnet
//! client) and `N-1` is the **hermit** /64 (one /128 per hermit client).
//!
//! For a subnet /64 whose 4th hextet is `H`, the routing net is the /112 of the
//! routing /64 whose 7th hextet is `H`, with the server end at `::H:1` and the
//! client end at `::H:2`; the tunnel's link-local addresses are `fe80::H:1` and
//! `fe80::H:2`.
//!
//! This module is pure logic: no I/O, no clock, no randomness. Nothing in it
//! panics on any input; every refusal is an [`Error`](crate::Error).

mod allocator;
mod assignment;
mod members;
mod pool;
mod ranges;

pub use allocator::{Allocator, Counts};
pub use assignment::{Assignment, ClientKind, Hermit, Subnet};
pub use pool::{Pool, Role, parse_prefix};
pub(crate) use ranges::RangeSet;
