# shellcheck shell=bash disable=SC2034  # CFG and PROBE_ERROR are read by the sourcing scripts
# Shared helpers for deploy/local/{kafka,postgres,infra}.sh. Sourced, never run.
#
# Conventions: every failure is ONE line on stderr ("<script>: <what is wrong and how to fix
# it>") and a non-zero exit, optionally followed by the tail of a log file. Nothing here waits
# without a bound.

umask 022

IPMG_LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IPMG_REPO_ROOT="$(cd "$IPMG_LOCAL_DIR/../.." && pwd)"
if [ -z "${HOME:-}" ]; then
    HOME="$(getent passwd "$(id -u)" | cut -d: -f6)"
    export HOME
fi
IPMG_STATE_DIR="${IPMG_STATE_DIR:-$HOME/.local/state/ipmg}"
IPMG_CACHE_DIR="${IPMG_CACHE_DIR:-$HOME/.cache/ipmg}"
IPMG_SCRIPT="${IPMG_SCRIPT:-$(basename "$0")}"

# ----------------------------------------------------------------------------- messages

die() {
    printf '%s: %s\n' "$IPMG_SCRIPT" "$*" >&2
    exit 1
}

# die_with_log LOGFILE MESSAGE...: the one clear line, then the last lines of the log.
die_with_log() {
    local log="$1"
    shift
    printf '%s: %s\n' "$IPMG_SCRIPT" "$*" >&2
    [ -s "$log" ] || exit 1
    # The last error lines say more than the tail of a Java stack trace.
    local errors
    errors="$(grep -A1 -E '(^|[] ])(ERROR|FATAL|PANIC)[]: ]' "$log" 2>/dev/null |
        grep -vE '^(--|[[:space:]]+at )' | tail -n 3 | cut -c1-400)" || true
    if [ -n "$errors" ]; then
        printf '  last errors in %s:\n' "$log" >&2
        printf '%s\n' "$errors" | sed 's/^/  | /' >&2
    else
        printf '  last lines of %s:\n' "$log" >&2
        tail -n 5 "$log" | cut -c1-400 | sed 's/^/  | /' >&2 || true
    fi
    exit 1
}

info() {
    printf '%s: %s\n' "$IPMG_SCRIPT" "$*"
}

is_root() {
    [ "$(id -u)" -eq 0 ]
}

# ----------------------------------------------------------------------------- processes

# pid_alive PID: true while the process exists and is not a zombie.
pid_alive() {
    local pid="$1" state
    [ -n "$pid" ] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    state="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" || true
    [ "$state" != "Z" ]
}

# wait_gone PID SECONDS: true when the process has gone within the bound.
wait_gone() {
    local pid="$1" deadline=$((SECONDS + $2))
    while pid_alive "$pid"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

# take_lock FILE: serialise start/stop of one server between concurrent callers (fd 9).
# Children that outlive us must not inherit fd 9: start them with `9>&-`.
take_lock() {
    local file="$1"
    mkdir -p "$(dirname "$file")"
    exec 9>>"$file"
    if command -v flock >/dev/null 2>&1; then
        flock -w 300 9 || die "another start/stop holds $file for more than 300 s; try again"
    fi
}

# ----------------------------------------------------------------------------- ports

# port_owner PORT: prints who listens on TCP PORT (empty output and status 1 when free).
port_owner() {
    local port="$1" line who
    if command -v ss >/dev/null 2>&1; then
        line="$(ss -Hltnp "sport = :$port" 2>/dev/null | head -n1)" || true
        [ -n "$line" ] || return 1
        who="$(printf '%s\n' "$line" | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p')"
        printf '%s\n' "${who:-another process}"
        return 0
    fi
    # No ss: try to connect (bounded).
    if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
        printf '%s\n' "another process"
        return 0
    fi
    return 1
}

# require_free_port PORT ENVVAR WHAT: one clear line when something else listens.
require_free_port() {
    local port="$1" var="$2" what="$3" who
    if who="$(port_owner "$port")"; then
        die "port $port ($what) is already in use by $who, which is not our server: stop it, or choose another port with $var=<port>"
    fi
}

# ----------------------------------------------------------------------------- the probe

# uv from PATH, or as a module where pip put it outside PATH (both are the same program).
UV_CMD=(uv)
require_uv() {
    command -v uv >/dev/null 2>&1 && return 0
    if python3 -m uv --version >/dev/null 2>&1; then
        UV_CMD=(python3 -m uv)
        return 0
    fi
    die "uv is required to run the readiness probe: python3 -m pip install uv (then: uv sync --frozen)"
}

# probe ARGS...: run deploy/local/probe.py in the project's locked environment.
probe() {
    "${UV_CMD[@]}" run --frozen --quiet --project "$IPMG_REPO_ROOT" \
        python "$IPMG_LOCAL_DIR/probe.py" "$@" 9>&-
}

# load_config kafka|postgres: fills the associative array CFG from probe.py --print-config.
# This is also the check that the Python environment (uv, aiokafka, asyncpg) works.
declare -gA CFG=()
load_config() {
    local target="$1" out err rc=0 key value
    require_uv
    err="$(mktemp)"
    out="$(probe "$target" --print-config 2>"$err")" || rc=$?
    if [ "$rc" -eq 2 ] && grep -q '^configuration error:' "$err"; then
        local msg
        msg="$(grep -m1 '^configuration error:' "$err")"
        rm -f "$err"
        die "$msg"
    fi
    if [ "$rc" -ne 0 ]; then
        local last
        last="$(grep -v '^[[:space:]]*$' "$err" | tail -n1)"
        rm -f "$err"
        die "the Python environment cannot run deploy/local/probe.py (uv said: ${last:-exit $rc}): run 'uv sync --frozen' in $IPMG_REPO_ROOT"
    fi
    rm -f "$err"
    CFG=()
    while IFS='=' read -r key value; do
        [ -n "$key" ] && CFG["$key"]="$value"
    done <<<"$out"
}

# probe_once TARGET: true when the server answers one real request. Its one-line answer goes
# to PROBE_OUTPUT; the reason it did not answer goes to PROBE_ERROR.
PROBE_OUTPUT=""
PROBE_ERROR=""
probe_once() {
    local target="$1" err rc=0
    err="$(mktemp)"
    PROBE_OUTPUT="$(probe "$target" --once 2>"$err")" || rc=$?
    PROBE_ERROR="$(tail -n1 "$err")"
    rm -f "$err"
    return "$rc"
}

# probe_wait TARGET SECONDS [PID]: bounded wait for a real answer; PROBE_ERROR on failure.
probe_wait() {
    local target="$1" timeout="$2" pid="${3:-}" err
    local args=("$target" --timeout "$timeout" --quiet)
    [ -z "$pid" ] || args+=(--watch-pid "$pid")
    err="$(probe "${args[@]}" 2>&1 >/dev/null)" && return 0
    PROBE_ERROR="$(printf '%s\n' "$err" | tail -n1)"
    return 1
}

# require_seconds NAME VALUE: a positive whole number of seconds.
require_seconds() {
    case "$2" in
        '' | *[!0-9]* | 0) die "$1=$2 must be a positive whole number of seconds" ;;
    esac
}
