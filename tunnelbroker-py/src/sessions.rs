//! Sessions (core `broker::sessions`): `Session` and `Whois`, returned by
//! `Broker.status()`, `Broker.sessions(...)` and `Broker.whois(...)`.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyString;
use time::OffsetDateTime;
use tunnelbroker_core::broker::{Session, Whois, parse_time};

use crate::errors::IntoPy;
use crate::ip;

/// A time argument: an aware `datetime`, or text as the CLI takes it
/// (RFC 3339, or "YYYY-MM-DD HH:MM[:SS]" in UTC).
pub(crate) fn time_arg(obj: &Bound<'_, PyAny>) -> PyResult<OffsetDateTime> {
    let py = obj.py();
    if let Ok(s) = obj.cast::<PyString>() {
        return parse_time(&s.to_cow()?).py_err(py);
    }
    obj.extract::<OffsetDateTime>().map_err(|_| {
        PyTypeError::new_err(
            "a time is an aware datetime (with tzinfo) or a str such as '2026-12-01 14:00'",
        )
    })
}

fn time_out<'py>(py: Python<'py>, t: OffsetDateTime) -> PyResult<Bound<'py, PyAny>> {
    Ok(t.into_pyobject(py)?.into_any())
}

/// One session of a client on a server, as the agent recorded it. A
/// snapshot.
#[pyclass(name = "Session", module = "tunnelbroker", frozen, eq)]
#[derive(PartialEq)]
pub struct PySession {
    inner: Session,
}

impl From<Session> for PySession {
    fn from(inner: Session) -> Self {
        PySession { inner }
    }
}

#[pymethods]
impl PySession {
    /// The server's name.
    #[getter]
    fn server(&self) -> &str {
        &self.inner.server
    }

    /// The client ID (the certificate's common name).
    #[getter]
    fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// The real source address and port, "198.18.0.2:51234" or "[2001:db8::2]:1194".
    #[getter]
    fn real_address(&self) -> String {
        self.inner.real_address.to_string()
    }

    /// The tunnel addresses OpenVPN reported, as text.
    #[getter]
    fn virtual_addresses(&self) -> Vec<String> {
        self.inner
            .virtual_addresses
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// "hermit" or "subnet": the client's kind when the session was
    /// recorded (None: no client of that name then).
    #[getter]
    fn kind(&self) -> Option<String> {
        self.inner.addresses.map(|a| a.kind.to_string())
    }

    /// The client's prefix when the session was recorded, or None.
    #[getter]
    fn prefix<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner
            .addresses
            .map(|a| ip::network(py, a.prefix))
            .transpose()
    }

    /// The client's tunnel address when the session was recorded, or None.
    #[getter]
    fn tunnel_address<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner
            .addresses
            .and_then(|a| a.tunnel_address)
            .map(|t| ip::address(py, t))
            .transpose()
    }

    /// When it started (UTC).
    #[getter]
    fn started_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        time_out(py, self.inner.started_at)
    }

    /// When it was seen ended (UTC), or None while live.
    #[getter]
    fn ended_at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner.ended_at.map(|t| time_out(py, t)).transpose()
    }

    /// Bytes from the client.
    #[getter]
    fn bytes_in(&self) -> u64 {
        self.inner.bytes_in
    }

    /// Bytes to the client.
    #[getter]
    fn bytes_out(&self) -> u64 {
        self.inner.bytes_out
    }

    fn __repr__(&self) -> String {
        format!(
            "Session('{}', server='{}', real_address='{}', live={})",
            tunnelbroker_core::flatten(&self.inner.client_id),
            self.inner.server,
            self.inner.real_address,
            if self.inner.ended_at.is_none() {
                "True"
            } else {
                "False"
            }
        )
    }
}

/// Who held an address at a time (`Broker.whois`). `client_id` is None
/// when nobody did, as far as the records kept reach.
#[pyclass(name = "Whois", module = "tunnelbroker", frozen)]
pub struct PyWhois {
    inner: Whois,
}

impl From<Whois> for PyWhois {
    fn from(inner: Whois) -> Self {
        PyWhois { inner }
    }
}

#[pymethods]
impl PyWhois {
    /// The address asked about.
    #[getter]
    fn address<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ip::address(py, self.inner.address)
    }

    /// The time asked about (UTC).
    #[getter]
    fn at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        time_out(py, self.inner.at)
    }

    /// The client that held it then, or None.
    #[getter]
    fn client_id(&self) -> Option<&str> {
        self.inner.holder.as_ref().map(|h| h.client_id.as_str())
    }

    /// Its e-mail then.
    #[getter]
    fn email(&self) -> Option<&str> {
        self.inner.holder.as_ref().and_then(|h| h.email.as_deref())
    }

    /// Its name then.
    #[getter]
    fn name(&self) -> Option<&str> {
        self.inner.holder.as_ref().and_then(|h| h.name.as_deref())
    }

    /// "hermit" or "subnet", or None.
    #[getter]
    fn kind(&self) -> Option<String> {
        self.inner.holder.as_ref().map(|h| h.kind.to_string())
    }

    /// The prefix it held (/128 or /64), or None.
    #[getter]
    fn prefix<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner
            .holder
            .as_ref()
            .map(|h| ip::network(py, h.prefix))
            .transpose()
    }

    /// Its tunnel address, or None.
    #[getter]
    fn tunnel_address<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner
            .tunnel_address
            .map(|t| ip::address(py, t))
            .transpose()
    }

    /// Since when it held it (UTC), or None.
    #[getter]
    fn since<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner
            .holder
            .as_ref()
            .map(|h| time_out(py, h.since))
            .transpose()
    }

    /// Until when (UTC; exclusive), or None while it holds it.
    #[getter]
    fn until<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner
            .holder
            .as_ref()
            .and_then(|h| h.until)
            .map(|t| time_out(py, t))
            .transpose()
    }

    /// Its sessions from a day before to a day after, latest first.
    #[getter]
    fn sessions(&self) -> Vec<PySession> {
        self.inner
            .sessions
            .iter()
            .cloned()
            .map(Into::into)
            .collect()
    }

    fn __repr__(&self) -> String {
        match &self.inner.holder {
            Some(h) => format!(
                "Whois('{}', client_id='{}', prefix='{}')",
                self.inner.address, h.client_id, h.prefix
            ),
            None => format!("Whois('{}', client_id=None)", self.inner.address),
        }
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySession>()?;
    m.add_class::<PyWhois>()?;
    Ok(())
}
