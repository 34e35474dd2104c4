#!/usr/bin/env bash
# Offline rows: a device creates 10,000 rows offline (inserts through
# ofs_sqlite, transactions of 1,000, each row with its intent in the
# outbox) and syncs; the time from the start of that ofs_sync until the
# origin has them all (counted through libpq every 2 ms), and the whole
# sync with the number of changes it pulled back (its own rows, today).
# Against the same 10,000 rows inserted at the origin into a plain table by
# multi-row INSERTs of 1,000 (libpq, connection included).  Three rounds
# (fewer when 45 s have gone by), each on fresh tables with a fresh device;
# the fastest of each side (bench/tools/device_bench.c, modes offline and
# insert).  Ratio: baseline / time until the origin has the rows.
set -euo pipefail
. "$OFS_ROOT/bench/tools/device_common.sh"
dev_prepare bench_dev_offline bench-dev-offline-
rows=10000

origin=""; whole=""; pulled=""; insert=""
for round in 1 2 3; do
  [ $round -gt 1 ] && [ $SECONDS -gt 45 ] && { echo "round $round skipped: $SECONDS s so far" >&2; break; }
  t=dev_offline_todos_$round
  dev_table $t 0
  token=$(dev_issue_token "bench-dev-offline-$round")
  dev_run 100 offline "$DEV_DIR/device.db" "$OFS_WS_URL" "$token" "$DEV_CONNINFO" $t $rows
  read -r o w p <<<"$DEV_OUT"
  origin=$(dev_min "$origin" "$o"); whole=$(dev_min "$whole" "$w"); pulled=$p
  rm -f "$DEV_DIR"/device.db*
  plain=dev_offline_plain_$round
  DEV_TABLES+=("$plain")
  ofs_psql -d $DEV_DB -c "CREATE TABLE $plain (id text PRIMARY KEY, text text, done integer)" >/dev/null
  dev_run 60 insert "$DEV_CONNINFO" $plain $rows
  insert=$(dev_min "$insert" "$DEV_OUT")
done
awk -v o="$origin" -v w="$whole" -v p="$pulled" -v i="$insert" 'BEGIN {
  printf "device'"'"'s 10,000 offline rows until the origin has them|%.0f ms (whole sync %.0f ms, %d changes pulled back)|%.0f ms (multi-row INSERTs of 1,000 at the origin, libpq)|%.2f|<= 200 ms, nothing pulled back\n",
         o * 1000, w * 1000, p, i * 1000, i / o }'
