"""Diagnostics through Python: Broker.audit(), doctor(), Report, Check, CHECKS."""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import tunnelbroker
from tunnelbroker import AUDIT_CHECKS as ALL_AUDIT_CHECKS
from tunnelbroker import CHECKS, Broker, Check, InvalidInputError, Report, doctor

if TYPE_CHECKING:
    from tunnelbroker._tunnelbroker import Status

# What audit reports on a consistent per-client broker, in this order
# (`settings` and `port` appear only when something is wrong with them).
AUDIT_CHECKS = [
    "database",
    "permissions",
    "assignment",
    "ca",
    "server-certificate",
    "tls-crypt-v2",
    "crl",
    "crl-next-update",
    "certificate",
    "expiry",
    "revocation",
    "server-files",
    "orphan-files",
    "server-access",
]
STATUSES: list[Status] = ["pass", "warn", "fail", "skip"]


@pytest.fixture
def reachable() -> Iterator[Path]:
    """A directory OpenVPN could reach after dropping to nobody: 0755, in
    /var/lib/tunnelbroker-tests as the Rust suites use (outside /tmp, /home
    and /root, which Debian's openvpn-server@.service hides, wherever the
    checkout is), else in the repository's target directory, so that
    audit's `server-access` passes for files rendered in it."""
    base = Path("/var/lib/tunnelbroker-tests")
    try:
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)
    except OSError:
        base = Path(__file__).resolve().parents[2] / "target" / "tmp"
        base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=base))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def rendered(reachable: Path) -> Iterator[Broker]:
    with Broker.init(
        reachable / "broker", pool="2001:db8:0:f100::/56", endpoint="vpn.example.net"
    ) as broker:
        broker.add_client("alice")
        broker.add_client("bob", kind="hermit")
        broker.render_server()
        yield broker


def test_audit_checks_constant() -> None:
    assert ALL_AUDIT_CHECKS == (
        "database",
        "settings",
        "permissions",
        "assignment",
        "port",
        *AUDIT_CHECKS[3:],
        "host-limits",
    )


def test_a_healthy_broker_passes(rendered: Broker) -> None:
    report = rendered.audit()
    assert isinstance(report, Report)
    assert not report.failed
    assert [c.name for c in report.checks] == AUDIT_CHECKS
    assert all(c.status == "pass" for c in report.checks), str(report)
    assert all(c.hint is None for c in report.checks)
    assert report.actions == []
    assert report.count("pass") == len(AUDIT_CHECKS)
    assert [report.count(s) for s in STATUSES[1:]] == [0, 0, 0]
    assert report.status_of("crl") == "pass"
    assert report.status_of("no-such-check") is None
    assert report.title == f"tunnelbroker audit: {rendered.path}"
    first = report.checks[0]
    assert isinstance(first, Check)
    assert (first.name, first.message) == ("database", "2 clients read")
    assert repr(first) == 'Check("database", "pass", "2 clients read")'
    assert repr(report) == f'Report("{report.title}", pass=14, warn=0, fail=0, skip=0)'


def test_report_text_is_the_cli_text(rendered: Broker) -> None:
    text = str(rendered.audit())
    lines = text.splitlines()
    assert lines[0] == f"tunnelbroker audit: {rendered.path}"
    assert lines[-1] == "14 pass, 0 warn, 0 fail, 0 skipped"
    assert "PASS  crl-next-update     the CRL is good until " in text
    assert "PASS  database            2 clients read" in text


def test_a_missing_crl_fails_and_fix_signs_a_new_one(rendered: Broker) -> None:
    crl = rendered.path / "crl.pem"
    number = rendered.crl().number
    crl.unlink()
    report = rendered.audit()
    assert report.failed
    assert report.status_of("crl") == "fail"
    broken = [c for c in report.checks if c.status == "fail"]
    assert [c.name for c in broken] == ["crl"]
    assert broken[0].hint is not None and "audit --fix" in broken[0].hint
    assert report.actions == []
    assert not crl.exists(), "audit without fix changes nothing"

    fixed = rendered.audit(fix=True)
    assert not fixed.failed, str(fixed)
    assert fixed.status_of("crl") == "pass"
    assert len(fixed.actions) == 1
    assert fixed.actions[0].startswith(f"signed a fresh CRL: number {number + 1}, 0 revoked")
    assert f"fixed: {fixed.actions[0]}" in str(fixed)
    assert crl.exists()
    assert rendered.crl().number == number + 1
    assert rendered.audit().actions == []


