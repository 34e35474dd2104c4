#!/usr/bin/env bash
# Push over WebSocket: 10,000 single-row insert mutations sent by one device
# over one connection to the sync worker, as push messages of 1,000
# mutations sent one after the other (each waits for its pushed answer),
# until all are acknowledged (bench/tools/ws_push.js: from opening the
# connection, hello included, to the last answer), against the same
# mutations applied directly in SQL by ofs.apply_batch in batches of 1,000
# (one psql session, connection included, as in 40_apply.sh), same table,
# same device, same run: three times each, alternating, the fastest of each
# side.  Both sides get their batches ready-made before the clock starts.
# The client offers permessage-deflate (bench/run.sh) and, when it is
# negotiated, compresses its pushes, as ws does; the label says which.
set -euo pipefail
. "$OFS_ROOT/bench/tools/ws_common.sh"
ws_prepare
db=$WS_DB
role=bench_ws_push
cleanup() {
  ws_stop_node
  ofs_psql -d $db -c "DROP TABLE IF EXISTS ws_push_todos, ws_push_batches" \
    -c "DELETE FROM ofs.device WHERE device = 'bench-ws-push'" \
    -c "DELETE FROM ofs.applied_op WHERE device = 'bench-ws-push'" >/dev/null 2>&1
  rm -f "$OFS_TMP/ws_push.sql" "$OFS_TMP/ws_push.out"
  ofs_psql -d $db -c "DO \$\$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '$role')
                      THEN DROP OWNED BY $role; DROP ROLE $role; END IF; END \$\$" >/dev/null 2>&1
}
trap cleanup EXIT
cleanup

ofs_psql -d $db >/dev/null <<SQL
CREATE ROLE $role;
CREATE TABLE ws_push_todos (id text PRIMARY KEY, text text, done integer);
GRANT USAGE ON SCHEMA public TO $role;
GRANT INSERT, SELECT ON ws_push_todos TO $role;
SELECT ofs.sync_table('ws_push_todos');
CREATE TABLE ws_push_batches AS
SELECT b, jsonb_agg(jsonb_build_object('op_id', 'op-' || g, 'table', 'public.ws_push_todos', 'op', 'insert',
                    'pk', jsonb_build_object('id', 'todo-' || g),
                    'data', jsonb_build_object('text', md5(g::text) || 'abcdefgh', 'done', g % 2),
                    'hlc', ofs.hlc_now()) ORDER BY g) AS batch
  FROM generate_series(1, 10000) g, LATERAL (SELECT (g - 1) / 1000 AS b) x
 GROUP BY b;
SQL
token=$(ofs_psql -d $db -c "SELECT ofs.create_device_token('$role', 'bench-ws-push')")
{
  for b in $(seq 0 9); do
    echo "SELECT count(*) FROM ofs.apply_batch('bench-ws-push', (SELECT batch FROM ws_push_batches WHERE b = $b));"
  done
} >"$OFS_TMP/ws_push.sql"

sql_secs() {
  local s e
  s=$(date +%s.%N); ofs_psql -d $db -f "$OFS_TMP/ws_push.sql" >/dev/null; e=$(date +%s.%N)
  awk -v s="$s" -v e="$e" 'BEGIN { print e - s }'
}
reset() {
  ofs_psql -d $db -c "DELETE FROM ws_push_todos" -c "DELETE FROM ofs.applied_op WHERE device = 'bench-ws-push'" \
    -c "DELETE FROM ofs.change_log" -c "VACUUM ws_push_todos, ofs.applied_op, ofs.change_log" >/dev/null
}

# Three times each, alternating; the fastest of each side counts.  The
# WebSocket side goes last, so the check below sees its rows.
sql=""; ws=""
for round in 1 2 3; do
  reset; s=$(sql_secs)
  n=$(ofs_psql -d $db -c "SELECT count(*) FROM ws_push_todos")
  [ "$n" = 10000 ] || { echo "ofs.apply_batch applied only $n of 10000 mutations" >&2; exit 1; }
  reset; ws_node "$OFS_TMP/ws_push.out" 100 ws_push.js "$token" public.ws_push_todos 10000 1000
  read -r w mode <"$OFS_TMP/ws_push.out"
  sql=$(awk -v x="$sql" -v y="$s" 'BEGIN { print (x == "" || y < x) ? y : x }')
  ws=$(awk -v x="$ws" -v y="$w" 'BEGIN { print (x == "" || y < x) ? y : x }')
done
n=$(ofs_psql -d $db -c "SELECT count(*) FROM ws_push_todos t WHERE t.text = md5(substr(t.id, 6)) || 'abcdefgh'")
[ "$n" = 10000 ] || { echo "only $n of 10000 pushed rows arrived" >&2; exit 1; }
label="push 10,000 insert mutations over WebSocket, 1,000 per push ($mode)"
awk -v w="$ws" -v s="$sql" -v label="$label" 'BEGIN {
  printf "%s|%.0f rows/s|%.0f rows/s (ofs.apply_batch in SQL)|%.2f|>= 0.70\n", label, 10000 / w, 10000 / s, s / w }'
