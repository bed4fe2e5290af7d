//! Diagnostics (core module `doctor`): `Report`, `Check`, the module
//! function `doctor()` and the constants `CHECKS` and `AUDIT_CHECKS`. `Broker.audit()` lives
//! with the broker and returns a `Report` too.
//!
//! A report is the core's own value: its text is the core's `Display` (what
//! the CLI prints) and its JSON the core's serde form (what `--json`
//! prints). A status is the word serde gives it: "pass", "warn", "fail",
//! "skip".

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyTuple;
use tunnelbroker_core::Error as CoreError;
use tunnelbroker_core::doctor::{self, Check, DoctorOptions, LiveSystem, Report, Status};

use crate::errors::{self, IntoPy};

/// Every status, for parsing the words back.
const STATUSES: [Status; 4] = [Status::Pass, Status::Warn, Status::Fail, Status::Skip];

/// A status as its serde name ("pass", "warn", "fail", "skip").
fn status_name(status: Status) -> PyResult<String> {
    match serde_json::to_value(status) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        other => Err(errors::Error::new_err(format!(
            "status {status} has no name: {other:?}"
        ))),
    }
}

/// A status from its serde name; `InvalidInputError` for any other word.
fn status_arg(py: Python<'_>, word: &str) -> PyResult<Status> {
    for s in STATUSES {
        if status_name(s)? == word {
            return Ok(s);
        }
    }
    Err(errors::to_py(
        py,
        &CoreError::InvalidChoice {
            what: "check status",
            input: format!("{:?}", word.chars().take(64).collect::<String>()),
            expected: "pass, warn, fail, skip",
        },
    ))
}

/// A path given for `what`, refused with `InvalidInputError` when it holds
/// a NUL byte (no file can have such a name; the core would only report
/// it as missing).
pub(crate) fn path_arg(py: Python<'_>, path: PathBuf, what: &'static str) -> PyResult<PathBuf> {
    let bytes = OsStr::as_bytes(path.as_os_str());
    if !bytes.contains(&0) {
        return Ok(path);
    }
    let text = String::from_utf8_lossy(bytes);
    Err(errors::to_py(
        py,
        &CoreError::InvalidField {
            field: what,
            input: format!("{:?}", text.chars().take(64).collect::<String>()),
            reason: "a path cannot contain a NUL byte".into(),
        },
    ))
}

/// One checked item of a `Report`.
#[pyclass(name = "Check", module = "tunnelbroker", frozen, eq)]
#[derive(PartialEq)]
pub struct PyCheck {
    inner: Check,
}

#[pymethods]
impl PyCheck {
    /// The check's stable name ("crl", "forwarding", ...; see `CHECKS`).
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    /// "pass", "warn", "fail" or "skip".
    #[getter]
    fn status(&self) -> PyResult<String> {
        status_name(self.inner.status)
    }

    /// What was found, one line.
    #[getter]
    fn message(&self) -> &str {
        &self.inner.message
    }

    /// How to fix it, one line; None when the check passed.
    #[getter]
    fn hint(&self) -> Option<&str> {
        self.inner.hint.as_deref()
    }

    fn __repr__(&self) -> PyResult<String> {
        Ok(format!(
            "Check({:?}, {:?}, {:?})",
            self.inner.name,
            status_name(self.inner.status)?,
            self.inner.message
        ))
    }
}

/// The result of `doctor()` or `Broker.audit()`: every check in the order
/// they ran and, after `audit(fix=True)`, what was repaired. `str()` is
/// the text the CLI prints, `to_json()` what its `--json` prints.
#[pyclass(name = "Report", module = "tunnelbroker", frozen, eq)]
#[derive(PartialEq)]
pub struct PyReport {
    inner: Report,
}

impl From<Report> for PyReport {
    fn from(inner: Report) -> Self {
        PyReport { inner }
    }
}

#[pymethods]
impl PyReport {
    /// What was checked ("tunnelbroker audit: /srv/tunnelbroker").
    #[getter]
    fn title(&self) -> &str {
        &self.inner.title
    }

    /// Every check, in the order they ran.
    #[getter]
    fn checks(&self) -> Vec<PyCheck> {
        self.inner
            .checks
            .iter()
            .map(|c| PyCheck { inner: c.clone() })
            .collect()
    }

    /// What `audit(fix=True)` repaired (or told to do), one line each.
    #[getter]
    fn actions(&self) -> Vec<String> {
        self.inner.actions.clone()
    }

    /// Whether any check failed (the CLI then exits with status 1).
    #[getter]
    fn failed(&self) -> bool {
        self.inner.failed()
    }

    /// How many checks have this status ("pass", "warn", "fail", "skip").
    fn count(&self, py: Python<'_>, status: &str) -> PyResult<usize> {
        Ok(self.inner.count(status_arg(py, status)?))
    }

    /// The worst status of the checks called `name`, or None if none ran.
    fn status_of(&self, name: &str) -> PyResult<Option<String>> {
        self.inner.status_of(name).map(status_name).transpose()
    }

    /// The report as JSON, as `tunnelbroker doctor|audit --json` prints it:
    /// `{"title", "checks": [{"name", "status", "message", "hint"}], "actions"}`.
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string_pretty(&self.inner).map_err(|e| errors::Error::new_err(e.to_string()))
    }

    fn __str__(&self) -> String {
        self.inner.to_string()
    }

    fn __repr__(&self) -> String {
        format!(
            "Report({:?}, pass={}, warn={}, fail={}, skip={})",
            self.inner.title,
            self.inner.count(Status::Pass),
            self.inner.count(Status::Warn),
            self.inner.count(Status::Fail),
            self.inner.count(Status::Skip)
        )
    }
}

/// Checks a client of the broker on this machine, as `tunnelbroker doctor
/// --config FILE` does: OpenVPN and the kernel, the configuration and its
/// certificates and keys, and, while the tunnel is up, addresses, routes,
/// one `ping -6` to the server (unless `ping=False`) and, for a subnet
/// client, forwarding and the LAN interface (`lan`, else the one the
/// configuration names, else eth0). Read-only. A configuration that cannot
/// be read is a FAIL of the `config` check, not an exception; a bad `lan`
/// raises `InvalidInputError`.
#[pyfunction(name = "doctor")]
#[pyo3(signature = (config, *, lan = None, ping = true))]
fn run_doctor(
    py: Python<'_>,
    config: PathBuf,
    lan: Option<&str>,
    ping: bool,
) -> PyResult<PyReport> {
    let mut options = DoctorOptions::default();
    options.lan_interface = lan.map(str::parse).transpose().py_err(py)?;
    options.ping = ping;
    Ok(py
        .detach(|| doctor::run(&config, &options, &LiveSystem))
        .into())
}

/// Adds the diagnostics to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyReport>()?;
    m.add_class::<PyCheck>()?;
    m.add_function(wrap_pyfunction!(run_doctor, m)?)?;
    m.add("CHECKS", PyTuple::new(m.py(), doctor::CHECKS)?)?;
    m.add("AUDIT_CHECKS", PyTuple::new(m.py(), doctor::AUDIT_CHECKS)?)?;
    Ok(())
}
