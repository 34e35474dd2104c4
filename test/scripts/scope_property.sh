#!/usr/bin/env bash
# scope_property: devices of three roles with different shapes follow
# random writes (rows changing owner, category and value, inserts and
# deletes, shape changes) through ofs.pull and ofs_internal.pull_live, sometimes
# losing a page (a crash before the device stored it).  Every row a device
# receives must be in its scope when it is sent; at the end each device's
# copy must equal exactly the rows its role sees through its shapes.
set -euo pipefail
. "$OFS_ROOT/test/lib/cluster.sh"
db=ofs_scope_property
ofs_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
ofs_psql -d postgres >/dev/null <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sp_a') THEN CREATE ROLE sp_a; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sp_b') THEN CREATE ROLE sp_b; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sp_c') THEN CREATE ROLE sp_c; END IF;
END $$;
SQL
ofs_psql -d $db >/dev/null <<'SQL'
CREATE EXTENSION ofs;
CREATE TABLE items (id int PRIMARY KEY, owner name NOT NULL, cat text, v int);
ALTER TABLE items ENABLE ROW LEVEL SECURITY;
CREATE POLICY mine ON items USING (owner = current_user OR cat = 'public');
GRANT SELECT ON items TO sp_a, sp_b, sp_c;
SELECT ofs.sync_table('items');
-- The devices: role, shapes (as the checker evaluates them).
CREATE TABLE dev (device text PRIMARY KEY, role name, filter text, cursor text, pages int DEFAULT 0);
INSERT INTO dev VALUES ('pa', 'sp_a', NULL, NULL), ('pa2', 'sp_a', $$cat = 'x'$$, NULL),
                       ('pb', 'sp_b', $$cat IN ('x', 'public')$$, NULL), ('pc', 'sp_c', $$v > 50$$, NULL);
SELECT ofs.create_device_token(role, device) IS NOT NULL FROM dev;
SELECT ofs.subscribe(device, 'items', filter) FROM dev;
-- What each device holds, applied from the pages it received.
CREATE TABLE mirror (device text, id int, owner name, cat text, v int, PRIMARY KEY (device, id));
CREATE TABLE leaks (device text, id int, at_round int);
-- in_scope: does row r belong to device d now (the policy and the shape)?
CREATE FUNCTION in_scope(d dev, r items) RETURNS boolean LANGUAGE sql AS $$
  SELECT (r.owner = d.role OR r.cat = 'public')
     AND CASE d.filter WHEN $f$cat = 'x'$f$ THEN r.cat = 'x'
                       WHEN $f$cat IN ('x', 'public')$f$ THEN r.cat IN ('x', 'public')
                       WHEN 'v > 50' THEN r.v > 50
                       ELSE true END
$$;
-- apply_page: a device applies one page; a lost page changes nothing.
CREATE FUNCTION apply_page(d dev, p jsonb, round int, lose boolean) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE c jsonb; r items;
BEGIN
  FOR c IN SELECT value FROM jsonb_array_elements(p->'changes') LOOP
    IF c->>'op' = 'upsert' THEN
      r := jsonb_populate_record(NULL::items, c->'row');
      -- Sent while in scope: the writer is idle during pulls.
      IF NOT in_scope(d, r) THEN INSERT INTO leaks VALUES (d.device, r.id, round); END IF;
      CONTINUE WHEN lose;
      INSERT INTO mirror VALUES (d.device, r.id, r.owner, r.cat, r.v)
      ON CONFLICT (device, id) DO UPDATE SET owner = EXCLUDED.owner, cat = EXCLUDED.cat, v = EXCLUDED.v;
    ELSIF NOT lose THEN
      DELETE FROM mirror m WHERE m.device = d.device AND m.id = (c->'pk'->>'id')::int;
    END IF;
  END LOOP;
  IF NOT lose THEN UPDATE dev SET cursor = p->>'cursor', pages = pages + 1 WHERE device = d.device; END IF;
  RETURN (p->>'more')::boolean;
END $$;
SQL

seeds=${OFS_SCOPE_SEEDS:-"1 2 3"}
fail=0; n=0
for seed in $seeds; do
  ofs_psql -d $db -c "DELETE FROM items" -c "DELETE FROM mirror" -c "DELETE FROM leaks" \
    -c "UPDATE dev SET cursor = NULL, pages = 0" >/dev/null
  for round in $(seq 1 40); do
    # Writes: a few transactions of random changes.
    ofs_psql -d $db >/dev/null <<SQL
SELECT setseed(($seed * 1000 + $round) / 100000.0);
INSERT INTO items SELECT g, (ARRAY['sp_a','sp_b','sp_c'])[1 + floor(random() * 3)::int],
                         (ARRAY['x','y','public',NULL])[1 + floor(random() * 4)::int], floor(random() * 100)::int
  FROM generate_series(1, 60) g WHERE random() < 0.2 ON CONFLICT (id) DO NOTHING;
