//! The exception hierarchy: one base class, `tunnelbroker.Error`, and one
//! subclass per [`ErrorKind`] of the core.
//!
//! Each exception carries the core error's `Display` text, the very line the
//! CLI prints. Where a built-in exception has the same meaning, the class
//! derives from it too, so that generic handlers keep working:
//!
//! | core kind       | exception            | also a        |
//! |-----------------|----------------------|---------------|
//! | `InvalidInput`  | `InvalidInputError`  | `ValueError`  |
//! | `NotFound`      | `NotFoundError`      | `LookupError` |
//! | `AlreadyExists` | `AlreadyExistsError` |               |
//! | `Exhausted`     | `PoolExhaustedError` |               |
//! | `Crypto`        | `CryptoError`        |               |
//! | `Database`      | `DatabaseError`      |               |
//! | `Io`            | `IoError`            | `OSError`     |
//! | anything else   | `Error`              |               |

use pyo3::exceptions::{PyException, PyLookupError, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use tunnelbroker_core::{Error as CoreError, ErrorKind};

pyo3::create_exception!(
    tunnelbroker,
    Error,
    PyException,
    "Base class of every error raised by tunnelbroker."
);
pyo3::create_exception!(
    tunnelbroker,
    AlreadyExistsError,
    Error,
    "Something that was to be created exists already (a client, an assigned prefix, a broker directory)."
);
pyo3::create_exception!(
    tunnelbroker,
    PoolExhaustedError,
    Error,
    "The pool has no free assignment of the requested kind."
);
pyo3::create_exception!(
    tunnelbroker,
    CryptoError,
    Error,
    "A certificate, key or request failed a cryptographic check."
);
pyo3::create_exception!(
    tunnelbroker,
    DatabaseError,
    Error,
    "The client database failed."
);

/// A class with two bases (ours and a built-in one). `create_exception!`
/// takes a single base, so these are made with `type(name, bases, dict)`
/// once per interpreter.
struct DualException {
    cell: PyOnceLock<Py<PyType>>,
    name: &'static str,
    doc: &'static str,
    builtin: fn(Python<'_>) -> Bound<'_, PyType>,
}

impl DualException {
    const fn new(
        name: &'static str,
        doc: &'static str,
        builtin: fn(Python<'_>) -> Bound<'_, PyType>,
    ) -> Self {
        DualException {
            cell: PyOnceLock::new(),
            name,
            doc,
            builtin,
        }
    }

    fn get<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, PyType>> {
        self.cell
            .get_or_try_init(py, || {
                let bases = PyTuple::new(py, [py.get_type::<Error>(), (self.builtin)(py)])?;
                let dict = PyDict::new(py);
                dict.set_item("__module__", "tunnelbroker")?;
                dict.set_item("__doc__", self.doc)?;
                let ty = py
                    .get_type::<pyo3::types::PyType>()
                    .call1((self.name, bases, dict))?;
                Ok::<_, PyErr>(ty.cast_into::<PyType>()?.unbind())
            })
            .map(|ty| ty.bind(py))
    }
}

static INVALID_INPUT: DualException = DualException::new(
    "InvalidInputError",
    "The input is not acceptable (bad text, outside the pool, wrong role, bad client id). Also a ValueError.",
    |py| py.get_type::<PyValueError>(),
);
static NOT_FOUND: DualException = DualException::new(
    "NotFoundError",
    "Something that was asked for does not exist (an unknown client, a prefix that is not assigned). Also a LookupError.",
    |py| py.get_type::<PyLookupError>(),
);
static IO: DualException = DualException::new(
    "IoError",
    "Reading or writing a file failed. Also an OSError.",
    |py| py.get_type::<PyOSError>(),
);

/// The Python exception for a core error: the class chosen by its kind, the
/// message its `Display` text.
pub(crate) fn to_py(py: Python<'_>, err: &CoreError) -> PyErr {
    let msg = err.to_string();
    let dual = match err.kind() {
        ErrorKind::InvalidInput => &INVALID_INPUT,
        ErrorKind::NotFound => &NOT_FOUND,
        ErrorKind::Io => &IO,
        ErrorKind::AlreadyExists => return AlreadyExistsError::new_err(msg),
        ErrorKind::Exhausted => return PoolExhaustedError::new_err(msg),
        ErrorKind::Crypto => return CryptoError::new_err(msg),
        ErrorKind::Database => return DatabaseError::new_err(msg),
        _ => return Error::new_err(msg),
    };
    match dual.get(py) {
        Ok(ty) => PyErr::from_type(ty.clone(), msg),
        Err(e) => e,
    }
}

/// Converts a core result, raising the matching exception.
pub(crate) trait IntoPy<T> {
    /// The value, or the core error as a Python exception.
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPy<T> for Result<T, CoreError> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, &e))
    }
}

/// Adds the exception classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("InvalidInputError", INVALID_INPUT.get(py)?)?;
    m.add("NotFoundError", NOT_FOUND.get(py)?)?;
    m.add("AlreadyExistsError", py.get_type::<AlreadyExistsError>())?;
    m.add("PoolExhaustedError", py.get_type::<PoolExhaustedError>())?;
    m.add("CryptoError", py.get_type::<CryptoError>())?;
    m.add("DatabaseError", py.get_type::<DatabaseError>())?;
    m.add("IoError", IO.get(py)?)?;
    Ok(())
}
