#!/usr/bin/env bash
# A real local PostgreSQL server (Debian's packages) with its data outside the repository.
#
#   bash deploy/local/postgres.sh start|stop|status
#
# Environment:
#   DATABASE_URL              the server's admin URL, default
#                             postgresql://postgres:postgres@127.0.0.1:$IPMG_PG_PORT/postgres.
#                             If it already answers SELECT 1, start uses it and starts nothing.
#   IPMG_PG_PORT              port of the default URL (default 5432)
#   IPMG_STATE_DIR            default ~/.local/state/ipmg; the server lives in
#                             $IPMG_STATE_DIR/postgres/{data,postgres.log,sock}. As root with
#                             the default, when the `postgres` OS user cannot enter that path
#                             (/root is mode 700), /var/lib/ipmg/postgres is used instead.
#   IPMG_PG_BINDIR            directory with initdb/pg_ctl (default: newest
#                             /usr/lib/postgresql/*/bin, else PATH)
#   IPMG_PG_START_TIMEOUT     seconds to wait for a real answer after start (default 60)
#   IPMG_PG_STOP_TIMEOUT      seconds pg_ctl waits for a fast shutdown (default 30)
#   IPMG_APT_TIMEOUT          seconds allowed for `apt-get install postgresql` (default 600)
#
# PostgreSQL refuses to run as root: as root the server runs as the `postgres` OS user.
set -euo pipefail
IPMG_SCRIPT="postgres.sh"
IPMG_STATE_DIR_GIVEN="${IPMG_STATE_DIR:+1}"
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

START_TIMEOUT="${IPMG_PG_START_TIMEOUT:-60}"
STOP_TIMEOUT="${IPMG_PG_STOP_TIMEOUT:-30}"
APT_TIMEOUT="${IPMG_APT_TIMEOUT:-600}"
require_seconds IPMG_PG_START_TIMEOUT "$START_TIMEOUT"
require_seconds IPMG_PG_STOP_TIMEOUT "$STOP_TIMEOUT"
require_seconds IPMG_APT_TIMEOUT "$APT_TIMEOUT"
PG_OS_USER="postgres"
ROOT_FALLBACK_DIR="/var/lib/ipmg/postgres"

# world_reachable DIR: every existing ancestor of DIR can be entered by other users.
world_reachable() {
    local d="$1"
    while [ ! -e "$d" ]; do d="$(dirname "$d")"; done
    while :; do
        [ -d "$d" ] || return 1
        case "$(stat -c '%A' "$d")" in
            *x | *t) ;;
            *) return 1 ;;
        esac
        [ "$d" != / ] || return 0
        d="$(dirname "$d")"
    done
}

PG_DIR="$IPMG_STATE_DIR/postgres"
if is_root && [ -z "$IPMG_STATE_DIR_GIVEN" ] && [ ! -f "$PG_DIR/data/PG_VERSION" ] &&
    ! world_reachable "$PG_DIR"; then
    PG_DIR="$ROOT_FALLBACK_DIR"
fi
DATA="$PG_DIR/data"
SOCK="$PG_DIR/sock"
LOG_FILE="$PG_DIR/postgres.log"

# as_pg CMD...: run as the server's OS user (postgres when we are root), from a directory that
# user can enter.
as_pg() {
    if is_root; then
        (cd / && runuser -u "$PG_OS_USER" -- "$@")
    else
        "$@"
    fi
}

# our_pid: the postmaster of OUR data directory, when it runs.
our_pid() {
    local pid
    [ -f "$DATA/postmaster.pid" ] || return 1
    pid="$(head -n1 "$DATA/postmaster.pid" 2>/dev/null | tr -dc '0-9')" || return 1
    pid_alive "$pid" || return 1
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$DATA" || return 1
    printf '%s\n' "$pid"
}

# our_port: the port our running postmaster listens on (line 4 of postmaster.pid).
our_port() {
    sed -n 4p "$DATA/postmaster.pid" 2>/dev/null | tr -dc '0-9'
}

