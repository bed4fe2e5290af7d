"""The broker through Python: lifecycle, every error class, threads, CSV import."""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
import threading
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest

import tunnelbroker
from tunnelbroker import (
    AlreadyExistsError,
    Broker,
    Client,
    CryptoError,
    DatabaseError,
    InvalidInputError,
    IoError,
    NotFoundError,
    Pool,
    PoolExhaustedError,
)

N = IPv6Network
A = IPv6Address


def test_init_and_open(tmp_path: Path) -> None:
    path = tmp_path / "b"
    b = Broker.init(str(path), pool=Pool("2001:db8:0:f100::/56"), endpoint="vpn.example.net")
    assert b.path == path
    assert b.pool == Pool("2001:db8:0:f100::/56")
    assert (b.endpoint, b.mode, b.port, b.key_type) == ("vpn.example.net", "per-client", 5000, "p256")
    assert b.ca_certificate.startswith("-----BEGIN CERTIFICATE-----")
    assert stat.S_IMODE(os.stat(path / "private").st_mode) == 0o700
    assert repr(b) == f"Broker('{path}')"
    b.add_client("alice")
    b.close()
    again = Broker.open(path)
    assert [c.id for c in again.clients()] == ["alice"]
    assert again.ca_certificate == b"".decode() + again.ca_certificate  # str
    again.close()


def test_init_refusals(tmp_path: Path) -> None:
    path = tmp_path / "b"
    Broker.init(path, pool="2001:db8:0:f100::/56", endpoint="vpn.example.net").close()
    with pytest.raises(AlreadyExistsError):
        Broker.init(path, pool="2001:db8:0:f100::/56", endpoint="vpn.example.net")
    with pytest.raises(InvalidInputError, match="invalid pool"):
        Broker.init(tmp_path / "c", pool="2001:db8::1/56", endpoint="vpn.example.net")
    with pytest.raises(InvalidInputError, match="endpoint"):
        Broker.init(tmp_path / "c", pool="2001:db8::/56", endpoint="vpn; rm -rf /")
    with pytest.raises(InvalidInputError, match="server mode"):
        Broker.init(tmp_path / "c", pool="2001:db8::/56", endpoint="vpn.example.net", mode="x")
    with pytest.raises(InvalidInputError, match="key"):
        Broker.init(tmp_path / "c", pool="2001:db8::/56", endpoint="h", key_type="dsa")
    with pytest.raises(InvalidInputError, match="CA certificate was given without the CA key"):
        Broker.init(tmp_path / "c", pool="2001:db8::/56", endpoint="h", ca_cert="x")
    with pytest.raises(InvalidInputError, match="CA key was given without the CA certificate"):
        Broker.init(tmp_path / "c", pool="2001:db8::/56", endpoint="h", ca_key="x")
    assert not (tmp_path / "c").exists()


def test_tls_crypt_version(tmp_path: Path) -> None:
    """Issue 15: new brokers give each client a tls-crypt-v2 key; v1 stays selectable."""
    b = Broker.init(tmp_path / "v2", pool="2001:db8::/56", endpoint="h")
    assert b.tls_crypt == "v2"
    b.close()
    b = Broker.init(tmp_path / "v1", pool="2001:db8::/56", endpoint="h", tls_crypt="v1")
    assert b.tls_crypt == "v1"
    b.close()
    with pytest.raises(InvalidInputError, match="tls-crypt version"):
        Broker.init(
            tmp_path / "c",
            pool="2001:db8::/56",
            endpoint="h",
            tls_crypt="v3",  # type: ignore[arg-type]
        )
    assert not (tmp_path / "c").exists()


def test_open_refusals(tmp_path: Path) -> None:
    with pytest.raises(tunnelbroker.Error, match="no tunnelbroker.toml"):
        Broker.open(tmp_path)


