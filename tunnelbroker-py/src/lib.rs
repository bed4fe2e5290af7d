//! `tunnelbroker`: Python bindings for the tunnelbroker IPv6 tunnel broker.
//!
//! A thin layer over `tunnelbroker-core`: one Rust file per core module,
//! each holding `Py*` wrappers that convert values and call the core. The
//! compiled module is `tunnelbroker._tunnelbroker`; the package
//! `tunnelbroker` (in `python/`) re-exports it with type stubs.

mod broker;
mod client_id;
mod doctor;
mod errors;
mod ip;
mod pki;
mod plan;
mod sessions;

use pyo3::prelude::*;

/// The native module, re-exported by the `tunnelbroker` package.
#[pymodule]
fn _tunnelbroker(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    client_id::register(m)?;
    plan::register(m)?;
    pki::register(m)?;
    broker::register(m)?;
    doctor::register(m)?;
    sessions::register(m)?;
    Ok(())
}
