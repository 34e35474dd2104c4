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
