"""Sessions through Python: Broker.status(), Broker.sessions(...) and
Broker.whois(address, at=...). The agent records sessions; here a row is
written into the client database as the agent would have written it."""

from __future__ import annotations

import datetime as dt
import sqlite3
from ipaddress import IPv6Address, IPv6Network

import pytest

from tunnelbroker import Broker, InvalidInputError, Session, Whois

UTC = dt.timezone.utc


def record(broker: Broker, client_id: str, prefix: str, tunnel: str, start: dt.datetime,
           end: dt.datetime | None = None) -> None:
    """One session row, as `Broker::record_sessions` writes it (times in µs)."""
    def us(t: dt.datetime) -> int:
        return int(t.timestamp()) * 1_000_000

    with sqlite3.connect(broker.path / "clients.db") as db:
        db.execute(
            "INSERT INTO sessions (server, common_name, real_address, virtual, kind, prefix,"
            " tunnel, started_at, ended_at, bytes_in, bytes_out)"
            " VALUES ('main', ?, '198.18.0.2:51234', ?, 'subnet', ?, ?, ?, ?, 1500, 42)",
            (client_id, tunnel, prefix, tunnel, us(start), None if end is None else us(end)),
        )


def test_status_and_sessions(broker: Broker) -> None:
    assert broker.status() == []
    alice = broker.add_client("alice", kind="subnet", email="alice@example.org")
    now = dt.datetime.now(UTC).replace(microsecond=0)
    record(broker, "alice", str(alice.prefix), str(alice.tunnel_address), now - dt.timedelta(hours=2),
           now - dt.timedelta(hours=1))
    record(broker, "alice", str(alice.prefix), str(alice.tunnel_address), now)
    live = broker.status()
    assert len(live) == 1
    s = live[0]
    assert isinstance(s, Session)
    assert (s.client_id, s.server, s.real_address) == ("alice", "main", "198.18.0.2:51234")
    assert s.prefix == IPv6Network("2001:db8:0:f101::/64")
    assert s.tunnel_address == alice.tunnel_address
    assert s.kind == "subnet"
    assert s.started_at == now and s.ended_at is None
    assert (s.bytes_in, s.bytes_out) == (1500, 42)
    assert "alice" in repr(s)

    assert len(broker.sessions()) == 2
    assert len(broker.sessions(client_id="alice", live=True)) == 1
    assert broker.sessions(client_id="bob") == []
    assert len(broker.sessions(until=now - dt.timedelta(minutes=30))) == 1
    assert len(broker.sessions(since="2000-01-01 00:00", limit=1)) == 1
    assert broker.sessions(limit=1)[0].ended_at is None
    with pytest.raises(InvalidInputError, match="invalid time"):
        broker.sessions(since="last tuesday")
    with pytest.raises(TypeError):
        broker.sessions(since=dt.datetime(2026, 1, 1))  # naive: which zone?
    with pytest.raises(InvalidInputError, match="server name"):
        broker.sessions(server="../x")


def test_whois_now_and_then(broker: Broker) -> None:
    alice = broker.add_client("alice", kind="subnet", email="alice@example.org", name="Alice A.")
    then = dt.datetime.now(UTC)
    record(broker, "alice", str(alice.prefix), str(alice.tunnel_address),
           then.replace(microsecond=0) - dt.timedelta(minutes=5), then + dt.timedelta(minutes=1))
    w = broker.whois("2001:db8:0:f101::17")
    assert isinstance(w, Whois)
    assert (w.client_id, w.email, w.name, w.kind) == ("alice", "alice@example.org", "Alice A.", "subnet")
    assert w.prefix == IPv6Network("2001:db8:0:f101::/64")
    assert w.tunnel_address == IPv6Address("2001:db8:0:f100::f101:2")
    assert w.until is None and w.since is not None
    assert len(w.sessions) == 1

    broker.revoke("alice")
    broker.purge("alice")
    broker.add_client("bob", kind="subnet")
    assert broker.whois(IPv6Address("2001:db8:0:f101::17")).client_id == "bob"
    for at in (then, then.isoformat(), then.strftime("%Y-%m-%d %H:%M:%S.%f")[:19]):
        w = broker.whois("2001:db8:0:f100::f101:2", at=at)
        assert w.client_id == "alice", at
        assert w.email == "alice@example.org"
        assert w.until is not None
    nobody = broker.whois("2001:db8:0:f101::17", at="2000-01-01 00:00")
    assert nobody.client_id is None and nobody.sessions == [] and nobody.prefix is None


@pytest.mark.parametrize(
    "address, match",
    [
        ("198.18.0.1", "not an IPv6 address"),
        ("nonsense", "not an IPv6 address"),
        ("", "not an IPv6 address"),
        ("2001:db8:1::1", "outside the pool"),
        ("ünï\x1b[2J", "not an IPv6 address"),
    ],
)
def test_whois_refuses_bad_addresses(broker: Broker, address: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match) as e:
        broker.whois(address)
    assert "\n" not in str(e.value) and "\x1b" not in str(e.value)


def test_whois_refuses_bad_times(broker: Broker) -> None:
    with pytest.raises(InvalidInputError, match="invalid time"):
        broker.whois("2001:db8:0:f101::1", at="yesterday;rm -rf /")
    with pytest.raises(TypeError):
        broker.whois("2001:db8:0:f101::1", at=12)  # type: ignore[arg-type]
