//! Addresses and prefixes across the boundary: out as the standard library's
//! `ipaddress.IPv6Address` / `IPv6Network`, in as those or as text.
//!
//! Input is always parsed by the core (`parse_prefix`), so a bad value gets
//! the same message as in the CLI.

use std::net::Ipv6Addr;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyType};
use tunnelbroker_core::plan::parse_prefix;
use tunnelbroker_core::{Error as CoreError, Ipv6Net};

use crate::errors::to_py;

static IPV6_ADDRESS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static IPV6_NETWORK: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static IP_TYPES: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `ipaddress.IPv6Address(addr)`.
pub(crate) fn address(py: Python<'_>, addr: Ipv6Addr) -> PyResult<Bound<'_, PyAny>> {
    IPV6_ADDRESS
        .import(py, "ipaddress", "IPv6Address")?
        .call1((u128::from(addr),))
}

/// `ipaddress.IPv6Network((addr, len))`.
pub(crate) fn network(py: Python<'_>, net: Ipv6Net) -> PyResult<Bound<'_, PyAny>> {
    IPV6_NETWORK
        .import(py, "ipaddress", "IPv6Network")?
        .call1(((u128::from(net.network()), net.prefix_len()),))
}

/// The text of an input value: a `str`, or any object of the `ipaddress`
/// module (IPv4 ones too, so that the core can say why they are refused).
pub(crate) fn text_of(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<String> {
    let py = obj.py();
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(s.to_cow()?.into_owned());
    }
    let types = IP_TYPES.get_or_try_init(py, || {
        let m = py.import("ipaddress")?;
        let t = (
            m.getattr("IPv6Address")?,
            m.getattr("IPv6Network")?,
            m.getattr("IPv6Interface")?,
            m.getattr("IPv4Address")?,
            m.getattr("IPv4Network")?,
            m.getattr("IPv4Interface")?,
        );
        Ok::<_, PyErr>(t.into_pyobject(py)?.into_any().unbind())
    })?;
    if obj.is_instance(types.bind(py))? {
        return Ok(obj.str()?.to_cow()?.into_owned());
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be a str or an ipaddress object, not {}",
        obj.get_type().name()?
    )))
}

/// A prefix from `str` / `IPv6Network` / `IPv6Address` (an address is a /128).
pub(crate) fn prefix_arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Ipv6Net> {
    let text = text_of(obj, what)?;
    parse_prefix(&text).map_err(|e| to_py(obj.py(), &e))
}

/// An address from `str` / `IPv6Address` (or a /128 prefix).
pub(crate) fn address_arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Ipv6Addr> {
    let text = text_of(obj, what)?;
    let net = parse_prefix(&text).map_err(|e| to_py(obj.py(), &e))?;
    if net.prefix_len() != 128 {
        return Err(to_py(
            obj.py(),
            &CoreError::InvalidPrefix {
                input: format!("{:?}", text.chars().take(64).collect::<String>()),
                reason: "expected a single address, not a prefix".into(),
            },
        ));
    }
    Ok(net.addr())
}
