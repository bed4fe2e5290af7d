"""The address plan through Python: DESIGN.md §2 vectors and the allocator."""

from __future__ import annotations

import ipaddress
import threading
from ipaddress import IPv6Address, IPv6Network

import pytest

import tunnelbroker
from tunnelbroker import Allocator, Assignment, Hermit, Pool, Subnet

A = IPv6Address
N = IPv6Network


# ---- DESIGN.md §2 test vectors ---------------------------------------------


def test_vectors_join_pool() -> None:
    pool = Pool("2001:638:500:f100::/56")
    assert pool.routing_net == N("2001:638:500:f100::/64")
    assert pool.hermit_net == N("2001:638:500:f1ff::/64")
    assert pool.first_subnet.prefix == N("2001:638:500:f101::/64")
    assert pool.last_subnet.prefix == N("2001:638:500:f1fe::/64")
    assert pool.subnet_capacity == 254

    s = pool.subnet("2001:638:500:f1ab::/64")
    assert s.routing_net == N("2001:638:500:f100::f1ab:0/112")
    assert s.server_end == A("2001:638:500:f100::f1ab:1")
    assert s.client_end == A("2001:638:500:f100::f1ab:2")
    assert s.server_link_local == A("fe80::f1ab:1")
    assert s.client_link_local == A("fe80::f1ab:2")
    assert s.tag == 0xF1AB

    f101 = pool.subnet(N("2001:638:500:f101::/64"))
    assert f101.server_end == A("2001:638:500:f100::f101:1")
    assert f101.client_end == A("2001:638:500:f100::f101:2")
    assert f101.server_end in f101.routing_net


def test_vectors_slash48() -> None:
    pool = Pool("2001:db8:abcd::/48")
    assert pool.hermit_net == N("2001:db8:abcd:ffff::/64")
    assert pool.first_subnet.prefix == N("2001:db8:abcd:1::/64")
    assert pool.last_subnet.prefix == N("2001:db8:abcd:fffe::/64")
    assert pool.subnet_capacity == 65534
    s = pool.subnet("2001:db8:abcd:1234::/64")
    assert s.routing_net == N("2001:db8:abcd::1234:0/112")
    assert (s.server_end, s.client_end) == (A("2001:db8:abcd::1234:1"), A("2001:db8:abcd::1234:2"))


def test_vectors_slash62() -> None:
    pool = Pool(N("2001:db8:0:f1fc::/62"))
    assert pool.routing_net == N("2001:db8:0:f1fc::/64")
    assert pool.hermit_net == N("2001:db8:0:f1ff::/64")
    assert [pool.first_subnet.prefix, pool.last_subnet.prefix] == [
        N("2001:db8:0:f1fd::/64"),
        N("2001:db8:0:f1fe::/64"),
    ]
    assert pool.subnet_capacity == 2


@pytest.mark.parametrize(
    "bad",
    [
        "2001:db8::/47",
        "2001:db8::/63",
        "2001:db8::1/56",
        "10.0.0.0/8",
        "192.0.2.1",
        "garbage",
        "",
        "../../etc/passwd",
        "$(reboot)",
        "2001:db8::/56\nextra",
        "x" * 10_000,
        "2001:db8::/５６",
    ],
)
def test_rejected_pools(bad: str) -> None:
    with pytest.raises(tunnelbroker.InvalidInputError) as info:
        Pool(bad)
    msg = str(info.value)
    assert msg.startswith("invalid p"), msg
    assert "\n" not in msg
    assert len(msg) < 300


def test_rejected_pool_messages_say_why() -> None:
    with pytest.raises(ValueError, match=r"host bits are set; did you mean 2001:db8::/56\?"):
        Pool("2001:db8::1/56")
    with pytest.raises(ValueError, match="too long"):
        Pool(N("2001:db8::/64"))
    with pytest.raises(ValueError, match="IPv4"):
        Pool(ipaddress.IPv4Network("10.0.0.0/8"))


def test_pool_input_types() -> None:
    assert Pool(N("2001:db8:0:f100::/56")) == Pool("2001:db8:0:f100::/56")
    with pytest.raises(TypeError, match="pool must be a str"):
        Pool(56)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Pool(None)  # type: ignore[arg-type]


