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
db=$WS_DB
role=bench_ws_fan10k
devices=10000
cleanup() {
  ws_stop_node
  ofs_psql -d $db -c "DROP TABLE IF EXISTS ws_fan10k" \
    -c "DELETE FROM ofs.device WHERE device LIKE 'bench-fan10k-%'" >/dev/null 2>&1
  ofs_psql -d $db -c "DO \$\$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '$role')
                      THEN DROP OWNED BY $role; DROP ROLE $role; END IF; END \$\$" >/dev/null 2>&1
  rm -f "$OFS_TMP/ws_fan10k.tokens" "$OFS_TMP/ws_fan10k.out"
}
trap cleanup EXIT
cleanup

ofs_psql -d $db >/dev/null <<SQL
CREATE ROLE $role;
CREATE TABLE ws_fan10k (id integer PRIMARY KEY, note text);
GRANT USAGE ON SCHEMA public TO $role;
GRANT SELECT ON ws_fan10k TO $role;
SELECT ofs.sync_table('ws_fan10k');
SQL
ofs_psql -d $db -c "SELECT ofs.create_device_token('$role', 'bench-fan10k-' || g) FROM generate_series(1, $devices) g" \
  >"$OFS_TMP/ws_fan10k.tokens"

OFS_BENCH_FAN_ADDRESSES=40 OFS_BENCH_FAN_PIDS="$(ws_worker_pids | tr '\n' ' ')" \
  ws_node "$OFS_TMP/ws_fan10k.out" 400 ws_fanout.js "$OFS_TMP/ws_fan10k.tokens" public.ws_fan10k 10 2
read -r p50 p99 max dev50 dev99 rest <"$OFS_TMP/ws_fan10k.out"
pss=${rest##* }
mode=${rest% *}
echo "per device: p50 $dev50 ms, p99 $dev99 ms; workers' Pss $pss kB" >&2
printf "fan-out 10,000 live devices, one change (%s)|p99 %.0f ms (p50 %.0f, max %.0f); workers %.0f MiB Pss|-|-|p99 <= 250 ms\n" \
  "$mode" "$p99" "$p50" "$max" "$(awk -v k="$pss" 'BEGIN { print k / 1024 }')"
