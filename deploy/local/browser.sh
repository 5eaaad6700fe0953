#!/usr/bin/env bash
# Debian's Chromium for the dashboard's browser test (Playwright drives it by executable_path;
# `playwright install` and its downloaded browsers are never used).
#
#   bash deploy/local/browser.sh        install chromium when /usr/bin/chromium is missing
#
# Environment:
#   IPMG_CHROMIUM             the browser to check for (default /usr/bin/chromium)
#   IPMG_APT_TIMEOUT          seconds allowed for `apt-get install chromium` (default 900)
set -euo pipefail
IPMG_SCRIPT="browser.sh"
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CHROMIUM="${IPMG_CHROMIUM:-/usr/bin/chromium}"
APT_TIMEOUT="${IPMG_APT_TIMEOUT:-900}"
require_seconds IPMG_APT_TIMEOUT "$APT_TIMEOUT"

if [ -x "$CHROMIUM" ]; then
    exit 0
fi
is_root ||
    die "$CHROMIUM is missing and only root can install it: run 'sudo apt-get install -y chromium' (the dashboard's browser test needs it)"
command -v apt-get >/dev/null 2>&1 ||
    die "$CHROMIUM is missing and there is no apt-get: install Chromium and set IPMG_CHROMIUM to it"

alog="${TMPDIR:-/tmp}/ipmg-apt-chromium.log"
info "installing Chromium with apt-get (once; log: $alog) ..."
if ! timeout "$APT_TIMEOUT" bash -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core' \
    >"$alog" 2>&1; then
    die_with_log "$alog" "apt-get could not install Chromium (no network or apt repositories?): run 'apt-get update && apt-get install -y chromium' yourself; log: $alog"
fi
[ -x "$CHROMIUM" ] || die "apt-get installed chromium but $CHROMIUM did not appear: set IPMG_CHROMIUM to the browser"
info "Chromium installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
