//! The PKI values the broker hands out (core module `pki`): `Crl`.

use pyo3::prelude::*;
use tunnelbroker_core::pki::{Crl, Serial};

use crate::errors::IntoPy;

/// A signed certificate revocation list.
#[pyclass(name = "Crl", module = "tunnelbroker", frozen)]
pub struct PyCrl {
    inner: Crl,
}

impl From<Crl> for PyCrl {
    fn from(inner: Crl) -> Self {
        PyCrl { inner }
    }
}

#[pymethods]
impl PyCrl {
    /// The CRL, PEM.
    #[getter]
    fn pem(&self) -> &str {
        self.inner.pem()
    }

    /// The CRL, DER.
    #[getter]
    fn der(&self) -> &[u8] {
        self.inner.der()
    }

    /// The CRL number (grows with every CRL the broker signs).
    #[getter]
    fn number(&self) -> u64 {
        self.inner.number()
    }

    /// When it was signed (UTC).
    #[getter]
    fn this_update<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.inner.this_update().into_pyobject(py)?.into_any())
    }

    /// When it goes stale (UTC).
    #[getter]
    fn next_update<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.inner.next_update().into_pyobject(py)?.into_any())
    }

    /// The revoked serials, upper-case hex.
    #[getter]
    fn revoked_serials(&self) -> Vec<String> {
        self.inner
            .revoked_serials()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Whether the serial (hex, `:` separators allowed) is on the list.
    fn is_revoked(&self, py: Python<'_>, serial: &str) -> PyResult<bool> {
        let serial = serial.parse::<Serial>().py_err(py)?;
        Ok(self.inner.is_revoked(&serial))
    }

    fn __contains__(&self, py: Python<'_>, serial: &str) -> PyResult<bool> {
        self.is_revoked(py, serial)
    }

    fn __len__(&self) -> usize {
        self.inner.revoked_serials().len()
    }

    fn __repr__(&self) -> String {
        format!(
            "Crl(number={}, revoked={})",
            self.inner.number(),
            self.inner.revoked_serials().len()
        )
    }
}

/// Adds the classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCrl>()?;
    Ok(())
}
