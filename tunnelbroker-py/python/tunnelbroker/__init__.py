"""tunnelbroker: embed an OpenVPN-based IPv6 tunnel broker in Python.

A thin layer over the Rust library ``tunnelbroker-core``. Addresses and
prefixes are :mod:`ipaddress` objects (``IPv6Address`` / ``IPv6Network``);
strings are accepted on input too.

>>> from tunnelbroker import Allocator, Pool
>>> pool = Pool("2001:db8:0:f100::/56")
>>> pool.subnet("2001:db8:0:f1ab::/64").server_end
IPv6Address('2001:db8:0:f100::f1ab:1')
>>> Allocator(pool).allocate("subnet").prefix
IPv6Network('2001:db8:0:f101::/64')
"""

from ._tunnelbroker import (
    CLIENT_ID_MAX_LEN as CLIENT_ID_MAX_LEN,
    AlreadyExistsError as AlreadyExistsError,
    Allocator as Allocator,
    Assignment as Assignment,
    Counts as Counts,
    CryptoError as CryptoError,
    DatabaseError as DatabaseError,
    Error as Error,
    Hermit as Hermit,
    InvalidInputError as InvalidInputError,
    IoError as IoError,
    NotFoundError as NotFoundError,
    Pool as Pool,
    PoolExhaustedError as PoolExhaustedError,
    Subnet as Subnet,
    __version__ as __version__,
    check_client_id as check_client_id,
)

__all__ = [
    "CLIENT_ID_MAX_LEN",
    "AlreadyExistsError",
    "Allocator",
    "Assignment",
    "Counts",
    "CryptoError",
    "DatabaseError",
    "Error",
    "Hermit",
    "InvalidInputError",
    "IoError",
    "NotFoundError",
    "Pool",
    "PoolExhaustedError",
    "Subnet",
    "__version__",
    "check_client_id",
]
