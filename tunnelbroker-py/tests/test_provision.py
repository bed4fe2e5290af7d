"""examples/provision.py on a sample CSV (tests/data/users.csv)."""

from __future__ import annotations

import importlib.util
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from tunnelbroker import Broker

HERE = Path(__file__).resolve().parent
USERS = HERE / "data" / "users.csv"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "provision", HERE.parent / "examples" / "provision.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["provision"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_provision_sample_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    provision = load_example()
    out = tmp_path / "bundles"
    rc = provision.main(
        [str(tmp_path / "b"), str(USERS), str(out), "--init", "2001:db8:0:f100::/56", "vpn.example.net"]
    )
    cap = capsys.readouterr()
    assert rc == 1  # three bad rows
    assert "4 subscribed, 0 already subscribed, 3 failed" in cap.out
    assert "line 5: bad name: invalid client id" in cap.err
    assert "line 6: dave: invalid email" in cap.err
    assert "line 7: erin: invalid client kind" in cap.err

    names = sorted(p.name for p in out.iterdir())
    assert names == ["alice.tar.gz", "bob.zip", "carol.tar.gz", "frank.tar.gz"]
    for name in names:
        bundle = out / name
        assert bundle.stat().st_mode & 0o077 == 0  # it holds the client's key: 0600
    with tarfile.open(out / "alice.tar.gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        conf = tar.extractfile(members["alice/alice.conf"])
        assert conf is not None
        text = conf.read().decode()
    assert "<key>" in text and "PRIVATE KEY" in text
    assert "<ca>" in text and "<tls-crypt-v2>" in text
    with zipfile.ZipFile(out / "bob.zip") as z:
        assert "bob/bob.ovpn" in z.namelist()

    with Broker.open(tmp_path / "b") as b:
        clients = {c.id: c for c in b.clients()}
    assert set(clients) == {"alice", "bob", "carol", "frank"}
    assert clients["carol"].name == "Carol, PhD"
    assert clients["carol"].kind == "subnet"
    assert (clients["bob"].kind, clients["bob"].os) == ("hermit", "windows")

    # A second run keeps everyone's assignment and rewrites the bundles.
    rc2 = provision.main([str(tmp_path / "b"), str(USERS), str(out), "--jobs", "2"])
    cap2 = capsys.readouterr()
    assert rc2 == 1
    assert "0 subscribed, 4 already subscribed, 3 failed" in cap2.out
    with Broker.open(tmp_path / "b") as b:
        assert {c.id: c.prefix for c in b.clients()} == {k: c.prefix for k, c in clients.items()}


def test_provision_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    provision = load_example()
    assert provision.main([str(tmp_path / "nobroker"), str(USERS), str(tmp_path / "o")]) == 2
    assert "no tunnelbroker.toml" in capsys.readouterr().err
    assert provision.main([str(tmp_path / "b"), str(tmp_path / "missing.csv"), str(tmp_path / "o")]) == 2