UPDATE items SET owner = (ARRAY['sp_a','sp_b','sp_c'])[1 + floor(random() * 3)::int] WHERE random() < 0.1;
UPDATE items SET cat = (ARRAY['x','y','public',NULL])[1 + floor(random() * 4)::int] WHERE random() < 0.1;
UPDATE items SET v = floor(random() * 100)::int WHERE random() < 0.15;
DELETE FROM items WHERE random() < 0.05;
SQL
    # Pulls: each device one page by ofs.pull, or all together by ofs_internal.pull_live;
    # sometimes a page is lost; sometimes a shape changes.
    ofs_psql -d $db >/dev/null <<SQL
SELECT setseed(($seed * 1000 + $round) / 100001.0);
DO \$\$
DECLARE d dev; p record; r float8 := random();
BEGIN
  IF r < 0.1 THEN
    -- pa2 widens to everything, then narrows back later.
    IF (SELECT filter FROM dev WHERE device = 'pa2') IS NULL THEN
      PERFORM ofs.unsubscribe('pa2', 'items', NULL);
      PERFORM ofs.subscribe('pa2', 'items', \$f\$cat = 'x'\$f\$);
      UPDATE dev SET filter = \$f\$cat = 'x'\$f\$ WHERE device = 'pa2';
    ELSE
      PERFORM ofs.subscribe('pa2', 'items', NULL);
      PERFORM ofs.unsubscribe('pa2', 'items', \$f\$cat = 'x'\$f\$);
      UPDATE dev SET filter = NULL WHERE device = 'pa2';
    END IF;
  END IF;
  IF random() < 0.5 THEN
    FOR p IN SELECT * FROM ofs_internal.pull_live((SELECT array_agg(device ORDER BY device) FROM dev),
                                         (SELECT array_agg(cursor ORDER BY device) FROM dev),
                                         (SELECT array_agg(cursor ORDER BY device) FROM dev), 7) LOOP
      SELECT * INTO d FROM dev ORDER BY device OFFSET p.ord - 1 LIMIT 1;
      PERFORM apply_page(d, p.result, $round, random() < 0.15);
    END LOOP;
  ELSE
    FOR d IN SELECT * FROM dev ORDER BY device LOOP
      PERFORM apply_page(d, ofs.pull(d.device, d.cursor, 1 + floor(random() * 10)::int), $round, random() < 0.15);
    END LOOP;
  END IF;
END \$\$;
SQL
  done
  # The end: every device pulls until it has everything.
  ofs_psql -d $db >/dev/null <<'SQL'
DO $$
DECLARE d dev; i int;
BEGIN
  FOR d IN SELECT * FROM dev LOOP
    FOR i IN 1 .. 1000 LOOP
      EXIT WHEN NOT apply_page(d, ofs.pull(d.device, d.cursor, 50), 999, false);
      SELECT * INTO d FROM dev WHERE device = d.device;
    END LOOP;
  END LOOP;
END $$;
SQL
  leaks=$(ofs_psql -d $db -c "SELECT count(*) FROM leaks")
  n=$((n + 1))
  if [ "$leaks" = 0 ]; then echo "ok $n - seed $seed: no device received a row outside its scope"
  else fail=1; echo "not ok $n - seed $seed: $leaks rows sent outside their device's scope"
    ofs_psql -d $db -c "SELECT * FROM leaks LIMIT 5"; fi
  diff=$(ofs_psql -d $db -c "
    SELECT count(*) FROM (
      (SELECT d.device, i.id, i.owner, i.cat, i.v FROM dev d, items i WHERE in_scope(d, i)
       EXCEPT SELECT device, id, owner, cat, v FROM mirror)
      UNION ALL
      (SELECT device, id, owner, cat, v FROM mirror
       EXCEPT SELECT d.device, i.id, i.owner, i.cat, i.v FROM dev d, items i WHERE in_scope(d, i))) x")
  rows=$(ofs_psql -d $db -c "SELECT count(*) FROM mirror")
  n=$((n + 1))
  if [ "$diff" = 0 ]; then echo "ok $n - seed $seed: every device holds exactly its scope ($rows rows over 4 devices)"
  else fail=1; echo "not ok $n - seed $seed: $diff rows differ between devices and their scopes"
    ofs_psql -d $db -c "(SELECT 'missing', d.device, i.id FROM dev d, items i WHERE in_scope(d, i)
       EXCEPT SELECT 'missing', device, id FROM mirror) UNION ALL (SELECT 'extra', device, id FROM mirror
       EXCEPT SELECT 'extra', d.device, i.id FROM dev d, items i WHERE in_scope(d, i)) LIMIT 10"; fi
done
ofs_psql -d postgres -c "DROP DATABASE $db" >/dev/null
ofs_psql -d postgres -c "DROP ROLE sp_a" -c "DROP ROLE sp_b" -c "DROP ROLE sp_c" >/dev/null
echo "1..$n"
exit $fail