def test_pool_value_semantics() -> None:
    p = Pool("2001:db8:0:f100::/56")
    assert str(p) == "2001:db8:0:f100::/56"
    assert repr(p) == "Pool('2001:db8:0:f100::/56')"
    assert p.net == N("2001:db8:0:f100::/56")
    assert p.prefix_len == 56
    assert p.network_count == 256
    assert hash(p) == hash(Pool("2001:db8:0:f100::/56"))
    assert p != Pool("2001:db8:0:f200::/56")
    assert {p, Pool("2001:db8:0:f100::/56")} == {p}
    assert (Pool.MIN_LEN, Pool.MAX_LEN) == (48, 62)


def test_pool_roles_and_numbers() -> None:
    p = Pool("2001:db8:0:f1fc::/62")
    assert p.role_of("2001:db8:0:f1fc::1") == "routing"
    assert p.role_of(A("2001:db8:0:f1fe::1")) == "subnet"
    assert p.role_of("2001:db8:0:f1ff::1") == "hermit"
    assert p.role_of("2001:db8:1::1") is None
    assert "2001:db8:0:f1fd::9" in p
    assert A("2001:db8:1::1") not in p
    assert p.network(0) == N("2001:db8:0:f1fc::/64")
    assert p.network(4) is None
    assert p.network_number("2001:db8:0:f1ff::") == 3
    assert p.subnet_by_number(1).prefix == N("2001:db8:0:f1fd::/64")
    with pytest.raises(tunnelbroker.InvalidInputError):
        p.subnet_by_number(0)
    with pytest.raises(tunnelbroker.InvalidInputError, match="not a prefix"):
        p.role_of("2001:db8:0:f1fc::/64")


def test_subnet_refusals() -> None:
    p = Pool("2001:638:500:f100::/56")
    with pytest.raises(tunnelbroker.InvalidInputError, match="hermit /64"):
        p.subnet("2001:638:500:f1ff::/64")
    with pytest.raises(tunnelbroker.InvalidInputError, match="routing /64"):
        p.subnet("2001:638:500:f100::/64")
    with pytest.raises(tunnelbroker.InvalidInputError, match="outside the pool"):
        p.subnet("2001:638:500:f200::/64")
    with pytest.raises(tunnelbroker.InvalidInputError, match="a subnet is a /64"):
        p.subnet("2001:638:500:f1ab::/80")


def test_hermit() -> None:
    p = Pool("2001:db8:0:f100::/56")
    h = p.hermit("2001:db8:0:f1ff::7")
    assert isinstance(h, Hermit)
    assert h.address == A("2001:db8:0:f1ff::7")
    assert h.prefix == N("2001:db8:0:f1ff::7/128")
    assert h.interface_id == 7
    assert h.server_link_local == A("fe80::1")
    with pytest.raises(tunnelbroker.InvalidInputError, match="anycast"):
        p.hermit("2001:db8:0:f1ff::")
    with pytest.raises(tunnelbroker.InvalidInputError, match="subnet /64"):
        p.hermit("2001:db8:0:f1ab::5")


# ---- assignments --------------------------------------------------------------


def test_assignment_construction() -> None:
    p = Pool("2001:db8:0:f100::/56")
    a = Assignment(p, "hermit", "2001:db8:0:f1ff::9")
    assert a.kind == "hermit"
    assert a.prefix == N("2001:db8:0:f1ff::9/128")
    assert a.tunnel_address == A("2001:db8:0:f1ff::9")
    assert a.subnet is None and a.hermit is not None
    s = Assignment(p, "subnet", N("2001:db8:0:f1ab::/64"))
    assert s.tunnel_address == A("2001:db8:0:f100::f1ab:2")
    assert isinstance(s.subnet, Subnet) and s.hermit is None
    assert s.owns("2001:db8:0:f1ab::1234") and s.owns("2001:db8:0:f100::f1ab:1")
    assert not s.owns("2001:db8:0:f1ac::1")
    assert str(s) == "2001:db8:0:f1ab::/64"
    assert repr(s) == "Assignment('subnet', '2001:db8:0:f1ab::/64')"
    with pytest.raises(tunnelbroker.InvalidInputError, match="invalid client kind"):
        Assignment(p, "router", "2001:db8:0:f1ab::/64")
    with pytest.raises(tunnelbroker.InvalidInputError, match="/128"):
        Assignment(p, "hermit", "2001:db8:0:f1ff::/64")


