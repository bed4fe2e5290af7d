//! The crate's one error type.
//!
//! Every fallible function of `tunnelbroker-core` returns [`Result<T>`]. An
//! [`Error`] is a value with a voice: its `Display` is one lowercase line that
//! says what was wrong and, where it helps, what is allowed instead. Programs
//! that need to react to a class of error (the CLI's exit status, the Python
//! exception hierarchy) ask [`Error::kind`].

use std::fmt;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ipnet::Ipv6Net;

use crate::words::{ClientKind, ClientOs, ClientState, Role, ServerMode, TlsCryptVersion};

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The broad class of an [`Error`], for callers that map errors to exit
/// statuses or exception types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller gave input that is not acceptable (bad text, out of pool,
    /// wrong role, bad client ID). Retrying with the same input fails again.
    InvalidInput,
    /// Something that was asked for does not exist (an unknown client, a
    /// prefix that is not assigned, a directory that holds no broker).
    NotFound,
    /// Something that was to be created exists already (a client ID, an
    /// assigned prefix, a broker directory, files in the directory given to
    /// `init`).
    AlreadyExists,
    /// The pool has no free assignment of the requested kind.
    Exhausted,
    /// A certificate, key or request failed a cryptographic check.
    Crypto,
    /// Reading or writing a file failed.
    Io,
    /// The client database failed.
    Database,
    /// Anything else.
    Other,
}