def test_io_error_is_an_oserror(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(IoError) as info:
        Broker.init(blocker / "broker", pool="2001:db8::/56", endpoint="h")
    assert isinstance(info.value, OSError)
    assert str(blocker) in str(info.value)


def test_database_error(tmp_path: Path) -> None:
    path = tmp_path / "b"
    Broker.init(path, pool="2001:db8::/56", endpoint="h").close()
    (path / "clients.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DatabaseError, match="client database"):
        Broker.open(path).clients()


def test_crypto_error_on_mismatched_ca(tmp_path: Path) -> None:
    one = tmp_path / "one"
    two = tmp_path / "two"
    Broker.init(one, pool="2001:db8::/56", endpoint="h").close()
    Broker.init(two, pool="2001:db8::/56", endpoint="h").close()
    with pytest.raises(CryptoError):
        Broker.init(
            tmp_path / "three",
            pool="2001:db8::/56",
            endpoint="h",
            ca_cert=(one / "ca.crt").read_text(),
            ca_key=(two / "private" / "ca.key").read_text(),
        )
    # The matching pair is accepted.
    b = Broker.init(
        tmp_path / "four",
        pool="2001:db8::/56",
        endpoint="h",
        ca_cert=(one / "ca.crt").read_text(),
        ca_key=(one / "private" / "ca.key").read_text(),
    )
    assert b.ca_certificate == (one / "ca.crt").read_text()


def test_add_client_fields(broker: Broker) -> None:
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    alice = broker.add_client("alice", email="alice@example.org", name="Alice A.")
    assert isinstance(alice, Client)
    assert (alice.id, alice.kind, alice.os, alice.state) == ("alice", "subnet", "linux", "active")
    assert alice.prefix == N("2001:db8:0:f101::/64")
    assert alice.tunnel_address == A("2001:db8:0:f100::f101:2")
    sub = alice.assignment.subnet
    assert sub is not None and sub.server_end == A("2001:db8:0:f100::f101:1")
    assert alice.port == 5000
    assert (alice.email, alice.name) == ("alice@example.org", "Alice A.")
    assert len(alice.serial) >= 16 and all(c in "0123456789ABCDEF" for c in alice.serial)
    assert alice.created_at.tzinfo is not None
    assert before <= alice.created_at <= dt.datetime.now(dt.timezone.utc)
    assert alice.not_after > alice.created_at + dt.timedelta(days=300)
    assert alice.revoked_at is None
    assert alice.has_key
    assert "alice" in repr(alice)

    bob = broker.add_client("bob", kind="hermit", os="windows")
    assert bob.prefix == N("2001:db8:0:f1ff::1/128")
    assert (bob.kind, bob.os, bob.port) == ("hermit", "windows", 5001)
    carol = broker.add_client("carol", prefix=N("2001:db8:0:f1ab::/64"))
    assert carol.prefix == N("2001:db8:0:f1ab::/64")
    dave = broker.add_client("dave", kind="hermit", prefix=A("2001:db8:0:f1ff::42"))
    assert dave.tunnel_address == A("2001:db8:0:f1ff::42")

    assert [c.id for c in broker.clients()] == ["alice", "bob", "carol", "dave"]
    assert broker.client("alice") == alice


def test_shared_mode_has_no_ports(shared_broker: Broker) -> None:
    c = shared_broker.add_client("alice")
    assert c.port is None
    assert shared_broker.mode == "shared"


def test_add_client_refusals_leave_no_trace(broker: Broker) -> None:
    broker.add_client("alice", prefix="2001:db8:0:f1ab::/64")
    with pytest.raises(AlreadyExistsError, match="a client named alice exists already"):
        broker.add_client("alice", kind="hermit")
    with pytest.raises(AlreadyExistsError, match="already assigned to alice"):
        broker.add_client("bob", prefix="2001:db8:0:f1ab::/64")
    for bad_id in ["", "../etc/passwd", "-rf", "a b", "$(reboot)", "jörg", "x" * 65, "tunnelbroker-server"]:
        with pytest.raises(InvalidInputError, match="invalid client id"):
            broker.add_client(bad_id)
    with pytest.raises(InvalidInputError, match="client kind"):
        broker.add_client("bob", kind="router")
    with pytest.raises(InvalidInputError, match="client os"):
        broker.add_client("bob", os="plan9")
    with pytest.raises(InvalidInputError, match="email"):
        broker.add_client("bob", email="not an address")
    with pytest.raises(InvalidInputError, match="name"):
        broker.add_client("bob", name="evil\nname")
    with pytest.raises(InvalidInputError, match="hermit /64"):
        broker.add_client("bob", prefix="2001:db8:0:f1ff::/64")
    with pytest.raises(InvalidInputError, match="outside the pool"):
        broker.add_client("bob", prefix="2001:db8:1:1::/64")
    with pytest.raises(TypeError):
        broker.add_client("bob", prefix=42)  # type: ignore[arg-type]
    assert [c.id for c in broker.clients()] == ["alice"]


@pytest.mark.parametrize("reserved", ["CON", "nul", "Aux", "com1", "LPT9", "con.txt", "alice."])
def test_windows_reserved_ids_are_refused_for_windows_clients(broker: Broker, reserved: str) -> None:
    with pytest.raises(InvalidInputError, match="Windows"):
        broker.add_client(reserved, kind="hermit", os="windows")
    assert broker.clients() == []
    # The same name is a file name on Linux.
    assert broker.add_client(reserved, kind="hermit").id == reserved


def test_pool_and_ports_exhausted(tmp_path: Path) -> None:
    with Broker.init(tmp_path / "b", pool="2001:db8:0:f1fc::/62", endpoint="h") as b:
        b.add_client("a")
        b.add_client("b")
        with pytest.raises(PoolExhaustedError, match="no free subnet"):
            b.add_client("c")
        assert b.add_client("h", kind="hermit").kind == "hermit"
    with Broker.init(tmp_path / "p", pool="2001:db8::/56", endpoint="h", port=65535) as p:
        p.add_client("a")
        with pytest.raises(PoolExhaustedError, match="port"):
            p.add_client("b")


def test_unknown_client_is_a_lookup_error(broker: Broker) -> None:
    with pytest.raises(NotFoundError, match="no client named ghost") as info:
        broker.client("ghost")
    assert isinstance(info.value, LookupError)
    for call in (broker.revoke, broker.renew, broker.purge, broker.credentials):
        with pytest.raises(NotFoundError):
            call("ghost")


def test_lifecycle(broker: Broker) -> None:
    alice = broker.add_client("alice")
    assert broker.crl().number >= 1
    assert len(broker.crl()) == 0

    renewed = broker.renew("alice")
    assert renewed.serial != alice.serial
    assert renewed.prefix == alice.prefix and renewed.port == alice.port
    assert alice.serial in broker.crl()

    with pytest.raises(tunnelbroker.Error, match="revoke it first"):
        broker.purge("alice")

    revocation = broker.revoke("alice", reason="key-compromise")
    # No server was rendered here: as `client revoke` says, none answers.
    assert revocation.session == "no-server" and not revocation.session_ended
    assert "no OpenVPN server answers" in revocation.summary
    assert repr(revocation) == "Revocation(client='alice', session='no-server')"
    revoked = revocation.client
    assert revoked.state == "revoked"
    assert revoked.revoked_at is not None
    crl = broker.crl()
    assert crl.is_revoked(renewed.serial)
    assert set(crl.revoked_serials) == {alice.serial, renewed.serial}
    assert crl.pem.startswith("-----BEGIN X509 CRL-----")
    assert crl.next_update > crl.this_update
    with pytest.raises(InvalidInputError):
        broker.revoke("alice")
    with pytest.raises(InvalidInputError, match="revocation reason"):
        broker.revoke("alice", reason="because")
    with pytest.raises(InvalidInputError):
        broker.renew("alice")

    # The assignment stays reserved until purge...
    assert broker.add_client("bob").prefix == N("2001:db8:0:f102::/64")
    purged = broker.purge("alice")
    assert purged.id == "alice"
    with pytest.raises(NotFoundError):
        broker.client("alice")
    # ...and is free after it.
    assert broker.add_client("carol").prefix == alice.prefix
    assert broker.refresh_crl().number > crl.number


def test_credentials_keep_the_key_secret(broker: Broker) -> None:
    broker.add_client("alice")
    cred = broker.credentials("alice")
    assert cred.certificate.startswith("-----BEGIN CERTIFICATE-----")
    assert cred.key is not None and "PRIVATE KEY" in cred.key
    assert "PRIVATE" not in repr(cred) and "[redacted]" in repr(cred)


def test_context_manager_closes(tmp_path: Path) -> None:
    with Broker.init(tmp_path / "b", pool="2001:db8::/56", endpoint="h") as b:
        b.add_client("alice")
        assert not b.closed
    assert b.closed
    with pytest.raises(tunnelbroker.Error, match="closed"):
        b.clients()
    b.close()  # twice is fine
    with Broker.open(tmp_path / "b") as again:
        assert again.client("alice").id == "alice"


def test_import_csv(broker: Broker) -> None:
    text = (
        "id,kind,os,email,name\n"
        "alice,subnet,linux,alice@example.org,Alice\n"
        "bad id,hermit,,,\n"
        "bob,hermit,windows,,\n"
        "carol,router,,,\n"
    )
    seen: list[tuple[int, int]] = []
    report = broker.import_csv(text, progress=lambda done, total: seen.append((done, total)))
    assert [c.id for c in report.added] == ["alice", "bob"]
    assert [(e.line, e.error.split(" ")[0]) for e in report.errors] == [(3, "invalid"), (5, "invalid")]
    assert "client kind" in report.errors[1].error
    assert seen and seen[-1][0] == seen[-1][1]
    assert "added=2" in repr(report)


def test_import_csv_progress_errors_propagate(broker: Broker) -> None:
    def boom(done: int, total: int) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        broker.import_csv("alice,subnet,linux,,\n", progress=boom)


def test_threads_add_clients_without_duplicates(broker: Broker) -> None:
    per_thread = 15
    out: list[list[Client]] = [[] for _ in range(6)]
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(per_thread):
                kind = "hermit" if i % 3 == 0 else "subnet"
                out[t].append(broker.add_client(f"t{t}-c{i}", kind=kind))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    added = [c for part in out for c in part]
    assert len(added) == 6 * per_thread
    assert len({c.id for c in added}) == len(added)
    assert len({c.prefix for c in added}) == len(added)
    assert len({c.port for c in added}) == len(added)
    assert len({c.serial for c in added}) == len(added)
    assert len(broker.clients()) == len(added)


def test_threads_really_overlap(broker: Broker) -> None:
    # With the GIL released around add_client, a Python thread keeps running
    # while another thread subscribes clients.
    done = threading.Event()
    ticks = 0

    def spin() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        for i in range(20):
            broker.add_client(f"c{i}")
    finally:
        done.set()
        t.join()
    assert ticks > 0


def test_bundle_and_render_server(broker: Broker, tmp_path: Path) -> None:
    alice = broker.add_client("alice", kind="subnet")
    out = broker.bundle("alice", tmp_path)
    assert out == tmp_path / "alice.tar.gz"
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    named = broker.bundle("alice", tmp_path / "copy.tgz")
    assert named == tmp_path / "copy.tgz"
    with pytest.raises(NotFoundError, match="no client named ghost"):
        broker.bundle("ghost", tmp_path)
    with pytest.raises(InvalidInputError):
        broker.bundle("../etc", tmp_path)

    report = broker.render_server(tmp_path / "server")
    assert report.dir == (tmp_path / "server").resolve()
    assert report.instances == [f"tb-client-{alice.id}"]
    assert any(p.name == f"tb-client-{alice.id}.conf" for p in report.written)
    again = broker.render_server(tmp_path / "server")
    assert again.written == [] and len(again.unchanged) == len(report.written)
    broker.revoke("alice")
    gone = broker.render_server(tmp_path / "server")
    assert any(p.name == f"tb-client-{alice.id}.conf" for p in gone.removed)
    assert "RenderReport(" in repr(gone)


def test_renew_server_replaces_the_certificate_and_re_renders(broker: Broker) -> None:
    alice = broker.add_client("alice", kind="subnet")
    old = (broker.path / "server.crt").read_text()
    # Nothing rendered yet: nothing re-rendered, but the units are named.
    first = broker.renew_server()
    assert first.rendered is None
    assert first.restart == [f"openvpn-server@tb-client-{alice.id}"]
    assert first.certificate == (broker.path / "server.crt").read_text() != old
    assert first.warnings == []
    assert first.not_after > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=729)
    broker.render_server()
    second = broker.renew_server()
    assert second.rendered is not None
    rendered = second.rendered.dir / "server.crt"
    assert rendered in second.rendered.written
    assert rendered.read_text() == second.certificate
    assert "ServerRenewal(" in repr(second)


@pytest.mark.parametrize("pool", ["::/48", "fe80::/48", "ff02::/48"])
def test_a_pool_outside_global_unicast_and_ula_is_refused(tmp_path: Path, pool: str) -> None:
    with pytest.raises(ValueError, match=r"global unicast \(2000::/3\) or unique local"):
        Pool(pool)
    with pytest.raises(InvalidInputError, match="2000::/3"):
        Broker.init(tmp_path / "b", pool=pool, endpoint="h")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("broken", ["missing", "empty", "foreign"])
def test_a_lost_database_is_refused_not_recreated(tmp_path: Path, broken: str) -> None:
    path = tmp_path / "b"
    Broker.init(path, pool="2001:db8::/56", endpoint="h").close()
    db = path / "clients.db"
    db.unlink()
    if broken == "empty":
        db.write_bytes(b"")
    elif broken == "foreign":
        import sqlite3

        sqlite3.connect(db).execute("CREATE TABLE foo (x)").connection.close()
    before = sorted(p.name for p in path.iterdir())
    with pytest.raises(DatabaseError, match=re.escape(f"client database {db}: ")):
        Broker.open(path)
    assert sorted(p.name for p in path.iterdir()) == before


def test_no_certificate_outlives_the_ca(tmp_path: Path) -> None:
    with Broker.init(tmp_path / "b", pool="2001:db8::/56", endpoint="h", ca_days=100) as b:
        warnings = b.lifetime_warnings()
        assert len(warnings) == 2
        assert "before a client certificate of 365 days would" in warnings[0]
        alice = b.add_client("alice")
        assert alice.not_after < dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=101)
        assert len(b.renew_server().warnings) == 1
    with Broker.init(tmp_path / "c", pool="2001:db8::/56", endpoint="h") as c:
        assert c.lifetime_warnings() == []


