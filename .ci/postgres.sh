# Sourced by .ci/run: start a throw-away PostgreSQL server on loopback for the test suite.
#
# start_test_postgres: finds the server binaries (installing Debian's `postgresql` package with
# apt-get when they are missing, as root or through passwordless sudo), creates a cluster in a
# temporary folder owned by an unprivileged user (the `postgres` account when run as root),
# starts it on 127.0.0.1 on a free port, creates a database and exports
#   NFTKIT_TEST_PG_URL=postgresql+psycopg://nftkit@127.0.0.1:PORT/nftkit_test
#   NFTKIT_REQUIRE_PG=1   (the PostgreSQL tests then fail, not skip, when the server is gone)
# The server is stopped and its folder removed when the calling shell exits. Returns non-zero
# with a message on stderr when no server can be started; the caller decides what to do.

_pg_log() { echo "ci/postgres: $*" >&2; }

_pg_as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo -n "$@"
    else return 1
    fi
}

_pg_bindir() {
    local dir
    if command -v pg_config >/dev/null 2>&1; then
        dir="$(pg_config --bindir 2>/dev/null || true)"
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
    fi
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then echo "$dir"; return 0; fi
    return 1
}

_pg_install() {
    command -v apt-get >/dev/null 2>&1 || { _pg_log "no apt-get on this machine"; return 1; }
    _pg_log "installing Debian's postgresql package (apt-get)"
    _pg_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 \
        || { _pg_log "apt-get update failed (not root, no passwordless sudo, or no network)"; return 1; }
    _pg_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2 \
        || { _pg_log "apt-get install postgresql failed"; return 1; }
}

_pg_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_test_postgres() {
    local bindir owner port dir
    bindir="$(_pg_bindir)" || { _pg_install && bindir="$(_pg_bindir)"; } \
        || { _pg_log "PostgreSQL server binaries not found"; return 1; }
    if [ "$(id -u)" = 0 ]; then
        owner=postgres
        id "$owner" >/dev/null 2>&1 || { _pg_log "running as root but no 'postgres' user"; return 1; }
        _pg_run() { runuser -u postgres -- "$@"; }
    else
        owner="$(id -un)"
        _pg_run() { "$@"; }
    fi
    port="$(_pg_free_port)" || { _pg_log "cannot find a free port"; return 1; }
    dir="$(mktemp -d "${TMPDIR:-/tmp}/nftkit-pg.XXXXXX")" || return 1
    chown "$owner" "$dir" 2>/dev/null || true
    chmod 700 "$dir"
    if ! _pg_run "$bindir/initdb" -D "$dir/data" -U nftkit --auth=trust -E UTF8 --no-sync \
            >"$dir/initdb.log" 2>&1; then
        _pg_log "initdb failed:"; tail -n 20 "$dir/initdb.log" >&2; rm -rf "$dir"; return 1
    fi
    if ! _pg_run "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=50" \
            >/dev/null 2>&1; then
        _pg_log "server did not start:"; tail -n 20 "$dir/server.log" >&2; rm -rf "$dir"; return 1
    fi
    # shellcheck disable=SC2064  # expand now: the values are fixed for this server
    trap "_pg_run '$bindir/pg_ctl' -D '$dir/data' -m fast -w stop >/dev/null 2>&1; rm -rf '$dir'" EXIT
    if ! _pg_run "$bindir/createdb" -h 127.0.0.1 -p "$port" -U nftkit nftkit_test; then
        _pg_log "createdb failed"; return 1
    fi
    export NFTKIT_TEST_PG_URL="postgresql+psycopg://nftkit@127.0.0.1:$port/nftkit_test"
    export NFTKIT_REQUIRE_PG=1
    _pg_log "$("$bindir/postgres" --version) on 127.0.0.1:$port ($dir)"
}
