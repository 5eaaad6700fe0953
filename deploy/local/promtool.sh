#!/usr/bin/env bash
# Debian's promtool (package prometheus), which checks the shipped Prometheus configuration and
# alert rules (tests/unit/deploy/test_prometheus_rules.py).
#
#   bash deploy/local/promtool.sh        install it when promtool is missing
#
# Environment:
#   IPMG_APT_TIMEOUT          seconds allowed for `apt-get install prometheus` (default 900)
set -euo pipefail
IPMG_SCRIPT="promtool.sh"
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

APT_TIMEOUT="${IPMG_APT_TIMEOUT:-900}"
require_seconds IPMG_APT_TIMEOUT "$APT_TIMEOUT"

if command -v promtool >/dev/null 2>&1; then
    exit 0
fi
is_root ||
    die "promtool is missing and only root can install it: run 'sudo apt-get install -y --no-install-recommends prometheus'"
command -v apt-get >/dev/null 2>&1 ||
    die "promtool is missing and there is no apt-get: install Prometheus's promtool and put it on PATH"

alog="${TMPDIR:-/tmp}/ipmg-apt-prometheus.log"
info "installing promtool (Debian's prometheus package) with apt-get (once; log: $alog) ..."
if ! timeout "$APT_TIMEOUT" bash -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus' \
    >"$alog" 2>&1; then
    die_with_log "$alog" "apt-get could not install prometheus; log: $alog"
fi
command -v promtool >/dev/null 2>&1 || die "apt-get installed prometheus but promtool is not on PATH"
info "promtool installed: $(promtool --version 2>&1 | head -n 1)"
