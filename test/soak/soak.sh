#!/usr/bin/env bash
# soak.sh: `make soak`.  Hundreds of devices (test/soak/soak.js: node and
# the e2e client) connect, push, pull, stay live and disconnect at random
# against a cluster of its own for minutes.  A third of the way in, one
# sync worker is killed (SIGKILL: PostgreSQL restarts every process); two
# thirds of the way in, PostgreSQL is restarted.  At the end every device
# must equal the origin, every operation be applied once, every increment
# counted once, and the workers' memory be flat over the last third.
#
# SOAK_DEVICES (300) and SOAK_SECONDS (180) size it; OFS_KEEP=1 keeps the
# directory.  Prints the figures; exits non-zero on any failed check.
set -uo pipefail
cd "$(dirname "$0")/../.."
OFS_ROOT=$(pwd)
. test/lib/cluster.sh
DEVICES=${SOAK_DEVICES:-300}
DURATION=${SOAK_SECONDS:-180}
DIR=$(ofs_mktemp ofs-soak)
PORT=$(ofs_free_port)
cleanup() {
  [ -n "${NODE_PID:-}" ] && kill "$NODE_PID" 2>/dev/null
  if [ -n "${OFS_KEEP:-}" ]; then ofs_cluster_stop immediate; echo "# kept $DIR"; else ofs_cluster_destroy; rm -rf "$DIR"; fi
}
trap cleanup EXIT
ofs_toolkit_ready || exit 1
unset PGPORT_OFS
ofs_cluster_init "$DIR/cluster" "ofs.port = $PORT" "ofs.database = 'soak'" "max_connections = 200" >/dev/null ||
  { echo "not ok - the cluster did not start"; exit 1; }
ofs_psql -d postgres -c "CREATE DATABASE soak" >/dev/null
ofs_psql -d soak >/dev/null <<SQL
CREATE EXTENSION ofs;
CREATE ROLE soak_dev;
CREATE TABLE soak_items (id text PRIMARY KEY, owner text, n int, hits int NOT NULL DEFAULT 0);
GRANT SELECT, INSERT, UPDATE ON soak_items TO soak_dev;
SELECT ofs.sync_table('soak_items', '{"hits": "counter"}');
INSERT INTO soak_items (id, owner, n) SELECT 'shared-' || g, 'origin', g FROM generate_series(1, 20) g;
SQL
ofs_psql -d soak -c "SELECT ofs.create_device_token('soak_dev', 'soak-' || g) FROM generate_series(0, $DEVICES - 1) g" >"$DIR/tokens"
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.2; done

worker_rss() {
  ofs_psql -d postgres -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ofs sync worker' ORDER BY pid" |
    while read -r pid; do awk -v p="$pid" '/^VmRSS/ {print p ":" $2 " kB"}' "/proc/$pid/status" 2>/dev/null; done | tr '\n' ' '
}
rss_total() { ofs_psql -d postgres -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ofs sync worker'" |
  while read -r pid; do awk '/^RssAnon/ {print $2}' "/proc/$pid/status" 2>/dev/null; done | awk '{s += $1} END {print s + 0}'; }

export OFS_WS_URL="ws://127.0.0.1:$PORT/" OFS_E2E_DB=soak PGDATABASE=soak SOAK_DEVICES=$DEVICES SOAK_SECONDS=$DURATION SOAK_TOKENS="$DIR/tokens" SOAK_MARK="$DIR/mark"
node test/soak/soak.js >"$DIR/soak.out" 2>&1 &
NODE_PID=$!
start=$SECONDS
echo "# $DEVICES devices for ${DURATION}s; workers at start: $(worker_rss)"
sleep $((DURATION / 3))
victim=$(ofs_psql -d postgres -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ofs sync worker' LIMIT 1")
echo "# $((SECONDS - start))s: kill -9 of sync worker $victim"
kill -9 "$victim"
sleep $((DURATION / 3))
echo "# $((SECONDS - start))s: PostgreSQL restart"
ofs_as_pg "$OFS_PG_BINDIR/pg_ctl" -D "$OFS_CLUSTER_DIR/data" -m fast -w -t 60 restart -l "$OFS_CLUSTER_DIR/server.log" >/dev/null
# Memory over the last stretch of steady traffic, once the restarted
# workers have warmed up: from a third of the last third to its end.
sleep $((DURATION / 9 > 15 ? DURATION / 9 : 15))
echo "# $((SECONDS - start))s: workers $(worker_rss)"
# Private memory comes and goes with the load; a leak only grows.  Sampled
# every 2 s until the traffic ends: the peak of the second half of the
# samples against the peak of the first half.
samples=()
while [ ! -f "$DIR/mark" ] && kill -0 "$NODE_PID" 2>/dev/null; do samples+=("$(rss_total)"); sleep 2; done
echo "# $((SECONDS - start))s (traffic over): workers $(worker_rss)"
half=$(( ${#samples[@]} / 2 ))
mem_a=$(printf '%s\n' "${samples[@]:0:$half}" | sort -n | tail -1)
mem_b=$(printf '%s\n' "${samples[@]:$half}" | sort -n | tail -1)
echo "# private memory of the workers, kB, every 2 s: ${samples[*]}"
wait "$NODE_PID"; rc=$?; NODE_PID=
echo "# $((SECONDS - start))s (all settled): workers $(worker_rss)"
cat "$DIR/soak.out"
growth=$((mem_b - mem_a))
if [ "$growth" -lt 4096 ]; then
  echo "ok - the workers' private memory is flat over the steady traffic of the last third (peak ${mem_a} kB, then ${mem_b} kB)"
else
  echo "not ok - the workers' private memory is flat over the steady traffic of the last third (peak ${mem_a} kB, then ${mem_b} kB)"; rc=1
fi
if grep -q "terminated by signal" <(grep -v "PID $victim" "$OFS_CLUSTER_DIR/server.log"); then
  echo "not ok - nothing crashed but the killed worker"; grep "terminated by signal" "$OFS_CLUSTER_DIR/server.log" | head; rc=1
else
  echo "ok - nothing crashed but the killed worker"
fi
exit $rc