/// Every error that `tunnelbroker-core` reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ----- address plan -----------------------------------------------------
    /// A pool could not be parsed or is not an acceptable pool.
    #[error("invalid pool {input}: {reason}")]
    InvalidPool {
        /// The offending input, quoted and shortened for display.
        input: String,
        /// What is wrong with it and what is allowed.
        reason: String,
    },
    /// An address or prefix could not be parsed or has the wrong shape.
    #[error("invalid prefix {input}: {reason}")]
    InvalidPrefix {
        /// The offending input, quoted and shortened for display.
        input: String,
        /// What is wrong with it and what is allowed.
        reason: String,
    },
    /// An address or prefix lies outside the pool.
    #[error("{prefix} is outside the pool {pool}")]
    OutsidePool {
        /// The prefix (or address as a /128) that was asked for.
        prefix: Ipv6Net,
        /// The pool it should have been in (its prefix).
        pool: Ipv6Net,
    },
    /// An address or prefix lies in a part of the pool reserved for another role.
    #[error("{prefix} lies in the {found} /64 of the pool, not in a {expected} /64")]
    WrongRole {
        /// The prefix (or address as a /128) that was asked for.
        prefix: Ipv6Net,
        /// The role of the /64 it lies in.
        found: Role,
        /// The role it should have had.
        expected: Role,
    },
    /// An address that the plan never hands out (for example a subnet-router
    /// anycast address).
    #[error("{address} is reserved: {why}")]
    Reserved {
        /// The reserved address.
        address: Ipv6Addr,
        /// Why it is reserved.
        why: &'static str,
    },
    /// The requested assignment is live already.
    #[error("{prefix} is already assigned{}", owner_suffix(.owner))]
    AlreadyAssigned {
        /// The prefix that is taken.
        prefix: Ipv6Net,
        /// Its owner, where the caller knows it.
        owner: Option<String>,
    },
    /// An assignment that was to be released or looked up is not live.
    #[error("{prefix} is not assigned")]
    NotAssigned {
        /// The prefix that is not assigned.
        prefix: Ipv6Net,
    },
    /// No free assignment of the requested kind is left.
    #[error("pool {pool} has no free {kind} assignment left (all {capacity} are in use)")]
    PoolExhausted {
        /// The pool (its prefix).
        pool: Ipv6Net,
        /// The kind of assignment asked for.
        kind: ClientKind,
        /// How many assignments of that kind the pool holds.
        capacity: u64,
    },
    /// A word that should name a kind, mode, OS or key type is not one of them.
    #[error("invalid {what} {input}: expected one of {expected}")]
    InvalidChoice {
        /// What was being parsed ("client kind", "server mode", ...).
        what: &'static str,
        /// The offending input, quoted and shortened for display.
        input: String,
        /// The accepted words, comma separated.
        expected: &'static str,
    },

    // ----- clients ---------------------------------------------------------
    /// A client ID breaks the naming rule.
    #[error("invalid client id {input}: {reason}")]
    InvalidClientId {
        /// The offending input, quoted and shortened for display.
        input: String,
        /// Which part of the rule it breaks.
        reason: String,
    },

    /// A free-text or settings field is not acceptable.
    #[error("invalid {field} {input}: {reason}")]
    InvalidField {
        /// Which field.
        field: &'static str,
        /// The offending input, quoted and shortened for display.
        input: String,
        /// What is wrong and what is allowed.
        reason: String,
    },

    // ----- broker and client database -------------------------------------
    /// No client has this ID.
    #[error("no client named {id}")]
    UnknownClient {
        /// The ID asked for.
        id: String,
    },
    /// A client with this ID exists already.
    #[error("a client named {id} exists already")]
    ClientExists {
        /// The ID.
        id: String,
    },
    /// The client is in a state that does not allow the action.
    #[error("cannot {action} client {id}: it is {state}{}", state_hint(.action))]
    ClientState {
        /// The client.
        id: String,
        /// Its state.
        state: crate::words::ClientState,
        /// What was asked.
        action: &'static str,
    },
    /// A client that made its own key can only be renewed with a new request.
    #[error("client {id} made its own key; renew it with a new certificate request (--csr)")]
    CsrRequired {
        /// The client.
        id: String,
    },
    /// No server has this name.
    #[error("no server named {name}")]
    UnknownServer {
        /// The name asked for, quoted and shortened for display.
        name: String,
    },
    /// A server with this name exists already.
    #[error("a server named {name} exists already")]
    ServerExists {
        /// The name.
        name: String,
    },
    /// A server's pool would overlap another server's.
    #[error("the pool {pool} overlaps {}; server pools may not overlap", match .server { Some(s) => format!("the pool of server {s}"), None => "another server's pool".to_owned() })]
    PoolsOverlap {
        /// The pool asked for.
        pool: Ipv6Net,
        /// The server whose pool it overlaps, when known.
        server: Option<String>,
    },
    /// A server's pool lies outside the broker's parent prefix.
    #[error("the pool {pool} lies outside the broker's parent prefix {parent}")]
    OutsideParent {
        /// The pool asked for.
        pool: Ipv6Net,
        /// The parent prefix.
        parent: Ipv6Net,
    },
    /// The server still has clients (or is `main`), so it cannot be removed.
    #[error("cannot remove server {name}: {reason}")]
    ServerInUse {
        /// The server.
        name: String,
        /// Why.
        reason: String,
    },
    /// Every UDP port from the first one up is taken.
    #[error("no free UDP port left from {first} to 65535")]
    PortsExhausted {
        /// The first port of the range.
        first: u16,
    },
    /// The directory already holds a broker.
    #[error("{} already holds a broker; init changes nothing", shown_path(.path))]
    BrokerExists {
        /// The broker directory.
        path: PathBuf,
    },
    /// The directory does not hold a broker (or cannot be made one).
    #[error("{}: {reason}", shown_path(.path))]
    NotABroker {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The PostgreSQL database given to `init` or `db migrate` holds a
    /// broker already.
    #[error("the database {url} holds a broker already: {hint}")]
    DatabaseInUse {
        /// The database (its URL never holds a password).
        url: String,
        /// What to do instead.
        hint: &'static str,
    },
    /// The directory given to `init` cannot become a broker: it is not
    /// empty, or not a directory.
    #[error("{}: {reason}", .path.display())]
    DirectoryInUse {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The settings file does not parse or holds a bad value.
    #[error("invalid settings: {reason}")]
    InvalidSettings {
        /// What is wrong.
        reason: String,
    },
    /// The client database failed.
    #[error("client database: {reason}")]
    Database {
        /// What went wrong.
        reason: String,
    },
    /// The client database file is missing, empty, not SQLite, or another
    /// program's database. Only `init` creates one; nothing was written.
    #[error("client database {}: {reason}", .path.display())]
    UnusableDatabase {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it, and what to do.
        reason: String,
    },

    // ----- openvpn ---------------------------------------------------------
    /// A value to be written into an OpenVPN configuration or script breaks
    /// its rule.
    #[error("invalid {what} {input}: {reason}")]
    InvalidConfigValue {
        /// What was being checked ("path", "host", "interface name", ...).
        what: &'static str,
        /// The offending input, quoted and shortened (never a secret).
        input: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// OpenVPN, after dropping its privileges to `nobody`, could not reach
    /// the rendered server directory: it or an ancestor is not searchable
    /// by others.
    #[error(
        "{} is out of reach of OpenVPN running as nobody (it could not re-read crl.pem and ccd/): chmod o+x {}, or render to /etc/openvpn/server",
        .path.display(),
        blocked_list(.blocked)
    )]
    ServerDirUnreachable {
        /// The rendered directory.
        path: PathBuf,
        /// It and the ancestors that others cannot search, top down.
        blocked: Vec<PathBuf>,
    },
    /// Talking to an OpenVPN management interface failed.
    #[error("openvpn management socket {}: {reason}", shown_path(.socket))]
    Management {
        /// The management socket.
        socket: PathBuf,
        /// What went wrong.
        reason: String,
    },

    // ----- pki -------------------------------------------------------------
    /// A private key could not be read.
    #[error("invalid private key: {reason}")]
    InvalidKey {
        /// What is wrong with it.
        reason: String,
    },
    /// A key (or a request's public key) uses an algorithm or size the CA does not offer.
    #[error(
        "unsupported key: {reason} (supported: p256, p384, ed25519, rsa2048, rsa3072, rsa4096)"
    )]
    UnsupportedKey {
        /// What the key is.
        reason: String,
    },
    /// A certificate could not be read.
    #[error("invalid certificate: {reason}")]
    InvalidCertificate {
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate signing request could not be read.
    #[error("invalid certificate request: {reason}")]
    InvalidCsr {
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate signing request whose signature does not verify.
    #[error(
        "the certificate request's signature does not verify: it is corrupt or was not made with its own key"
    )]
    CsrSignatureInvalid,
    /// A certificate signing request that carries a public key the broker
    /// knows already: the CA's, the server's or another client's.
    #[error(
        "the certificate request carries the public key of {owner}: a request must carry a key of its own"
    )]
    CsrKeyInUse {
        /// Whose key it is ("the CA", "the server", "client bob").
        owner: String,
    },
    /// A certificate revocation list could not be read.
    #[error("invalid crl: {reason}")]
    InvalidCrl {
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate serial number could not be parsed.
    #[error("invalid serial {input}: {reason}")]
    InvalidSerial {
        /// The offending input, quoted and shortened for display.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A distinguished-name field (country, organisation, common name) is not acceptable.
    #[error("invalid {field} {input}: {reason}")]
    InvalidSubject {
        /// Which field.
        field: &'static str,
        /// The offending input, quoted and shortened for display.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A validity period (in days) is not acceptable.
    #[error("invalid {what} validity of {days} days: {reason}")]
    InvalidValidity {
        /// What it was for ("client certificate", "crl", ...).
        what: &'static str,
        /// The number of days asked for.
        days: u32,
        /// What is allowed.
        reason: &'static str,
    },
    /// An OpenVPN static (tls-crypt) key could not be parsed.
    #[error("invalid tls-crypt key: {reason}")]
    InvalidTlsCryptKey {
        /// What is wrong with it.
        reason: String,
    },
    /// A `tls-crypt-v2` server or client key could not be parsed or
    /// unwrapped.
    #[error("invalid tls-crypt-v2 key: {reason}")]
    InvalidTlsCryptV2Key {
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate that was to be used as a CA is not one.
    #[error("certificate {common_name} is not a CA: {reason}")]
    NotACa {
        /// Its common name, quoted for display.
        common_name: String,
        /// What is missing.
        reason: &'static str,
    },
    /// A CA to import was given its certificate without its key, or its
    /// key without its certificate.
    #[error(
        "the CA certificate and key go together: the {given} was given without the {missing}; give both to import a CA, or neither to make one"
    )]
    CaImportIncomplete {
        /// What was given ("CA certificate" or "CA key").
        given: &'static str,
        /// What is missing.
        missing: &'static str,
    },
    /// A CA key that does not belong to the CA certificate.
    #[error(
        "the key does not match the CA certificate {common_name}: it belongs to another certificate"
    )]
    CaKeyMismatch {
        /// The CA's common name, quoted for display.
        common_name: String,
    },
    /// A CA certificate that has expired.
    #[error("the CA certificate {common_name} expired on {not_after}: make a new CA")]
    CaExpired {
        /// The CA's common name, quoted for display.
        common_name: String,
        /// When it expired (RFC 3339).
        not_after: String,
    },
    /// A CA too close to its end of validity to issue a certificate (no
    /// certificate is issued past the CA's notAfter).
    #[error(
        "the CA certificate {common_name} expires on {not_after}, too soon to issue a certificate: make a new CA"
    )]
    CaExpiresSoon {
        /// The CA's common name, quoted for display.
        common_name: String,
        /// When it expires (RFC 3339).
        not_after: String,
    },
    /// An imported CA certificate given without the certificates of its
    /// issuers (an intermediate CA without the rest of its chain).
    #[error(
        "the CA certificate {subject} is issued by {issuer}, which is not in the file: append the issuing CA's certificates up to the root"
    )]
    CaIssuerMissing {
        /// The certificate whose issuer is missing, quoted for display.
        subject: String,
        /// The missing issuer's name, quoted for display.
        issuer: String,
    },
    /// An imported CA file that is not the issuing CA followed by its
    /// issuers up to a self-signed root.
    #[error("invalid CA chain: {reason}")]
    InvalidCaChain {
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate that this CA did not sign.
    #[error("certificate {common_name} was not issued by this CA: {reason}")]
    NotIssuedByCa {
        /// Its common name, quoted for display.
        common_name: String,
        /// Why not.
        reason: String,
    },
    /// A certificate past its end of validity.
    #[error("certificate {common_name} expired on {not_after}")]
    CertificateExpired {
        /// Its common name, quoted for display.
        common_name: String,
        /// When it expired (RFC 3339).
        not_after: String,
    },
    /// A certificate before its start of validity.
    #[error("certificate {common_name} is not valid before {not_before}")]
    CertificateNotYetValid {
        /// Its common name, quoted for display.
        common_name: String,
        /// When it becomes valid (RFC 3339).
        not_before: String,
    },
    /// A CRL that this CA did not sign, or that OpenVPN would not match to it.
    #[error("the crl does not belong to this CA: {reason}")]
    CrlNotFromCa {
        /// Why not.
        reason: String,
    },
    /// The cryptographic library or the OS random number generator failed.
    #[error("certificate authority failure: {reason}")]
    Pki {
        /// What failed.
        reason: String,
    },

    // ----- diagnostics -----------------------------------------------------
    /// A client configuration that `doctor` cannot read: not text, too
    /// large, malformed, or naming a file outside its own directory.
    #[error("{}: {reason}", shown_path(.path))]
    InvalidClientConfig {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong (with the line number where there is one).
        reason: String,
    },

    // ----- files -----------------------------------------------------------
    /// A file given as input is not one to read: not a regular file (a
    /// device, a FIFO, a directory), too large, or not UTF-8 text.
    #[error("{}: {reason}", shown_path(.path))]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// Why it was not read.
        reason: String,
    },
    /// A file whose content is wrong (a corrupt certificate or key of the
    /// broker): the error about the content, with the file that holds it.
    /// Its [`kind`](Error::kind) is that of the inner error.
    #[error("{}: {source}", shown_path(.path))]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with its content.
        #[source]
        source: Box<Error>,
    },
    /// `server render` would replace a file that this broker did not
    /// write (another server's, another broker's).
    #[error("{} {reason}; move it away, or render with --force to replace it", shown_path(.path))]
    ForeignFile {
        /// The file.
        path: PathBuf,
        /// Whose it is, as far as known.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", shown_path(.path))]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

fn state_hint(action: &str) -> &'static str {
    match action {
        "purge" => "; revoke it first",
        _ => "",
    }
}

