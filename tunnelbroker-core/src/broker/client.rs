//! Client records: what the broker keeps about each subscribed client.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use serde::Serialize;
use time::OffsetDateTime;

pub use crate::words::{ClientOs, ClientState};

use crate::client_id::ClientId;
use crate::error::{Error, Result, shown};
use crate::pki::Serial;
use crate::plan::{Assignment, ClientKind};

/// A subscribed client, as the client database holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Client {
    /// The client's ID, also its certificate's CN.
    pub id: ClientId,
    /// Hermit or subnet.
    pub kind: ClientKind,
    /// The client's operating system.
    pub os: ClientOs,
    /// Its fixed assignment.
    pub assignment: Assignment,
    /// Its UDP port (per-client mode only).
    pub port: Option<u16>,
    /// The serial of its current certificate.
    pub serial: Serial,
    /// Active or revoked.
    pub state: ClientState,
    /// Contact e-mail.
    pub email: Option<String>,
    /// Contact name.
    pub name: Option<String>,
    /// When it was subscribed.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was revoked.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// When its current certificate expires.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Whether the broker holds the client's private key (false when the
    /// client sent its own certificate request).
    pub has_key: bool,
    /// The server it belongs to (`main` on a broker with one server).
    pub server: String,
}

impl Client {
    /// The assigned prefix (/128 or /64).
    pub fn prefix(&self) -> Ipv6Net {
        self.assignment.prefix()
    }

    /// The client's tunnel address.
    pub fn tunnel_address(&self) -> Ipv6Addr {
        self.assignment.tunnel_address()
    }
}

/// A request to subscribe a client.
///
/// ```
/// use tunnelbroker_core::{ClientKind, NewClient};
/// let req = NewClient::new("alice".parse()?, ClientKind::Subnet);
/// assert_eq!(req.kind, ClientKind::Subnet);
/// # Ok::<(), tunnelbroker_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewClient {
    /// The client's ID.
    pub id: ClientId,
    /// Hermit or subnet.
    pub kind: ClientKind,
    /// Its operating system (default linux).
    pub os: ClientOs,
    /// Contact e-mail.
    pub email: Option<String>,
    /// Contact name.
    pub name: Option<String>,
    /// A specific assignment instead of the lowest free one.
    pub prefix: Option<Ipv6Net>,
    /// A PEM certificate request made by the client; no client key is then
    /// kept or bundled.
    pub csr: Option<String>,
    /// The server it goes to; `None`: the only one, else the one whose pool
    /// holds `prefix`, else the one with the most free assignments of its
    /// kind.
    pub server: Option<String>,
}

impl NewClient {
    /// A request with the defaults: linux, no contact, lowest free assignment.
    pub fn new(id: ClientId, kind: ClientKind) -> Self {
        NewClient {
            id,
            kind,
            os: ClientOs::Linux,
            email: None,
            name: None,
            prefix: None,
            csr: None,
            server: None,
        }
    }

    /// Checks the free-text fields (e-mail, name), and that a Windows
    /// client's ID can name files on Windows
    /// ([`ClientId::windows_problem`]).
    pub(crate) fn validate(&self) -> Result<()> {
        if self.os == ClientOs::Windows
            && let Some(reason) = self.id.windows_problem()
        {
            return Err(Error::InvalidClientId {
                input: shown(self.id.as_str()),
                reason: format!(
                    "{reason}: a windows client's bundle and files are named after its id; choose another"
                ),
            });
        }
        if let Some(e) = &self.email {
            validate_email(e)?;
        }
        if let Some(n) = &self.name {
            validate_name(n)?;
        }
        Ok(())
    }
}

/// Checks a contact e-mail address: one `@`, no spaces or control characters,
/// at most 254 bytes.
pub(crate) fn validate_email(e: &str) -> Result<()> {
    let bad = |reason: &str| Error::InvalidField {
        field: "email",
        input: shown(e),
        reason: reason.into(),
    };
    if e.len() > 254 {
        return Err(bad("longer than 254 bytes"));
    }
    if e.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains spaces or control characters"));
    }
    match e.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            Ok(())
        }
        _ => Err(bad("expected one '@' between a name and a domain")),
    }
}

/// Checks a contact name: no control characters, at most 128 characters.
pub(crate) fn validate_name(n: &str) -> Result<()> {
    let bad = |reason: &str| Error::InvalidField {
        field: "name",
        input: shown(n),
        reason: reason.into(),
    };
    if n.chars().count() > 128 {
        return Err(bad("longer than 128 characters"));
    }
    if n.chars().any(|c| c.is_control()) {
        return Err(bad("contains control characters"));
    }
    Ok(())
}
