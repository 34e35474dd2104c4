#!/usr/bin/env bash
# No leftovers in the way: the relay of 61_device_relay.sh (A syncs 10,000
# offline rows, until live B has them) on a table where a device had been
# holding 100,000 rows: that device pulled them all (held-row state for
# each), then it was deleted and the origin deleted the rows, with no
# VACUUM since.  Against the same relay on a fresh table, in the same
# round.  Two rounds; the fastest of each side (bench/tools/device_bench.c,
# modes initial and relay).  Ratio: fresh / after; target: within 20%.
set -euo pipefail
. "$OFS_ROOT/bench/tools/device_common.sh"
dev_prepare bench_dev_left bench-dev-left-
rows=10000

after=""; fresh=""
for round in 1 2; do
  t=dev_left_todos_$round
  dev_table $t 100000
  d=$(dev_issue_token "bench-dev-left-d$round")
  dev_run 100 initial "$DEV_DIR/gone.db" "$OFS_WS_URL" "$d" $t 100000
  rm -f "$DEV_DIR"/*.db*
  ofs_psql -d $DEV_DB -c "DELETE FROM ofs.device WHERE device = 'bench-dev-left-d$round'" -c "DELETE FROM $t" >/dev/null
  a=$(dev_issue_token "bench-dev-left-a$round")
  b=$(dev_issue_token "bench-dev-left-b$round")
  dev_run 100 relay "$DEV_DIR" "$OFS_WS_URL" "$a" "$b" $t $rows
  after=$(dev_min "$after" "${DEV_OUT% *}")
  rm -f "$DEV_DIR"/*.db*

  f=dev_left_fresh_$round
  dev_table $f 0
  a=$(dev_issue_token "bench-dev-left-fa$round")
  b=$(dev_issue_token "bench-dev-left-fb$round")
  dev_run 100 relay "$DEV_DIR" "$OFS_WS_URL" "$a" "$b" $f $rows
  fresh=$(dev_min "$fresh" "${DEV_OUT% *}")
  rm -f "$DEV_DIR"/*.db*
  ofs_psql -d $DEV_DB -c "DROP TABLE $t" -c "DROP TABLE $f" >/dev/null
done
awk -v a="$after" -v f="$fresh" 'BEGIN {
  printf "relay of 10,000 rows where a 100,000-row device had been (no VACUUM)|%.0f ms|%.0f ms (the same relay, fresh table)|%.2f|>= 0.80\n",
         a * 1000, f * 1000, f / a }'
