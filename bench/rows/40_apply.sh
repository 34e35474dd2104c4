#!/usr/bin/env bash
# Write path: 10,000 single-row insert mutations applied through
# ofs.apply_batch in batches of 1,000 (one transaction each), against the
# same rows inserted by multi-row INSERT statements of 1,000 rows (one
# transaction each) into an identical synced table, same run (twice each,
# alternating, the faster of each side).
set -euo pipefail
. "$OFS_ROOT/test/lib/cluster.sh"
db=ofs_bench_apply
ofs_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
ofs_psql -d postgres -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bench_device')
                         THEN CREATE ROLE bench_device; END IF; END \$\$" >/dev/null
ofs_psql -d $db >/dev/null <<'SQL'
CREATE EXTENSION ofs;
CREATE TABLE todos_applied (id text PRIMARY KEY, text text, done integer);
CREATE TABLE todos_plain (id text PRIMARY KEY, text text, done integer);
GRANT INSERT, SELECT ON todos_applied TO bench_device;
SELECT ofs.sync_table('todos_applied');
SELECT ofs.sync_table('todos_plain');
SELECT ofs.create_device_token('bench_device', 'bench-phone');
CREATE TABLE batches AS
SELECT b, jsonb_agg(jsonb_build_object('op_id', 'op-' || g, 'table', 'public.todos_applied', 'op', 'insert',
                    'pk', jsonb_build_object('id', 'todo-' || g),
                    'data', jsonb_build_object('text', md5(g::text) || 'abcdefgh', 'done', g % 2),
                    'hlc', ofs.hlc_now()) ORDER BY g) AS batch
  FROM generate_series(1, 10000) g, LATERAL (SELECT (g - 1) / 1000 AS b) x
 GROUP BY b;
SQL
{
  for b in $(seq 0 9); do
    echo "SELECT count(*) FROM ofs.apply_batch('bench-phone', (SELECT batch FROM batches WHERE b = $b));"
  done
} >"$OFS_TMP/apply.sql"
{
  for b in $(seq 0 9); do
    echo "INSERT INTO todos_plain SELECT 'todo-' || g, md5(g::text) || 'abcdefgh', g % 2 FROM generate_series($((b * 1000 + 1)), $((b * 1000 + 1000))) g;"
  done
} >"$OFS_TMP/plain.sql"
secs() { local s e; s=$(date +%s.%N); ofs_psql -d $db -f "$1" >/dev/null; e=$(date +%s.%N); awk -v s="$s" -v e="$e" 'BEGIN { print e - s }'; }
reset() { ofs_psql -d $db -c "DELETE FROM todos_plain" -c "DELETE FROM todos_applied" \
            -c "DELETE FROM ofs.applied_op" -c "DELETE FROM ofs.change_log" -c "VACUUM" >/dev/null; }
# Twice each, alternating; the faster of each side counts.
plain=""; applied=""
for round in 1 2; do
  reset
  p=$(secs "$OFS_TMP/plain.sql"); a=$(secs "$OFS_TMP/apply.sql")
  plain=$(awk -v x="$plain" -v y="$p" 'BEGIN { print (x == "" || y < x) ? y : x }')
  applied=$(awk -v x="$applied" -v y="$a" 'BEGIN { print (x == "" || y < x) ? y : x }')
done
n=$(ofs_psql -d $db -c "SELECT count(*) FROM todos_applied")
[ "$n" = 10000 ] || { echo "only $n of 10000 mutations applied" >&2; exit 1; }
awk -v a="$applied" -v p="$plain" 'BEGIN {
  printf "apply 10,000 insert mutations, batches of 1,000|%.0f rows/s|%.0f rows/s (multi-row INSERT)|%.2f|>= 0.50\n", 10000 / a, 10000 / p, p / a }'
[ -n "${OFS_BENCH_KEEP:-}" ] || ofs_psql -d postgres -c "DROP DATABASE $db" >/dev/null
