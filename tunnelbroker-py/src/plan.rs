//! The address plan (core module `plan`): `Pool`, `Subnet`, `Hermit`,
//! `Assignment`, `Allocator`, `Counts`.
//!
//! Every class wraps the core value and only converts; the rules live in the
//! core.

use std::sync::Mutex;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyList;
use tunnelbroker_core::plan::{Allocator, Counts, Hermit, Role, Subnet};
use tunnelbroker_core::{Assignment, ClientKind, Pool};

use crate::errors::IntoPy;
use crate::ip;

/// A client kind from its name ("hermit" or "subnet"), parsed by the core.
pub(crate) fn kind_arg(py: Python<'_>, kind: &str) -> PyResult<ClientKind> {
    kind.parse::<ClientKind>().py_err(py)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Routing => "routing",
        Role::Subnet => "subnet",
        Role::Hermit => "hermit",
    }
}

/// An IPv6 prefix of length 48 to 62 with all host bits zero, from which the
/// broker hands out assignments.
#[pyclass(name = "Pool", module = "tunnelbroker", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PyPool {
    pub(crate) inner: Pool,
}

#[pymethods]
impl PyPool {
    /// The shortest accepted prefix length.
    #[classattr]
    const MIN_LEN: u8 = Pool::MIN_LEN;
    /// The longest accepted prefix length.
    #[classattr]
    const MAX_LEN: u8 = Pool::MAX_LEN;

    #[new]
    fn new(prefix: &Bound<'_, PyAny>) -> PyResult<Self> {
        let text = ip::text_of(prefix, "pool")?;
        let inner = text.parse::<Pool>().py_err(prefix.py())?;
        Ok(PyPool { inner })
    }

    /// The pool as a network.
    #[getter]
    fn net<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ip::network(py, self.inner.net())
    }

    /// The prefix length (48 to 62).
    #[getter]
    fn prefix_len(&self) -> u8 {
        self.inner.prefix_len()
    }

    /// How many /64 networks the pool has.
    #[getter]
    fn network_count(&self) -> u64 {
        self.inner.network_count()
    }

    /// The routing /64 (number 0).
    #[getter]
    fn routing_net<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ip::network(py, self.inner.routing_net())
    }

    /// The hermit /64 (the last one).
    #[getter]
    fn hermit_net<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ip::network(py, self.inner.hermit_net())
    }

    /// How many subnet /64s the pool holds.
    #[getter]
    fn subnet_capacity(&self) -> u64 {
        self.inner.subnet_capacity()
    }

    /// How many hermit addresses the pool holds.
    #[getter]
    fn hermit_capacity(&self) -> u64 {
        self.inner.hermit_capacity()
    }

    /// The first subnet /64.
    #[getter]
    fn first_subnet(&self) -> PySubnet {
        PySubnet {
            inner: self.inner.first_subnet(),
        }
    }

    /// The last subnet /64.
    #[getter]
    fn last_subnet(&self) -> PySubnet {
        PySubnet {
            inner: self.inner.last_subnet(),
        }
    }

    /// The /64 with number `n`, or None.
    fn network<'py>(&self, py: Python<'py>, n: u64) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner
            .network(n)
            .map(|net| ip::network(py, net))
            .transpose()
    }

    /// The number of the /64 that holds `address`, or None.
    fn network_number(&self, address: &Bound<'_, PyAny>) -> PyResult<Option<u64>> {
        let addr = ip::address_arg(address, "address")?;
        Ok(self.inner.network_number(addr))
    }

    /// The subnet for a /64 of this pool.
    fn subnet(&self, prefix: &Bound<'_, PyAny>) -> PyResult<PySubnet> {
        let net = ip::prefix_arg(prefix, "prefix")?;
        let inner = self.inner.subnet(net).py_err(prefix.py())?;
        Ok(PySubnet { inner })
    }

    /// The subnet with /64 number `n` (1 to `network_count - 2`).
    fn subnet_by_number(&self, py: Python<'_>, n: u64) -> PyResult<PySubnet> {
        let inner = self.inner.subnet_by_number(n).py_err(py)?;
        Ok(PySubnet { inner })
    }

    /// The hermit for an address of the hermit /64.
    fn hermit(&self, address: &Bound<'_, PyAny>) -> PyResult<PyHermit> {
        let addr = ip::address_arg(address, "address")?;
        let inner = self.inner.hermit(addr).py_err(address.py())?;
        Ok(PyHermit { inner })
    }

    /// The role ("routing", "subnet" or "hermit") of the /64 that holds
    /// `address`, or None outside the pool.
    fn role_of(&self, address: &Bound<'_, PyAny>) -> PyResult<Option<&'static str>> {
        let addr = ip::address_arg(address, "address")?;
        Ok(self.inner.role_of(addr).map(role_name))
    }

    fn __contains__(&self, address: &Bound<'_, PyAny>) -> PyResult<bool> {
        let addr = ip::address_arg(address, "address")?;
        Ok(self.inner.contains(addr))
    }

    fn __str__(&self) -> String {
        self.inner.to_string()
    }

    fn __repr__(&self) -> String {
        format!("Pool('{}')", self.inner)
    }
}

