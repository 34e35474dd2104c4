#!/usr/bin/env bash
# Scoped live fan-out: 500 devices, each acting as a role of its own
# (bench_scope_1..500, members of bench_scope, which may read the table),
# live on one table of 2,000 rows whose row-level-security policy lets a
# role see the rows it owns (owner = current_user), 4 rows each.  pgbench
# updates random rows at a fixed rate (Poisson arrivals), each update
# writing clock_timestamp() into the row and logging it; the owner of the
# row must receive the change, no other device may (a leak fails the row).
# Latency: the owner's receipt minus the clock_timestamp() of the update
# (before its commit; one machine, one clock).  After one change not
# counted (the devices' first live round), the rate steps up through
# 50, 100, 200, 300, 400, 600, 800, 1,000 and 1,500 changes/s, 5 s each, until a step's p95
# exceeds 250 ms (or a change is missed, or pgbench cannot keep the rate);
# reported: the highest rate whose p95 <= 250 ms (bench/tools/ws_scoped.js).
# Absolute target, no baseline.
set -euo pipefail
. "$OFS_ROOT/bench/tools/ws_common.sh"
ws_prepare
db=$WS_DB
devices=500
rows=2000
cleanup() {
  ws_stop_node
  ofs_psql -d $db -c "DROP TABLE IF EXISTS ws_scoped, ws_scoped_log" \
    -c "DELETE FROM ofs.device WHERE device LIKE 'bench-scope-%'" >/dev/null 2>&1
  ofs_psql -d $db >/dev/null 2>&1 <<'SQL'
DO $$
DECLARE r name;
BEGIN
  FOR r IN SELECT rolname FROM pg_roles WHERE rolname ~ '^bench_scope(_[0-9]+)?$' ORDER BY rolname DESC LOOP
    EXECUTE format('DROP OWNED BY %I', r);
    EXECUTE format('DROP ROLE %I', r);
  END LOOP;
END $$;
SQL
  rm -f "$OFS_TMP/ws_scoped.tokens" "$OFS_TMP/ws_scoped.pgbench" "$OFS_TMP/ws_scoped.out"
}
trap cleanup EXIT
cleanup

ofs_psql -d $db >/dev/null <<SQL
CREATE ROLE bench_scope;
DO \$\$ BEGIN
  FOR i IN 1..$devices LOOP
    EXECUTE format('CREATE ROLE %I IN ROLE bench_scope', 'bench_scope_' || i);
  END LOOP;
END \$\$;
CREATE TABLE ws_scoped (id integer PRIMARY KEY, owner name NOT NULL, v integer NOT NULL, sent_us bigint);
ALTER TABLE ws_scoped ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON ws_scoped FOR SELECT USING (owner = current_user);
GRANT USAGE ON SCHEMA public TO bench_scope;
GRANT SELECT ON ws_scoped TO bench_scope;
INSERT INTO ws_scoped SELECT g, 'bench_scope_' || ((g - 1) % $devices + 1), 0, NULL FROM generate_series(1, $rows) g;
SELECT ofs.sync_table('ws_scoped');
CREATE TABLE ws_scoped_log (step integer, id integer, v integer, owner name, sent_us bigint);
SQL
ofs_psql -d $db -c "SELECT ofs.create_device_token('bench_scope_' || g, 'bench-scope-' || g) FROM generate_series(1, $devices) g ORDER BY g" \
  >"$OFS_TMP/ws_scoped.tokens"

ws_node "$OFS_TMP/ws_scoped.out" 110 ws_scoped.js "$OFS_TMP/ws_scoped.tokens" public.ws_scoped \
  bench_scope_ $rows 50,100,200,300,400,600,800,1000,1500 5
read -r best best_p95 bad bad_p95 bad_missed bad_achieved mode <"$OFS_TMP/ws_scoped.out"
if [ "$bad" = - ]; then
  next="every step passed"
else
  next="$bad/s: p95 $(awk -v p="$bad_p95" 'BEGIN { printf (p == "inf") ? "-" : "%.0f ms", p }')"
  [ "$bad_missed" != 0 ] && next="$next, $bad_missed changes not received 5 s after the writer stopped"
  [ "$(awk -v a="$bad_achieved" -v r="$bad" 'BEGIN { print (a < 0.8 * r) }')" = 1 ] &&
    next="$next, the writer reached $bad_achieved/s"
fi
if [ "$best" = - ]; then
  ofs="none (p95 <= 250 ms at no rate; $next)"
else
  ofs="$best changes/s (p95 $(printf %.0f "$best_p95") ms; $next)"
fi
echo "scoped fan-out, 500 devices of 500 roles (RLS, $mode), p95 <= 250 ms|$ofs|-|-|>= 1,000 changes/s"
