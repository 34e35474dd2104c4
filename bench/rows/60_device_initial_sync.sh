#!/usr/bin/env bash
# Initial sync: a fresh device (libofs: ofs_open, ofs_configure,
# ofs_subscribe, then ofs_sync, timed from its start to its return: hello,
# schema, creating the local table, pulling every page) pulls 100,000 rows
# of todos(id text primary key, text text, done integer), 40-byte texts,
# into its SQLite file, against COPY todos TO STDOUT from the origin (libpq,
# connection included) inserted as it arrives into a plain SQLite table in
# one transaction, with the pragmas of a device file (WAL, synchronous =
# NORMAL).  Same table, same run, three times each, alternating (fewer
# rounds when a minute has gone by); the fastest of each side
# (bench/tools/device_bench.c, modes initial and copy).
set -euo pipefail
. "$OFS_ROOT/bench/tools/device_common.sh"
dev_prepare bench_dev_init bench-dev-init-
rows=100000
dev_table dev_init_todos $rows

device=""; copy=""
for round in 1 2 3; do
  # Fewer rounds rather than over two minutes.
  [ $round -gt 1 ] && [ $SECONDS -gt 60 ] && { echo "round $round skipped: $SECONDS s so far" >&2; break; }
  token=$(dev_issue_token "bench-dev-init-$round")
  dev_run 100 initial "$DEV_DIR/device.db" "$OFS_WS_URL" "$token" dev_init_todos $rows
  device=$(dev_min "$device" "$DEV_OUT")
  rm -f "$DEV_DIR"/device.db*
  dev_run 100 copy "$DEV_DIR/plain.db" "$DEV_CONNINFO" dev_init_todos $rows
  copy=$(dev_min "$copy" "$DEV_OUT")
  rm -f "$DEV_DIR"/plain.db*
  echo "round $round: device $(awk -v x="$device" 'BEGIN { printf "%.3f", x }') s, copy $(awk -v x="$copy" 'BEGIN { printf "%.3f", x }') s (best so far)" >&2
done
awk -v d="$device" -v c="$copy" -v n=$rows 'BEGIN {
  printf "initial sync, fresh device, 100,000 rows|%.0f ms (%.0f rows/s)|%.0f ms (COPY TO STDOUT + SQLite insert, one txn)|%.2f|>= 0.40\n",
         d * 1000, n / d, c * 1000, c / d }'
