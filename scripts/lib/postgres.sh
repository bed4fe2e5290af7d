#!/usr/bin/env bash
# shellcheck shell=bash
# A throwaway PostgreSQL cluster for the tests (DESIGN §8): initdb and pg_ctl
# in a temporary directory, as the `postgres` user when run as root, listening
# on 127.0.0.1 and a Unix socket in that directory, on a free port. It speaks
# TLS too, with a certificate for localhost and 127.0.0.1 signed by a CA made
# for the occasion (when openssl is there).
#
# Source this file, then either
#   pg_with CMD ARGS...   run CMD inside a cluster, stop and remove it after
# or
#   pg_start              start one (installs an EXIT/INT/TERM trap to stop it)
#   pg_stop               stop and remove it (safe to call twice)
#
# pg_start exports
#   TUNNELBROKER_TEST_POSTGRES=postgresql://postgres@127.0.0.1:PORT/postgres
#   TUNNELBROKER_TEST_POSTGRES_CA=DIR/ca.pem   (the CA of the server's TLS certificate)
# Env: PG_BINDIR (default: the newest /usr/lib/postgresql/*/bin),
#      PG_FSYNC (on or off, default off: a throwaway cluster needs no durability;
#      use on when measuring speed).
# Run directly, `scripts/lib/postgres.sh CMD ARGS...` is `pg_with CMD ARGS...`.

PG_DIR=""

pg_bindir() {
    if [ -n "${PG_BINDIR:-}" ]; then
        echo "$PG_BINDIR"
        return
    fi
    local d found=""
    for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V); do
        [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && found=$d
    done
    if [ -z "$found" ]; then
        echo "postgres.sh: no PostgreSQL server found (/usr/lib/postgresql/*/bin/initdb); apt-get install postgresql" >&2
        return 1
    fi
    echo "$found"
}

# Runs "$@" as the cluster's owner: `postgres` when we are root, else us.
_pg_as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
    else
        "$@"
    fi
}

_pg_tls_material() {
    command -v openssl >/dev/null 2>&1 || return 0
    local d=$PG_DIR
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=tunnelbroker test CA" -keyout "$d/ca.key" -out "$d/ca.pem" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        >/dev/null 2>&1 || return 1
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=localhost" -keyout "$d/server.key" -out "$d/server.csr" >/dev/null 2>&1 || return 1
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$d/server.ext"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -days 2 -extfile "$d/server.ext" -out "$d/server.crt" >/dev/null 2>&1 || return 1
    chmod 0600 "$d/server.key" "$d/ca.key"
    [ "$(id -u)" -ne 0 ] || chown postgres "$d/server.key" "$d/server.crt"
}

pg_start() {
    local bin port try opts
    bin=$(pg_bindir) || return 1
    PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tb-pg.XXXXXX") || return 1
    trap pg_stop EXIT
    trap 'pg_stop; exit 130' INT
    trap 'pg_stop; exit 143' TERM
    chmod 0755 "$PG_DIR"
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || { echo "postgres.sh: no postgres user to run the cluster as" >&2; return 1; }
        chown postgres: "$PG_DIR"
    fi
    _pg_as_owner "$bin/initdb" -D "$PG_DIR/data" -A trust -U postgres -E UTF8 --no-sync \
        >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; return 1; }
    _pg_tls_material || { echo "postgres.sh: could not make the TLS certificate" >&2; return 1; }
    opts="-k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=${PG_FSYNC:-off} -c max_connections=200"
    if [ -f "$PG_DIR/server.crt" ]; then
        opts="$opts -c ssl=on -c ssl_cert_file=$PG_DIR/server.crt -c ssl_key_file=$PG_DIR/server.key"
    fi
    # A random port; another program may take it first, so try a few.
    for try in 1 2 3 4 5 6 7 8; do
        port=$((20000 + RANDOM % 40000))
        if _pg_as_owner "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -t 60 \
            -o "$opts -p $port" start >/dev/null 2>&1; then
            export TUNNELBROKER_TEST_POSTGRES="postgresql://postgres@127.0.0.1:$port/postgres"
            if [ -f "$PG_DIR/ca.pem" ]; then
                export TUNNELBROKER_TEST_POSTGRES_CA="$PG_DIR/ca.pem"
            fi
            echo "postgres.sh: PostgreSQL $("$bin/pg_ctl" --version | awk '{print $3}') on 127.0.0.1:$port (and $PG_DIR), try $try"
            return 0
        fi
    done
    echo "postgres.sh: the cluster did not start; its log:" >&2
    tail -n 20 "$PG_DIR/log" >&2 2>/dev/null
    return 1
}

pg_stop() {
    local bin
    [ -n "$PG_DIR" ] || return 0
    bin=$(pg_bindir) || bin=""
    if [ -n "$bin" ] && [ -f "$PG_DIR/data/postmaster.pid" ]; then
        _pg_as_owner "$bin/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf -- "$PG_DIR"
    PG_DIR=""
    unset TUNNELBROKER_TEST_POSTGRES TUNNELBROKER_TEST_POSTGRES_CA
    trap - EXIT INT TERM
}

pg_with() {
    local rc=0
    pg_start || { pg_stop; return 1; }
    "$@" || rc=$?
    pg_stop
    return "$rc"
}

# Run directly: `scripts/lib/postgres.sh CMD ARGS...`.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -u
    if [ $# -eq 0 ]; then
        echo "usage: $0 CMD ARGS...  (runs CMD with TUNNELBROKER_TEST_POSTGRES set)" >&2
        exit 2
    fi
    pg_with "$@"
    exit $?
fi
