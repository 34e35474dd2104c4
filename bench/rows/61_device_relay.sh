#!/usr/bin/env bash
# Relay: device A creates 10,000 rows offline (inserts through ofs_sqlite,
# transactions of 1,000, each row with its intent in the outbox) and syncs;
# the time from the start of A's ofs_sync until live device B (ofs_live in
# a thread of its own, with its own ofs_db, counting row_changed callbacks)
# has them all: A's push, the origin's apply, its live push to B, B's apply
# (A's own sync, which goes on to pull, is timed too, and said).
# Against the initial sync of a fresh device pulling the same 10,000 rows
# from the origin (ofs_sync, timed as in 60_device_initial_sync.sh).  Three
# rounds (fewer when 45 s have gone by), each on a fresh table with fresh
# devices, the baseline after the relay; the fastest of each side
# (bench/tools/device_bench.c, modes relay and initial).  Ratio: baseline /
# relay.
set -euo pipefail
. "$OFS_ROOT/bench/tools/device_common.sh"
dev_prepare bench_dev_relay bench-dev-relay-
rows=10000

relay=""; sync_a=""; initial=""; a_late=0
for round in 1 2 3; do
  # Fewer rounds rather than over two minutes.
  [ $round -gt 1 ] && [ $SECONDS -gt 45 ] && { echo "round $round skipped: $SECONDS s so far" >&2; break; }
  t=dev_relay_todos_$round
  dev_table $t 0
  a=$(dev_issue_token "bench-dev-relay-a$round")
  b=$(dev_issue_token "bench-dev-relay-b$round")
  c=$(dev_issue_token "bench-dev-relay-c$round")
  dev_run 100 relay "$DEV_DIR" "$OFS_WS_URL" "$a" "$b" $t $rows
  relay=$(dev_min "$relay" "${DEV_OUT% *}")
  # -1: A's sync had not returned 20 s after B had the rows.
  if [ "${DEV_OUT#* }" = -1 ]; then a_late=1; else sync_a=$(dev_min "$sync_a" "${DEV_OUT#* }"); fi
  dev_run 60 initial "$DEV_DIR/fresh.db" "$OFS_WS_URL" "$c" $t $rows
  initial=$(dev_min "$initial" "$DEV_OUT")
  rm -f "$DEV_DIR"/*.db*
  ofs_psql -d $DEV_DB -c "DROP TABLE $t" >/dev/null
done
if [ -n "$sync_a" ]; then
  a_note=$(awk -v a="$sync_a" 'BEGIN { printf "A'"'"'s sync %.0f ms", a * 1000 }')
  if [ $a_late = 1 ]; then a_note="$a_note; in a round, not done 20 s after B"; fi
else
  a_note="A's sync not done 20 s after B"
fi
awk -v r="$relay" -v i="$initial" -v a_note="$a_note" 'BEGIN {
  printf "relay, A syncs 10,000 offline rows, live B has them|%.0f ms (%s)|%.0f ms (initial sync of 10,000 rows, fresh device)|%.2f|report\n",
         r * 1000, a_note, i * 1000, i / r }'
