-- pgTAP: the pull engine's states (src/pull.c): a fresh device's snapshot
-- records each row it sends once; a key in the way of such a snapshot does
-- not stop it; confirming a page writes nothing; a page that never arrived
-- is forgotten and sent again; the feed's cursors are made and read in C;
-- ofs_internal.pull_live answers per device.
BEGIN;
SELECT plan(16);

CREATE ROLE tap_pull_role;
CREATE TABLE tap_pull_items (id int PRIMARY KEY, body text);
GRANT SELECT ON tap_pull_items TO tap_pull_role;
INSERT INTO tap_pull_items SELECT g, 'item ' || g FROM generate_series(1, 25) g;
SELECT ofs.sync_table('tap_pull_items');
SELECT ofs.create_device_token('tap_pull_role', 'tap-pull-a') IS NOT NULL;
SELECT ofs.create_device_token('tap_pull_role', 'tap-pull-b') IS NOT NULL;
SELECT ofs.subscribe('tap-pull-a', 'tap_pull_items') IS NOT NULL;
SELECT ofs.subscribe('tap-pull-b', 'tap_pull_items') IS NOT NULL;

CREATE TEMP TABLE pages (device text, n int, answer jsonb);
INSERT INTO pages SELECT 'tap-pull-a', 1, ofs.pull('tap-pull-a', NULL, 10);
SELECT is(jsonb_array_length((SELECT answer FROM pages WHERE n = 1)->'changes'), 10,
          'a fresh device gets a page of its snapshot');
SELECT ok(((SELECT answer FROM pages WHERE n = 1)->>'cursor')::jsonb->'s'->0 @> '{"fresh": true, "d": 10, "n": 25}',
          'the cursor says the snapshot began with nothing held, and how far it is');
SELECT is((SELECT count(*) FROM ofs.device_row WHERE device = 'tap-pull-a' AND sent_page = 1), 10::bigint,
          'the rows of the page are held, with the page that sent them');

INSERT INTO pages SELECT 'tap-pull-a', 2, ofs.pull('tap-pull-a', (SELECT answer->>'cursor' FROM pages WHERE n = 1), 10);
SELECT is((SELECT count(*) FROM ofs.device_row WHERE device = 'tap-pull-a' AND sent_page = 1), 10::bigint,
          'confirming a page rewrites none of its rows');
SELECT results_eq(
  $$SELECT (e->'pk'->>'id')::int FROM pages, jsonb_array_elements(answer->'changes') e WHERE n = 2$$,
  $$SELECT generate_series(11, 20)$$,
  'the next page goes on after the last key');

-- The device did not get page 2: it pulls from page 1's cursor again.
INSERT INTO pages SELECT 'tap-pull-a', 3, ofs.pull('tap-pull-a', (SELECT answer->>'cursor' FROM pages WHERE n = 1), 10);
SELECT results_eq(
  $$SELECT (e->'pk'->>'id')::int FROM pages, jsonb_array_elements(answer->'changes') e WHERE n = 3$$,
  $$SELECT generate_series(11, 20)$$,
  'a page that never arrived is sent again');
SELECT is((SELECT count(*) FROM ofs.device_row WHERE device = 'tap-pull-a' AND sent_page = 2), 0::bigint,
          '... and its rows are no longer taken as held');
SELECT is((SELECT count(*) FROM ofs.device_row WHERE device = 'tap-pull-a' AND sent_page = 3), 10::bigint,
          '... the page that carried them again holds them');

-- A key already held in the way of a fresh snapshot's page.
INSERT INTO pages SELECT 'tap-pull-b', 1, ofs.pull('tap-pull-b', NULL, 10);
INSERT INTO ofs.device_row (device, tbl, pk, gen, sent_page)
VALUES ('tap-pull-b', 'tap_pull_items'::regclass, '{"id": 15}', 0, NULL);
INSERT INTO pages SELECT 'tap-pull-b', 2, ofs.pull('tap-pull-b', (SELECT answer->>'cursor' FROM pages WHERE device = 'tap-pull-b' AND n = 1), 10);
SELECT is(jsonb_array_length((SELECT answer FROM pages WHERE device = 'tap-pull-b' AND n = 2)->'changes'), 10,
          'a held key in the way of a fresh snapshot does not stop it');
SELECT is((SELECT count(*) FROM ofs.device_row WHERE device = 'tap-pull-b' AND gen = 0), 0::bigint,
          '... the key is recorded as sent by the snapshot');
SELECT ok(NOT (((SELECT answer->>'cursor' FROM pages WHERE device = 'tap-pull-b' AND n = 2)::jsonb->'s'->0) ? 'fresh'),
          '... and the rest of the snapshot upserts');

-- The feed's cursors.
SELECT is((SELECT c::text FROM ofs_internal.cursor_parse(ofs.feed_cursor())), ofs_internal.snapshot_text(pg_current_snapshot()),
          'a cursor of the present reads back as the present snapshot');
SELECT ok(ofs_internal.snapshot_text(pg_current_snapshot()) LIKE '%' || pg_current_xact_id()::text || '%',
          'a snapshot written by a transaction with an xid counts that xid as running');
SELECT throws_ok($$SELECT ofs.pull('tap-pull-a', '{"f": "x", "v": 1, "p": "1.5", "s": []}')$$, '22023',
                 'invalid pull cursor', 'a cursor with a number that is not whole is refused');

-- ofs_internal.pull_live: a device that may not pull gets its error, others their page.
SELECT ofs.revoke_device('tap-pull-b');
SELECT is((SELECT result->>'sqlstate' FROM ofs_internal.pull_live(ARRAY['tap-pull-b'], ARRAY[NULL::text], ARRAY[NULL::text]) WHERE ord = 1),
          '28000', 'pull_live answers a revoked device with its error');
SELECT is((SELECT jsonb_array_length(result->'changes') FROM ofs_internal.pull_live(ARRAY['tap-pull-b', 'tap-pull-a'],
             ARRAY[NULL, (SELECT answer->>'cursor' FROM pages WHERE device = 'tap-pull-a' AND n = 3)],
             ARRAY[NULL::text, NULL]) WHERE ord = 2),
          5, 'pull_live pulls the snapshot of the other device on');

SELECT * FROM finish();
ROLLBACK;