fn blocked_list(paths: &[PathBuf]) -> String {
    let words: Vec<String> = paths
        .iter()
        .map(|p| flatten(&p.to_string_lossy()))
        .collect();
    words.join(" ")
}

fn owner_suffix(owner: &Option<String>) -> String {
    match owner {
        Some(o) => format!(" to {o}"),
        None => String::new(),
    }
}

impl Error {
    /// The broad class of this error.
    ///
    /// ```
    /// use tunnelbroker_core::{ErrorKind, Pool};
    /// let err = "2001:db8::1/56".parse::<Pool>().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidPool { .. }
            | Error::InvalidPrefix { .. }
            | Error::OutsidePool { .. }
            | Error::WrongRole { .. }
            | Error::Reserved { .. }
            | Error::InvalidChoice { .. }
            | Error::InvalidClientId { .. }
            | Error::InvalidField { .. }
            | Error::ClientState { .. }
            | Error::CsrRequired { .. }
            | Error::InvalidKey { .. }
            | Error::UnsupportedKey { .. }
            | Error::InvalidCertificate { .. }
            | Error::InvalidCsr { .. }
            | Error::InvalidCrl { .. }
            | Error::InvalidSerial { .. }
            | Error::InvalidSubject { .. }
            | Error::InvalidValidity { .. }
            | Error::InvalidTlsCryptKey { .. }
            | Error::InvalidTlsCryptV2Key { .. }
            | Error::NotACa { .. }
            | Error::CaImportIncomplete { .. }
            | Error::CaIssuerMissing { .. }
            | Error::InvalidCaChain { .. }
            | Error::InvalidSettings { .. }
            | Error::InvalidConfigValue { .. }
            | Error::ServerDirUnreachable { .. }
            | Error::PoolsOverlap { .. }
            | Error::OutsideParent { .. }
            | Error::ServerInUse { .. } => ErrorKind::InvalidInput,
            Error::Management { .. } => ErrorKind::Other,
            Error::CsrSignatureInvalid
            | Error::CsrKeyInUse { .. }
            | Error::CaKeyMismatch { .. }
            | Error::CaExpired { .. }
            | Error::CaExpiresSoon { .. }
            | Error::NotIssuedByCa { .. }
            | Error::CertificateExpired { .. }
            | Error::CertificateNotYetValid { .. }
            | Error::CrlNotFromCa { .. } => ErrorKind::Crypto,
            Error::Pki { .. } => ErrorKind::Other,
            Error::AlreadyAssigned { .. }
            | Error::ClientExists { .. }
            | Error::BrokerExists { .. }
            | Error::DatabaseInUse { .. }
            | Error::DirectoryInUse { .. }
            | Error::ForeignFile { .. } => ErrorKind::AlreadyExists,
            Error::UnknownClient { .. } | Error::UnknownServer { .. } => ErrorKind::NotFound,
            Error::ServerExists { .. } => ErrorKind::AlreadyExists,
            Error::PortsExhausted { .. } => ErrorKind::Exhausted,
            Error::NotABroker { .. } => ErrorKind::NotFound,
            Error::Database { .. } | Error::UnusableDatabase { .. } => ErrorKind::Database,
            Error::NotAssigned { .. } => ErrorKind::NotFound,
            Error::PoolExhausted { .. } => ErrorKind::Exhausted,
            Error::InvalidClientConfig { .. } | Error::InvalidFile { .. } => {
                ErrorKind::InvalidInput
            }
            Error::Io { .. } => ErrorKind::Io,
            Error::InFile { source, .. } => source.kind(),
        }
    }

    /// `self`, naming `path` as the file whose content it is about, unless
    /// it names a file already (I/O errors, files that are not text).
    pub(crate) fn in_file(self, path: &Path) -> Self {
        match self {
            e @ (Error::Io { .. } | Error::InvalidFile { .. } | Error::InFile { .. }) => e,
            e => Error::InFile {
                path: path.to_owned(),
                source: Box::new(e),
            },
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Quotes untrusted text for an error message: escapes control and
/// non-printable characters and shortens it to a readable length, so that no
/// input can forge extra lines or flood a terminal.
pub(crate) fn shown(input: &str) -> String {
    const MAX: usize = 64;
    let mut cut: String = input.chars().take(MAX).collect();
    if cut.len() < input.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// A path for a message, [`flatten`]ed: a file name with a newline or an
/// escape sequence cannot split the line or reach the terminal raw.
pub(crate) fn shown_path(path: &Path) -> String {
    flatten(&path.display().to_string())
}

/// Text made fit for one line: control characters (a newline in a hostile
/// file name, an escape sequence) are escaped, so that nothing quoted can
/// break a message, a report line or a comment in a rendered file. Every
/// message of [`Error`] is flattened already; front-ends pass anything else
/// they print that comes from outside (a CA's subject, a path) through it.
///
/// ```
/// use tunnelbroker_core::flatten;
/// assert_eq!(flatten("evil\n\u{1b}[31mCA"), "evil\\n\\u{1b}[31mCA");
/// assert_eq!(flatten("plain text"), "plain text");
/// ```
pub fn flatten(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The message of another library's error (PEM, X.509, TOML, CSV parsers)
/// made fit for one of ours: [`flatten`]ed, and at most 200 characters, so
/// that an error stays one short line whatever the input was.
pub(crate) fn one_line(err: impl fmt::Display) -> String {
    const MAX: usize = 200;
    let text = flatten(&err.to_string());
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

// ----- the shared words' parsers ------------------------------------------
//
// Here rather than in words.rs, which sits below this module: a word that is
// none of the choices is an `Error::InvalidChoice`.

impl FromStr for ClientOs {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "linux" => Ok(ClientOs::Linux),
            "windows" => Ok(ClientOs::Windows),
            _ => Err(Error::InvalidChoice {
                what: "client os",
                input: shown(s),
                expected: ClientOs::CHOICES,
            }),
        }
    }
}

impl FromStr for ClientState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "active" => Ok(ClientState::Active),
            "revoked" => Ok(ClientState::Revoked),
            _ => Err(Error::InvalidChoice {
                what: "client state",
                input: shown(s),
                expected: "active, revoked",
            }),
        }
    }
}