pg_major() {
    "$1/pg_ctl" --version 2>/dev/null | sed -n 's/.* \([0-9][0-9]*\)[.0-9]*.*/\1/p' | head -n1
}

BIN=""
find_bindir() {
    local want="" d
    [ -f "$DATA/PG_VERSION" ] && want="$(tr -dc '0-9' <"$DATA/PG_VERSION")"
    if [ -n "${IPMG_PG_BINDIR:-}" ]; then
        if [ ! -x "$IPMG_PG_BINDIR/pg_ctl" ] || [ ! -x "$IPMG_PG_BINDIR/initdb" ]; then
            die "IPMG_PG_BINDIR=$IPMG_PG_BINDIR has no pg_ctl/initdb: point it at a PostgreSQL bin directory"
        fi
        BIN="$IPMG_PG_BINDIR"
    elif [ -n "$want" ] && [ -x "/usr/lib/postgresql/$want/bin/pg_ctl" ]; then
        BIN="/usr/lib/postgresql/$want/bin"
    else
        for d in $(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V); do
            [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && BIN="$d"
        done
        if [ -z "$BIN" ] && command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
            BIN="$(dirname "$(command -v pg_ctl)")"
        fi
    fi
    [ -n "$BIN" ] || return 1
    if [ -n "$want" ] && [ "$(pg_major "$BIN")" != "$want" ]; then
        die "$DATA was made by PostgreSQL $want but $BIN is PostgreSQL $(pg_major "$BIN"): apt-get install postgresql-$want, or remove $PG_DIR to start afresh"
    fi
}

require_server_binaries() {
    find_bindir && return 0
    if ! is_root; then
        die "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and PATH): install them with 'sudo apt-get install postgresql', or set IPMG_PG_BINDIR"
    fi
    command -v apt-get >/dev/null 2>&1 ||
        die "PostgreSQL server binaries not found and there is no apt-get: install PostgreSQL 15+ and set IPMG_PG_BINDIR to its bin directory"
    local alog="${TMPDIR:-/tmp}/ipmg-apt-postgresql.log"
    info "installing PostgreSQL with apt-get (once; log: $alog) ..."
    if ! timeout "$APT_TIMEOUT" bash -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql' \
        >"$alog" 2>&1 9>&-; then
        die_with_log "$alog" "apt-get could not install PostgreSQL (no network or apt repositories?): run 'apt-get update && apt-get install -y postgresql' yourself; log: $alog"
    fi
    find_bindir || die "apt-get installed postgresql but no pg_ctl/initdb appeared under /usr/lib/postgresql/*/bin: set IPMG_PG_BINDIR"
}

require_os_user() {
    is_root || return 0
    id -u "$PG_OS_USER" >/dev/null 2>&1 && return 0
    useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
        --shell /usr/sbin/nologin "$PG_OS_USER" ||
        die "could not create the '$PG_OS_USER' OS user that PostgreSQL runs as (it refuses root): useradd --system $PG_OS_USER"
}

prepare_dirs() {
    if is_root && ! world_reachable "$PG_DIR"; then
        die "the '$PG_OS_USER' OS user that runs PostgreSQL cannot enter $PG_DIR (a parent directory is private): set IPMG_STATE_DIR to a directory it can reach, e.g. IPMG_STATE_DIR=/var/lib/ipmg"
    fi
    mkdir -p "$PG_DIR" "$SOCK"
    if is_root; then
        chown "$PG_OS_USER:" "$PG_DIR" "$SOCK"
        [ ! -e "$DATA" ] || chown -R "$PG_OS_USER:" "$DATA"
        [ ! -e "$LOG_FILE" ] || chown "$PG_OS_USER:" "$LOG_FILE"
    fi
    chmod 700 "$SOCK"
}

init_cluster() {
    [ -f "$DATA/PG_VERSION" ] && return 0
    if [ -d "$DATA" ] && [ -n "$(ls -A "$DATA" 2>/dev/null)" ]; then
        die "$DATA exists but holds no PostgreSQL cluster (an interrupted initdb?): remove it and run start again"
    fi
    [ -n "${CFG[password]}" ] ||
        die "DATABASE_URL has no password, but the local server uses password (scram) auth over TCP: put one in the URL, e.g. postgresql://postgres:postgres@127.0.0.1:5432/postgres"
    local pwfile="$PG_DIR/.initdb-pw" ilog="$PG_DIR/initdb.log" locale="C"
    if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then
        locale="C.UTF-8"
    fi
    (
        umask 077
        printf '%s\n' "${CFG[password]}" >"$pwfile"
    )
    if is_root; then chown "$PG_OS_USER:" "$pwfile"; fi
    local rc=0
    as_pg "$BIN/initdb" -D "$DATA" --auth-local=trust --auth-host=scram-sha-256 \
        --username="${CFG[user]}" --pwfile="$pwfile" -E UTF8 --locale="$locale" \
        >"$ilog" 2>&1 9>&- || rc=$?
    rm -f "$pwfile"
    [ "$rc" -eq 0 ] || die_with_log "$ilog" "initdb failed for $DATA (log: $ilog)"
}

# ensure_database: the database DATABASE_URL names exists (created over our socket).
ensure_database() {
    local db="${CFG[dbname]}" exists
    [ "$db" != postgres ] || return 0
    exists="$(printf '%s\n' "SELECT 1 FROM pg_database WHERE datname = :'db';" |
        "$BIN/psql" -X -q -t -A -h "$SOCK" -p "${CFG[port]}" -U "${CFG[user]}" -d postgres \
            -v db="$db" 2>&1)" || die "could not list databases on our server: $exists"
    [ "$exists" = 1 ] && return 0
    "$BIN/createdb" -h "$SOCK" -p "${CFG[port]}" -U "${CFG[user]}" "$db" ||
        die "could not create database $db on our server (log: $LOG_FILE)"
}