/// A subnet client's assignment: a routed /64 and its routing /112.
#[pyclass(name = "Subnet", module = "tunnelbroker", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PySubnet {
    pub(crate) inner: Subnet,
}

#[pymethods]
impl PySubnet {
    /// The routed /64.
    #[getter]
    fn prefix<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ip::network(py, self.inner.prefix())
    }

    /// `H`, the 4th hextet of the /64.
    #[getter]
    fn tag(&self) -> u16 {
        self.inner.tag()
    }

    /// The point-to-point /112 in the routing /64.
    #[getter]
    fn routing_net<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ip::network(py, self.inner.routing_net())
    }

    /// The server's end of the routing net: `routing::H:1`.
    #[getter]
    fn server_end<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ip::address(py, self.inner.server_end())
    }

    /// The client's end of the routing net: `routing::H:2`.
    #[getter]
    fn client_end<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ip::address(py, self.inner.client_end())
    }

    /// The server's link-local tunnel address: `fe80::H:1`.
    #[getter]
    fn server_link_local<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ip::address(py, self.inner.server_link_local())
    }

    /// The client's link-local tunnel address: `fe80::H:2`.
    #[getter]
    fn client_link_local<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ip::address(py, self.inner.client_link_local())
    }

    /// The address the client gives its LAN interface: `PREFIX::1`.
    #[getter]
    fn lan_address<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ip::address(py, self.inner.lan_address())
    }

    fn __str__(&self) -> String {
        self.inner.to_string()
    }

    fn __repr__(&self) -> String {
        format!("Subnet('{}')", self.inner)
    }
}

/// A hermit client's assignment: one /128 of the hermit /64.
#[pyclass(name = "Hermit", module = "tunnelbroker", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PyHermit {
    pub(crate) inner: Hermit,
}

#[pymethods]
impl PyHermit {
    /// The client's address.
    #[getter]
    fn address<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ip::address(py, self.inner.address())
    }

    /// The client's address as a /128.
    #[getter]
    fn prefix<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ip::network(py, self.inner.prefix())
    }

    /// The low 64 bits of the address.
    #[getter]
    fn interface_id(&self) -> u64 {
        self.inner.interface_id()
    }

    /// The server's link-local tunnel address: `fe80::1`.
    #[getter]
    fn server_link_local<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ip::address(py, self.inner.server_link_local())
    }

    fn __str__(&self) -> String {
        self.inner.to_string()
    }

    fn __repr__(&self) -> String {
        format!("Hermit('{}')", self.inner.address())
    }
}

/// A client's assignment: a hermit /128 or a subnet /64.
#[pyclass(name = "Assignment", module = "tunnelbroker", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PyAssignment {
    pub(crate) inner: Assignment,
}

#[pymethods]
impl PyAssignment {
    /// The assignment of `kind` for `prefix` in `pool`: a /128 (or bare
    /// address) for a hermit, a /64 for a subnet.
    #[new]
    fn new(pool: &PyPool, kind: &str, prefix: &Bound<'_, PyAny>) -> PyResult<Self> {
        let py = prefix.py();
        let kind = kind_arg(py, kind)?;
        let net = ip::prefix_arg(prefix, "prefix")?;
        let inner = Assignment::in_pool(&pool.inner, kind, net).py_err(py)?;
        Ok(PyAssignment { inner })
    }

    /// "hermit" or "subnet".
    #[getter]
    fn kind(&self) -> String {
        self.inner.kind().to_string()
    }

    /// The assigned prefix: the hermit's /128 or the subnet's /64.
    #[getter]
    fn prefix<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ip::network(py, self.inner.prefix())
    }

    /// The client's tunnel address.
    #[getter]
    fn tunnel_address<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ip::address(py, self.inner.tunnel_address())
    }

    /// The hermit, if this is one.
    #[getter]
    fn hermit(&self) -> Option<PyHermit> {
        self.inner.as_hermit().map(|h| PyHermit { inner: *h })
    }

    /// The subnet, if this is one.
    #[getter]
    fn subnet(&self) -> Option<PySubnet> {
        self.inner.as_subnet().map(|s| PySubnet { inner: *s })
    }

    /// Whether `address` belongs to this assignment.
    fn owns(&self, address: &Bound<'_, PyAny>) -> PyResult<bool> {
        let addr = ip::address_arg(address, "address")?;
        Ok(self.inner.owns(addr))
    }

    fn __str__(&self) -> String {
        self.inner.to_string()
    }

    fn __repr__(&self) -> String {
        format!("Assignment('{}', '{}')", self.inner.kind(), self.inner)
    }
}

impl From<Assignment> for PyAssignment {
    fn from(inner: Assignment) -> Self {
        PyAssignment { inner }
    }
}

