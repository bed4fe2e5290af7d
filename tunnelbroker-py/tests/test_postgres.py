"""Brokers on PostgreSQL through Python: Broker.init(..., database=URL), two
broker directories on one database, and the refusals.

These tests need a PostgreSQL cluster: TUNNELBROKER_TEST_POSTGRES names it
(a superuser URL, as scripts/lib/postgres.sh exports it). Each test makes a
database of its own with psql and drops it after. Without the variable they
are skipped, except under CI=true, where that is a failure."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunnelbroker import AlreadyExistsError, Broker, DatabaseError, InvalidInputError, Pool

POOL = "2001:db8:0:f100::/56"


def _cluster() -> str:
    url = os.environ.get("TUNNELBROKER_TEST_POSTGRES", "")
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and TUNNELBROKER_TEST_POSTGRES is not set: run in a cluster")
        pytest.skip("TUNNELBROKER_TEST_POSTGRES is not set (scripts/lib/postgres.sh runs these)")
    return url


def _psql(url: str, sql: str) -> None:
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql], check=True)


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh, empty database in the test cluster; its URL."""
    admin = _cluster()
    name = f"tb_py_{secrets.token_hex(8)}"
    _psql(admin, f"CREATE DATABASE {name}")
    try:
        yield admin.rsplit("/", 1)[0] + "/" + name
    finally:
        _psql(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_init_on_postgresql_and_two_directories(tmp_path: Path, database: str) -> None:
    one_dir = tmp_path / "one"
    with Broker.init(one_dir, pool=POOL, endpoint="vpn.example.net", database=database) as one:
        assert one.database == database
        assert not (one_dir / "clients.db").exists()
        assert f'url = "{database}"' in (one_dir / "tunnelbroker.toml").read_text()
        alice = one.add_client("alice")
        two_dir = tmp_path / "two"
        shutil.copytree(one_dir, two_dir)
        with Broker.open(two_dir) as two:
            assert two.open_warnings == []
            bob = two.add_client("bob")
            assert bob.assignment != alice.assignment and bob.serial != alice.serial
            with pytest.raises(AlreadyExistsError):
                one.add_client("bob", kind="hermit")
            two.revoke("alice")
        assert alice.serial in one.refresh_crl()
        assert [c.id for c in one.clients()] == ["alice", "bob"]


def test_a_stale_settings_file_warns_and_the_database_wins(tmp_path: Path) -> None:
    # SQLite: the database in the broker directory holds the shared settings too.
    path = tmp_path / "b"
    Broker.init(path, pool=POOL, endpoint="vpn.example.net").close()
    toml = path / "tunnelbroker.toml"
    toml.write_text(toml.read_text().replace(POOL, "2001:db8:0:e000::/56"))
    with pytest.warns(RuntimeWarning, match="differed from the client database in pool"):
        b = Broker.open(path)
    with b:
        assert b.pool == Pool(POOL)
        assert len(b.open_warnings) == 1
        assert b.database is None
        assert str(b.add_client("alice").prefix) == "2001:db8:0:f101::/64"
    assert POOL in toml.read_text()


def test_a_database_holding_a_broker_is_refused(tmp_path: Path, database: str) -> None:
    Broker.init(tmp_path / "one", pool=POOL, endpoint="vpn.example.net", database=database).close()
    with pytest.raises(AlreadyExistsError, match="copy that broker's directory"):
        Broker.init(tmp_path / "two", pool=POOL, endpoint="vpn.example.net", database=database)
    assert not (tmp_path / "two").exists()


def test_bad_and_unreachable_databases_are_refused(tmp_path: Path) -> None:
    _cluster()
    for bad in ["postgresql://tb:secret@db.example.net/tb", "mysql://tb@db/tb", "", "postgresql://tb@h/db x"]:
        with pytest.raises(InvalidInputError) as e:
            Broker.init(tmp_path / "b", pool=POOL, endpoint="vpn.example.net", database=bad)
        assert "secret" not in str(e.value)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DatabaseError):
        Broker.init(
            tmp_path / "b",
            pool=POOL,
            endpoint="vpn.example.net",
            database=f"postgresql://tb@127.0.0.1:{port}/tb",
        )
    assert list(tmp_path.iterdir()) == []