impl FromStr for ServerMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "per-client" | "perclient" | "per_client" => Ok(ServerMode::PerClient),
            "shared" => Ok(ServerMode::Shared),
            _ => Err(Error::InvalidChoice {
                what: "server mode",
                input: shown(s),
                expected: ServerMode::CHOICES,
            }),
        }
    }
}

impl FromStr for TlsCryptVersion {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "v1" | "1" | "tls-crypt" => Ok(TlsCryptVersion::V1),
            "v2" | "2" | "tls-crypt-v2" => Ok(TlsCryptVersion::V2),
            _ => Err(Error::InvalidChoice {
                what: "tls-crypt version",
                input: shown(s),
                expected: TlsCryptVersion::CHOICES,
            }),
        }
    }
}

impl FromStr for ClientKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "hermit" => Ok(ClientKind::Hermit),
            "subnet" => Ok(ClientKind::Subnet),
            _ => Err(Error::InvalidChoice {
                what: "client kind",
                input: shown(s),
                expected: "hermit, subnet",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_escapes_controls_and_shortens() {
        assert_eq!(one_line("END (\"\nX\")"), "END (\"\\nX\")");
        let long = one_line("y".repeat(1000));
        assert_eq!(long.chars().count(), 201);
        assert!(long.ends_with('…'));
        assert_eq!(one_line("plain"), "plain");
    }

    #[test]
    fn paths_in_messages_cannot_split_the_line_or_reach_the_terminal_raw() {
        let path = Path::new("/srv/b\nx\u{1b}[31m/ca.crt");
        let io = Error::io(path, std::io::Error::from(std::io::ErrorKind::NotFound));
        let corrupt = Error::InvalidCertificate {
            reason: "not PEM".into(),
        }
        .in_file(path);
        assert_eq!(corrupt.kind(), ErrorKind::InvalidInput);
        for e in [io, corrupt] {
            let m = e.to_string();
            assert!(!m.chars().any(char::is_control), "{m:?}");
            assert!(m.starts_with("/srv/b\\nx\\u{1b}[31m/ca.crt: "), "{m}");
        }
    }

    #[test]
    fn shown_escapes_and_shortens() {
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
        let long = "x".repeat(200);
        let s = shown(&long);
        assert!(s.chars().count() < 70, "{s}");
        assert!(s.contains('…'));
    }
}