listen_address() {
    case "${CFG[host]}" in
        ::1) echo "::1" ;;
        localhost) echo "localhost" ;;
        *) echo "127.0.0.1" ;;
    esac
}

password_hint() {
    case "$PROBE_ERROR" in
        *"password authentication failed"*)
            printf '%s' " (the cluster in $DATA keeps the password it was initialised with: fix DATABASE_URL, or remove $PG_DIR to start afresh)"
            ;;
    esac
}

server_version() {
    # From the probe's answer: "PostgreSQL 15.14 (Debian ...) at ..."
    printf '%s\n' "$PROBE_OUTPUT" | sed -n 's/^PostgreSQL \(.*\) at .*/\1/p'
}

cmd_start() {
    local pid port who rc=0
    load_config postgres
    take_lock "$IPMG_STATE_DIR/.postgres.lock"
    port="${CFG[port]}"
    if [ "${CFG[local]}" != 1 ]; then
        if probe_once postgres; then
            info "PostgreSQL at ${CFG[host]}:$port already answers ($(server_version)): using it, starting nothing"
            return 0
        fi
        die "DATABASE_URL points at ${CFG[host]}:$port, which does not answer ($PROBE_ERROR), and is not a local address: fix DATABASE_URL, or unset it to start a local server"
    fi
    if pid="$(our_pid)"; then
        if [ "$(our_port)" != "$port" ]; then
            die "our PostgreSQL (pid $pid, $DATA) listens on port $(our_port), but DATABASE_URL says $port: run 'bash deploy/local/postgres.sh stop' first"
        fi
        find_bindir || die "PostgreSQL (pid $pid) runs from $DATA but pg_ctl is not found: set IPMG_PG_BINDIR"
        ensure_database
        probe_wait postgres "$START_TIMEOUT" ||
            die_with_log "$LOG_FILE" "our PostgreSQL (pid $pid) runs but $PROBE_ERROR$(password_hint) (log: $LOG_FILE)"
        probe_once postgres || true
        info "PostgreSQL $(server_version) already running at ${CFG[host]}:$port (pid $pid)"
        return 0
    fi
    if probe_once postgres; then
        info "PostgreSQL at ${CFG[host]}:$port already answers ($(server_version)): using it, starting nothing"
        return 0
    fi
    if who="$(port_owner "$port")"; then
        local hint=""
        if command -v pg_lsclusters >/dev/null 2>&1 &&
            pg_lsclusters -h 2>/dev/null | awk -v p="$port" '$3 == p && $4 == "online"' | grep -q .; then
            hint=" (a Debian cluster: see pg_lsclusters, stop it with pg_ctlcluster <version> <name> stop)"
        fi
        die "port $port (PostgreSQL) is already in use by $who$hint, which does not answer DATABASE_URL ($PROBE_ERROR): stop it, or choose another port with IPMG_PG_PORT=<port>"
    fi
    require_server_binaries
    require_os_user
    prepare_dirs
    init_cluster

    [ -f "$LOG_FILE" ] && mv -f "$LOG_FILE" "$LOG_FILE.1"
    as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG_FILE" \
        -o "-c listen_addresses='$(listen_address)' -p $port -c unix_socket_directories='$SOCK' -c max_connections=200 -c fsync=on" \
        -w -t "$START_TIMEOUT" start >"$PG_DIR/pg_ctl.log" 2>&1 9>&- || rc=$?
    if [ "$rc" -ne 0 ]; then
        if our_pid >/dev/null; then
            as_pg "$BIN/pg_ctl" -D "$DATA" stop -m immediate -w -t 10 >/dev/null 2>&1 9>&- || true
        fi
        die_with_log "$LOG_FILE" "PostgreSQL did not start within $START_TIMEOUT s: see $LOG_FILE (and $PG_DIR/pg_ctl.log)"
    fi
    pid="$(our_pid)" || die_with_log "$LOG_FILE" "PostgreSQL started and exited at once: see $LOG_FILE"
    ensure_database
    probe_wait postgres "$START_TIMEOUT" ||
        die_with_log "$LOG_FILE" "PostgreSQL runs (pid $pid) but $PROBE_ERROR$(password_hint) (log: $LOG_FILE)"
    probe_once postgres || true
    info "PostgreSQL $(server_version) started at ${CFG[host]}:$port (pid $pid, data $DATA)"
}