def test_a_revocation_missing_from_the_crl_is_fixed(rendered: Broker) -> None:
    crl = rendered.path / "crl.pem"
    before = crl.read_bytes()
    bob = rendered.revoke("bob").client
    crl.write_bytes(before)
    report = rendered.audit()
    assert report.status_of("revocation") == "fail", str(report)
    fixed = rendered.audit(fix=True)
    assert fixed.status_of("revocation") == "pass", str(fixed)
    assert bob.serial in rendered.crl()
    assert any("re-rendered" in a for a in fixed.actions), fixed.actions


def test_server_dir_rendered_elsewhere(broker: Broker, reachable: Path) -> None:
    broker.add_client("alice")
    out = reachable / "openvpn-server"
    broker.render_server(out)

    # Rendering recorded the directory: audit checks it by default.
    default = broker.audit()
    assert default.status_of("server-files") == "pass", str(default)
    assert str(out.resolve()) in str(default)
    assert not default.failed

    for given in (out, str(out)):
        report = broker.audit(server_dir=given)
        assert report.status_of("server-files") == "pass", str(report)
        assert str(out.resolve()) in str(report)
        assert not report.failed

    (out / "tb-client-alice.conf").unlink()
    missing = broker.audit(server_dir=out)
    assert missing.status_of("server-files") == "fail"
    assert any("tb-client-alice.conf is missing" in c.message for c in missing.checks)
    fixed = broker.audit(fix=True, server_dir=out)
    assert fixed.status_of("server-files") == "pass", str(fixed)
    assert (out / "tb-client-alice.conf").exists()
    assert any(a.startswith(f"re-rendered {out.resolve()}: wrote") for a in fixed.actions)