/// How many assignments of each kind are used and free.
#[pyclass(name = "Counts", module = "tunnelbroker", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct PyCounts {
    /// Subnet /64s assigned.
    subnets_used: u64,
    /// Subnet /64s free.
    subnets_free: u64,
    /// Hermit addresses assigned.
    hermits_used: u64,
    /// Hermit addresses free.
    hermits_free: u64,
}

impl From<Counts> for PyCounts {
    fn from(c: Counts) -> Self {
        PyCounts {
            subnets_used: c.subnets_used,
            subnets_free: c.subnets_free,
            hermits_used: c.hermits_used,
            hermits_free: c.hermits_free,
        }
    }
}

#[pymethods]
impl PyCounts {
    fn __repr__(&self) -> String {
        format!(
            "Counts(subnets_used={}, subnets_free={}, hermits_used={}, hermits_free={})",
            self.subnets_used, self.subnets_free, self.hermits_used, self.hermits_free
        )
    }
}

/// Hands out assignments from a pool: the lowest free one, or a specific one
/// on request. Safe to share between threads.
#[pyclass(name = "Allocator", module = "tunnelbroker", frozen)]
pub struct PyAllocator {
    inner: Mutex<Allocator>,
}

impl PyAllocator {
    fn lock(&self) -> PyResult<std::sync::MutexGuard<'_, Allocator>> {
        self.inner
            .lock()
            .map_err(|_| PyRuntimeError::new_err("allocator lock poisoned"))
    }
}

#[pymethods]
impl PyAllocator {
    /// An allocator with nothing assigned.
    #[new]
    fn new(pool: &Bound<'_, PyAny>) -> PyResult<Self> {
        let pool = match pool.cast::<PyPool>() {
            Ok(p) => p.get().inner,
            Err(_) => PyPool::new(pool)?.inner,
        };
        Ok(PyAllocator {
            inner: Mutex::new(Allocator::new(pool)),
        })
    }

    /// The pool it allocates from.
    #[getter]
    fn pool(&self) -> PyResult<PyPool> {
        Ok(PyPool {
            inner: self.lock()?.pool(),
        })
    }

    /// Takes the lowest free assignment of `kind` ("hermit" or "subnet").
    fn allocate(&self, py: Python<'_>, kind: &str) -> PyResult<PyAssignment> {
        let kind = kind_arg(py, kind)?;
        self.lock()?.allocate(kind).py_err(py).map(Into::into)
    }

    /// Takes a specific assignment: an address of the hermit /64 for a
    /// hermit, a subnet /64 for a subnet.
    fn request(&self, kind: &str, prefix: &Bound<'_, PyAny>) -> PyResult<PyAssignment> {
        let py = prefix.py();
        let kind = kind_arg(py, kind)?;
        let net = ip::prefix_arg(prefix, "prefix")?;
        self.lock()?.request(kind, net).py_err(py).map(Into::into)
    }

    /// Marks an assignment (for example one read back from a file) as live.
    fn insert(&self, py: Python<'_>, assignment: &PyAssignment) -> PyResult<()> {
        self.lock()?.insert(&assignment.inner).py_err(py)
    }

    /// Frees a live assignment.
    fn release(&self, py: Python<'_>, assignment: &PyAssignment) -> PyResult<()> {
        self.lock()?.release(&assignment.inner).py_err(py)
    }

    /// Whether `assignment` is live.
    fn is_assigned(&self, assignment: &PyAssignment) -> PyResult<bool> {
        Ok(self.lock()?.is_assigned(&assignment.inner))
    }

    /// The live assignment that owns `address`, or None.
    fn lookup(&self, address: &Bound<'_, PyAny>) -> PyResult<Option<PyAssignment>> {
        let addr = ip::address_arg(address, "address")?;
        Ok(self.lock()?.lookup(addr).map(Into::into))
    }

    /// Used and free counts.
    fn counts(&self) -> PyResult<PyCounts> {
        Ok(self.lock()?.counts().into())
    }

    fn __contains__(&self, assignment: &PyAssignment) -> PyResult<bool> {
        self.is_assigned(assignment)
    }

    fn __len__(&self) -> PyResult<usize> {
        let c = self.lock()?.counts();
        Ok(usize::try_from(c.subnets_used + c.hermits_used).unwrap_or(usize::MAX))
    }

    /// Live assignments in address order (subnets, then hermits), as a
    /// snapshot taken when iteration starts.
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let items: Vec<PyAssignment> = self.lock()?.iter().map(Into::into).collect();
        PyList::new(py, items)?.try_iter().map(Bound::into_any)
    }

    fn __repr__(&self) -> PyResult<String> {
        let plan = self.lock()?;
        let c = plan.counts();
        Ok(format!(
            "Allocator('{}', subnets_used={}, hermits_used={})",
            plan.pool(),
            c.subnets_used,
            c.hermits_used
        ))
    }
}

/// Adds the plan's classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPool>()?;
    m.add_class::<PySubnet>()?;
    m.add_class::<PyHermit>()?;
    m.add_class::<PyAssignment>()?;
    m.add_class::<PyCounts>()?;
    m.add_class::<PyAllocator>()?;
    Ok(())
}
