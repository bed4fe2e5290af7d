//! The broker (core module `broker`): `Broker`, `Client`, `Credentials`,
//! `ImportReport`, `RowError`, `RenderReport`, `ServerRenewal`, `Server`; `Broker.audit` returns the
//! diagnostics' `Report` (see `doctor.rs`).
//!
//! `Broker` is shared between Python threads: the core broker is `Send +
//! Sync` (its database connection sits behind a mutex and every change is one
//! transaction), so each call takes a reference to it and releases the GIL
//! for the work (key generation, signing, database I/O). `close()` (or
//! leaving a `with` block) drops the reference; calls after it raise
//! `tunnelbroker.Error`.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use pyo3::prelude::*;
use pyo3::types::PyList;
use tunnelbroker_core::broker::{
    ClientCredentials, ClientOs, Endpoint, ImportReport, ImportedCa, NewServer, RenderOptions,
    RenderReport, RowError, Server, ServerMode, SessionFilter, TlsCryptVersion, parse_address,
};
use tunnelbroker_core::doctor::{self, AuditOptions};
use tunnelbroker_core::pki::{KeyType, RevocationReason};
use tunnelbroker_core::store::DatabaseUrl;
use tunnelbroker_core::{Broker, Client, ClientId, InitOptions, NewClient, Pool, Settings};

use crate::doctor::{PyReport, path_arg};
use crate::errors::{self, IntoPy};
use crate::ip;
use crate::pki::PyCrl;
use crate::plan::{PyAssignment, PyPool, kind_arg};
use crate::sessions::{PySession, PyWhois, time_arg};

fn id_arg(py: Python<'_>, id: &str) -> PyResult<ClientId> {
    ClientId::new(id).py_err(py)
}

/// A subscribed client, as the client database holds it. A snapshot: it
/// does not change when the broker does.
#[pyclass(name = "Client", module = "tunnelbroker", frozen, eq)]
#[derive(PartialEq)]
pub struct PyClient {
    inner: Client,
}

impl From<Client> for PyClient {
    fn from(inner: Client) -> Self {
        PyClient { inner }
    }
}

#[pymethods]
impl PyClient {
    /// The client's ID, also its certificate's common name.
    #[getter]
    fn id(&self) -> &str {
        self.inner.id.as_str()
    }

    /// "hermit" or "subnet".
    #[getter]
    fn kind(&self) -> String {
        self.inner.kind.to_string()
    }

    /// "linux" or "windows".
    #[getter]
    fn os(&self) -> String {
        self.inner.os.to_string()
    }

    /// The fixed assignment.
    #[getter]
    fn assignment(&self) -> PyAssignment {
        self.inner.assignment.into()
    }

    /// The assigned prefix (/128 or /64).
    #[getter]
    fn prefix<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ip::network(py, self.inner.prefix())
    }

    /// The client's tunnel address.
    #[getter]
    fn tunnel_address<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ip::address(py, self.inner.tunnel_address())
    }

    /// The UDP port of its server instance (per-client mode), else None.
    #[getter]
    fn port(&self) -> Option<u16> {
        self.inner.port
    }

    /// The serial of its current certificate, upper-case hex.
    #[getter]
    fn serial(&self) -> String {
        self.inner.serial.to_string()
    }

    /// "active" or "revoked".
    #[getter]
    fn state(&self) -> String {
        self.inner.state.to_string()
    }

    /// Contact e-mail.
    #[getter]
    fn email(&self) -> Option<&str> {
        self.inner.email.as_deref()
    }

    /// Contact name.
    #[getter]
    fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// When it was subscribed (UTC).
    #[getter]
    fn created_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.inner.created_at.into_pyobject(py)?.into_any())
    }

    /// When it was revoked (UTC), or None.
    #[getter]
    fn revoked_at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner
            .revoked_at
            .map(|t| Ok(t.into_pyobject(py)?.into_any()))
            .transpose()
    }

    /// When its current certificate expires (UTC).
    #[getter]
    fn not_after<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.inner.not_after.into_pyobject(py)?.into_any())
    }

    /// Whether the broker holds the client's key (False when it sent a CSR).
    #[getter]
    fn has_key(&self) -> bool {
        self.inner.has_key
    }

    /// The server it belongs to ("main" on a broker with one server).
    #[getter]
    fn server(&self) -> &str {
        &self.inner.server
    }

    fn __repr__(&self) -> String {
        format!(
            "Client('{}', kind='{}', prefix='{}', state='{}')",
            self.inner.id,
            self.inner.kind,
            self.inner.prefix(),
            self.inner.state
        )
    }
}

