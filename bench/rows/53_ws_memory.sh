#!/usr/bin/env bash
# Memory per idle connection: the resident memory of the sync workers (the
# sum over their processes of Pss from /proc/PID/smaps_rollup, shared pages
# counted in proportion) before and after 1,000 devices connect, each with
# its own token, and stay idle after hello (permessage-deflate offered, as
# a device would; the label says whether it was negotiated); (after -
# before) / 1,000.  The workers are restarted
# first, so that memory left to them by earlier rows is not reused, and 20
# connections opened before the first reading take what is set up once
# (bench/tools/ws_memory.js).  Absolute target, no baseline; the change of
# the private heap (Anonymous) goes to stderr.
set -euo pipefail
. "$OFS_ROOT/bench/tools/ws_common.sh"
ws_prepare
db=$WS_DB
role=bench_ws_mem
n=1000
warmup=20
cleanup() {
  ws_stop_node
  ofs_psql -d $db -c "DELETE FROM ofs.device WHERE device LIKE 'bench-mem-%'" >/dev/null 2>&1
  ofs_psql -d $db -c "DO \$\$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '$role')
                      THEN DROP OWNED BY $role; DROP ROLE $role; END IF; END \$\$" >/dev/null 2>&1
  rm -f "$OFS_TMP/ws_mem.tokens" "$OFS_TMP/ws_mem.out"
}
trap cleanup EXIT
cleanup

ofs_psql -d $db -c "CREATE ROLE $role" >/dev/null
ofs_psql -d $db -c "SELECT ofs.create_device_token('$role', 'bench-mem-' || g) FROM generate_series(1, $((n + warmup))) g" \
  >"$OFS_TMP/ws_mem.tokens"
ws_restart_workers

ws_node "$OFS_TMP/ws_mem.out" 100 ws_memory.js "$OFS_TMP/ws_mem.tokens" $warmup
read -r conns pss anon rss mode <"$OFS_TMP/ws_mem.out"
awk -v n="$conns" -v a="$anon" -v r="$rss" 'BEGIN {
  printf "per connection: Anonymous %.1f KiB, Rss %.1f KiB\n", a / n, r / n }' >&2
awk -v n="$conns" -v p="$pss" -v mode="$mode" 'BEGIN {
  printf "worker memory per idle connection (1,000, after hello, %s)|%.1f KiB (Pss)|-|-|<= 64 KiB\n", mode, p / n }'