def test_render_server_records_its_directories_and_refuses_what_nobody_cannot_reach(
    shared_broker: Broker, tmp_path: Path
) -> None:
    shared_broker.add_client("alice")
    run = tmp_path / "run"
    run.mkdir()
    report = shared_broker.render_server(
        tmp_path / "etc", run_dir=run, binary="/opt/tb/tunnelbroker"
    )
    out = (tmp_path / "etc").resolve()
    assert report.dir == out and report.run_dir == run
    conf = (out / "tb-shared.conf").read_text()
    assert f"\ncrl-verify {out}/crl.pem\n" in conf
    assert f"\nmanagement {run}/tb1194.sock unix\n" in conf
    service = (out / "systemd" / "tunnelbroker-crl.service").read_text()
    assert "\nExecStart=/opt/tb/tunnelbroker --dir " in service
    # Without a path, the recorded directory; every CRL is copied there.
    assert shared_broker.render_server().dir == out
    shared_broker.revoke("alice")
    assert (out / "crl.pem").read_bytes() == (shared_broker.path / "crl.pem").read_bytes()
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(InvalidInputError, match="chmod o\\+x"):
        shared_broker.render_server(private / "server")


def test_revoke_warns_when_the_server_never_answers(shared_broker: Broker, tmp_path: Path) -> None:
    """A management socket that chatters and never answers: revoke keeps the
    revocation, gives up at the deadline and says so, as the CLI does."""
    import socket
    import time

    shared_broker.add_client("alice")
    run = tmp_path / "run"
    run.mkdir()
    shared_broker.render_server(tmp_path / "etc", run_dir=run)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(run / "tb1194.sock"))
    listener.listen(1)

    def chatter() -> None:
        conn, _ = listener.accept()
        with conn:
            try:
                while True:
                    conn.sendall(b">BYTECOUNT:1024,2048\r\n")
                    time.sleep(0.05)
            except OSError:
                pass

    server = threading.Thread(target=chatter, daemon=True)
    server.start()
    started = time.monotonic()
    with pytest.warns(RuntimeWarning, match="could not be ended: .*did not answer within 10 s"):
        revocation = shared_broker.revoke("alice")
    assert time.monotonic() - started < 13
    assert revocation.client.state == "revoked"
    assert revocation.session == "unanswered" and not revocation.session_ended
    assert "did not answer within 10 s" in revocation.summary
    listener.close()
