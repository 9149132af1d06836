#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the test suite: its own data folder under a temp dir, a
# free port on 127.0.0.1, trust authentication, nothing kept afterwards.
#
#   cluster.sh run -- CMD [ARGS...]   start a cluster, run CMD with FUNNELCAST_TEST_POSTGRES_URL
#                                     exported, stop the cluster (also when CMD fails or is
#                                     interrupted); exits with CMD's status
#   cluster.sh start                  start one and print `export FUNNELCAST_TEST_POSTGRES_URL=...`
#   cluster.sh stop                   stop the one `start` started from this folder
#
# Debian's postgresql package is installed with apt when `initdb` is missing (its binaries live
# in /usr/lib/postgresql/<version>/bin). initdb and pg_ctl refuse to run as root: as root they
# run as the `postgres` system user (created when missing), otherwise as the caller.
set -euo pipefail

PG_USER=${FUNNELCAST_PG_USER:-postgres}
DATABASE=funnelcast_test
STATE_FILE=${TMPDIR:-/tmp}/funnelcast-postgres-$(printf %s "$PWD" | md5sum | cut -c1-12).state

log() { echo "postgres: $*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

find_bin() {
    local dir
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return 0
    fi
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null |
        sort -V | tail -n 1)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
        echo "$dir"
        return 0
    fi
    return 1
}

ensure_binaries() {
    if ! BIN=$(find_bin); then
        log "installing postgresql (apt)"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
        BIN=$(find_bin) || {
            log "initdb not found after installing postgresql"
            exit 1
        }
    fi
}

# Runs a PostgreSQL program as the cluster's owner.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$PG_USER" -- "$@"
    else
        "$@"
    fi
}

ensure_owner() {
    if [ "$(id -u)" -eq 0 ] && ! id -u "$PG_USER" >/dev/null 2>&1; then
        log "creating system user $PG_USER"
        useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts a cluster; sets BASE, PORT and URL.
start_cluster() {
    ensure_binaries
    ensure_owner
    if [ "$(id -u)" -eq 0 ]; then
        BASE=$(mktemp -d /tmp/funnelcast-pg.XXXXXX) # the owner must reach it: not root's TMPDIR
        chown "$PG_USER" "$BASE"
    else
        BASE=$(mktemp -d "${TMPDIR:-/tmp}/funnelcast-pg.XXXXXX")
    fi
    cd "$BASE" # the owner may not be allowed into the caller's folder
    as_owner "$BIN/initdb" -D "$BASE/data" --auth=trust --username=postgres --encoding=UTF8 \
        --locale=C --no-sync >"$BASE/initdb.log" 2>&1 || {
        cat "$BASE/initdb.log" >&2
        return 1
    }
    local attempt
    for attempt in 1 2 3; do # another process may take the free port before the server does
        PORT=$(free_port)
        # fsync off: a crash loses nothing that matters in a throwaway test cluster.
        if as_owner "$BIN/pg_ctl" -D "$BASE/data" -l "$BASE/server.log" -w -t 60 start -o \
            "-c listen_addresses=127.0.0.1 -p $PORT -k $BASE -c max_connections=300 \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null; then
            break
        fi
        if [ "$attempt" -eq 3 ]; then
            cat "$BASE/server.log" >&2
            return 1
        fi
    done
    cd - >/dev/null
    "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DATABASE"
    URL="postgresql+psycopg://postgres@127.0.0.1:$PORT/$DATABASE"
    log "cluster on 127.0.0.1:$PORT (data in $BASE)"
}

stop_cluster() {
    local base=$1
    if [ -f "$base/data/postmaster.pid" ]; then
        (cd "$base" && as_owner "$BIN/pg_ctl" -D "$base/data" -m immediate -w stop >/dev/null) ||
            log "pg_ctl stop failed"
    fi
    rm -rf "$base"
    log "cluster stopped"
}

BASE=""
BIN=""
cleanup() {
    if [ -n "$BASE" ]; then stop_cluster "$BASE"; fi
}

case "${1:-}" in
run)
    shift
    [ "${1:-}" = "--" ] && shift
    [ $# -gt 0 ] || {
        echo "usage: $0 run -- CMD [ARGS...]" >&2
        exit 2
    }
    trap 'cleanup' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    start_cluster
    status=0
    FUNNELCAST_TEST_POSTGRES_URL=$URL "$@" || status=$?
    exit "$status"
    ;;
start)
    if [ -f "$STATE_FILE" ]; then
        log "already started ($STATE_FILE); run '$0 stop' first"
        exit 1
    fi
    trap 'cleanup' EXIT
    start_cluster
    trap - EXIT
    printf 'BASE=%q\nURL=%q\n' "$BASE" "$URL" >"$STATE_FILE"
    echo "export FUNNELCAST_TEST_POSTGRES_URL=$URL"
    ;;
stop)
    if [ ! -f "$STATE_FILE" ]; then
        log "no cluster started from $PWD"
        exit 0
    fi
    # shellcheck disable=SC1090
    . "$STATE_FILE"
    ensure_binaries
    stop_cluster "$BASE"
    rm -f "$STATE_FILE"
    ;;
*)
    echo "usage: $0 run -- CMD [ARGS...] | start | stop" >&2
    exit 2
    ;;
esac
