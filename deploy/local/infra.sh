#!/usr/bin/env bash
# The real local infrastructure, both servers at once.
#
#   bash deploy/local/infra.sh up       PostgreSQL, then Kafka (idempotent)
#   bash deploy/local/infra.sh down     Kafka, then PostgreSQL (fine when nothing runs)
#   bash deploy/local/infra.sh status   one line each; exit 0 only when both answer
#
# Environment: see deploy/local/kafka.sh and deploy/local/postgres.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

case "${1:-}" in
    up)
        bash "$here/postgres.sh" start
        bash "$here/kafka.sh" start
        ;;
    down)
        rc=0
        bash "$here/kafka.sh" stop || rc=1
        bash "$here/postgres.sh" stop || rc=1
        exit "$rc"
        ;;
    status)
        rc=0
        bash "$here/postgres.sh" status || rc=1
        bash "$here/kafka.sh" status || rc=1
        exit "$rc"
        ;;
    *)
        echo "usage: bash deploy/local/infra.sh up|down|status" >&2
        exit 2
        ;;
esac
