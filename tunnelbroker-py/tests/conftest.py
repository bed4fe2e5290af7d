"""Shared fixtures: a fresh broker in a temporary directory."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunnelbroker import Broker

POOL = "2001:db8:0:f100::/56"


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A temporary directory searchable by others (0755) all the way down, as an
    operator's would be: render_server refuses a directory that OpenVPN, as
    nobody, could not reach, and pytest's own tmp_path lies under a 0700 one."""
    path = Path(tempfile.mkdtemp(prefix="tunnelbroker-py-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker.init(tmp_path / "broker", pool=POOL, endpoint="vpn.example.net") as b:
        yield b


@pytest.fixture
def shared_broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker.init(
        tmp_path / "shared", pool=POOL, endpoint="198.18.0.1", mode="shared", port=1194
    ) as b:
        yield b
