-- Shapes and the scoped pull: the filter grammar and its rewriting,
-- subscriptions, device authentication, ofs.pull (snapshots, pagination,
-- row-level security, rows leaving the scope, filter changes, resent and
-- foreign cursors) and ofs.device_schema.  Cursors hold snapshot xids and
-- OIDs, so they are never printed: only the operations and keys of pages.

CREATE FUNCTION pg_temp.err(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text; hnt text;
BEGIN
  EXECUTE sql;
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hnt = PG_EXCEPTION_HINT;
  -- the times of revocation and expiry vary between runs
  RETURN st || ': ' || regexp_replace(msg, '(revoked|expired) at .*$', '\1 at <time>')
         || coalesce(E'\nHINT: ' || nullif(hnt, ''), '');
END $$;

CREATE ROLE shape_alice;
CREATE ROLE shape_bob;
CREATE ROLE shape_boss;
GRANT shape_boss TO shape_bob;
CREATE TABLE shape_items (
  id text PRIMARY KEY,
  owner name NOT NULL,
  status text NOT NULL DEFAULT 'open',
  qty int,
  price numeric(8,2),
  done boolean NOT NULL DEFAULT false,
  due date,
  "Note Text" text,
  other text
);
GRANT SELECT, INSERT, UPDATE, DELETE ON shape_items TO shape_alice, shape_bob;
-- Row-level security: each role sees its own items only.
ALTER TABLE shape_items ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON shape_items USING (owner = current_user);
INSERT INTO shape_items (id, owner, status, qty, price)
SELECT 'a' || i, 'shape_alice', CASE WHEN i % 2 = 0 THEN 'open' ELSE 'done' END, i, i * 1.5
  FROM generate_series(1, 5) i;
INSERT INTO shape_items (id, owner, status, qty, price)
SELECT 'b' || i, 'shape_bob', 'open', i, i FROM generate_series(1, 3) i;
SELECT ofs.sync_table('shape_items');
-- A table with a composite key, a merge policy and a state machine.
CREATE TABLE shape_orders (
  region text,
  id int,
  state text NOT NULL DEFAULT 'new',
  amount numeric(10,2),
  memo varchar(20),
  PRIMARY KEY (region, id)
);
GRANT SELECT ON shape_orders TO shape_alice, shape_bob;
INSERT INTO shape_orders (region, id, amount)
VALUES ('north', 2, 20), ('north', 10, 100), ('south', 1, 1), ('east', 7, 70), ('north', 1, 10);
SELECT ofs.sync_table('shape_orders', '{"memo": "manual"}');
SELECT ofs.add_transition_constraint('shape_orders', 'order_flow', 'state',
  $$'new' -> 'paid', 'paid' -> 'shipped' BY ROLE 'shape_boss'$$, ARRAY['new']);
-- Synced but not readable by the devices' roles; readable but not synced.
CREATE TABLE shape_secret (id int PRIMARY KEY);
SELECT ofs.sync_table('shape_secret');
CREATE TABLE shape_plain (id int PRIMARY KEY);
GRANT SELECT ON shape_plain TO shape_alice, shape_bob;

---------------------------------------------------------------------------
-- The filter grammar: accepted filters and their rewriting.
---------------------------------------------------------------------------
CREATE FUNCTION pg_temp.filter(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text;
BEGIN
  RETURN coalesce(ofs.shape_filter('shape_items', q), '(whole table)');
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
  RETURN st || ': ' || msg;
END $$;

SELECT q AS filter, pg_temp.filter(q) AS rewritten FROM (VALUES
  ($$owner = 'shape_alice'$$),
  ($$'shape_alice' = owner$$),
  ($$5 < qty$$),
  ($$5 <= qty$$),
  ($$5 > qty$$),
  ($$5 >= qty$$),
  ($$qty != 3$$),
  ($$3 != qty$$),
  ($$qty <> 3$$),
  ($$qty IN (1, 2,3)$$),
  ($$status NOT IN ('open', 'done')$$),
  ($$qty IN (1, -2, 3.5, '4')$$),
  ($$due IS NULL$$),
  ($$due IS NOT NULL$$),
  ($$due ISNULL$$),
  ($$due NOTNULL$$),
  ($$qty = 1 OR qty = 2 AND done = true$$),
  ($$(qty = 1 OR qty = 2) AND done = false$$),
  ($$qty = 1 AND (qty = 2 OR (qty = 3 AND qty = 4))$$),
  ($$qty > -5$$),
  ($$-5 < qty$$),
  ($$qty = -(5)$$),
  ($$qty = - -5$$),
  ($$price >= -1.5$$),
  ($$price = - 2.5e-3$$),
  ($$price < .5$$),
  ($$qty = 9999999999$$),
  ($$done = TRUE$$),
  ($$done = 'yes'$$),
  ($$"Note Text" = 'x'$$),
  ($$OWNER = 'shape_alice'$$),
  ($$"owner" = 'it''s'$$),
  ($$owner = E'back\\slash'$$),
  ($f$owner = $q$dollar's$q$$f$),
  ($$due = '2026-01-31'$$),
  ($$qty = 1 -- a comment$$),
  ($$qty = 1 /* a comment */ OR qty = 2$$),
  -- comments and quotes cannot smuggle anything into the rewriting
  ($$qty = 1 --) OR (true$$),
  ($$qty = 1 /*) OR (true*/$$),
  ($$owner = 'x'') OR (''1'' = ''1'$$),
  ($$owner = ''$$),
  ($$qty = 1; $$),  -- an empty second statement, dropped by the rewriting
  ($$  $$),
  ($$$$),
  (NULL)
) v(q);

-- Refused filters, each with its SQLSTATE: functions, subqueries, casts,
-- NOT, LIKE, BETWEEN, bare columns, column-to-column comparisons, unknown
-- columns, a second statement, comment tricks, invalid literals.
SELECT q AS filter, pg_temp.filter(q) AS refused FROM (VALUES
  ($$lower(owner) = 'a'$$),
  ($$qty = abs(-1)$$),
  ($$owner = current_user$$),
  ($$qty = (SELECT 1)$$),
  ($$qty IN (SELECT 1)$$),
  ($$qty = 1 AND EXISTS (SELECT 1)$$),
  ($$qty = 1::int$$),
  ($$CAST(qty AS text) = '1'$$),
  ($$NOT qty = 1$$),
  ($$NOT (qty = 1)$$),
  ($$owner LIKE 'a%'$$),
  ($$owner ILIKE 'a%'$$),
  ($$owner ~ 'a'$$),
  ($$qty BETWEEN 1 AND 2$$),
  ($$qty IS DISTINCT FROM 1$$),
  ($$qty = ANY ('{1}')$$),
  ($$done IS TRUE$$),
  ($$done$$),
  ($$true$$),
  ($$1 = 1$$),
  ($$qty = other$$),
  ($$qty + 1 = 2$$),
  ($$- qty = 1$$),
  ($$owner || 'x' = 'y'$$),
  ($$owner = 'a' COLLATE "C"$$),
  ($$(qty, owner) IN ((1, 'a'))$$),
  ($$qty = NULL$$),
  ($$NULL = qty$$),
  ($$qty IN (1, NULL)$$),
  ($$qty = $1$$),
  ($$qty OPERATOR(pg_catalog.=) 1$$),
  ($$shape_items.qty = 1$$),
  ($$nosuch = 1$$),
  ($$ctid = '(0,1)'$$),
  ($$xmin = '1'$$),
  ($$qty = 1; DROP TABLE shape_items$$),
  ($$qty = 1) OR (1 = 1$$),
  ($$qty = 1 /* unterminated$$),
  ($$qty = 1 ORDER BY 1$$),
  ($$qty = 1 LIMIT 1$$),
  ($$qty = 1 GROUP BY qty$$),
  ($$qty = 1 UNION SELECT$$),
  ($$qty = 1 FOR UPDATE$$),
  ($$qty = B'101'$$),
  ($$qty IN ()$$),
  ($$qty = 1 OR$$),
  ($$qty = 'abc'$$),
  ($$qty = '99999999999'$$),
  ($$due = 'not a date'$$),
  ($$done = 'maybe'$$),
  ($$owner = 5$$)
) v(q);

-- Size limits: 4096 bytes, and at most 256 terms (comparisons, AND/OR
-- nodes, IN list entries).
SELECT length(f) AS characters, octet_length(f) AS bytes, left(pg_temp.filter(f), 30) AS result
  FROM (VALUES ($$owner = '$$ || repeat('x', 4086) || $$'$$),
               ($$owner = '$$ || repeat('x', 4087) || $$'$$),
               ($$owner = '$$ || repeat('é', 2100) || $$'$$),
               (repeat('(', 2040) || 'qty = 1' || repeat(')', 2040))) v(f);
SELECT n AS terms, left(pg_temp.filter(f), 40) AS result FROM (
  SELECT 255, 'qty IN (' || (SELECT string_agg(i::text, ', ') FROM generate_series(1, 255) i) || ')' UNION ALL
  SELECT 256, 'qty IN (' || (SELECT string_agg(i::text, ', ') FROM generate_series(1, 256) i) || ')' UNION ALL
  SELECT 256, (SELECT string_agg('qty = ' || i, ' OR ') FROM generate_series(1, 255) i) UNION ALL
  SELECT 257, (SELECT string_agg('qty = ' || i, ' OR ') FROM generate_series(1, 256) i) UNION ALL
  SELECT 300, repeat('qty = 1 AND (', 150) || 'qty = 1' || repeat(')', 150)) v(n, f);
-- The full error of a refused filter.
SELECT pg_temp.err($$SELECT ofs.shape_filter('shape_items', 'lower(owner) = ''a''')$$);
SELECT pg_temp.err($$SELECT ofs.shape_filter('shape_items', 'nosuch = 1')$$);
-- A filter is rewritten for its own table: the same text may name a column
-- one table has and another lacks.
SELECT ofs.shape_filter('shape_orders', 'region = ''north'' AND 5 < id');
SELECT pg_temp.err($$SELECT ofs.shape_filter('shape_orders', 'owner = ''x''')$$);

---------------------------------------------------------------------------
-- Devices: authentication.
---------------------------------------------------------------------------
SELECT ofs.create_device_token('shape_alice', 'shape-a') AS tok_a \gset
SELECT ofs.create_device_token('shape_bob', 'shape-b') AS tok_b \gset
SELECT ofs.create_device_token('shape_alice', 'shape-t', '1 day') AS tok_t \gset
SELECT d.device, d.role FROM ofs.authenticate_device(:'tok_a') d;
SELECT last_contact IS NOT NULL AS contact_noted FROM ofs.device WHERE device = 'shape-a';
SELECT (ofs.authenticate_device(:'tok_b')).role;
SELECT pg_temp.err($$SELECT ofs.authenticate_device('ofs_0000')$$);
SELECT pg_temp.err($$SELECT ofs.authenticate_device('')$$);
SELECT pg_temp.err($$SELECT ofs.authenticate_device(NULL)$$);
SELECT pg_temp.err(format('SELECT ofs.authenticate_device(%L)', upper(:'tok_a')));
SELECT ofs.revoke_device('shape-t');
SELECT pg_temp.err(format('SELECT ofs.authenticate_device(%L)', :'tok_t'));
UPDATE ofs.device SET revoked_at = NULL, expires_at = now() - interval '1 minute' WHERE device = 'shape-t';
SELECT pg_temp.err(format('SELECT ofs.authenticate_device(%L)', :'tok_t'));
-- A new token replaces the old one.
SELECT ofs.create_device_token('shape_alice', 'shape-t') AS tok_t2 \gset
SELECT pg_temp.err(format('SELECT ofs.authenticate_device(%L)', :'tok_t'));
SELECT (ofs.authenticate_device(:'tok_t2')).device;

---------------------------------------------------------------------------
-- Subscriptions.
---------------------------------------------------------------------------
SELECT ofs.subscribe('shape-t', 'shape_items');
SELECT ofs.subscribe('shape-t', 'public.shape_items', $$'open' = status$$);
SELECT ofs.subscribe('shape-t', '"public"."shape_items"', 'qty > 2 AND due IS NULL');
-- The same shape written differently is one shape.
SELECT ofs.subscribe('shape-t', 'shape_items', $$status='open'$$);
SELECT device, table_name, filter FROM ofs.subscriptions WHERE device = 'shape-t' ORDER BY filter NULLS FIRST;
-- An invalid filter changes nothing.
SELECT version AS v FROM ofs.device_shape WHERE device = 'shape-t' \gset
SELECT pg_temp.err($$SELECT ofs.subscribe('shape-t', 'shape_items', 'qty = (SELECT 1)')$$);
SELECT pg_temp.err($$SELECT ofs.subscribe('shape-t', 'shape_items', 'qty = ''many''')$$);
SELECT pg_temp.err($$SELECT ofs.subscribe('shape-t', 'shape_items', 'nosuch = 1')$$);
SELECT count(*) AS shapes, version = :v AS version_unchanged FROM ofs.subscriptions
  JOIN ofs.device_shape USING (device) WHERE device = 'shape-t' GROUP BY version;
-- Subscribing again to a shape it has changes nothing either.
SELECT ofs.subscribe('shape-t', 'shape_items', $$status <> 'x' OR status = 'x'$$) IS NOT NULL AS ok;
SELECT version AS v FROM ofs.device_shape WHERE device = 'shape-t' \gset
SELECT ofs.subscribe('shape-t', 'shape_items', $$status != 'x' OR status = 'x'$$);
SELECT version = :v AS version_unchanged FROM ofs.device_shape WHERE device = 'shape-t';
-- Tables that are not synced, not readable or do not exist are not found
-- alike.
SELECT pg_temp.err($$SELECT ofs.subscribe('shape-t', 'shape_plain')$$);
SELECT pg_temp.err($$SELECT ofs.subscribe('shape-t', 'shape_secret')$$);
SELECT pg_temp.err($$SELECT ofs.subscribe('shape-t', 'shape_nosuch')$$);
SELECT pg_temp.err($$SELECT ofs.subscribe('shape-t', 'ofs.device')$$);
SELECT pg_temp.err($$SELECT ofs.subscribe('shape-t', 'pg_authid')$$);
-- Unsubscribe takes the filter as sent or as normalized.
SELECT ofs.unsubscribe('shape-t', 'shape_items', $$status = 'open'$$);
SELECT ofs.unsubscribe('shape-t', 'shape_items', '(((qty > 2) AND (due IS NULL)))');
SELECT pg_temp.err($$SELECT ofs.unsubscribe('shape-t', 'shape_items', 'qty = 1')$$);
SELECT pg_temp.err($$SELECT ofs.unsubscribe('shape-t', 'shape_orders')$$);
SELECT pg_temp.err($$SELECT ofs.unsubscribe('shape-t', 'shape_plain')$$);
SELECT device, table_name, filter FROM ofs.subscriptions WHERE device = 'shape-t' ORDER BY filter NULLS FIRST;
-- set_subscriptions: exactly the list given, returned normalized.
SELECT ofs.set_subscriptions('shape-t', $$[{"table": "shape_items", "filter": "qty < 3"},
                                           {"table": "public.shape_items", "filter": "3 > qty"},
                                           {"table": "shape_orders"},
                                           {"table": "shape_orders", "filter": "region = 'north'", "extra": 1}]$$);
SELECT version AS v FROM ofs.device_shape WHERE device = 'shape-t' AND tbl = 'shape_items'::regclass \gset
-- The same set in another order changes no version.
SELECT jsonb_array_length(ofs.set_subscriptions('shape-t', $$[{"table": "shape_orders", "filter": "region = 'north'"},
  {"table": "shape_orders", "filter": null}, {"table": "shape_items", "filter": "(qty < 3)"}]$$)) AS shapes;
SELECT version = :v AS version_unchanged FROM ofs.device_shape WHERE device = 'shape-t' AND tbl = 'shape_items'::regclass;
-- A table left out keeps an empty shape, so that a pull removes its rows.
SELECT ofs.set_subscriptions('shape-t', '[{"table": "shape_orders"}]');
SELECT tbl::regclass AS table_name, filters FROM ofs.device_shape WHERE device = 'shape-t' ORDER BY 1;
SELECT ofs.set_subscriptions('shape-t', '[]');
SELECT count(*) AS subscriptions FROM ofs.subscriptions WHERE device = 'shape-t';
-- Malformed lists and any invalid entry change nothing.
SELECT ofs.subscribe('shape-t', 'shape_items', 'qty = 1') IS NOT NULL AS ok;
SELECT pg_temp.err($$SELECT ofs.set_subscriptions('shape-t', '{"table": "shape_items"}')$$);
SELECT pg_temp.err($$SELECT ofs.set_subscriptions('shape-t', NULL)$$);
SELECT pg_temp.err($$SELECT ofs.set_subscriptions('shape-t', '["shape_items"]')$$);
SELECT pg_temp.err($$SELECT ofs.set_subscriptions('shape-t', '[{"filter": "qty = 1"}]')$$);
SELECT pg_temp.err($$SELECT ofs.set_subscriptions('shape-t', '[{"table": "shape_items", "filter": 1}]')$$);
SELECT pg_temp.err($$SELECT ofs.set_subscriptions('shape-t', '[{"table": "shape_orders"}, {"table": "shape_secret"}]')$$);
SELECT pg_temp.err($$SELECT ofs.set_subscriptions('shape-t', '[{"table": "shape_orders"}, {"table": "shape_items", "filter": "qty ="}]')$$);
SELECT device, table_name, filter FROM ofs.subscriptions WHERE device = 'shape-t';
-- Unknown, revoked and expired devices may not subscribe.
SELECT pg_temp.err($$SELECT ofs.subscribe('shape-nosuch', 'shape_items')$$);
SELECT pg_temp.err($$SELECT ofs.unsubscribe('shape-nosuch', 'shape_items')$$);
SELECT pg_temp.err($$SELECT ofs.set_subscriptions('shape-nosuch', '[]')$$);
SELECT pg_temp.err($$SELECT ofs.pull('shape-nosuch')$$);
SELECT pg_temp.err($$SELECT ofs.device_schema('shape-nosuch')$$);
SELECT ofs.revoke_device('shape-t');
SELECT pg_temp.err($$SELECT ofs.subscribe('shape-t', 'shape_items')$$);
SELECT pg_temp.err($$SELECT ofs.unsubscribe('shape-t', 'shape_items', 'qty = 1')$$);
SELECT pg_temp.err($$SELECT ofs.set_subscriptions('shape-t', '[]')$$);
SELECT pg_temp.err($$SELECT ofs.pull('shape-t')$$);
UPDATE ofs.device SET revoked_at = NULL, expires_at = now() - interval '1 second' WHERE device = 'shape-t';
SELECT pg_temp.err($$SELECT ofs.subscribe('shape-t', 'shape_items')$$);
SELECT pg_temp.err($$SELECT ofs.pull('shape-t')$$);
SELECT pg_temp.err($$SELECT ofs.device_schema('shape-t')$$);
SELECT device, table_name, filter FROM ofs.subscriptions WHERE device = 'shape-t';
-- Only administrators manage subscriptions and pull for devices.
SET ROLE shape_alice;
SELECT pg_temp.err($$SELECT ofs.subscribe('shape-a', 'shape_items')$$);
SELECT pg_temp.err($$SELECT ofs.pull('shape-a')$$);
SELECT pg_temp.err($$SELECT ofs.shape_filter('shape_items', 'qty = 1')$$);
SELECT pg_temp.err($$SELECT ofs.authenticate_device('x')$$);
RESET ROLE;

---------------------------------------------------------------------------
-- Pulling.  A simulated device: pg_temp.page pulls one page with the
-- device's stored cursor, applies it to shape_held (the device's local
-- rows) and stores the new cursor, and returns the page as text (each
-- change's op and key, "more", the snapshot progress).  With lose, the
-- answer is lost (the device crashed before storing it).  shape_sent logs
-- every change sent: ok is false for an upsert of a row the device's role
-- may not see, or a delete of a key the device was never sent.
---------------------------------------------------------------------------
CREATE TABLE shape_dev (device text PRIMARY KEY, role name, cursor text);
CREATE TABLE shape_held (device text, tbl text, pk jsonb, "row" jsonb, PRIMARY KEY (device, tbl, pk));
CREATE TABLE shape_sent (n serial PRIMARY KEY, device text, op text, tbl text, pk jsonb, ok boolean);
GRANT SELECT ON shape_dev, shape_held TO PUBLIC;
CREATE FUNCTION pg_temp.page(dev text, max_rows int DEFAULT 1000, lose boolean DEFAULT false)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE p jsonb; c jsonb; ok boolean;
BEGIN
  INSERT INTO shape_dev (device, role) SELECT dev, role FROM ofs.device WHERE device = dev
  ON CONFLICT DO NOTHING;
  p := ofs.pull(dev, (SELECT cursor FROM shape_dev WHERE device = dev), max_rows);
  IF NOT lose THEN
    FOR c IN SELECT jsonb_array_elements(p->'changes') LOOP
      IF c->>'op' = 'upsert' THEN
        ok := c->>'table' <> 'public.shape_items'
              OR c#>>'{row,owner}' = (SELECT role FROM shape_dev WHERE device = dev);
        INSERT INTO shape_held VALUES (dev, c->>'table', c->'pk', c->'row')
        ON CONFLICT (device, tbl, pk) DO UPDATE SET "row" = EXCLUDED."row";
      ELSE
        ok := EXISTS (SELECT 1 FROM shape_sent s WHERE s.device = dev AND s.op = 'upsert'
                         AND s.tbl = c->>'table' AND s.pk = c->'pk');
        DELETE FROM shape_held h WHERE h.device = dev AND h.tbl = c->>'table' AND h.pk = c->'pk';
      END IF;
      INSERT INTO shape_sent (device, op, tbl, pk, ok) VALUES (dev, c->>'op', c->>'table', c->'pk', ok);
    END LOOP;
    UPDATE shape_dev SET cursor = p->>'cursor' WHERE device = dev;
  END IF;
  RETURN coalesce((SELECT string_agg(e->>'op' || ' ' || CASE WHEN e->'pk' ? 'region'
                                                             THEN (e#>>'{pk,region}') || '/' || (e#>>'{pk,id}')
                                                             ELSE e#>>'{pk,id}' END, ', ')
                     FROM jsonb_array_elements(p->'changes') e), '-')
         || CASE WHEN (p->>'more')::boolean THEN ' | more' ELSE '' END
         || CASE WHEN p ? 'snapshot'
                 THEN format(' | snapshot %s %s/%s', p#>>'{snapshot,table}', p#>>'{snapshot,rows_done}',
                             p#>>'{snapshot,rows_total}')
                 ELSE '' END;
END $$;
-- pg_temp.sync follows the cursor until more is false: one row per page.
CREATE FUNCTION pg_temp.sync(dev text, max_rows int DEFAULT 1000)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
  FOR i IN 1 .. 50 LOOP
    r := pg_temp.page(dev, max_rows);
    RETURN NEXT r;
    EXIT WHEN r NOT LIKE '% | more%';
  END LOOP;
END $$;

-- A device without shapes gets nothing.
SELECT pg_temp.sync('shape-a');

-- First pull: a snapshot of the rows in scope, in key order, page by page,
-- with its progress; each device gets its own role's rows only.
SELECT ofs.subscribe('shape-a', 'shape_items');
SELECT ofs.subscribe('shape-b', 'shape_items');
SELECT ofs.subscribe('shape-b', 'shape_orders');
SELECT p->'more' AS more, jsonb_path_query_array(p->'changes', '$[*].pk.id') AS ids,
       jsonb_path_query_array(p->'changes', '$[*].op') AS ops, p->'snapshot' AS snapshot,
       p->'changes'->0 AS first_change
  FROM ofs.pull('shape-a', NULL, 2) p;
SELECT pg_temp.sync('shape-a', 2);
SELECT pg_temp.sync('shape-b', 3);
-- Setting the same subscriptions again changes nothing: nothing to send.
SELECT ofs.set_subscriptions('shape-b', '[{"table": "shape_items"}, {"table": "shape_orders"}]') IS NOT NULL AS ok;
SELECT pg_temp.sync('shape-b', 1);

-- The device's rows are exactly the rows its role sees, column by column
-- (shape_compare reads shape_items as the current role); no page ever
-- named a key of the other role.
CREATE VIEW shape_compare WITH (security_invoker = true) AS
SELECT d.device,
       (SELECT string_agg(i.id, ',' ORDER BY i.id) FROM shape_items i) AS role_sees,
       (SELECT string_agg(h.pk->>'id', ',' ORDER BY h.pk->>'id') FROM shape_held h
         WHERE h.device = d.device AND h.tbl = 'public.shape_items') AS device_has,
       (SELECT count(*) FROM shape_items i) = (SELECT count(*) FROM shape_held h
         WHERE h.device = d.device AND h.tbl = 'public.shape_items')
       AND NOT EXISTS (SELECT 1 FROM shape_items i WHERE NOT EXISTS (
             SELECT 1 FROM shape_held h WHERE h.device = d.device AND h.tbl = 'public.shape_items'
                AND h.pk = jsonb_build_object('id', i.id) AND h."row" = ofs.encode_row(i))) AS same_rows
  FROM shape_dev d WHERE d.role = current_user AND d.device IN ('shape-a', 'shape-b');
GRANT SELECT ON shape_compare TO PUBLIC;
SET ROLE shape_alice;
SELECT * FROM shape_compare;
SET ROLE shape_bob;
SELECT * FROM shape_compare;
RESET ROLE;
SELECT device, string_agg(DISTINCT pk->>'id', ',') AS keys_ever_sent, bool_and(ok) AS all_in_scope
  FROM shape_sent WHERE tbl = 'public.shape_items' GROUP BY device ORDER BY device;
-- Pulling again at the end brings nothing.
SELECT pg_temp.sync('shape-a');

-- Rows leaving the scope.  An owner change is a delete for the old owner's
-- device and an upsert for the new one's; a deleted row the device holds is
-- a delete; a change of a row a device never held sends it nothing.
UPDATE shape_items SET owner = 'shape_bob' WHERE id = 'a1';
UPDATE shape_items SET qty = 20 WHERE id = 'a2';
DELETE FROM shape_items WHERE id = 'a3';
UPDATE shape_items SET qty = 30 WHERE id = 'b3';
DELETE FROM shape_items WHERE id = 'b2';
INSERT INTO shape_items (id, owner, qty) VALUES ('a6', 'shape_alice', 6), ('b6', 'shape_bob', 6);
SELECT pg_temp.sync('shape-a');
SELECT pg_temp.sync('shape-b');
-- A row that goes and comes back within one batch is sent once, as it is.
UPDATE shape_items SET owner = 'shape_bob' WHERE id = 'a4';
UPDATE shape_items SET owner = 'shape_alice', qty = 44 WHERE id = 'a4';
SELECT pg_temp.sync('shape-a');
SELECT pg_temp.sync('shape-b');
-- A key change is the removal of the old key and the new row.
UPDATE shape_items SET id = 'a7' WHERE id = 'a6';
SELECT pg_temp.sync('shape-a');
SELECT pg_temp.sync('shape-b');
SET ROLE shape_alice;
SELECT * FROM shape_compare;
SET ROLE shape_bob;
SELECT * FROM shape_compare;
RESET ROLE;

-- Filter changes.  A new shape re-sends the table's rows in the new scope;
-- dropping the whole-table shape narrows it: the rows the device held
-- that left the scope are removed, and rows it never held are not named.
SELECT ofs.subscribe('shape-a', 'shape_items', $$status = 'open'$$);
SELECT pg_temp.sync('shape-a');
SELECT ofs.unsubscribe('shape-a', 'shape_items');
SELECT pg_temp.sync('shape-a');
-- Within the narrower scope: a row leaving the filter is removed, a row
-- entering it is sent, a row outside it changes nothing.
UPDATE shape_items SET status = 'done' WHERE id = 'a4';
UPDATE shape_items SET status = 'open' WHERE id = 'a5';
UPDATE shape_items SET qty = 11 WHERE id = 'a4';
UPDATE shape_items SET status = 'open' WHERE id = 'b1';
SELECT pg_temp.sync('shape-a');
SET ROLE shape_alice;
SELECT string_agg(id, ',' ORDER BY id) AS role_sees_in_shape FROM shape_items WHERE status = 'open';
RESET ROLE;
SELECT string_agg(pk->>'id', ',' ORDER BY pk->>'id') AS device_has FROM shape_held WHERE device = 'shape-a';
-- Two shapes: the union.
SELECT ofs.subscribe('shape-a', 'shape_items', 'qty >= 11');
SELECT pg_temp.sync('shape-a');
SELECT ofs.set_subscriptions('shape-a', '[{"table": "shape_items", "filter": "qty >= 11"}]');
SELECT pg_temp.sync('shape-a');
SELECT * FROM ofs.subscriptions WHERE device = 'shape-a';
-- Dropping the last shape removes every row of the table.
SELECT ofs.unsubscribe('shape-a', 'shape_items', 'qty >= 11');
SELECT pg_temp.sync('shape-a');
SELECT count(*) AS rows_held FROM shape_held WHERE device = 'shape-a';
SELECT ofs.device_schema('shape-a');
-- Back to the whole table.
SELECT ofs.subscribe('shape-a', 'shape_items');
SELECT pg_temp.sync('shape-a', 3);
SELECT device, bool_and(ok) AS all_in_scope FROM shape_sent GROUP BY device ORDER BY device;

-- A lost answer: pulling again with the stored (older) cursor sends the
-- same changes again, removals included.
UPDATE shape_items SET owner = 'shape_bob' WHERE id = 'a2';
UPDATE shape_items SET qty = 50 WHERE id = 'a5';
INSERT INTO shape_items (id, owner, qty) VALUES ('a8', 'shape_alice', 8);
SELECT pg_temp.page('shape-a', 2, lose => true);
SELECT pg_temp.page('shape-a', 2, lose => true);
SELECT pg_temp.page('shape-a', 2);
SELECT pg_temp.page('shape-a', 2, lose => true);
SELECT pg_temp.page('shape-a', 2, lose => true);
SELECT pg_temp.page('shape-a', 2);
SELECT pg_temp.page('shape-a', 2);
-- Once the device has confirmed a page (by pulling with a later cursor),
-- its removals are not repeated.
SELECT pg_temp.sync('shape-a', 2);
SELECT pg_temp.sync('shape-b');
-- A live connection sends pages ahead of the last one the device confirmed
-- (ofs.pull's confirmed).  When they are lost, the device reconnects with
-- its stored cursor and gets every removal of those pages again, however
-- many pages that takes.
INSERT INTO shape_items (id, owner, qty) SELECT 'c' || i, 'shape_alice', i FROM generate_series(1, 5) i;
SELECT pg_temp.sync('shape-a');
SELECT cursor AS c0 FROM shape_dev WHERE device = 'shape-a' \gset
UPDATE shape_items SET owner = 'shape_bob' WHERE id LIKE 'c%';
SELECT ofs.pull('shape-a', :'c0', 2) AS p \gset
SELECT jsonb_path_query_array(:'p'::jsonb->'changes', '$[*].op') AS ops,
       jsonb_path_query_array(:'p'::jsonb->'changes', '$[*].pk.id') AS lost_page_1, :'p'::jsonb->'more' AS more;
SELECT ofs.pull('shape-a', :'p'::jsonb->>'cursor', 2, :'c0') AS p \gset
SELECT jsonb_path_query_array(:'p'::jsonb->'changes', '$[*].pk.id') AS lost_page_2, :'p'::jsonb->'more' AS more;
SELECT ofs.pull('shape-a', :'p'::jsonb->>'cursor', 2, :'c0') AS p \gset
SELECT jsonb_path_query_array(:'p'::jsonb->'changes', '$[*].pk.id') AS lost_page_3, :'p'::jsonb->'more' AS more;
SELECT pg_temp.sync('shape-a', 2);
SELECT pg_temp.sync('shape-a', 2);
SET ROLE shape_alice;
SELECT * FROM shape_compare;
RESET ROLE;
SELECT pg_temp.sync('shape-b');
-- Removals sent again that fill a page exactly leave more to read: the
-- feed after them has not been read yet.
INSERT INTO shape_items (id, owner, qty) VALUES ('d1', 'shape_alice', 1), ('d2', 'shape_alice', 2), ('d3', 'shape_alice', 3);
SELECT pg_temp.sync('shape-a');
UPDATE shape_items SET owner = 'shape_boss' WHERE id IN ('d1', 'd2');
UPDATE shape_items SET qty = 33 WHERE id = 'd3';
SELECT pg_temp.page('shape-a', 3, lose => true);
SELECT pg_temp.page('shape-a', 2);
SELECT pg_temp.sync('shape-a');
DELETE FROM shape_items WHERE id LIKE 'd%';
SELECT pg_temp.sync('shape-a');
SELECT pg_temp.sync('shape-b');
-- A lost snapshot page is sent again as well.
SELECT ofs.subscribe('shape-b', 'shape_orders', $$region = 'north'$$);
SELECT pg_temp.page('shape-b', 2);
SELECT pg_temp.page('shape-b', 2, lose => true);
SELECT pg_temp.sync('shape-b', 2);

-- Filters with quoted names and literals narrow what row-level security
-- lets through: a2 matches the filter but is bob's.
UPDATE shape_items SET "Note Text" = 'it''s' WHERE id = 'a7';
SELECT ofs.create_device_token('shape_alice', 'shape-n') IS NOT NULL AS ok;
SELECT ofs.subscribe('shape-n', 'shape_items', $$"Note Text" = 'it''s' OR qty IN (20, -1) OR price < -1$$);
SELECT pg_temp.sync('shape-n');
SELECT "row" FROM shape_held WHERE device = 'shape-n';
UPDATE shape_items SET "Note Text" = NULL WHERE id = 'a7';
UPDATE shape_items SET owner = 'shape_alice' WHERE id = 'a2';
SELECT pg_temp.sync('shape-n');
UPDATE shape_items SET owner = 'shape_bob' WHERE id = 'a2';
SELECT pg_temp.sync('shape-n');

-- Invalid cursors and page sizes.
SELECT pg_temp.err($$SELECT ofs.pull('shape-a', 'not a cursor')$$);
SELECT pg_temp.err($$SELECT ofs.pull('shape-a', '{}')$$);
SELECT pg_temp.err($$SELECT ofs.pull('shape-a', '[1, 2]')$$);
SELECT pg_temp.err($$SELECT ofs.pull('shape-a', '"ofs1"')$$);
SELECT pg_temp.err($$SELECT ofs.pull('shape-a', '{"f": "ofs1/x/1:1:", "v": "one", "p": 1, "s": []}')$$);
SELECT pg_temp.err($$SELECT ofs.pull('shape-a', '{"f": "ofs1/x/1:1:", "v": 1, "p": 1, "s": {}}')$$);
SELECT pg_temp.err($$SELECT ofs.pull('shape-a', '{"f": "garbage", "v": 1, "p": 1, "s": []}')$$);
SELECT pg_temp.err($$SELECT ofs.pull('shape-a', NULL, 0)$$);
SELECT pg_temp.err($$SELECT ofs.pull('shape-a', NULL, NULL)$$);
-- At most 1000 changes per page, whatever max_rows asks.
CREATE TABLE shape_bulk (id int PRIMARY KEY);
GRANT SELECT ON shape_bulk TO shape_bob;
INSERT INTO shape_bulk SELECT generate_series(1, 1001);
SELECT ofs.sync_table('shape_bulk');
SELECT ofs.create_device_token('shape_bob', 'shape-x') IS NOT NULL AS ok;
SELECT ofs.subscribe('shape-x', 'shape_bulk');
SELECT jsonb_array_length(p->'changes') AS changes, p->'more' AS more, p->'snapshot' AS snapshot
  FROM ofs.pull('shape-x', NULL, 5000) p;
DROP TABLE shape_bulk;

-- A cursor of another feed (a restored database) or older than the feed
-- retains is not an error: the device gets a resnapshot of its tables, and
-- rows it holds that are no longer in scope are removed.
SELECT epoch AS old_epoch, horizon AS old_horizon FROM ofs.feed_state \gset
SELECT pg_temp.sync('shape-a', 3);
UPDATE ofs.feed_state SET epoch = 'shape000';
SELECT pg_temp.err(format('SELECT ofs_internal.cursor_parse(%L)', (SELECT cursor::jsonb->>'f' FROM shape_dev WHERE device = 'shape-a')));
UPDATE shape_items SET owner = 'shape_bob' WHERE id = 'a5';
SELECT pg_temp.sync('shape-a', 3);
SET ROLE shape_alice;
SELECT * FROM shape_compare;
RESET ROLE;
-- The same when the feed purged deletions the cursor has not seen.
DELETE FROM shape_items WHERE id = 'a4';
UPDATE ofs.feed_state SET horizon = pg_current_xact_id();
SELECT pg_temp.err(format('SELECT ofs_internal.cursor_parse(%L)', (SELECT cursor::jsonb->>'f' FROM shape_dev WHERE device = 'shape-a')));
SELECT pg_temp.sync('shape-a', 3);
SET ROLE shape_alice;
SELECT * FROM shape_compare;
RESET ROLE;
UPDATE ofs.feed_state SET epoch = :'old_epoch', horizon = :'old_horizon';
SELECT pg_temp.sync('shape-a');
SELECT pg_temp.sync('shape-b');
SET ROLE shape_bob;
SELECT * FROM shape_compare;
RESET ROLE;

-- A device never reads as a superuser.
ALTER ROLE shape_bob SUPERUSER;
SELECT pg_temp.err($$SELECT ofs.pull('shape-b', NULL)$$);
ALTER ROLE shape_bob NOSUPERUSER;

-- Every page of the whole test named only rows in the device's scope.
SELECT device, count(*) AS changes_sent, bool_and(ok) AS all_in_scope FROM shape_sent GROUP BY device ORDER BY device;

---------------------------------------------------------------------------
-- ofs.device_schema: the subscribed tables, readable by the role, with
-- their columns, types, key, merge policy and transitions, and the roles.
---------------------------------------------------------------------------
SELECT jsonb_pretty(ofs.device_schema('shape-b'));
SELECT jsonb_pretty(ofs.device_schema('shape-a'));
-- A table the role may no longer read is left out.
REVOKE SELECT ON shape_orders FROM shape_bob;
SELECT jsonb_path_query_array(ofs.device_schema('shape-b'), '$.tables[*].name') AS tables;
GRANT SELECT ON shape_orders TO shape_bob;

---------------------------------------------------------------------------
-- Clean up: the regression database is shared by the other files.
---------------------------------------------------------------------------
DROP VIEW shape_compare;
DROP TABLE shape_items, shape_orders, shape_secret, shape_plain, shape_dev, shape_held, shape_sent;
DELETE FROM ofs.transition_log WHERE table_name LIKE 'public.shape%';
DELETE FROM ofs.device WHERE device LIKE 'shape-%';
SELECT count(*) AS shapes_left FROM ofs.device_shape WHERE device LIKE 'shape-%';
SELECT count(*) AS device_rows_left FROM ofs.device_row WHERE device LIKE 'shape-%';
SELECT count(*) AS synced_left FROM ofs.synced_table WHERE tbl::text LIKE '%shape%';
DROP ROLE shape_alice, shape_bob, shape_boss;
