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
db=$WS_DB
role=bench_ws_fan
devices=1000
cleanup() {
  ws_stop_node
  ofs_psql -d $db -c "DROP TABLE IF EXISTS ws_fan" \
    -c "DELETE FROM ofs.device WHERE device LIKE 'bench-fan-%'" >/dev/null 2>&1
  ofs_psql -d $db -c "DO \$\$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '$role')
                      THEN DROP OWNED BY $role; DROP ROLE $role; END IF; END \$\$" >/dev/null 2>&1
  rm -f "$OFS_TMP/ws_fan.tokens" "$OFS_TMP/ws_fan.out"
}
trap cleanup EXIT
cleanup

ofs_psql -d $db >/dev/null <<SQL
CREATE ROLE $role;
CREATE TABLE ws_fan (id integer PRIMARY KEY, note text);
GRANT USAGE ON SCHEMA public TO $role;
GRANT SELECT ON ws_fan TO $role;
SELECT ofs.sync_table('ws_fan');
SQL
ofs_psql -d $db -c "SELECT ofs.create_device_token('$role', 'bench-fan-' || g) FROM generate_series(1, $devices) g" \
  >"$OFS_TMP/ws_fan.tokens"

ws_node "$OFS_TMP/ws_fan.out" 110 ws_fanout.js "$OFS_TMP/ws_fan.tokens" public.ws_fan 20 2
read -r p50 p99 max dev50 dev99 mode <"$OFS_TMP/ws_fan.out"
echo "per device: p50 $dev50 ms, p99 $dev99 ms" >&2
printf "fan-out 1,000 live devices, one change (%s)|p99 %.0f ms (p50 %.0f, max %.0f)|-|-|p99 <= 50 ms\n" "$mode" "$p99" "$p50" "$max"
