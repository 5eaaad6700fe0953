#!/usr/bin/env bash
# The four IPMG Liaison services and the audit watch as local processes (the same topology as
# deploy/compose.yaml).
#
#   bash deploy/local/services.sh start|stop|status
#
# Logs and pid files live in $IPMG_STATE_DIR/run. Every wait is bounded.
set -euo pipefail
IPMG_SCRIPT="services.sh"
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SERVICES=(meetings resolutions notifications reporting audit-watch)
declare -A PORTS=(
    [meetings]=8001 [resolutions]=8002 [notifications]=8003 [reporting]=8004 [audit-watch]=8005
)
RUN_DIR="$IPMG_STATE_DIR/run"
# Local processes run on the public development secrets; outside this mode they refuse to.
export IPMG_ENVIRONMENT="${IPMG_ENVIRONMENT:-development}"
IPMG_BIN="$IPMG_REPO_ROOT/.venv/bin/ipmg"
READY_TIMEOUT="${IPMG_READY_TIMEOUT:-90}"

port_of() {
    local service="$1" variable
    variable="IPMG_${service^^}_PORT"
    variable="${variable//-/_}"
    printf '%s' "${!variable:-${PORTS[$service]}}"
}

# The command line of a process: `ipmg <service> run`, or the audit watch with its state file.
command_of() {
    local service="$1" port="$2"
    if [ "$service" = audit-watch ]; then
        printf '%s\n' "$IPMG_BIN" audit watch --port "$port" \
            --state "${IPMG_AUDIT_WATCH_STATE:-$IPMG_STATE_DIR/audit-watch.sqlite3}"
    else
        printf '%s\n' "$IPMG_BIN" "$service" run --port "$port"
    fi
}

pid_of() {
    local file="$RUN_DIR/$1.pid"
    [ -f "$file" ] && cat "$file"
}

ready() {
    curl -fsS -m 3 "http://127.0.0.1:$(port_of "$1")/health/ready" >/dev/null 2>&1
}

# A local mail sink for notifications (messages are printed to its log): only when nothing
# listens on the SMTP port yet, since a real relay may be configured there.
MAIL_PORT="${IPMG_NOTIFICATIONS_SMTP_PORT:-1025}"
start_mail_sink() {
    local pid
    pid="$(pid_of mail || true)"
    if pid_alive "$pid" || port_owner "$MAIL_PORT" >/dev/null; then
        return 0
    fi
    setsid nohup "$IPMG_REPO_ROOT/.venv/bin/python" -m aiosmtpd -n -l "127.0.0.1:$MAIL_PORT" \
        >>"$RUN_DIR/mail.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/mail.pid"
    info "mail sink on 127.0.0.1:$MAIL_PORT (messages in $RUN_DIR/mail.log)"
}

start() {
    [ -x "$IPMG_BIN" ] || die "the project is not installed: run 'uv sync --frozen' first"
    mkdir -p "$RUN_DIR"
    start_mail_sink
    local service pid port variable command
    for service in "${SERVICES[@]}"; do
        pid="$(pid_of "$service" || true)"
        if pid_alive "$pid"; then
            info "$service already running (pid $pid)"
            continue
        fi
        port="$(port_of "$service")"
        variable="IPMG_${service^^}_PORT"
        require_free_port "$port" "${variable//-/_}" "$service HTTP"
        mapfile -t command < <(command_of "$service" "$port")
        setsid nohup "${command[@]}" >>"$RUN_DIR/$service.log" 2>&1 </dev/null &
        echo $! >"$RUN_DIR/$service.pid"
    done
    local deadline=$((SECONDS + READY_TIMEOUT))
    for service in "${SERVICES[@]}"; do
        until ready "$service"; do
            pid_alive "$(pid_of "$service")" ||
                die_with_log "$RUN_DIR/$service.log" "$service exited during start-up"
            [ $SECONDS -lt $deadline ] ||
                die_with_log "$RUN_DIR/$service.log" \
                    "$service not ready within ${READY_TIMEOUT}s (see $RUN_DIR/$service.log)"
            sleep 0.5
        done
        info "$service ready on http://127.0.0.1:$(port_of "$service")"
    done
}

stop() {
    local service pid
    for service in "${SERVICES[@]}" mail; do
        pid="$(pid_of "$service" || true)"
        if pid_alive "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            if ! wait_gone "$pid" 30; then
                kill -KILL "$pid" 2>/dev/null || true
                wait_gone "$pid" 5 || true
            fi
            info "$service stopped"
        fi
        rm -f "$RUN_DIR/$service.pid"
    done
}

status() {
    local service pid
    for service in "${SERVICES[@]}"; do
        pid="$(pid_of "$service" || true)"
        if pid_alive "$pid"; then
            if ready "$service"; then state="ready"; else state="running, not ready"; fi
            info "$service: $state (pid $pid, port $(port_of "$service"))"
        else
            info "$service: stopped"
        fi
    done
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*) die "usage: services.sh start|stop|status" ;;
esac
