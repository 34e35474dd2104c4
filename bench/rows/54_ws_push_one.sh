#!/usr/bin/env bash
# One-row push latency: one device on one connection pushes a single-row
# insert at a time, 200 times after 20 not counted, 10 ms apart; each is
# timed from sending the push to its "pushed" answer, the origin's apply
# and durable commit (synchronous_commit = on) included
# (bench/tools/ws_push_one.js).  Against the same single-row INSERT into a
# plain table at the origin over one libpq connection, one transaction
# each (pgbench, 200 transactions, per-transaction latencies from its
# log).  Absolute target p50 <= 1 ms; the baseline says what PostgreSQL
# alone costs on this machine.
set -euo pipefail
. "$OFS_ROOT/bench/tools/ws_common.sh"
ws_prepare
db=$WS_DB
role=bench_ws_one
cleanup() {
  ws_stop_node
  ofs_psql -d $db -c "DROP TABLE IF EXISTS ws_one_todos, ws_one_plain" \
    -c "DELETE FROM ofs.device WHERE device = 'bench-ws-one'" \
    -c "DELETE FROM ofs.applied_op WHERE device = 'bench-ws-one'" >/dev/null 2>&1
  rm -rf "$OFS_TMP/ws_one"
  ofs_psql -d $db -c "DO \$\$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '$role')
                      THEN DROP OWNED BY $role; DROP ROLE $role; END IF; END \$\$" >/dev/null 2>&1
}
trap cleanup EXIT
cleanup

ofs_psql -d $db >/dev/null <<SQL
CREATE ROLE $role;
CREATE TABLE ws_one_todos (id text PRIMARY KEY, text text, done integer);
CREATE TABLE ws_one_plain (id text PRIMARY KEY, text text, done integer);
GRANT USAGE ON SCHEMA public TO $role;
GRANT INSERT, SELECT ON ws_one_todos TO $role;
SELECT ofs.sync_table('ws_one_todos');
SQL
token=$(ofs_psql -d $db -c "SELECT ofs.create_device_token('$role', 'bench-ws-one')")
ws_node "$OFS_TMP/ws_one.out" 120 ws_push_one.js "$token" public.ws_one_todos 200 || {
  echo "ws_push_one.js failed" >&2; exit 1; }
read -r p50 p99 max <"$OFS_TMP/ws_one.out"

mkdir -p "$OFS_TMP/ws_one"
cat >"$OFS_TMP/ws_one/insert.sql" <<'SQL'
\set id random(1, 1000000000)
INSERT INTO ws_one_plain VALUES ('plain-' || :id || '-' || :client_id, 'row', 0) ON CONFLICT DO NOTHING;
SQL
(cd "$OFS_TMP/ws_one" && pgbench -n -f insert.sql -c 1 -t 220 -l --log-prefix=one "$db" >/dev/null 2>&1) || {
  echo "pgbench failed" >&2; exit 1; }
base=$(cat "$OFS_TMP"/ws_one/one.* | awk 'NR > 20 { print $3 / 1000 }' | sort -n |
  awk '{ v[NR] = $1 } END { p50 = v[int(NR * 0.5 + 0.999999)]; p99 = v[int(NR * 0.99 + 0.999999)];
        printf "p50 %.2f ms, p99 %.2f ms", p50, p99 }')
echo "one-row push answered, durable commit included (200 pushes)|p50 $(printf '%.2f' "$p50") ms, p99 $(printf '%.2f' "$p99") ms (max $(printf '%.1f' "$max"))|$base (one-row INSERT, libpq, pgbench)|-|p50 <= 1 ms"
