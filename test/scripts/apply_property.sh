#!/usr/bin/env bash
# apply_property: random mutation sets from four devices (updates of shared
# rows on lww and counter columns, deletes, inserts of their own rows) are
# applied to identical databases in different arrival orders: each device's
# batches in its own order, the devices interleaved differently.  Every
# database must end with the same table.  Repeated over several seeds.
set -euo pipefail
. "$OFS_ROOT/test/lib/cluster.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
orders=3
ofs_psql -d postgres -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'prop_device')
                         THEN CREATE ROLE prop_device; END IF; END \$\$"

for seed in ${OFS_PROPERTY_SEEDS:-1 2 3 4 5}; do
  for o in $(seq 1 $orders); do
    db=ofs_prop_$o
    ofs_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
    ofs_psql -d $db >/dev/null <<'SQL'
CREATE EXTENSION ofs;
CREATE TABLE items (id text PRIMARY KEY, label text, price numeric(10,2), stock int NOT NULL DEFAULT 0, tag text);
GRANT SELECT, INSERT, UPDATE, DELETE ON items TO prop_device;
INSERT INTO items SELECT 'shared-' || g, 'item ' || g, g, 100, NULL FROM generate_series(1, 12) g;
SELECT ofs.sync_table('items', '{"stock": "counter"}');
SELECT ofs.create_device_token('prop_device', 'dev-' || g) FROM generate_series(1, 4) g;
SQL
  done

  # The mutations: generated once, in the first database, as batches
  # (device, batch number, mutations).  HLCs are ahead of the origin's.
  ofs_psql -d ofs_prop_1 >"$work/batches" <<SQL
SELECT setseed(0.$seed);
WITH base AS (SELECT ofs.hlc_now() + 100000000 AS h),
draws AS (
  SELECT d, n, random() AS r, random() AS t, random() AS dr, random() AS k, random() AS p
    FROM generate_series(1, 4) d, generate_series(1, 30) n
),
muts AS (
  SELECT d, n,
         CASE WHEN r < 0.45 THEN 'update-lww' WHEN r < 0.75 THEN 'update-counter'
              WHEN r < 0.85 THEN 'delete' ELSE 'insert' END AS kind,
         'shared-' || (1 + floor(t * 12))::int AS target,
         (floor(dr * 5000000))::bigint AS dh,
         (1 + floor(k * 9))::int AS delta,
         round((p * 1000)::numeric, 2) AS price
    FROM draws
)
SELECT d || '|' || ((n - 1) / 10) || '|' || jsonb_agg(
  CASE kind
    WHEN 'update-lww' THEN jsonb_build_object('op_id', d || '-' || n, 'table', 'public.items', 'op', 'update',
      'pk', jsonb_build_object('id', target), 'data', jsonb_build_object('price', price::text, 'tag', 'd' || d),
      'hlc', (SELECT h FROM base) + dh)
    WHEN 'update-counter' THEN jsonb_build_object('op_id', d || '-' || n, 'table', 'public.items', 'op', 'update',
      'pk', jsonb_build_object('id', target), 'data', jsonb_build_object('stock', delta),
      'base', jsonb_build_object('stock', 0), 'hlc', (SELECT h FROM base) + dh)
    WHEN 'delete' THEN jsonb_build_object('op_id', d || '-' || n, 'table', 'public.items', 'op', 'delete',
      'pk', jsonb_build_object('id', target), 'hlc', (SELECT h FROM base) + dh)
    ELSE jsonb_build_object('op_id', d || '-' || n, 'table', 'public.items', 'op', 'insert',
      'pk', jsonb_build_object('id', 'dev' || d || '-' || n),
      'data', jsonb_build_object('label', 'new', 'price', price::text, 'stock', delta),
      'hlc', (SELECT h FROM base) + dh)
  END ORDER BY n)
  FROM muts GROUP BY d, (n - 1) / 10 ORDER BY d, (n - 1) / 10;
SQL
  sed -i '/^$/d; /^setseed/d' "$work/batches"
  grep -v '|' "$work/batches" >/dev/null && sed -i '/|/!d' "$work/batches"

  # Arrival orders: devices interleaved round-robin, in reverse, and by batch.
  for o in $(seq 1 $orders); do
    case $o in
      1) sort -t'|' -k2,2n -k1,1n "$work/batches" ;;
      2) sort -t'|' -k2,2n -k1,1nr "$work/batches" ;;
      3) sort -t'|' -k1,1nr -k2,2n "$work/batches" ;;
    esac >"$work/order$o"
    while IFS='|' read -r dev _ batch; do
      # The HLCs stay the devices' own, whenever a batch arrives: the
      # property is the merge's, not the clock bound's (which replaces a
      # clock too far ahead by the origin's at arrival).
      echo "SET ofs.max_clock_skew = '5min'; SELECT count(*) FROM ofs.apply_batch('dev-$dev', :'batch'::jsonb)" |
        ofs_psql -d ofs_prop_$o -v batch="$batch" >/dev/null
    done <"$work/order$o"
    ofs_psql -d ofs_prop_$o -c "SELECT md5(string_agg(i::text, ';' ORDER BY id)) FROM items i" >"$work/result$o"
    ofs_psql -d ofs_prop_$o -c "SELECT count(*) || ' rows, ' || (SELECT count(*) FROM ofs.applied_op) || ' mutations, '
                                       || (SELECT count(*) FROM ofs.dead_letters) || ' rejected' FROM items" >"$work/summary$o"
  done
  for o in $(seq 2 $orders); do
    if ! cmp -s "$work/result1" "$work/result$o"; then
      echo "seed $seed: arrival order $o ended with a different table than order 1"
      ofs_psql -d ofs_prop_1 -c "SELECT * FROM items ORDER BY id"
      ofs_psql -d ofs_prop_$o -c "SELECT * FROM items ORDER BY id"
      exit 1
    fi
  done
  echo "seed $seed: $orders arrival orders, identical tables ($(cat "$work/summary1"))"
done
for o in $(seq 1 $orders); do ofs_psql -d postgres -c "DROP DATABASE ofs_prop_$o" >/dev/null; done