/// A client's current certificate and, unless it sent a CSR, its private
/// key (PEM). The key is secret: it is left out of `repr()`.
#[pyclass(name = "Credentials", module = "tunnelbroker", frozen)]
pub struct PyCredentials {
    certificate: String,
    key: Option<String>,
}

impl From<ClientCredentials> for PyCredentials {
    fn from(c: ClientCredentials) -> Self {
        PyCredentials {
            certificate: c.certificate.pem().to_owned(),
            key: c.key.map(|k| k.to_pem().to_owned()),
        }
    }
}

#[pymethods]
impl PyCredentials {
    /// The certificate, PEM.
    #[getter]
    fn certificate(&self) -> &str {
        &self.certificate
    }

    /// The private key, PEM (secret), or None.
    #[getter]
    fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    fn __repr__(&self) -> &'static str {
        if self.key.is_some() {
            "Credentials(certificate=..., key=[redacted])"
        } else {
            "Credentials(certificate=..., key=None)"
        }
    }
}

/// A CSV row that was not subscribed.
#[pyclass(name = "RowError", module = "tunnelbroker", frozen, get_all)]
pub struct PyRowError {
    /// The line of the file (1-based).
    line: u64,
    /// What was wrong: the same text as the CLI prints.
    error: String,
}

#[pymethods]
impl PyRowError {
    fn __repr__(&self) -> String {
        format!("RowError(line={}, error={:?})", self.line, self.error)
    }
}

impl From<RowError> for PyRowError {
    fn from(e: RowError) -> Self {
        PyRowError {
            line: e.line,
            error: e.error,
        }
    }
}

/// The outcome of `Broker.import_csv`.
#[pyclass(name = "ImportReport", module = "tunnelbroker", frozen, get_all)]
pub struct PyImportReport {
    /// The clients that were subscribed.
    added: Py<PyList>,
    /// The rows that were not, in line order.
    errors: Py<PyList>,
}

impl PyImportReport {
    fn new(py: Python<'_>, r: ImportReport) -> PyResult<Self> {
        let added: Vec<PyClient> = r.added.into_iter().map(Into::into).collect();
        let errors: Vec<PyRowError> = r.errors.into_iter().map(Into::into).collect();
        Ok(PyImportReport {
            added: PyList::new(py, added)?.unbind(),
            errors: PyList::new(py, errors)?.unbind(),
        })
    }
}

#[pymethods]
impl PyImportReport {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "ImportReport(added={}, errors={})",
            self.added.bind(py).len(),
            self.errors.bind(py).len()
        )
    }
}

/// A tunnel broker in a directory: settings, CA, client database.
///
/// Make one with `Broker.init(path, pool=..., endpoint=...)`, open an
/// existing one with `Broker.open(path)`. Usable from several threads at
/// once and as a context manager.
#[pyclass(name = "Broker", module = "tunnelbroker", frozen)]
pub struct PyBroker {
    inner: RwLock<Option<Arc<Broker>>>,
    path: PathBuf,
}

impl PyBroker {
    fn new(broker: Broker) -> Self {
        PyBroker {
            path: broker.dir().to_owned(),
            inner: RwLock::new(Some(Arc::new(broker))),
        }
    }

    /// The open broker, or `tunnelbroker.Error` after `close()`.
    fn get(&self) -> PyResult<Arc<Broker>> {
        let guard = self.inner.read().unwrap_or_else(|p| p.into_inner());
        guard.clone().ok_or_else(|| {
            errors::Error::new_err(format!("{}: the broker is closed", self.path.display()))
        })
    }
}

