//! OpenVPN configurations and scripts for both server modes (DESIGN.md §3).
//!
//! Everything here is a typed value built from plain values of the rest of
//! the crate ([`Pool`](crate::Pool), [`Assignment`](crate::Assignment),
//! [`ClientId`](crate::ClientId), PEM texts, ports, the endpoint host) and
//! becomes text only through `Display` or `emit`:
//!
//! * [`PerClientServer`]: one point-to-point TLS server per client
//!   (JOIN's 2004 layout), with `up`/`down` scripts where OpenVPN options
//!   cannot set an address;
//! * [`SharedServer`] with one [`CcdEntry`] per client: one server for all;
//! * [`ClientConfig`]: the client's `.conf` (Linux, with scripts for subnet
//!   clients) or `.ovpn` (Windows), with CA, certificate, key and
//!   `tls-crypt` key inline, and the README of its bundle.
//!
//! The rendering follows what OpenVPN 2.6 accepts (checked by real OpenVPN
//! processes in `tests/openvpn_e2e.rs`): `dh none`, AEAD defaults (no
//! `cipher`), no `tun-ipv6`, `ifconfig-ipv6`/`ifconfig-ipv6-push` lengths
//! of 64 to 124 only (a hermit's /128 is routed, its tunnel carries a /64),
//! `remote-cert-tls` and `verify-x509-name` instead of CN scripts,
//! `crl-verify` re-read after privileges are dropped to `nobody`.
//!
//! Contract: nothing here panics on any input. Every interpolated value is a
//! validated type ([`ConfigPath`], [`Host`], [`InterfaceName`],
//! [`CommonName`], [`InlineText`], addresses); configuration arguments with
//! unusual characters would be quoted, shell words are always single-quoted
//! and scripts run with `set -eu`.

mod client;
pub(crate) mod facts;
mod management;
pub(crate) mod parse;
pub(crate) mod reach;
mod server;
mod status;
mod systemd;
mod text;
mod tls_crypt_v2;
mod tuning;
mod values;

use std::fmt;

pub use client::{ClientConfig, ClientMaterial, LAN_INTERFACE_ENV, Readme, server_address};
pub use management::Management;
pub use reach::{Reach, reach};
pub use server::{
    Account, CcdEntry, DOWN_ROOT_PLUGIN, PerClientServer, ServerFiles, ServerNames, ServerOptions,
    SharedServer, check_server_name, instance_name,
};
pub use status::{LiveSession, PeerLink, parse_link_bytes, parse_state, parse_status, status_text};
pub use systemd::{AgentUnit, CrlRefreshUnits, DEFAULT_BINARY};
pub use tls_crypt_v2::{TlsCryptV2Clients, TlsCryptV2Verify};
pub use tuning::{
    CONNECT_WINDOW, DATA_CIPHERS, MIN_MAX_CLIENTS, SOCKET_BUFFER, TX_QUEUE_LEN, max_clients,
};
pub use values::{CommonName, ConfigPath, Endpoint, InlineText, InterfaceName};

/// `keepalive 15 45`: a ping every 15 s, restart after 45 s of silence (the
/// 2004 guide's values).
pub(crate) const KEEPALIVE: [u32; 2] = [15, 45];

/// An OpenVPN configuration file (server, client or CCD entry), shown as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile(text::ConfigText);

impl fmt::Display for ConfigFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A generated POSIX shell script (`#!/bin/sh`, `set -eu`), shown as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script(text::ScriptText);

impl fmt::Display for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// One rendered file: a relative name (possibly `ccd/<id>`), its text and
/// whether it is an executable script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Path relative to the output directory.
    pub name: String,
    /// The contents.
    pub text: String,
    /// Whether to write it with mode 0755 (scripts) rather than 0644.
    pub executable: bool,
}

impl RenderedFile {
    pub(crate) fn config(name: String, text: String) -> Self {
        RenderedFile {
            name,
            text,
            executable: false,
        }
    }
    pub(crate) fn script(name: String, text: String) -> Self {
        RenderedFile {
            name,
            text,
            executable: true,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
