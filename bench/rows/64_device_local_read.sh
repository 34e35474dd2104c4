#!/usr/bin/env bash
# Local read: point lookups by primary key on the device, each through a
# prepared SELECT id, text, done ... WHERE id = ? on ofs_sqlite against the
# synced table (100,000 rows pulled by the device's first sync), timed one
# by one (CLOCK_MONOTONIC); 100,000 lookups of random keys, against the same
# lookups on a plain SQLite table holding the same rows in the same file.
# After a pass of each not counted, two rounds each, alternating; the round
# with the lower p99 counts (bench/tools/device_bench.c, mode read).
# Ratio: synced p99 / plain p99.
set -euo pipefail
. "$OFS_ROOT/bench/tools/device_common.sh"
dev_prepare bench_dev_read bench-dev-read-
dev_table dev_read_todos 100000
token=$(dev_issue_token bench-dev-read-1)
dev_run 100 read "$DEV_DIR/device.db" "$OFS_WS_URL" "$token" dev_read_todos 100000
read -r s50 s99 p50 p99 <<<"$DEV_OUT"
awk -v s50="$s50" -v s99="$s99" -v p50="$p50" -v p99="$p99" 'BEGIN {
  printf "local read, point lookup by key, 100,000 lookups|p99 %.1f us (p50 %.1f)|p99 %.1f us (p50 %.1f) (plain SQLite table)|%.2f|p99 <= 50 us\n",
         s99, s50, p99, p50, s99 / p99 }'