#[pymethods]
impl PyBroker {
    /// Creates a broker in `path` (which must not exist or be empty):
    /// settings, CA (generated, or imported from `ca_cert`/`ca_key` PEM; an
    /// intermediate CA's `ca_cert` holds it followed by its issuers up to
    /// the root),
    /// server certificate, tls-crypt key, client database and CRL.
    /// `database` is a new, empty PostgreSQL database
    /// (`postgresql://USER@HOST[:PORT]/DB`, never with a password: PGPASSWORD
    /// or a libpq passfile gives it) for brokers provisioned from several
    /// hosts; without it the clients are in SQLite in `path`. `parent` is the
    /// broker's parent prefix (e.g. the institution's /48), which holds
    /// `pool`: `add_server` without a pool takes the next free one from it.
    #[staticmethod]
    #[pyo3(signature = (
        path, *, pool, endpoint, mode = "per-client", port = 5000, key_type = "p256",
        lan_interface = "eth0", ca_cert = None, ca_key = None, client_days = None,
        server_days = None, ca_days = None, crl_days = None, database = None,
        tls_crypt = "v2", parent = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn init(
        py: Python<'_>,
        path: PathBuf,
        pool: &Bound<'_, PyAny>,
        endpoint: &str,
        mode: &str,
        port: u16,
        key_type: &str,
        lan_interface: &str,
        ca_cert: Option<String>,
        ca_key: Option<String>,
        client_days: Option<u32>,
        server_days: Option<u32>,
        ca_days: Option<u32>,
        crl_days: Option<u32>,
        database: Option<&str>,
        tls_crypt: &str,
        parent: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let pool = match pool.cast::<PyPool>() {
            Ok(p) => p.get().inner,
            Err(_) => ip::text_of(pool, "pool")?.parse::<Pool>().py_err(py)?,
        };
        let endpoint = endpoint.parse::<Endpoint>().py_err(py)?;
        let mut settings = Settings::new(pool, endpoint);
        settings.mode = mode.parse::<ServerMode>().py_err(py)?;
        settings.tls_crypt = tls_crypt.parse::<TlsCryptVersion>().py_err(py)?;
        settings.port = port;
        settings.key_type = key_type.parse::<KeyType>().py_err(py)?;
        settings.lan_interface = lan_interface.to_owned();
        let v = &mut settings.validity;
        v.client_days = client_days.unwrap_or(v.client_days);
        v.server_days = server_days.unwrap_or(v.server_days);
        v.ca_days = ca_days.unwrap_or(v.ca_days);
        v.crl_days = crl_days.unwrap_or(v.crl_days);
        let mut options = InitOptions::new(settings);
        options.ca = ImportedCa::from_pem(ca_cert, ca_key).py_err(py)?;
        options.database = database
            .map(str::parse::<DatabaseUrl>)
            .transpose()
            .py_err(py)?;
        options.parent = parent.map(|p| ip::prefix_arg(p, "parent")).transpose()?;
        let broker = py.detach(|| Broker::init(&path, &options)).py_err(py)?;
        Ok(PyBroker::new(broker))
    }

    /// Opens the broker in `path`. A stale copy of the shared settings
    /// (`tunnelbroker.toml`, `ca.crt`), which the client database's win
    /// over, is said in a `RuntimeWarning` (and in `open_warnings`).
    #[staticmethod]
    fn open(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let broker = py.detach(|| Broker::open(&path)).py_err(py)?;
        for w in broker.open_warnings() {
            let msg = std::ffi::CString::new(w.replace('\0', " ")).unwrap_or_default();
            PyErr::warn(
                py,
                &py.get_type::<pyo3::exceptions::PyRuntimeWarning>(),
                &msg,
                1,
            )?;
        }
        Ok(PyBroker::new(broker))
    }

    /// The broker directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// The pool.
    #[getter]
    fn pool(&self) -> PyResult<PyPool> {
        Ok(PyPool {
            inner: self.get()?.settings().pool,
        })
    }

    /// The PostgreSQL database of the clients (its URL), or `None`: SQLite
    /// in the broker directory.
    #[getter]
    fn database(&self) -> PyResult<Option<String>> {
        Ok(self
            .get()?
            .settings()
            .database
            .url
            .as_ref()
            .map(ToString::to_string))
    }

