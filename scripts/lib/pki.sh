# shellcheck shell=bash
# Test tools for the PKI tests (tunnelbroker-core/tests/pki.rs).
# Source this file from scripts/test, then call `pki_test_tools`.

# pki_test_tools: makes sure openssl is there and pkilint is installed in
# the virtualenv target/test-venv (created on first use), and exports
# PKILINT_BIN_DIR and PATH so that the tests find it.
pki_test_tools() {
    local root venv
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    venv="${TEST_VENV:-$root/target/test-venv}"
    if ! command -v openssl >/dev/null 2>&1; then
        if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
            apt-get install -y -q openssl >/dev/null
        else
            echo "pki_test_tools: openssl is missing (apt-get install openssl)" >&2
            return 1
        fi
    fi
    if [ ! -x "$venv/bin/lint_pkix_cert" ]; then
        if [ ! -x "$venv/bin/pip" ]; then
            python3 -m venv "$venv" || {
                echo "pki_test_tools: cannot create $venv (apt-get install python3-venv)" >&2
                return 1
            }
        fi
        "$venv/bin/pip" install --quiet --disable-pip-version-check pkilint || {
            echo "pki_test_tools: pip install pkilint failed" >&2
            return 1
        }
    fi
    export PKILINT_BIN_DIR="$venv/bin"
    case ":$PATH:" in
        *":$venv/bin:"*) ;;
        *) export PATH="$PATH:$venv/bin" ;;
    esac
}