cmd_stop() {
    local pid
    take_lock "$IPMG_STATE_DIR/.postgres.lock"
    if ! pid="$(our_pid)"; then
        info "PostgreSQL: not running from $DATA (nothing to stop)"
        return 0
    fi
    find_bindir || die "PostgreSQL (pid $pid) runs from $DATA but pg_ctl is not found: set IPMG_PG_BINDIR"
    if as_pg "$BIN/pg_ctl" -D "$DATA" stop -m fast -w -t "$STOP_TIMEOUT" >/dev/null 2>&1 9>&-; then
        info "PostgreSQL stopped (pid $pid)"
        return 0
    fi
    die_with_log "$LOG_FILE" "PostgreSQL (pid $pid) did not stop within $STOP_TIMEOUT s: see $LOG_FILE, or 'pg_ctl -D $DATA stop -m immediate'"
}

cmd_status() {
    local pid where
    load_config postgres
    where="${CFG[host]}:${CFG[port]}"
    if pid="$(our_pid)"; then
        if probe_once postgres; then
            echo "postgres: running, PostgreSQL $(server_version) at $where (pid $pid, data $DATA)"
            return 0
        fi
        echo "postgres: process $pid runs from $DATA but does not answer at $where: $PROBE_ERROR"
        return 1
    fi
    if probe_once postgres; then
        echo "postgres: running, external server at $where answers, PostgreSQL $(server_version) (not started by these scripts)"
        return 0
    fi
    echo "postgres: not running ($where does not answer)"
    return 3
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *)
        echo "usage: bash deploy/local/postgres.sh start|stop|status" >&2
        exit 2
        ;;
esac
