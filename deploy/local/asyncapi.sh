#!/usr/bin/env bash
# Validates the AsyncAPI document with the official AsyncAPI parser (npm's @asyncapi/parser,
# pinned by deploy/asyncapi/package-lock.json and installed into deploy/asyncapi/node_modules).
#
#   bash deploy/local/asyncapi.sh [DOCUMENT]    default docs/asyncapi.json
#
# Environment:
#   IPMG_APT_TIMEOUT          seconds allowed for `apt-get install nodejs npm` (default 900)
set -euo pipefail
IPMG_SCRIPT="asyncapi.sh"
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CHECKER="$ROOT/deploy/asyncapi"
DOCUMENT="${1:-$ROOT/docs/asyncapi.json}"
APT_TIMEOUT="${IPMG_APT_TIMEOUT:-900}"
require_seconds IPMG_APT_TIMEOUT "$APT_TIMEOUT"

if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    is_root || die "node and npm are missing and only root can install them: run 'sudo apt-get install -y nodejs npm'"
    command -v apt-get >/dev/null 2>&1 || die "node and npm are missing and there is no apt-get: install Node.js 18+ with npm"
    alog="${TMPDIR:-/tmp}/ipmg-apt-nodejs.log"
    info "installing Node.js and npm with apt-get (once; log: $alog) ..."
    timeout "$APT_TIMEOUT" bash -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm' \
        >"$alog" 2>&1 || die_with_log "$alog" "apt-get could not install nodejs and npm; log: $alog"
fi

# Reinstall when the lock file is newer than what npm last installed from it.
if [ ! -f "$CHECKER/node_modules/.package-lock.json" ] ||
    [ "$CHECKER/package-lock.json" -nt "$CHECKER/node_modules/.package-lock.json" ]; then
    nlog="${TMPDIR:-/tmp}/ipmg-npm-asyncapi.log"
    info "installing the AsyncAPI parser with npm ci (once; log: $nlog) ..."
    (cd "$CHECKER" && npm ci --no-audit --no-fund --ignore-scripts) >"$nlog" 2>&1 ||
        die_with_log "$nlog" "npm ci could not install @asyncapi/parser (no access to the npm registry?); log: $nlog"
fi
node "$CHECKER/validate.mjs" "$DOCUMENT"
