-- Sync registration and the changes feed.

CREATE FUNCTION pg_temp.err(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
  EXECUTE sql;
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                          det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
  RETURN st || ': ' || msg || coalesce(E'\nDETAIL: ' || nullif(det, ''), '')
            || coalesce(E'\nHINT: ' || nullif(hnt, ''), '');
END $$;

-- read_all(cursor): follow the feed from a cursor in pages of 2 until it is
-- exhausted; the changes, and the last cursor in pg_temp.last_cursor.
CREATE TABLE pg_temp.last_cursor (c text);
INSERT INTO pg_temp.last_cursor VALUES (NULL);
CREATE FUNCTION pg_temp.read_all()
RETURNS TABLE (table_name text, pk jsonb, op text, data jsonb, changed_columns text[])
LANGUAGE plpgsql AS $$
DECLARE cur text; r record; n int;
BEGIN
  SELECT c INTO cur FROM pg_temp.last_cursor;
  LOOP
    n := 0;
    FOR r IN SELECT * FROM ofs.changes(cur, 2) LOOP
      table_name := r.table_name; pk := r.pk; op := r.op; data := r.data;
      changed_columns := r.changed_columns;
      RETURN NEXT;
      cur := r.cursor; n := n + 1;
    END LOOP;
    EXIT WHEN n = 0;
  END LOOP;
  UPDATE pg_temp.last_cursor SET c = cur;
END $$;

-- Every type users keep in invoices round-trips exactly.
CREATE TABLE things (
  id int PRIMARY KEY,
  small smallint, big bigint, price numeric, ratio double precision,
  label text, ref uuid, paid boolean, due date, at timestamptz, doc jsonb, raw bytea
);
INSERT INTO things VALUES
  (1, -32768, 9223372036854775807, 12345678901234567890.123456789012, 0.1,
   E'caf\u00e9 "quoted" \\ back\nline', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true,
   '2026-02-28', '2026-04-17 09:30:00.123456+02', '{"a": [1, 2.50, "x"], "b": null}', '\x00ff10'),
  (2, NULL, NULL, 'NaN', 'Infinity', '', NULL, false, '0001-01-01 BC', '-infinity', 'null', ''),
  (3, 0, 0, 0.000, -0.0, NULL, NULL, NULL, NULL, NULL, NULL, NULL);

-- Registering a table puts the rows it holds into the feed.
SELECT ofs.sync_table('things');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'things'::regclass ORDER BY 1;
SELECT table_name, pk, op, data FROM pg_temp.read_all() ORDER BY pk->>'id';
-- ... and the JSON reads back into the same rows, value for value (each
-- string through its type's input; json travels as a string too).
CREATE FUNCTION pg_temp.thing(data jsonb) RETURNS things LANGUAGE sql AS $$
  SELECT (r).id, (r).small, (r).big, (r).price, (r).ratio, (r).label, (r).ref, (r).paid,
         (r).due, (r).at, (data->>'doc')::jsonb, (r).raw
    FROM (SELECT jsonb_populate_record(NULL::things, data - 'doc') AS r) x
$$;
SELECT t.id, pg_temp.thing(c.data) = t AS same_row, pg_temp.thing(c.data) IS NOT DISTINCT FROM t AS same_nulls
  FROM ofs.changes() c JOIN things t ON t.id = (c.pk->>'id')::int ORDER BY 1;
SET TimeZone = 'America/New_York';
SET DateStyle = 'SQL, DMY';
SET bytea_output = 'escape';
UPDATE things SET at = at + interval '1 hour', raw = '\x01' WHERE id = 1;
SELECT data->'at' AS at_in_utc, data->'due' AS due_iso, data->'raw' AS raw_hex
  FROM pg_temp.read_all();
RESET TimeZone; RESET DateStyle; RESET bytea_output;

-- Inserts, updates (only changed columns named), no-op updates (nothing),
-- deletes, key changes (a delete and an insert), COPY: all captured.
INSERT INTO things (id, label) VALUES (4, 'four');
UPDATE things SET label = 'four', paid = NULL WHERE id = 4;
UPDATE things SET label = 'FOUR', paid = true WHERE id = 4;
UPDATE things SET id = 5 WHERE id = 4;
DELETE FROM things WHERE id = 3;
COPY things (id, label) FROM stdin;
6	copied
\.
SELECT table_name, pk, op, data->>'label' AS label, changed_columns FROM pg_temp.read_all();

-- Rolled-back work is never captured, neither whole nor in a savepoint.
BEGIN;
INSERT INTO things (id, label) VALUES (7, 'rolled back');
ROLLBACK;
BEGIN;
INSERT INTO things (id, label) VALUES (8, 'kept');
SAVEPOINT s;
UPDATE things SET label = 'undone' WHERE id = 8;
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT pk, op, data->>'label' AS label FROM pg_temp.read_all();

-- A reader inside a writing transaction does not see its own uncommitted
-- changes, and sees them after commit by following its cursor.
BEGIN;
INSERT INTO things (id, label) VALUES (9, 'mine');
SELECT count(*) AS own_uncommitted_seen FROM pg_temp.read_all();
COMMIT;
SELECT pk, op FROM pg_temp.read_all();

-- Commits that captured changes are counted (the sync worker's wake-up);
-- rollbacks are not.
SELECT ofs.feed_commits() AS before \gset
INSERT INTO things (id) VALUES (10);
BEGIN; INSERT INTO things (id) VALUES (11); ROLLBACK;
SELECT ofs.feed_commits() - :before AS commits_counted;

-- The HLC only grows.
SELECT ofs.hlc_now() < ofs.hlc_now() AS hlc_grows,
       ofs.hlc_now() >> 16 BETWEEN extract(epoch FROM now())::bigint * 1000 - 60000
                               AND extract(epoch FROM now())::bigint * 1000 + 60000 AS hlc_is_wall_ms;

-- TRUNCATE of a synced table is refused.
SELECT pg_temp.err('TRUNCATE things');

-- Compaction: superseded entries go, the newest entry of each row stays
-- with the column versions folded in; a reader from scratch still gets
-- exactly the table.
UPDATE things SET label = 'one' WHERE id = 1;
UPDATE things SET paid = false WHERE id = 1;
SELECT count(*) AS entries_before FROM ofs.change_log;
SELECT superseded, purged FROM ofs.compact_changes();
SELECT op, changed, (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(versions) k) AS folded_columns
  FROM ofs.change_log WHERE pk = '{"id": 1}';
SELECT (SELECT count(*) FROM ofs.changes() WHERE op <> 'delete') = (SELECT count(*) FROM things) AS same_count,
       NOT EXISTS (SELECT (pg_temp.thing(data)).* FROM ofs.changes() WHERE op <> 'delete'
                   EXCEPT SELECT * FROM things) AS same_rows;

-- Retention: deleted rows older than the retention are purged, and a cursor
-- that had not seen them must re-snapshot.
UPDATE pg_temp.last_cursor SET c = ofs.feed_cursor();
SELECT c AS old_cursor FROM pg_temp.last_cursor \gset
DELETE FROM things WHERE id = 10;
SELECT superseded, purged FROM ofs.compact_changes('7 days');
SELECT superseded, purged FROM ofs.compact_changes('0');
SELECT regexp_replace(pg_temp.err(format('SELECT * FROM ofs.changes(%L)', :'old_cursor')),
                      'before \d+ were purged from the feed at [^\n]*\.', 'before N were purged from the feed at T.');
SELECT count(*) AS from_fresh_cursor FROM ofs.changes(ofs.feed_cursor());

-- Bad cursors and arguments.
SELECT pg_temp.err($$SELECT * FROM ofs.changes('garbage')$$);
SELECT regexp_replace(pg_temp.err($$SELECT * FROM ofs.changes('ofs1/00000000/1:1:')$$),
                      'is [0-9a-f]{8}', 'is XXXXXXXX');
SELECT regexp_replace(pg_temp.err(format('SELECT * FROM ofs.changes(%L)', 'ofs1/' || (SELECT epoch FROM ofs.feed_state) || '/9:3:')),
                      'ofs1/[0-9a-f]{8}/', 'ofs1/XXXXXXXX/');
SELECT regexp_replace(pg_temp.err(format('SELECT * FROM ofs.changes(%L)', 'ofs1/' || (SELECT epoch FROM ofs.feed_state) || '/1:1:/1:1:/x')),
                      'ofs1/[0-9a-f]{8}/', 'ofs1/XXXXXXXX/');
SELECT pg_temp.err($$SELECT * FROM ofs.changes(NULL, 0)$$);
SELECT pg_temp.err($$SELECT * FROM ofs.compact_changes('-1 day')$$);

-- A cursor that stopped inside a batch whose rest was compacted away goes
-- on with the next batch instead of stalling.
UPDATE pg_temp.last_cursor SET c = ofs.feed_cursor();
INSERT INTO things (id, label) VALUES (21, 'a'), (22, 'b');
UPDATE pg_temp.last_cursor SET c = (SELECT cursor FROM ofs.changes(
  (SELECT c FROM pg_temp.last_cursor), 1));
UPDATE things SET label = 'b2' WHERE id = 22;
SELECT superseded > 0 AS compacted FROM ofs.compact_changes();
SELECT pk, op, data->>'label' AS label FROM pg_temp.read_all();
-- Two compactions in one transaction, and the largest page size.
BEGIN;
SELECT count(*) >= 0 AS ok FROM ofs.compact_changes();
SELECT count(*) >= 0 AS ok FROM ofs.compact_changes();
COMMIT;
SELECT count(*) > 0 AS largest_page_ok FROM ofs.changes(NULL, 2147483647);

-- Registration errors.
CREATE TABLE no_key (a int);
CREATE VIEW things_view AS SELECT * FROM things;
CREATE TABLE orders (id int PRIMARY KEY, qty int, note text, total numeric);
SELECT pg_temp.err($$SELECT ofs.sync_table('no_key')$$);
SELECT pg_temp.err($$SELECT ofs.sync_table('things_view')$$);
SELECT pg_temp.err($$SELECT ofs.sync_table(NULL)$$);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pg_temp.err($$SELECT ofs.sync_table('orders')$$);
ROLLBACK;
SELECT pg_temp.err($$SELECT ofs.sync_table('orders', '["qty"]')$$);
SELECT pg_temp.err($$SELECT ofs.sync_table('orders', '{"nosuch": "lww"}')$$);
SELECT pg_temp.err($$SELECT ofs.sync_table('orders', '{"qty": "sum"}')$$);
SELECT pg_temp.err($$SELECT ofs.sync_table('orders', '{"qty": 1}')$$);
SELECT pg_temp.err($$SELECT ofs.sync_table('orders', '{"note": "counter"}')$$);
SELECT pg_temp.err($$SELECT ofs.sync_table('orders', '{"id": "manual"}')$$);
SELECT count(*) AS orders_synced FROM ofs.synced_table WHERE tbl = 'orders'::regclass;
SELECT ofs.sync_table('orders', '{"qty": "counter", "note": "manual", "total": "lww"}');
SELECT ofs.sync_table('orders', '{"qty": "counter"}');
SELECT tbl, merge FROM ofs.synced_table ORDER BY tbl::text;
SELECT pg_temp.err($$SELECT ofs.unsync_table('no_key')$$);

-- Unsyncing removes the triggers and the table's entries.
INSERT INTO orders VALUES (1, 2, 'x', 3);
SELECT ofs.unsync_table('orders');
SELECT count(*) AS orders_entries FROM ofs.change_log WHERE tbl = 'orders'::regclass;
SELECT count(*) AS orders_triggers FROM pg_trigger WHERE tgrelid = 'orders'::regclass;
TRUNCATE orders;

-- Rebuilding the feed (after a restore): a new epoch, old cursors refused,
-- every synced row captured again.
SELECT ofs.feed_cursor() AS before_rebuild \gset
SELECT ofs.rebuild_feed() = (SELECT count(*) FROM things) AS captured_all;
SELECT regexp_replace(pg_temp.err(format('SELECT * FROM ofs.changes(%L)', :'before_rebuild')),
                      '[0-9a-f]{8}', 'XXXXXXXX', 'g');

-- Only administrators read the raw feed.
CREATE ROLE feed_reader;
SET ROLE feed_reader;
SELECT pg_temp.err($$SELECT * FROM ofs.changes()$$);
SELECT pg_temp.err($$SELECT ofs.sync_table('things')$$);
RESET ROLE;
DROP ROLE feed_reader;
-- Ordinary roles drop their own tables (the cleanup of ofs's rules and
-- registrations runs as ofs's owner).
-- A table owner granted the functions syncs and constrains their own table;
-- ofs's owner attaches the triggers, whose functions are not for PUBLIC.
CREATE ROLE feed_owner;
GRANT CREATE ON SCHEMA public TO feed_owner;
GRANT EXECUTE ON FUNCTION ofs.sync_table(regclass, jsonb), ofs.unsync_table(regclass),
  ofs.add_transition_constraint(regclass, text, name, text, text[]) TO feed_owner;
SET ROLE feed_owner;
CREATE TABLE owned (id int PRIMARY KEY, a int, state text NOT NULL DEFAULT 'new');
SELECT ofs.sync_table('owned');
SELECT ofs.add_transition_constraint('owned', 'flow', 'state', $$'new' -> 'done'$$);
INSERT INTO owned VALUES (1, 1);
UPDATE owned SET state = 'done';
SELECT pg_temp.err($$CREATE TRIGGER mine AFTER INSERT ON owned FOR EACH ROW EXECUTE FUNCTION ofs_internal.capture_trigger()$$);
ALTER TABLE owned DROP COLUMN a;
DROP TABLE owned;
RESET ROLE;
SELECT count(*) AS owned_entries_left FROM ofs.change_log l
 WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = l.tbl);
DELETE FROM ofs.transition_log WHERE table_name = 'public.owned';
REVOKE EXECUTE ON FUNCTION ofs.sync_table(regclass, jsonb), ofs.unsync_table(regclass),
  ofs.add_transition_constraint(regclass, text, name, text, text[]) FROM feed_owner;
REVOKE CREATE ON SCHEMA public FROM feed_owner;
DROP ROLE feed_owner;
DROP VIEW things_view;
DROP TABLE no_key, orders;
SELECT ofs.unsync_table('things');
DROP FUNCTION pg_temp.thing(jsonb);
DROP TABLE things;
