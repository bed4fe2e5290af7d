//! Client identifiers (core module `client_id`).

use pyo3::prelude::*;
use tunnelbroker_core::ClientId;

use crate::errors::IntoPy;

/// Checks `text` against the client-ID rule (1 to 64 ASCII letters, digits,
/// `.`, `-`, `_`; not starting with `.` or `-`) and returns it unchanged;
/// raises `InvalidInputError` saying which part of the rule it breaks.
#[pyfunction]
pub(crate) fn check_client_id(py: Python<'_>, text: &str) -> PyResult<String> {
    ClientId::new(text).py_err(py).map(String::from)
}

/// Adds the functions to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(check_client_id, m)?)?;
    m.add("CLIENT_ID_MAX_LEN", ClientId::MAX_LEN)?;
    Ok(())
}