    /// What opening the broker found worth a warning, one line each: a
    /// cached copy of the shared settings (`tunnelbroker.toml`, `ca.crt`)
    /// that differed from the client database's, refreshed or not.
    #[getter]
    fn open_warnings(&self) -> PyResult<Vec<String>> {
        Ok(self.get()?.open_warnings().to_vec())
    }

    /// The host clients connect to.
    #[getter]
    fn endpoint(&self) -> PyResult<String> {
        Ok(self.get()?.settings().endpoint.to_string())
    }

    /// "per-client" or "shared".
    #[getter]
    fn mode(&self) -> PyResult<String> {
        Ok(self.get()?.settings().mode.to_string())
    }

    /// "v2" (a tls-crypt-v2 key per client) or "v1" (one tls-crypt key in
    /// every bundle).
    #[getter]
    fn tls_crypt(&self) -> PyResult<String> {
        Ok(self.get()?.settings().tls_crypt.to_string())
    }

    /// The shared server's port, or the first per-client port.
    #[getter]
    fn port(&self) -> PyResult<u16> {
        Ok(self.get()?.settings().port)
    }

    /// The key type of new keys ("p256", "ed25519", "rsa2048", ...).
    #[getter]
    fn key_type(&self) -> PyResult<String> {
        Ok(self.get()?.settings().key_type.to_string())
    }