def test_a_server_dir_that_does_not_exist_is_reported(broker: Broker, tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"
    report = broker.audit(fix=True, server_dir=nowhere)
    server_files = [c for c in report.checks if c.name == "server-files"]
    assert [c.status for c in server_files] == ["warn"]
    assert server_files[0].message.startswith(f"{nowhere} does not exist")
    assert server_files[0].hint is not None and "--server-dir" in server_files[0].hint
    assert not nowhere.exists(), "fix never creates a directory that was never rendered"


def test_bad_audit_input(broker: Broker) -> None:
    with pytest.raises(InvalidInputError, match="server directory.*NUL byte") as info:
        broker.audit(server_dir="/srv/a\x00b")
    assert isinstance(info.value, ValueError)
    # days is a count, like the CLI's `--days N` (an unsigned integer): a
    # negative or oversized int is refused as by every other count of the module.
    with pytest.raises(OverflowError):
        broker.audit(days=-1)
    with pytest.raises(OverflowError):
        broker.audit(days=2**32)
    with pytest.raises(TypeError):
        broker.audit(days="30")  # type: ignore[arg-type]
    # 0 is fine (`audit --days 0`: nothing is "about to expire"); so is a
    # number of days past the year 9999.
    assert broker.audit(days=0).status_of("expiry") == "pass"
    broker.add_client("alice")
    far = broker.audit(days=2**32 - 1)
    assert far.status_of("expiry") == "warn"
    assert not far.failed
    broker.close()
    with pytest.raises(tunnelbroker.Error, match="closed"):
        broker.audit()


def test_report_json_is_the_cli_json(rendered: Broker) -> None:
    rendered.revoke("bob")
    (rendered.path / "crl.pem").unlink()
    report = rendered.audit()
    data = json.loads(report.to_json())
    # The core's serde form, as `tunnelbroker --json audit` prints it.
    assert list(data) == ["title", "checks", "actions"]
    assert data["title"] == report.title
    assert data["actions"] == report.actions == []
    assert len(data["checks"]) == len(report.checks)
    for got, check in zip(data["checks"], report.checks):
        keys = ["name", "status", "message"] + ([] if check.hint is None else ["hint"])
        assert list(got) == keys
        assert (got["name"], got["status"], got["message"], got.get("hint")) == (
            check.name,
            check.status,
            check.message,
            check.hint,
        )
    assert {c["status"] for c in data["checks"]} >= {"pass", "fail"}
    fixed = json.loads(rendered.audit(fix=True).to_json())
    assert fixed["actions"] and all(isinstance(a, str) for a in fixed["actions"])


def test_reports_are_frozen_values(rendered: Broker) -> None:
    report = rendered.audit()
    with pytest.raises(AttributeError):
        report.failed = True  # type: ignore[misc]
    with pytest.raises(AttributeError):
        report.checks[0].status = "fail"  # type: ignore[misc]
    report.checks.clear()
    assert len(report.checks) == len(AUDIT_CHECKS), "checks is a fresh list each time"
    assert report.checks[0] == report.checks[0]
    assert report.checks[0] != report.checks[1]
    with pytest.raises(InvalidInputError, match="check status"):
        report.count("PASS")  # type: ignore[arg-type]


def test_doctor_on_a_garbled_config(tmp_path: Path) -> None:
    for config in (tmp_path / "missing.conf", tmp_path / "garbled.conf"):
        if config.name == "garbled.conf":
            config.write_bytes(b"client\n<ca>\n\x00\xff never closed")
        report = doctor(config, ping=False)
        assert report.title == f"tunnelbroker doctor: {config}"
        assert report.failed
        assert report.status_of("config") == "fail", str(report)
        [check] = [c for c in report.checks if c.name == "config"]
        assert check.hint is not None and "bundle" in check.hint
        assert {c.name for c in report.checks} <= set(CHECKS)
        assert report.status_of("tunnel") == "skip"
    assert doctor(str(tmp_path / "missing.conf")).status_of("config") == "fail"


def test_doctor_on_a_real_bundle(broker: Broker, tmp_path: Path) -> None:
    broker.add_client("alice")
    with tarfile.open(broker.bundle("alice", tmp_path)) as tar:
        tar.extractall(tmp_path / "alice")
    [config] = (tmp_path / "alice").rglob("*.conf")
    report = doctor(config, lan="eth1", ping=False)
    for name in ("config", "assignment", "ca", "certificate", "key", "validity", "tls-crypt"):
        assert report.status_of(name) == "pass", str(report)
    # Without OpenVPN running the tunnel is down: later checks are skipped.
    assert report.status_of("tunnel") in ("warn", "fail"), str(report)
    assert [c.name for c in report.checks] == [n for n in CHECKS if report.status_of(n)]


def test_doctor_refuses_a_hostile_lan(tmp_path: Path) -> None:
    for lan in ("eth0;reboot", "", "-x", "a" * 16, "eth0 eth1"):
        with pytest.raises(InvalidInputError, match="interface name"):
            doctor(tmp_path / "x.conf", lan=lan)
    with pytest.raises(TypeError):
        doctor(tmp_path / "x.conf", "eth0")  # type: ignore[call-arg]


def test_checks_constant() -> None:
    assert CHECKS == (
        "openvpn",
        "tun-device",
        "ipv6",
        "config",
        "assignment",
        "ca",
        "certificate",
        "key",
        "validity",
        "tls-crypt",
        "tunnel",
        "route",
        "ping",
        "forwarding",
        "lan-address",
        "prefix-owner",
    )
    assert isinstance(CHECKS, tuple)
    assert tunnelbroker.CHECKS is CHECKS
    for name in ("Report", "Check", "CHECKS", "doctor"):
        assert name in tunnelbroker.__all__
