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
    __version__ as __version__,
    Allocator as Allocator,
    AlreadyExistsError as AlreadyExistsError,
    Assignment as Assignment,
    AUDIT_CHECKS as AUDIT_CHECKS,
    Broker as Broker,
    Check as Check,
    CHECKS as CHECKS,
    check_client_id as check_client_id,
    Client as Client,
    CLIENT_ID_MAX_LEN as CLIENT_ID_MAX_LEN,
    Counts as Counts,
    Credentials as Credentials,
    Crl as Crl,
    CryptoError as CryptoError,
    DatabaseError as DatabaseError,
    doctor as doctor,
    Error as Error,
    Hermit as Hermit,
    ImportReport as ImportReport,
    InvalidInputError as InvalidInputError,
    IoError as IoError,
    NotFoundError as NotFoundError,
    Pool as Pool,
    PoolExhaustedError as PoolExhaustedError,
    RenderReport as RenderReport,
    Report as Report,
    Revocation as Revocation,
    RowError as RowError,
    Server as Server,
    ServerRenewal as ServerRenewal,
    Session as Session,
    Subnet as Subnet,
    Whois as Whois,
)

__all__ = [
    "__version__",
    "Allocator",
    "AlreadyExistsError",
    "Assignment",
    "AUDIT_CHECKS",
    "Broker",
    "Check",
    "CHECKS",
    "check_client_id",
    "Client",
    "CLIENT_ID_MAX_LEN",
    "Counts",
    "Credentials",
    "Crl",
    "CryptoError",
    "DatabaseError",
    "doctor",
    "Error",
    "Hermit",
    "ImportReport",
    "InvalidInputError",
    "IoError",
    "NotFoundError",
    "Pool",
    "PoolExhaustedError",
    "RenderReport",
    "Report",
    "Revocation",
    "RowError",
    "Server",
    "ServerRenewal",
    "Session",
    "Subnet",
    "Whois",
]
