#!/usr/bin/env bash
# Conflicting rows: devices A and B hold the same 1,000 rows, both edit
# every one of them offline, then sync together (each ofs_sync in a thread
# of its own), round after round until both hold exactly the origin's rows:
# the time of those rounds and their number.  Against the same two edits
# made at the origin as two UPDATE statements (libpq, connection included).
# Three rounds (fewer when 45 s have gone by), each on a fresh table with
# fresh devices; the fastest of each side (bench/tools/device_bench.c,
# modes conflicts and update).  Ratio: baseline / devices' time.
set -euo pipefail
. "$OFS_ROOT/bench/tools/device_common.sh"
dev_prepare bench_dev_conflicts bench-dev-conflicts-
rows=1000

devices=""; rounds=""; pulled=""; update=""
for round in 1 2 3; do
  [ $round -gt 1 ] && [ $SECONDS -gt 45 ] && { echo "round $round skipped: $SECONDS s so far" >&2; break; }
  t=dev_conflicts_todos_$round
  dev_table $t $rows
  a=$(dev_issue_token "bench-dev-conflicts-a$round")
  b=$(dev_issue_token "bench-dev-conflicts-b$round")
  dev_run 100 conflicts "$DEV_DIR" "$OFS_WS_URL" "$a" "$b" "$DEV_CONNINFO" $t $rows
  read -r d r p <<<"$DEV_OUT"
  if [ -z "$devices" ] || awk -v x="$d" -v y="$devices" 'BEGIN { exit !(x < y) }'; then
    devices=$d; rounds=$r; pulled=$p
  fi
  rm -f "$DEV_DIR"/conflicts_*.db*
  plain=dev_conflicts_plain_$round
  DEV_TABLES+=("$plain")
  ofs_psql -d $DEV_DB -c "CREATE TABLE $plain AS SELECT * FROM $t" -c "ALTER TABLE $plain ADD PRIMARY KEY (id)" >/dev/null
  dev_run 60 update "$DEV_CONNINFO" $plain $rows
  update=$(dev_min "$update" "$DEV_OUT")
done
awk -v d="$devices" -v r="$rounds" -v p="$pulled" -v u="$update" 'BEGIN {
  printf "1,000 rows edited on two devices offline, until both equal the origin|%.0f ms (%d round%s, %d changes pulled)|%.1f ms (two UPDATEs at the origin, libpq)|%.2f|<= 80 ms, one round\n",
         d * 1000, r, r == 1 ? "" : "s", p, u * 1000, u / d }'
