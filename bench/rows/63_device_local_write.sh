#!/usr/bin/env bash
# Local write overhead: transactions of 1,000 inserts through a prepared
# statement on ofs_sqlite into a synced local table (each row with its
# intent, written by the capture trigger: the values, place, transaction
# and clock, in its table of intents) against the same into a plain SQLite table of the same
# file and connection.  Offline (the device synced once, to create its
# table).  Seven runs of 10 transactions each, alternating which table goes
# first, after one transaction each not counted; the median run of each
# side (bench/tools/device_bench.c, mode write).  Ratio: synced / plain.
set -euo pipefail
. "$OFS_ROOT/bench/tools/device_common.sh"
dev_prepare bench_dev_write bench-dev-write-
dev_table dev_write_todos 0
token=$(dev_issue_token bench-dev-write-1)
dev_run 100 write "$DEV_DIR/device.db" "$OFS_WS_URL" "$token" dev_write_todos 7 10 1000
read -r synced plain <<<"$DEV_OUT"
awk -v s="$synced" -v p="$plain" 'BEGIN {
  printf "local write, 1,000-row insert txns, synced table|%.1f ms per txn (%.1f us/row)|%.1f ms per txn (plain SQLite table)|%.2f|<= 1.5\n",
         s * 100, s * 100, p * 100, s / p }'
