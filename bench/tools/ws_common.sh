# ws_common.sh: what the sync worker rows (bench/rows/5*_ws_*.sh) share.
# Source it from a row; bench/run.sh exports OFS_ROOT, OFS_TMP, OFS_WS_PORT
# and the cluster's PGHOST/PGPORT/PGUSER.
#
# ws_prepare: checks node and the toolkit's npm packages (test/toolkit,
# ofs_toolkit_ready in test/lib/cluster.sh), raises the
# open-files limit for a thousand sockets, makes sure the database the
# workers serve (ofs_bench_ws) exists with the extension, and waits until
# every worker accepts WebSocket connections.
#
# ws_worker_pids: the pids of the sync workers.
#
# ws_restart_workers: stops the sync workers (pg_terminate_backend; the
# postmaster starts them again a second later) and waits until the new ones
# accept connections, so that a measurement starts from fresh processes.
#
# ws_node OUT SECONDS TOOL ARGS...: runs bench/tools/TOOL with node, at most
# SECONDS, its standard output into the file OUT, and returns its status;
# ws_stop_node (for a row's cleanup) ends it if it still runs.

. "$OFS_ROOT/test/lib/cluster.sh"
WS_DB=ofs_bench_ws
WS_TOOLS="$OFS_ROOT/bench/tools"
export OFS_WS_URL="ws://127.0.0.1:${OFS_WS_PORT:-0}/"

ws_worker_pids() {
  ofs_psql -d postgres -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ofs sync worker' ORDER BY pid"
}

ws_prepare() {
  if [ -z "${OFS_WS_PORT:-}" ]; then
    echo "OFS_WS_PORT is not set: bench/run.sh starts the cluster with ofs.port = \$OFS_WS_PORT" >&2
    return 1
  fi
  ofs_toolkit_ready || return 1
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  if [ "$(ofs_psql -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$WS_DB'")" = 0 ]; then
    ofs_psql -d postgres -c "CREATE DATABASE $WS_DB" >/dev/null
  fi
  ofs_psql -d $WS_DB -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS ofs" >/dev/null
  ws_wait_listening
}

# ws_wait_listening: until every worker serves (test/lib/cluster.sh).
ws_wait_listening() {
  ofs_wait_workers "$OFS_WS_PORT" 60 || {
    echo "worker pids: $(ws_worker_pids | tr '\n' ' ')" >&2; return 1; }
}

ws_restart_workers() {
  local old pid gone
  old=$(ws_worker_pids | tr '\n' ' ')
  ofs_psql -d postgres -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'ofs sync worker'" >/dev/null
  for _ in $(seq 1 100); do
    gone=1
    for pid in $old; do
      [ -d "/proc/$pid" ] && gone=0
    done
    [ "$gone" = 1 ] && break
    sleep 0.1
  done
  [ "$gone" = 1 ] || { echo "the sync workers $old did not stop within 10 s" >&2; return 1; }
  ws_wait_listening
}

WS_NODE_PID=
ws_node() {
  local out=$1 secs=$2 tool=$3 rc=0
  shift 3
  timeout -k 5 "$secs" node "$WS_TOOLS/$tool" "$@" >"$out" &
  WS_NODE_PID=$!
  wait "$WS_NODE_PID" || rc=$?
  WS_NODE_PID=
  return $rc
}

ws_stop_node() {
  if [ -n "$WS_NODE_PID" ]; then
    kill "$WS_NODE_PID" 2>/dev/null || true
    wait "$WS_NODE_PID" 2>/dev/null || true
    WS_NODE_PID=
  fi
}

# ws_fanout NAME DEVICES TRIALS SECS: the live fan-out of rows 51 and 55.
# Makes role bench_ws_NAME with DEVICES device tokens and table ws_NAME
# (dropped again on exit), runs bench/tools/ws_fanout.js on them (TRIALS
# changes after 2 not counted, at most SECS seconds; OFS_BENCH_FAN_* in the
# environment pass on) and sets FAN_P50 FAN_P99 FAN_MAX FAN_DEV50 FAN_DEV99
# and FAN_REST (the mode, then the workers' Pss when asked for).
ws_fanout() {
  local name=$1 devices=$2 trials=$3 secs=$4
  WS_FAN_DB=$WS_DB WS_FAN_NAME=$name
  trap ws_fanout_cleanup EXIT
  ws_fanout_cleanup
  ofs_psql -d $WS_DB >/dev/null <<SQL
CREATE ROLE bench_ws_$name;
CREATE TABLE ws_$name (id integer PRIMARY KEY, note text);
GRANT USAGE ON SCHEMA public TO bench_ws_$name;
GRANT SELECT ON ws_$name TO bench_ws_$name;
SELECT ofs.sync_table('ws_$name');
SQL
  ofs_psql -d $WS_DB -c "SELECT ofs.create_device_token('bench_ws_$name', 'bench-$name-' || g) FROM generate_series(1, $devices) g" \
    >"$OFS_TMP/ws_$name.tokens"
  ws_node "$OFS_TMP/ws_$name.out" "$secs" ws_fanout.js "$OFS_TMP/ws_$name.tokens" public.ws_$name "$trials" 2
  read -r FAN_P50 FAN_P99 FAN_MAX FAN_DEV50 FAN_DEV99 FAN_REST <"$OFS_TMP/ws_$name.out"
}

ws_fanout_cleanup() {
  local name=$WS_FAN_NAME role=bench_ws_$WS_FAN_NAME
  ws_stop_node
  ofs_psql -d $WS_FAN_DB -c "DROP TABLE IF EXISTS ws_$name" \
    -c "DELETE FROM ofs.device WHERE device LIKE 'bench-$name-%'" >/dev/null 2>&1
  ofs_psql -d $WS_FAN_DB -c "DO \$\$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '$role')
                      THEN DROP OWNED BY $role; DROP ROLE $role; END IF; END \$\$" >/dev/null 2>&1
  rm -f "$OFS_TMP/ws_$name.tokens" "$OFS_TMP/ws_$name.out"
}