    /// The CA certificate, PEM.
    #[getter]
    fn ca_certificate(&self) -> PyResult<String> {
        Ok(self.get()?.ca().certificate().pem().to_owned())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// Subscribes a client: allocates its assignment (the lowest free one,
    /// or `prefix`), a port in per-client mode, issues its certificate (for
    /// its own `csr`, PEM, if given) and records it, all or nothing.
    /// `server` names the server it belongs to; without it, the only
    /// server, else the one whose pool holds `prefix`, else the one with
    /// the most free assignments of its kind (`Client.server` says which).
    #[pyo3(signature = (id, kind = "subnet", os = "linux", email = None, name = None, prefix = None, csr = None, server = None))]
    #[allow(clippy::too_many_arguments)]
    fn add_client(
        &self,
        py: Python<'_>,
        id: &str,
        kind: &str,
        os: &str,
        email: Option<String>,
        name: Option<String>,
        prefix: Option<&Bound<'_, PyAny>>,
        csr: Option<String>,
        server: Option<String>,
    ) -> PyResult<PyClient> {
        let mut req = NewClient::new(id_arg(py, id)?, kind_arg(py, kind)?);
        req.server = server;
        req.os = os.parse::<ClientOs>().py_err(py)?;
        req.email = email;
        req.name = name;
        req.prefix = prefix.map(|p| ip::prefix_arg(p, "prefix")).transpose()?;
        req.csr = csr;
        let broker = self.get()?;
        let client = py.detach(|| broker.add_client(&req)).py_err(py)?;
        Ok(client.into())
    }

    /// Adds an OpenVPN server with its own endpoint, mode, port, pool and
    /// certificate. Without `pool`, the next free one of `pool_length`
    /// (default 56) from the broker's parent prefix. Pools may not overlap
    /// (`InvalidInputError`); a name in use is `AlreadyExistsError`.
    #[pyo3(signature = (name, *, endpoint, pool = None, pool_length = None, mode = "per-client", port = None))]
    #[allow(clippy::too_many_arguments)]
    fn add_server(
        &self,
        py: Python<'_>,
        name: &str,
        endpoint: &str,
        pool: Option<&Bound<'_, PyAny>>,
        pool_length: Option<u8>,
        mode: &str,
        port: Option<u16>,
    ) -> PyResult<PyServer> {
        let mut new = NewServer::new(name, endpoint.parse::<Endpoint>().py_err(py)?);
        new.mode = mode.parse::<ServerMode>().py_err(py)?;
        new.port = port;
        new.pool = match pool {
            None => None,
            Some(p) => Some(match p.cast::<PyPool>() {
                Ok(p) => p.get().inner,
                Err(_) => ip::text_of(p, "pool")?.parse::<Pool>().py_err(py)?,
            }),
        };
        new.pool_length = pool_length;
        let broker = self.get()?;
        let server = py.detach(|| broker.add_server(&new)).py_err(py)?;
        Ok(server.into())
    }

    /// Every server, in name order, with its clients and free capacity.
    fn servers(&self, py: Python<'_>) -> PyResult<Vec<PyServer>> {
        let broker = self.get()?;
        let all = py.detach(|| broker.servers()).py_err(py)?;
        Ok(all.into_iter().map(Into::into).collect())
    }

    /// The live sessions of every server, as their agents last recorded
    /// them.
    fn status(&self, py: Python<'_>) -> PyResult<Vec<PySession>> {
        let broker = self.get()?;
        let all = py.detach(|| broker.status()).py_err(py)?;
        Ok(all.into_iter().map(Into::into).collect())
    }

    /// The recorded sessions (oldest first; the latest `limit` first with
    /// a limit), of one client or server, only live ones, or those live at
    /// some time from `since` to `until` (aware datetimes or text).
    #[pyo3(signature = (*, client_id = None, server = None, live = false, since = None, until = None, limit = None))]
    #[allow(clippy::too_many_arguments)]
    fn sessions(
        &self,
        py: Python<'_>,
        client_id: Option<String>,
        server: Option<String>,
        live: bool,
        since: Option<Bound<'_, PyAny>>,
        until: Option<Bound<'_, PyAny>>,
        limit: Option<u32>,
    ) -> PyResult<Vec<PySession>> {
        let mut filter = SessionFilter::default();
        filter.client_id = client_id;
        filter.server = server;
        filter.open_only = live;
        filter.from = since.as_ref().map(time_arg).transpose()?;
        filter.to = until.as_ref().map(time_arg).transpose()?;
        filter.limit = limit;
        let broker = self.get()?;
        let all = py.detach(|| broker.sessions(&filter)).py_err(py)?;
        Ok(all.into_iter().map(Into::into).collect())
    }

    /// Who held `address` (an IPv6Address or text) at `at` (an aware
    /// datetime or text; default now): the client, its e-mail and name
    /// then, and its sessions around then. `ValueError` for an address
    /// that is not IPv6 or lies outside the pool, or a bad time.
    #[pyo3(signature = (address, at = None))]
    fn whois(
        &self,
        py: Python<'_>,
        address: &Bound<'_, PyAny>,
        at: Option<Bound<'_, PyAny>>,
    ) -> PyResult<PyWhois> {
        let address = parse_address(&ip::text_of(address, "address")?).py_err(py)?;
        let at = at.as_ref().map(time_arg).transpose()?;
        let broker = self.get()?;
        Ok(py.detach(|| broker.whois(address, at)).py_err(py)?.into())
    }

    /// Every client, in ID order.
    fn clients(&self, py: Python<'_>) -> PyResult<Vec<PyClient>> {
        let broker = self.get()?;
        let all = py.detach(|| broker.clients()).py_err(py)?;
        Ok(all.into_iter().map(Into::into).collect())
    }

    /// One client; `NotFoundError` if there is none with this ID.
    fn client(&self, py: Python<'_>, id: &str) -> PyResult<PyClient> {
        let id = id_arg(py, id)?;
        let broker = self.get()?;
        Ok(py.detach(|| broker.client(&id)).py_err(py)?.into())
    }

    /// A client's certificate and (unless it sent a CSR) key.
    fn credentials(&self, py: Python<'_>, id: &str) -> PyResult<PyCredentials> {
        let id = id_arg(py, id)?;
        let broker = self.get()?;
        Ok(py
            .detach(|| broker.client_credentials(&id))
            .py_err(py)?
            .into())
    }

    /// Revokes a client: its certificate goes on the CRL; its assignment
    /// stays reserved until `purge`. `reason` is one of "unspecified",
    /// "key-compromise", "affiliation-changed", "superseded",
    /// "cessation-of-operation".
    ///
    /// Then ends the client's live session on this host, through the
    /// management socket in the run directory that `render_server`
    /// recorded; when that fails (a server answers but refuses, or does not
    /// answer within the management deadline), a `RuntimeWarning` says why
    /// and what ends it: the revocation itself has happened. Returns a
    /// `Revocation`: the revoked client and what became of its session.
    #[pyo3(signature = (id, reason = "unspecified"))]
    fn revoke(&self, py: Python<'_>, id: &str, reason: &str) -> PyResult<PyRevocation> {
        let id = id_arg(py, id)?;
        let reason = reason.parse::<RevocationReason>().py_err(py)?;
        let broker = self.get()?;
        let revocation = py.detach(|| broker.revoke(&id, reason)).py_err(py)?;
        if let Some(why) = revocation.session.not_ended() {
            let msg = std::ffi::CString::new(format!(
                "client {id} is revoked, but its live session could not be ended: {why}"
            ))
            .unwrap_or_default();
            PyErr::warn(
                py,
                &py.get_type::<pyo3::exceptions::PyRuntimeWarning>(),
                &msg,
                1,
            )?;
        }
        Ok(PyRevocation {
            client: Py::new(py, PyClient::from(revocation.client))?,
            session: revocation.session.word(),
            session_ended: revocation.session.ended(),
            summary: revocation.session.summary(),
        })
    }

    /// Gives an active client a new key and certificate (or a certificate
    /// for its new `csr`); assignment and port stay.
    #[pyo3(signature = (id, csr = None))]
    fn renew(&self, py: Python<'_>, id: &str, csr: Option<String>) -> PyResult<PyClient> {
        let id = id_arg(py, id)?;
        let broker = self.get()?;
        Ok(py
            .detach(|| broker.renew(&id, csr.as_deref()))
            .py_err(py)?
            .into())
    }

    /// Removes a revoked client and frees its assignment and port.
    fn purge(&self, py: Python<'_>, id: &str) -> PyResult<PyClient> {
        let id = id_arg(py, id)?;
        let broker = self.get()?;
        Ok(py.detach(|| broker.purge(&id)).py_err(py)?.into())
    }

    /// The CRL as it is on disk.
    fn crl(&self, py: Python<'_>) -> PyResult<PyCrl> {
        let broker = self.get()?;
        Ok(py.detach(|| broker.crl()).py_err(py)?.into())
    }

    /// Signs and writes a fresh CRL (next number, new nextUpdate).
    fn refresh_crl(&self, py: Python<'_>) -> PyResult<PyCrl> {
        let broker = self.get()?;
        Ok(py.detach(|| broker.refresh_crl()).py_err(py)?.into())
    }

    /// Writes a client's bundle (`.tar.gz` for linux, `.zip` for windows;
    /// mode 0600, it holds the client's key) to `path`, or into `path` when
    /// it is a directory, and returns the file written.
    fn bundle(&self, py: Python<'_>, id: &str, path: PathBuf) -> PyResult<PathBuf> {
        let broker = self.get()?;
        let id = id_arg(py, id)?;
        py.detach(|| broker.bundle(&id, Some(&path))).py_err(py)
    }

    /// Renders the OpenVPN server files (Debian layout), a copy of the CRL
    /// and the systemd units that keep it fresh into `path` (default: the
    /// directory the last rendering recorded, else the broker's `server/`),
    /// with management sockets in `run_dir` (default: the recorded one,
    /// else /run/openvpn-server), and records both: later CRLs are copied
    /// there. `binary` is the `tunnelbroker` the CRL refresh unit runs
    /// (default /usr/local/bin/tunnelbroker). Unchanged files are left
    /// alone; files of clients that are no longer active are removed.
    /// Refused (`InvalidInputError`) when OpenVPN, as nobody, could not
    /// reach `path`. Only the broker's own files are written or removed:
    /// a file in the way that it did not write raises AlreadyExistsError
    /// unless `force`.
    #[pyo3(signature = (path = None, force = false, *, run_dir = None, binary = None))]
    fn render_server(
        &self,
        py: Python<'_>,
        path: Option<PathBuf>,
        force: bool,
        run_dir: Option<PathBuf>,
        binary: Option<PathBuf>,
    ) -> PyResult<PyRenderReport> {
        let broker = self.get()?;
        let mut options = RenderOptions::default();
        options.dir = path;
        options.run_dir = run_dir;
        options.binary = binary;
        options.force = force;
        let r = py
            .detach(|| broker.render_server_with(&options))
            .py_err(py)?;
        Ok(PyRenderReport::from(r))
    }

    /// Issues the OpenVPN server a new certificate and key (never past the
    /// CA's end), replaces `server.crt` and `private/server.key`,
    /// re-renders the rendered server directory if there is one, and says
    /// which `openvpn-server@NAME` units to restart.
    fn renew_server(&self, py: Python<'_>) -> PyResult<PyServerRenewal> {
        let broker = self.get()?;
        let r = py.detach(|| broker.renew_server()).py_err(py)?;
        Ok(PyServerRenewal {
            certificate: r.certificate.pem().to_owned(),
            serial: r.certificate.serial().to_string(),
            not_after: r.certificate.info().not_after,
            rendered: r
                .rendered
                .map(|r| Py::new(py, PyRenderReport::from(r)))
                .transpose()?,
            restart: r.restart,
            warnings: r.warnings,
        })
    }

    /// One line per kind of certificate (client, server) that, issued now
    /// with the broker's validity settings, would be cut short to end with
    /// the CA (an imported CA that expires soon); empty when none would.
    fn lifetime_warnings(&self) -> PyResult<Vec<String>> {
        Ok(self.get()?.lifetime_warnings())
    }

    /// Checks that the client database, the CA, the CRL and the rendered
    /// server files agree, as `tunnelbroker audit` does, and that the
    /// broker's files are not open to others and OpenVPN can reach
    /// `server_dir`. Certificates (clients', the server's, the CA's) that
    /// expire within `days` WARN. `server_dir` is where the server files
    /// were rendered (default the broker's `server/`). With `fix`, makes the
    /// safe repairs only (too-open modes narrowed, a fresh CRL, re-rendered
    /// server files), checks again and lists what it did in the report's
    /// `actions`. Problems are checks of the report, not exceptions.
    #[pyo3(signature = (days = 30, fix = false, server_dir = None))]
    fn audit(
        &self,
        py: Python<'_>,
        days: u32,
        fix: bool,
        server_dir: Option<PathBuf>,
    ) -> PyResult<PyReport> {
        let mut options = AuditOptions::default();
        options.days = days;
        options.fix = fix;
        options.server_dir = server_dir
            .map(|p| path_arg(py, p, "server directory"))
            .transpose()?;
        let broker = self.get()?;
        Ok(py.detach(|| doctor::audit(&broker, &options)).into())
    }

    /// Subscribes every good row of a CSV text (columns `id, kind, os,
    /// email, name[, prefix]`; a header row starting with `id` is skipped).
    /// Bad rows are reported, not raised. `progress(done, total)` is called
    /// after each batch; an exception it raises is raised when the import
    /// has finished (the rows it covered are subscribed). Runs without the
    /// GIL, on every core.
    #[pyo3(signature = (text, progress = None))]
    fn import_csv(
        &self,
        py: Python<'_>,
        text: &str,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<PyImportReport> {
        let broker = self.get()?;
        let mut callback_err: Option<PyErr> = None;
        let report = py
            .detach(|| {
                broker.import_csv(text, &mut |done, total| {
                    if let (Some(cb), None) = (&progress, &callback_err) {
                        Python::attach(|py| {
                            if let Err(e) = cb.call1(py, (done, total)) {
                                callback_err = Some(e);
                            }
                        });
                    }
                })
            })
            .py_err(py)?;
        if let Some(e) = callback_err {
            return Err(e);
        }
        PyImportReport::new(py, report)
    }

    /// Releases the broker; later calls raise `tunnelbroker.Error`. Calls
    /// running in other threads finish first.
    fn close(&self) {
        let mut guard = self.inner.write().unwrap_or_else(|p| p.into_inner());
        *guard = None;
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) {
        self.close();
    }

    fn __repr__(&self) -> String {
        format!("Broker('{}')", self.path.display())
    }
}

/// What `Broker.render_server` did.
#[pyclass(name = "RenderReport", module = "tunnelbroker", frozen, get_all)]
pub struct PyRenderReport {
    /// The output directory.
    dir: PathBuf,
    /// The run directory of the management sockets.
    run_dir: PathBuf,
    /// Files written because they were new or had changed.
    written: Vec<PathBuf>,
    /// Files already up to date.
    unchanged: Vec<PathBuf>,
    /// Files of clients no longer active, removed.
    removed: Vec<PathBuf>,
    /// Instance names to start (`openvpn-server@NAME`).
    instances: Vec<String>,
    /// Things the operator should know.
    warnings: Vec<String>,
}

impl From<RenderReport> for PyRenderReport {
    fn from(r: RenderReport) -> Self {
        PyRenderReport {
            dir: r.dir,
            run_dir: r.run_dir,
            written: r.written,
            unchanged: r.unchanged,
            removed: r.removed,
            instances: r.instances,
            warnings: r.warnings,
        }
    }
}

/// What `Broker.revoke` did: the revoked client and what became of its live
/// session on this host (as `tunnelbroker client revoke` reports it).
#[pyclass(name = "Revocation", module = "tunnelbroker", frozen, get_all)]
pub struct PyRevocation {
    /// The client, now revoked.
    client: Py<PyClient>,
    /// What became of its session: "ended", "not-connected", "no-server",
    /// "unanswered" or "failed".
    session: &'static str,
    /// Whether the server ended a live session.
    session_ended: bool,
    /// The same in one line.
    summary: String,
}

#[pymethods]
impl PyRevocation {
    fn __repr__(&self) -> String {
        format!(
            "Revocation(client='{}', session='{}')",
            self.client.get().inner.id,
            self.session
        )
    }
}

/// What `Broker.renew_server` did.
#[pyclass(name = "ServerRenewal", module = "tunnelbroker", frozen, get_all)]
pub struct PyServerRenewal {
    /// The new server certificate, PEM.
    certificate: String,
    /// Its serial, hex.
    serial: String,
    /// Its end of validity.
    not_after: time::OffsetDateTime,
    /// The re-rendered server directory, if one had been rendered.
    rendered: Option<Py<PyRenderReport>>,
    /// The systemd units to restart (`openvpn-server@NAME`).
    restart: Vec<String>,
    /// Things the operator should know.
    warnings: Vec<String>,
}

#[pymethods]
impl PyServerRenewal {
    fn __repr__(&self) -> String {
        format!(
            "ServerRenewal(serial='{}', restart={:?})",
            self.serial, self.restart
        )
    }
}

#[pymethods]
impl PyRenderReport {
    fn __repr__(&self) -> String {
        format!(
            "RenderReport(dir='{}', written={}, unchanged={}, removed={})",
            self.dir.display(),
            self.written.len(),
            self.unchanged.len(),
            self.removed.len()
        )
    }
}

/// One OpenVPN server of the broker (a snapshot), as `Broker.servers()`
/// lists it.
#[pyclass(name = "Server", module = "tunnelbroker", frozen, get_all)]
pub struct PyServer {
    /// Its name.
    name: String,
    /// The host its clients connect to.
    endpoint: String,
    /// "per-client" or "shared".
    mode: String,
    /// The shared server's port, or the first per-client port.
    port: u16,
    /// Its pool.
    pool: PyPool,
    /// The common name of its certificate, which its clients' bundles check.
    certificate_name: String,
    /// How many clients it has.
    clients: u64,
    /// Free subnet /64s in its pool.
    subnets_free: u64,
    /// Free hermit addresses in its pool.
    hermits_free: u64,
}

impl From<Server> for PyServer {
    fn from(s: Server) -> Self {
        PyServer {
            endpoint: s.endpoint.to_string(),
            mode: s.mode.to_string(),
            port: s.port,
            pool: PyPool { inner: s.pool },
            certificate_name: s.certificate_name,
            clients: s.clients,
            subnets_free: s.subnets_free,
            hermits_free: s.hermits_free,
            name: s.name,
        }
    }
}

#[pymethods]
impl PyServer {
    fn __repr__(&self) -> String {
        format!(
            "Server('{}', endpoint='{}', pool='{}', clients={})",
            self.name, self.endpoint, self.pool.inner, self.clients
        )
    }
}

/// Adds the broker's classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBroker>()?;
    m.add_class::<PyServer>()?;
    m.add_class::<PyClient>()?;
    m.add_class::<PyCredentials>()?;
    m.add_class::<PyImportReport>()?;
    m.add_class::<PyRowError>()?;
    m.add_class::<PyRenderReport>()?;
    m.add_class::<PyServerRenewal>()?;
    m.add_class::<PyRevocation>()?;
    Ok(())
}
