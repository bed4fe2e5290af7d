"""The exception hierarchy: every class, its built-in bases, CLI messages."""

from __future__ import annotations

import pytest

import tunnelbroker
from tunnelbroker import (
    AlreadyExistsError,
    Allocator,
    CryptoError,
    DatabaseError,
    Error,
    InvalidInputError,
    IoError,
    NotFoundError,
    Pool,
    PoolExhaustedError,
)


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (InvalidInputError, ValueError),
        (NotFoundError, LookupError),
        (IoError, OSError),
        (AlreadyExistsError, None),
        (PoolExhaustedError, None),
        (CryptoError, None),
        (DatabaseError, None),
    ],
)
def test_hierarchy(cls: type[Exception], builtin: type[Exception] | None) -> None:
    assert issubclass(cls, Error)
    assert issubclass(cls, Exception)
    assert cls.__module__ == "tunnelbroker"
    assert cls.__doc__
    if builtin is not None:
        assert issubclass(cls, builtin)
    # Raisable and catchable from Python too.
    with pytest.raises(Error, match="boom"):
        raise cls("boom")


def test_base_is_plain_exception() -> None:
    assert Error.__mro__[1] is Exception
    assert Error.__module__ == "tunnelbroker"
    assert Error.__name__ == "Error"


def test_each_kind_is_raised_by_the_core() -> None:
    plan = Allocator(Pool("2001:db8:0:f1fc::/62"))
    a = plan.allocate("subnet")
    plan.allocate("subnet")
    cases: list[tuple[type[Exception], object]] = []
    with pytest.raises(PoolExhaustedError) as e1:
        plan.allocate("subnet")
    cases.append((PoolExhaustedError, e1.value))
    with pytest.raises(AlreadyExistsError) as e2:
        plan.insert(a)
    cases.append((AlreadyExistsError, e2.value))
    plan.release(a)
    with pytest.raises(NotFoundError) as e3:
        plan.release(a)
    cases.append((NotFoundError, e3.value))
    with pytest.raises(InvalidInputError) as e4:
        Pool("nonsense")
    cases.append((InvalidInputError, e4.value))
    for cls, exc in cases:
        assert type(exc) is cls
        assert isinstance(exc, Error)


def test_messages_are_the_core_display() -> None:
    # The same text the CLI prints (core Error's Display), one line.
    with pytest.raises(InvalidInputError) as info:
        Pool("2001:db8::1/56")
    assert str(info.value) == 'invalid pool "2001:db8::1/56": host bits are set; did you mean 2001:db8::/56?'
    plan = Allocator("2001:db8:0:f1fc::/62")
    plan.allocate("subnet")
    plan.allocate("subnet")
    with pytest.raises(PoolExhaustedError) as ex:
        plan.allocate("subnet")
    assert str(ex.value) == (
        "pool 2001:db8:0:f1fc::/62 has no free subnet assignment left (all 2 are in use)"
    )


def test_hostile_text_is_quoted() -> None:
    with pytest.raises(InvalidInputError) as info:
        Pool("a\nb\x1b[31m" + "x" * 500)
    msg = str(info.value)
    assert "\n" not in msg and "\x1b" not in msg
    assert len(msg) < 300


def test_all_names_exported() -> None:
    for name in tunnelbroker.__all__:
        assert hasattr(tunnelbroker, name), name
    native = {n for n in dir(tunnelbroker._tunnelbroker) if not n.startswith("_")}
    assert native <= set(tunnelbroker.__all__), native - set(tunnelbroker.__all__)