# ---- the allocator ------------------------------------------------------------


def test_allocator_round_trip() -> None:
    plan = Allocator(Pool("2001:db8:0:f100::/56"))
    alice = plan.allocate("subnet")
    bob = plan.allocate("hermit")
    assert alice.prefix == N("2001:db8:0:f101::/64")
    assert bob.prefix == N("2001:db8:0:f1ff::1/128")
    assert plan.lookup("2001:db8:0:f101::abcd") == alice
    assert plan.lookup("2001:db8:0:f100::f101:2") == alice  # routing /112
    assert plan.lookup(A("2001:db8:0:f1ff::1")) == bob
    assert plan.lookup("2001:db8:0:f102::1") is None
    assert plan.lookup("2001:db8:1::1") is None
    assert list(plan) == [alice, bob]
    assert len(plan) == 2
    assert alice in plan
    c = plan.counts()
    assert (c.subnets_used, c.subnets_free, c.hermits_used) == (1, 253, 1)

    with pytest.raises(tunnelbroker.AlreadyExistsError, match="already assigned"):
        plan.request("subnet", "2001:db8:0:f101::/64")
    plan.release(alice)
    assert alice not in plan
    with pytest.raises(tunnelbroker.NotFoundError, match="is not assigned"):
        plan.release(alice)
    assert plan.request("subnet", N("2001:db8:0:f101::/64")) == alice
    plan.release(bob)
    plan.insert(bob)
    with pytest.raises(tunnelbroker.AlreadyExistsError):
        plan.insert(bob)
    assert plan.is_assigned(bob)


def test_allocator_accepts_pool_text() -> None:
    plan = Allocator("2001:db8:0:f1fc::/62")
    assert plan.pool == Pool("2001:db8:0:f1fc::/62")
    assert "2001:db8:0:f1fc::/62" in repr(plan)


def test_allocator_exhaustion() -> None:
    plan = Allocator(Pool("2001:db8:0:f1fc::/62"))
    got = {plan.allocate("subnet").prefix for _ in range(2)}
    assert got == {N("2001:db8:0:f1fd::/64"), N("2001:db8:0:f1fe::/64")}
    with pytest.raises(tunnelbroker.PoolExhaustedError, match="no free subnet assignment left"):
        plan.allocate("subnet")
    # Hermits come from another /64 and are still free.
    assert plan.allocate("hermit").kind == "hermit"


def test_allocator_refuses_other_pools_and_roles() -> None:
    plan = Allocator(Pool("2001:db8:0:f100::/56"))
    other = Assignment(Pool("2001:db8:0:f200::/56"), "subnet", "2001:db8:0:f2ab::/64")
    with pytest.raises(tunnelbroker.InvalidInputError):
        plan.insert(other)
    assert not plan.is_assigned(other)
    with pytest.raises(tunnelbroker.InvalidInputError, match="routing"):
        plan.request("subnet", "2001:db8:0:f100::/64")
    with pytest.raises(tunnelbroker.InvalidInputError, match="invalid client kind"):
        plan.allocate("router")


def test_allocator_threads_never_hand_out_twice() -> None:
    plan = Allocator(Pool("2001:db8:abcd::/48"))
    results: list[list[Assignment]] = [[] for _ in range(8)]

    def work(i: int) -> None:
        for _ in range(200):
            results[i].append(plan.allocate("subnet" if i % 2 else "hermit"))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [a for r in results for a in r]
    assert len(flat) == 1600
    assert len(set(flat)) == 1600
    assert len(plan) == 1600


def test_iteration_is_a_snapshot() -> None:
    plan = Allocator("2001:db8:0:f100::/56")
    for _ in range(3):
        plan.allocate("subnet")
    seen = []
    for a in plan:
        seen.append(a)
        plan.allocate("hermit")
    assert len(seen) == 3
    assert len(plan) == 6


def test_address_plan_example_runs() -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "examples" / "address_plan.py"
    out = subprocess.run(
        [sys.executable, str(script), "2001:db8:0:f1fc::/62"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "routing /64   2001:db8:0:f1fc::/64" in out
    assert "subnet  2001:db8:0:f1fd::/64  routing 2001:db8:0:f1fc::f1fd:0/112" in out
    bad = subprocess.run(
        [sys.executable, str(script), "2001:db8::1/56"], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: invalid pool")
