#!/usr/bin/env bash
# conformance: the executable conformance suite of docs/PROTOCOL.md, driven
# over WebSocket by an outside client (node, npm ws; test/conformance/).  Creates a
# fresh database ofs_e2e (the database the cluster's ofs.database names),
# runs each test/conformance/*.test.js in order, prints their TAP lines, drops the
# database and any e2e_ role left behind, and fails if any test failed.
#
# Needs OFS_WS_PORT (the cluster's ofs.port) and a running cluster via
# PGHOST/PGPORT/PGUSER, as test/run.sh provides.
set -uo pipefail
. "$OFS_ROOT/test/lib/cluster.sh"
db=ofs_e2e
dir="$OFS_ROOT/test/conformance"

if [ -z "${OFS_WS_PORT:-}" ]; then
  echo "not ok - OFS_WS_PORT is not set: start the cluster with ofs.port and export it (test/run.sh does)"
  exit 1
fi
if ! err=$(ofs_toolkit_ready 2>&1); then
  echo "not ok - $err"
  exit 1
fi

# drop_e2e: the database (the worker's connection included) and leftover roles.
drop_e2e() {
  ofs_psql -d postgres -c "SET client_min_messages = warning" \
    -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
  local r
  for r in $(ofs_psql -d postgres -c "SELECT rolname FROM pg_roles WHERE rolname LIKE 'e2e\_%'"); do
    ofs_psql -d postgres -c "DROP ROLE $r" >/dev/null || echo "# could not drop role $r"
  done
}

drop_e2e
ofs_psql -d postgres -c "CREATE DATABASE $db" >/dev/null &&
  ofs_psql -d $db -c "CREATE EXTENSION ofs" >/dev/null || {
    echo "not ok - could not create database $db with the extension ofs"; exit 1; }

export OFS_WS_URL="ws://127.0.0.1:$OFS_WS_PORT/"
export OFS_E2E_DB=$db
failed=0
ran=0
failures=()
# test/run.sh gives a script 900 s; the suite keeps well under 10 minutes.
budget_end=$((SECONDS + ${OFS_CONFORMANCE_BUDGET:-540}))
for f in "$dir"/*.test.js; do
  name=$(basename "$f" .test.js)
  # OFS_CONFORMANCE_ONLY=06_push runs the files whose name contains it
  # (OFS_CONFORMANCE_ONLY=5x_: the sections still being implemented).
  [[ -n "${OFS_CONFORMANCE_ONLY:-}" && "$name" != *${OFS_CONFORMANCE_ONLY}* ]] && continue
  echo "# $name"
  left=$((budget_end - SECONDS))
  if [ "$left" -lt 30 ]; then
    echo "not ok - $name not run: the time budget of the conformance tests is spent"
    failed=$((failed + 1)); failures+=("$name"); continue
  fi
  ran=$((ran + 1))
  # Each file has its own hard limit; this one catches a hung node.
  if ! timeout -k 5 "$((left < 200 ? left : 200))" node "$f"; then
    failed=$((failed + 1)); failures+=("$name")
  fi
  # A test may have restarted the worker or the cluster: wait until the
  # cluster accepts connections again before the next one.
  for _ in $(seq 1 120); do
    ofs_psql -d postgres -c "SELECT 1" >/dev/null 2>&1 && break
    sleep 0.5
  done
done

leftover=$(ofs_psql -d postgres -c "SELECT string_agg(rolname, ' ') FROM pg_roles WHERE rolname LIKE 'e2e\_%'")
if [ -n "$leftover" ]; then
  echo "not ok - test roles left behind: $leftover"
  failed=$((failed + 1)); failures+=("roles")
fi
drop_e2e

echo "# conformance: $ran test files run, $failed failed${failures[*]:+ (${failures[*]})}"
[ "$failed" -eq 0 ]
