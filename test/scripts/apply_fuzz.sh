#!/usr/bin/env bash
# apply_fuzz: 3,000 malformed and hostile mutations (wrong types everywhere,
# nested objects, nulls, huge strings and numbers, unknown tables, columns
# and operations) pushed in batches.  Every mutation must get a result,
# no batch may fail, and the server must stay up: bad input gets a clear
# rejection and loses nothing.
set -euo pipefail
. "$OFS_ROOT/test/lib/cluster.sh"
db=ofs_apply_fuzz
ofs_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
ofs_psql -d postgres -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fuzz_device')
                         THEN CREATE ROLE fuzz_device; END IF; END \$\$"
ofs_psql -d $db >/dev/null <<'SQL'
CREATE EXTENSION ofs;
CREATE TABLE f (id int PRIMARY KEY, n int, amount numeric(10,2), label text, doc jsonb,
                at timestamptz, flag boolean, state text NOT NULL DEFAULT 'a');
CREATE TABLE g (a text, b int, c text, PRIMARY KEY (a, b));
GRANT SELECT, INSERT, UPDATE, DELETE ON f, g TO fuzz_device;
INSERT INTO f (id, n) SELECT g, g FROM generate_series(1, 20) g;
SELECT ofs.sync_table('f', '{"n": "counter", "label": "manual"}');
SELECT ofs.sync_table('g');
SELECT ofs.add_transition_constraint('f', 'flow', 'state', $$'a' -> 'b', 'b' -> 'c'$$);
SELECT ofs.create_device_token('fuzz_device', 'fuzzer') IS NOT NULL;
-- A value of any JSON shape, hostile ones included.
CREATE FUNCTION pick(r float8) RETURNS jsonb LANGUAGE sql AS $$
  SELECT CASE floor(r * 14)::int
    WHEN 0 THEN 'null'::jsonb
    WHEN 1 THEN to_jsonb(floor(random() * 40)::int)
    WHEN 2 THEN to_jsonb(random() * 1e30)
    WHEN 3 THEN to_jsonb('9999999999999999999999999999999999'::numeric)
    WHEN 4 THEN to_jsonb(repeat('x', (random() * 3000)::int))
    WHEN 5 THEN '{"nested": {"deeper": [1, 2, {"x": null}]}}'::jsonb
    WHEN 6 THEN '[1, "two", null]'::jsonb
    WHEN 7 THEN 'true'::jsonb
    WHEN 8 THEN to_jsonb('b'::text)
    WHEN 9 THEN to_jsonb('2026-13-45T99:99'::text)
    WHEN 10 THEN to_jsonb(-floor(random() * 1e6))
    WHEN 11 THEN '""'::jsonb
    WHEN 12 THEN to_jsonb(E'quote\'s "and" \\ back'::text)
    ELSE to_jsonb(floor(random() * 20)::int + 1) END
$$;
SQL

total=0
for b in $(seq 1 30); do
  got=$(ofs_psql -d $db <<SQL
SELECT setseed(0.0$b);
WITH m AS (
  SELECT g, jsonb_strip_nulls(jsonb_build_object(
    'op_id', CASE WHEN random() < 0.1 THEN pick(random()) ELSE to_jsonb('op-$b-' || g) END,
    'table', CASE floor(random() * 5)::int WHEN 0 THEN pick(random()) WHEN 1 THEN to_jsonb('public.g'::text)
                  WHEN 2 THEN to_jsonb('public.nosuch'::text) ELSE to_jsonb('public.f'::text) END,
    'op', CASE floor(random() * 5)::int WHEN 0 THEN pick(random()) WHEN 1 THEN '"insert"'::jsonb
               WHEN 2 THEN '"delete"'::jsonb ELSE '"update"'::jsonb END,
    'pk', CASE floor(random() * 4)::int WHEN 0 THEN pick(random())
               WHEN 1 THEN jsonb_build_object('a', pick(random()), 'b', pick(random()))
               ELSE jsonb_build_object('id', pick(random())) END,
    'data', CASE floor(random() * 4)::int WHEN 0 THEN pick(random())
                 ELSE jsonb_build_object((ARRAY['n', 'amount', 'label', 'doc', 'at', 'flag', 'state', 'nosuch', 'id', 'c'])[1 + floor(random() * 10)::int], pick(random()),
                                         (ARRAY['n', 'amount', 'label', 'doc', 'at', 'flag', 'state'])[1 + floor(random() * 7)::int], pick(random())) END,
    'base', CASE WHEN random() < 0.5 THEN jsonb_build_object('n', pick(random()), 'label', pick(random())) END,
    'hlc', CASE WHEN random() < 0.2 THEN pick(random()) ELSE to_jsonb(ofs.hlc_now() + floor(random() * 1e9)::bigint) END
  )) AS mutation
  FROM generate_series(1, 100) g
)
SELECT count(*) || ' ' || count(*) FILTER (WHERE r.status IN ('applied', 'rejected', 'duplicate', 'conflict'))
  FROM ofs.apply_batch('fuzzer', (SELECT jsonb_agg(mutation ORDER BY g) FROM m)) r;
SQL
)
  got=$(echo "$got" | tail -1)
  if [ "$got" != "100 100" ]; then echo "batch $b: expected 100 results with a known status, got: $got"; exit 1; fi
  total=$((total + 100))
done
alive=$(ofs_psql -d $db -c "SELECT 'alive'")
[ "$alive" = alive ] || { echo "server did not survive"; exit 1; }
ofs_psql -d $db -c "SELECT 'results: ' || string_agg(status || '=' || n, ', ' ORDER BY status)
                      FROM (SELECT status, count(*) n FROM ofs.applied_op GROUP BY status) x"
echo "ok: $total hostile mutations, every one answered, the server up"
ofs_psql -d postgres -c "DROP DATABASE $db"
