#!/usr/bin/env bash
# Live fan-out at scale: 10,000 devices connected to the sync workers with
# their default settings, from 40 loopback source addresses (devices come
# from many addresses; one address may hold ofs.max_connections_per_address
# connections per worker), each with its own token, all of one role,
# subscribed by hello, pulled up to date and live.  Then 10 changes, one at
# a time (after 2 not counted), timed from the commit until every device
# has the row, as in 51_ws_fanout; and the workers' memory once all are
# live (the sum of Pss over their processes).  Absolute target, no baseline.
set -euo pipefail
. "$OFS_ROOT/bench/tools/ws_common.sh"
ws_prepare
OFS_BENCH_FAN_ADDRESSES=40 OFS_BENCH_FAN_PIDS="$(ws_worker_pids | tr '\n' ' ')" ws_fanout fan10k 10000 10 400
pss=${FAN_REST##* }
echo "per device: p50 $FAN_DEV50 ms, p99 $FAN_DEV99 ms; workers' Pss $pss kB" >&2
printf "fan-out 10,000 live devices, one change (%s)|p99 %.0f ms (p50 %.0f, max %.0f); workers %.0f MiB Pss|-|-|p99 <= 250 ms\n" \
  "${FAN_REST% *}" "$FAN_P99" "$FAN_P50" "$FAN_MAX" "$(awk -v k="$pss" 'BEGIN { print k / 1024 }')"
