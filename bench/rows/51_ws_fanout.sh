#!/usr/bin/env bash
# Live fan-out: 1,000 devices connected to the sync worker (a separate node
# process, bench/tools/ws_fanout.js), each with its own device token, all of
# one role, subscribed to one table by hello, pulled up to date and live with
# the pull's cursor.  Then 20 changes, one at a time (after 2 not counted):
# one row inserted by psql, its commit time read with clock_timestamp() by
# the same session right after the commit, and the time until every device
# has received the row.  Reported: p99, p50 and max over the 20 changes of
# that time until the last device; the per-device figures go to stderr.
# Absolute target, no baseline.
set -euo pipefail
. "$OFS_ROOT/bench/tools/ws_common.sh"
ws_prepare
ws_fanout fan 1000 20 110
echo "per device: p50 $FAN_DEV50 ms, p99 $FAN_DEV99 ms" >&2
printf "fan-out 1,000 live devices, one change (%s)|p99 %.0f ms (p50 %.0f, max %.0f)|-|-|p99 <= 50 ms\n" \
  "$FAN_REST" "$FAN_P99" "$FAN_P50" "$FAN_MAX"
