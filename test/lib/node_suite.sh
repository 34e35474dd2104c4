# node_suite.sh: run a directory of node test files (the npm package ws,
# through test/toolkit) against the cluster's sync worker, as one script of
# test/run.sh.  Source it after test/lib/cluster.sh, then:
#
#   ofs_node_suite NAME DIR BUDGET ONLY
#
# creates a fresh database ofs_e2e (the database the cluster's ofs.database
# names), runs each DIR/*.test.js in order (those whose name contains ONLY,
# when it is not empty) within BUDGET seconds, prints their TAP lines, drops
# the database and any e2e_ role left behind, and returns non-zero if any
# file failed.  Needs OFS_WS_PORT (the cluster's ofs.port) and a running
# cluster via PGHOST/PGPORT/PGUSER, as test/run.sh provides.

ofs_node_suite() {
  local suite=$1 dir=$2 budget=$3 only=$4 db=ofs_e2e
  local failed=0 ran=0 failures=() budget_end f name left leftover err

  if [ -z "${OFS_WS_PORT:-}" ]; then
    echo "not ok - OFS_WS_PORT is not set: start the cluster with ofs.port and export it (test/run.sh does)"
    return 1
  fi
  if ! err=$(ofs_toolkit_ready 2>&1); then
    echo "not ok - $err"
    return 1
  fi
  _ofs_node_suite_drop $db
  ofs_psql -d postgres -c "CREATE DATABASE $db" >/dev/null &&
    ofs_psql -d $db -c "CREATE EXTENSION ofs" >/dev/null || {
      echo "not ok - could not create database $db with the extension ofs"; return 1; }

  export OFS_WS_URL="ws://127.0.0.1:$OFS_WS_PORT/"
  export OFS_E2E_DB=$db
  budget_end=$((SECONDS + budget))
  for f in "$dir"/*.test.js; do
    name=$(basename "$f" .test.js)
    [[ -n "$only" && "$name" != *${only}* ]] && continue
    echo "# $name"
    left=$((budget_end - SECONDS))
    if [ "$left" -lt 30 ]; then
      echo "not ok - $name not run: the time budget of the $suite tests is spent"
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
  _ofs_node_suite_drop $db

  echo "# $suite: $ran test files run, $failed failed${failures[*]:+ (${failures[*]})}"
  [ "$failed" -eq 0 ]
}

# _ofs_node_suite_drop DB: the database (the worker's connection included) and leftover roles.
_ofs_node_suite_drop() {
  ofs_psql -d postgres -c "SET client_min_messages = warning" \
    -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null
  local r
  for r in $(ofs_psql -d postgres -c "SELECT rolname FROM pg_roles WHERE rolname LIKE 'e2e\_%'"); do
    ofs_psql -d postgres -c "DROP ROLE $r" >/dev/null || echo "# could not drop role $r"
  done
}
