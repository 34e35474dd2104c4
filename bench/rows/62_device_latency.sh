#!/usr/bin/env bash
# Latency: devices A and B both live (ofs_live, each in a thread of its own
# with its own ofs_db, one process); the application's connection to A's
# file (a second ofs_open of it, in the main thread) inserts one row through
# ofs_sqlite; the time from just before the insert until B's row_changed
# callback fires for that row (CLOCK_MONOTONIC).  200 trials, 25 ms apart,
# after 20 not counted; p50 and p99 (max in brackets).  A row not there
# within 5 s is waited for no longer but counted with its real time if it
# comes before the end (and said), or as infinitely late.  Against the same
# trials at the origin: one libpq connection inserts the row into a plain
# table and calls pg_notify in the same transaction, another LISTENs (in a
# thread of the same process) until the notification arrives.  Absolute
# targets; no ratio (bench/tools/device_bench.c, modes latency and notify).
set -euo pipefail
. "$OFS_ROOT/bench/tools/device_common.sh"
dev_prepare bench_dev_lat bench-dev-lat-
trials=200
dev_table dev_lat_todos 0
DEV_TABLES+=(dev_lat_plain)
ofs_psql -d $DEV_DB -c "DROP TABLE IF EXISTS dev_lat_plain" \
  -c "CREATE TABLE dev_lat_plain (id text PRIMARY KEY, text text, done integer)" >/dev/null
a=$(dev_issue_token bench-dev-lat-a)
b=$(dev_issue_token bench-dev-lat-b)
dev_run 100 latency "$DEV_DIR" "$OFS_WS_URL" "$a" "$b" dev_lat_todos $trials
read -r p50 p99 max lost late run <<<"$DEV_OUT"
dev_run 60 notify "$DEV_CONNINFO" dev_lat_plain $trials
read -r n50 n99 nmax nlost nlate nrun <<<"$DEV_OUT"
# Rows that came late or never, and trials cut short by the time limit, are said.
note=""
if [ "$late" != 0 ]; then note="$note, $late after 5 s"; fi
if [ "$lost" != 0 ]; then note="$note, $lost never"; fi
if [ "$run" != "$trials" ]; then note="$note, only $run trials in 45 s"; fi
if [ "$nlost$nlate" != 00 ] || [ "$nrun" != "$trials" ]; then
  echo "notify baseline: $nlate late, $nlost never, $nrun trials" >&2
fi
printf "device-to-device latency, one row, %d trials|p50 %.2f ms, p99 %.2f ms (max %.1f%s)|p50 %.2f ms, p99 %.2f ms (INSERT + NOTIFY to LISTEN, libpq)|-|p50 <= 2 ms, p99 <= 5 ms\n" \
  $trials "$p50" "$p99" "$max" "$note" "$n50" "$n99"
