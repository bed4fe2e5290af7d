# shellcheck shell=bash
# The Python module's suite: build tunnelbroker-py into a fresh virtual
# environment the way a user would (`pip install ./tunnelbroker-py`), then run
# pytest and `mypy --strict` on the tests and examples.
#
# Source this file and call `run_python_suite` from the repository root.
# Env: PYTHON (interpreter to make the venv with, default python3),
#      PY_VENV (default target/py-venv; it is recreated on every run).

run_python_suite() {
    local python="${PYTHON:-python3}"
    local venv="${PY_VENV:-target/py-venv}"
    local rc=0

    echo "== python: fresh venv in $venv ($("$python" --version 2>&1))"
    rm -rf -- "$venv"
    "$python" -m venv "$venv" || return 1
    "$venv/bin/python" -m pip install --quiet --upgrade pip || return 1

    echo "== python: pip install ./tunnelbroker-py (maturin, abi3 wheel)"
    "$venv/bin/python" -m pip install --quiet ./tunnelbroker-py pytest mypy || return 1

    # Run from outside the source tree so that the installed package, not
    # python/tunnelbroker/ without its native module, is imported.
    echo "== python: pytest"
    (cd tunnelbroker-py && "../$venv/bin/python" -m pytest -p no:cacheprovider -q tests) || rc=$?
    if [ "$rc" -eq 5 ]; then
        echo "python: pytest collected no tests; that is a failure" >&2
        return 1
    fi
    [ "$rc" -eq 0 ] || return "$rc"

    echo "== python: mypy --strict (tests, examples, bench against the .pyi stubs)"
    local d dirs=()
    for d in tests examples bench; do
        compgen -G "tunnelbroker-py/$d/*.py" >/dev/null && dirs+=("$d")
    done
    (cd tunnelbroker-py && "../$venv/bin/python" -m mypy --strict --no-incremental "${dirs[@]}") || return 1
}
