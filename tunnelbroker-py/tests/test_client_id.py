"""Client IDs: the one strict rule of DESIGN.md §4, from Python."""

from __future__ import annotations

import pytest

import tunnelbroker
from tunnelbroker import InvalidInputError, check_client_id


@pytest.mark.parametrize("good", ["alice", "alice.lab-1_b", "A9", "x" * 64, "_x"])
def test_accepts(good: str) -> None:
    assert check_client_id(good) == good


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("", "empty"),
        ("../etc/passwd", "'/'"),
        ("-rf", "must not start"),
        (".hidden", "must not start"),
        ("a b", "' '"),
        ("a;rm -rf /", "';'"),
        ("$(reboot)", "'$'"),
        ("jörg", "'ö'"),
        ("x" * 65, "at most 64"),
        ("a\nb", "'\\n'"),
        ("a\x00b", "'\\0'"),
    ],
)
def test_rejects_with_reason(bad: str, why: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        check_client_id(bad)
    assert str(info.value).startswith("invalid client id ")
    assert why in str(info.value)
    assert isinstance(info.value, ValueError)


def test_max_len() -> None:
    assert tunnelbroker.CLIENT_ID_MAX_LEN == 64
