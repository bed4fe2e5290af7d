"""Several OpenVPN servers in one broker (issue 13): add_server, servers(),
add_client(..., server=)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunnelbroker import (
    AlreadyExistsError,
    Broker,
    InvalidInputError,
    NotFoundError,
    Pool,
    Server,
)

POOL = "2001:db8:0:f100::/56"


def test_a_new_broker_has_main(broker: Broker) -> None:
    (main,) = broker.servers()
    assert isinstance(main, Server)
    assert main.name == "main"
    assert main.endpoint == "vpn.example.net"
    assert main.mode == "per-client"
    assert main.port == 5000
    assert str(main.pool) == POOL
    assert main.certificate_name == "tunnelbroker-server"
    assert (main.clients, main.subnets_free) == (0, 254)
    assert broker.add_client("alice").server == "main"


def test_add_server_and_place_clients(tmp_path: Path) -> None:
    with Broker.init(
        tmp_path / "b", pool=POOL, endpoint="vpn.example.net", parent="2001:db8::/48"
    ) as b:
        s = b.add_server("b", endpoint="vpn-b.example.net", mode="shared", port=1194)
        assert str(s.pool) == "2001:db8::/56"
        assert s.certificate_name == "tunnelbroker-server-b"
        c = b.add_server("c", endpoint="vpn-c.example.net", pool=Pool("2001:db8:0:e000::/60"))
        assert c.pool == Pool("2001:db8:0:e000::/60")
        assert b.add_server("d", endpoint="h", pool_length=60).pool == Pool("2001:db8:0:100::/60")
        alice = b.add_client("alice", "hermit", server="c")
        assert alice.server == "c"
        assert str(alice.prefix) == "2001:db8:0:e00f::1/128"
        # Without server=: the one with the most free subnets (b, not main's).
        b.add_client("bob", "subnet", server="main")
        assert b.add_client("carol", "subnet").server == "b"
        names = [s.name for s in b.servers()]
        assert names == ["b", "c", "d", "main"]
        assert {s.name: s.clients for s in b.servers()} == {"b": 1, "c": 1, "d": 0, "main": 1}


@pytest.mark.parametrize(
    "name", ["", "../x", "a;id", "$(id)", "-x", "ä", "x" * 33, "a\nb"]
)
def test_hostile_server_names_are_refused(broker: Broker, name: str) -> None:
    with pytest.raises(InvalidInputError):
        broker.add_server(name, endpoint="h", pool="2001:db8:0:e000::/56")
    with pytest.raises(InvalidInputError):
        broker.add_client("alice", server=name)
    assert len(broker.servers()) == 1
    assert broker.clients() == []


def test_bad_pools_and_unknown_servers(broker: Broker) -> None:
    with pytest.raises(InvalidInputError, match="overlaps"):
        broker.add_server("b", endpoint="h", pool="2001:db8:0:f100::/60")
    with pytest.raises(InvalidInputError, match="parent prefix"):
        broker.add_server("b", endpoint="h")
    with pytest.raises(InvalidInputError):
        broker.add_server("b", endpoint="h", pool="2001:db8::1/56")
    broker.add_server("b", endpoint="h", pool="2001:db8:0:e000::/56")
    with pytest.raises(AlreadyExistsError):
        broker.add_server("b", endpoint="h", pool="2001:db8:0:d000::/56")
    with pytest.raises(NotFoundError):
        broker.add_client("alice", server="nope")
    with pytest.raises(InvalidInputError):
        broker.add_server("c", endpoint="h", pool="2001:db8:0:d000::/56", mode="nope")
