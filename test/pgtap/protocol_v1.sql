-- pgTAP: what protocol 1 promises of the origin (docs/PROTOCOL.md): atomic
-- groups apply all or nothing and are retried whole; a delete that deletes
-- nothing although the row exists says so; after a delete won, the
-- device's next mutation of the key is judged on its own; a clock far ahead
-- is replaced by the origin's and the device recorded; a device lists and
-- clears its own rejections; a cursor older than one confirmed is refused;
-- schema discovery lists what the role may subscribe to.
BEGIN;
SELECT plan(44);

CREATE ROLE tap_proto_role;
CREATE TABLE tap_proto_inv (id text PRIMARY KEY, total numeric NOT NULL, owner text DEFAULT 'tap_proto_role');
CREATE TABLE tap_proto_line (id text PRIMARY KEY, inv text NOT NULL REFERENCES tap_proto_inv, qty int NOT NULL);
CREATE TABLE tap_proto_other (id int PRIMARY KEY);
GRANT SELECT, INSERT, UPDATE, DELETE ON tap_proto_inv, tap_proto_line TO tap_proto_role;
GRANT SELECT ON tap_proto_other TO tap_proto_role;
ALTER TABLE tap_proto_inv ENABLE ROW LEVEL SECURITY;
CREATE POLICY mine ON tap_proto_inv USING (owner = current_user);
SELECT ofs.sync_table('tap_proto_inv');
SELECT ofs.sync_table('tap_proto_line');
SELECT ofs.sync_table('tap_proto_other');
SELECT ofs.create_device_token('tap_proto_role', 'tap-proto') IS NOT NULL;
SELECT ofs.subscribe('tap-proto', 'tap_proto_inv') IS NOT NULL;

CREATE FUNCTION pg_temp.m(op_id text, tbl text, op text, pk jsonb, data jsonb, grp text DEFAULT NULL)
RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_strip_nulls(jsonb_build_object('op_id', op_id, 'table', tbl, 'op', op, 'pk', pk, 'data', data,
                                              'hlc', ofs.hlc_now(), 'group', grp)) $$;
CREATE TEMP TABLE res AS SELECT 0 AS n, NULL::text AS operation_id, NULL::text AS status, NULL::text AS sqlstate,
                                NULL::text AS message, NULL::jsonb AS hint WITH NO DATA;
CREATE FUNCTION pg_temp.push(n int, ms jsonb) RETURNS void LANGUAGE sql AS $$
  INSERT INTO res SELECT n, r.* FROM ofs.apply_batch('tap-proto', ms) r $$;

-- An atomic group that applies.
SELECT pg_temp.push(1, jsonb_build_array(
  pg_temp.m('g1-a', 'tap_proto_inv', 'insert', '{"id": "i1"}', '{"total": "10"}', 'g1'),
  pg_temp.m('g1-b', 'tap_proto_line', 'insert', '{"id": "l1"}', '{"inv": "i1", "qty": 2}', 'g1')));
SELECT results_eq($$SELECT status FROM res WHERE n = 1 ORDER BY operation_id$$,
                  $$VALUES ('applied'), ('applied')$$, 'a group whose mutations all apply is applied');

-- A group with one rejection: nothing of it stays.
SELECT pg_temp.push(2, jsonb_build_array(
  pg_temp.m('g2-a', 'tap_proto_inv', 'insert', '{"id": "i2"}', '{"total": "20"}', 'g2'),
  pg_temp.m('g2-b', 'tap_proto_line', 'insert', '{"id": "l2"}', '{"inv": "i2"}', 'g2'),
  pg_temp.m('g2-c', 'tap_proto_line', 'insert', '{"id": "l3"}', '{"inv": "i2", "qty": 1}', 'g2'),
  pg_temp.m('solo', 'tap_proto_line', 'insert', '{"id": "l4"}', '{"inv": "i1", "qty": 4}')));
SELECT results_eq($$SELECT operation_id, status, sqlstate FROM res WHERE n = 2 ORDER BY operation_id$$,
                  $$VALUES ('g2-a', 'rejected', 'OF021'), ('g2-b', 'rejected', '23502'),
                           ('g2-c', 'rejected', 'OF021'), ('solo', 'applied', NULL)$$,
                  'one rejection rejects its whole group, each with its own sqlstate, and nothing else');
SELECT is((SELECT hint - 'row' FROM res WHERE operation_id = 'g2-a'),
          '{"kind": "group_rolled_back", "group": "g2", "failed": "g2-b"}',
          'the others are told which group and which mutation');
SELECT is((SELECT hint->>'kind' FROM res WHERE operation_id = 'g2-b'), 'not_null_violation',
          'the failing one keeps its own hint');
SELECT ok(NOT EXISTS (SELECT 1 FROM tap_proto_inv WHERE id = 'i2') AND NOT EXISTS (SELECT 1 FROM tap_proto_line WHERE id = 'l3'),
          'nothing of the rejected group was written');
SELECT ok((SELECT hint ? 'row' AND hint->'row' = 'null' FROM res WHERE operation_id = 'g2-a'),
          'the hint''s row is the origin''s row without the group (none)');
SELECT is((SELECT array_agg(operation_id ORDER BY id) FROM ofs.dead_letters WHERE device = 'tap-proto' AND grp = 'g2'),
          '{g2-a,g2-b,g2-c}', 'each mutation of the group is a dead letter, with its group');
SELECT is((SELECT status FROM ofs.applied_op WHERE device = 'tap-proto' AND operation_id = 'g2-c'), 'rejected',
          'a member that never ran is recorded as rejected (a resend is a duplicate)');
SELECT pg_temp.push(3, jsonb_build_array(
  pg_temp.m('g2-a', 'tap_proto_inv', 'insert', '{"id": "i2"}', '{"total": "20"}', 'g2'),
  pg_temp.m('g2-b', 'tap_proto_line', 'insert', '{"id": "l2"}', '{"inv": "i2"}', 'g2'),
  pg_temp.m('g2-c', 'tap_proto_line', 'insert', '{"id": "l3"}', '{"inv": "i2", "qty": 1}', 'g2')));
SELECT results_eq($$SELECT status, sqlstate FROM res WHERE n = 3 ORDER BY operation_id$$,
                  $$VALUES ('duplicate', 'OF021'), ('duplicate', '23502'), ('duplicate', 'OF021')$$,
                  'a resent group answers duplicate, with the first answers');

SELECT throws_ok($$SELECT * FROM ofs.apply_batch('tap-proto', jsonb_build_array(
  pg_temp.m('x1', 'tap_proto_other', 'insert', '{"id": 1}', '{}', 'gx'),
  pg_temp.m('x2', 'tap_proto_other', 'insert', '{"id": 2}', '{}'),
  pg_temp.m('x3', 'tap_proto_other', 'insert', '{"id": 3}', '{}', 'gx')))$$,
  '22023', NULL, 'a group whose mutations do not follow each other is refused');
SELECT throws_ok($$SELECT * FROM ofs.apply_batch('tap-proto', jsonb_build_array(
  pg_temp.m('x1', 'tap_proto_other', 'insert', '{"id": 1}', '{}', '')))$$,
  '22023', NULL, 'an empty group name is refused');

-- Retrying a group retries it whole.  The line's qty was missing: the
-- administrator gives the column a default, then retries one letter.
ALTER TABLE tap_proto_line ALTER COLUMN qty SET DEFAULT 1;
SELECT is((SELECT ofs.retry_dead_letter(id)->>'status' FROM ofs.dead_letters WHERE operation_id = 'g2-c'), 'applied',
          'retrying a letter of a group applies it');
SELECT is((SELECT count(*) FROM tap_proto_line WHERE inv = 'i2'), 2::bigint,
          '... with the rest of its group');
SELECT is((SELECT array_agg(status || ':' || (retry_result->>'status') ORDER BY id) FROM ofs.dead_letters WHERE grp = 'g2'),
          '{retried:applied,retried:applied,retried:applied}', '... and every letter of the group is retried');

-- A delete that deletes nothing says what happened.
INSERT INTO tap_proto_inv (id, total, owner) VALUES ('hidden', 5, 'somebody_else');
SELECT pg_temp.push(4, jsonb_build_array(
  pg_temp.m('del-hidden', 'tap_proto_inv', 'delete', '{"id": "hidden"}', NULL),
  pg_temp.m('del-gone', 'tap_proto_inv', 'delete', '{"id": "never-was"}', NULL)));
SELECT results_eq($$SELECT operation_id, status, sqlstate, hint::text FROM res WHERE n = 4 ORDER BY operation_id$$,
                  $$VALUES ('del-gone', 'applied', NULL, '{"kind": "nothing_deleted"}'),
                           ('del-hidden', 'applied', NULL, '{"kind": "nothing_deleted"}')$$,
                  'a delete of a row the role does not see says nothing was deleted, whether the row is gone or hidden');
SELECT ok(EXISTS (SELECT 1 FROM tap_proto_inv WHERE id = 'hidden'), '... and the hidden row is still there');
CREATE POLICY tap_proto_keep ON tap_proto_inv AS RESTRICTIVE FOR DELETE USING (total <> 42);
INSERT INTO tap_proto_inv (id, total) VALUES ('kept', 42);
SELECT pg_temp.push(41, jsonb_build_array(pg_temp.m('del-kept', 'tap_proto_inv', 'delete', '{"id": "kept"}', NULL)));
SELECT is((SELECT status || ' ' || sqlstate || ' ' || (hint->>'kind') || ' ' || (hint->'row'->>'id') FROM res WHERE n = 41),
          'rejected 42501 permission_denied kept',
          'a delete of a row the role sees but whose policies refuse it is rejected, with the row to put back');

-- After a delete won, the device's re-insert of the key is judged on its own.
SELECT pg_temp.push(5, jsonb_build_array(
  pg_temp.m('upd-gone', 'tap_proto_inv', 'update', '{"id": "gone"}', '{"total": "1"}'),
  pg_temp.m('reins', 'tap_proto_inv', 'insert', '{"id": "gone"}', '{"total": "2"}'),
  pg_temp.m('upd-after', 'tap_proto_inv', 'update', '{"id": "gone"}', '{"total": "3"}')));
SELECT results_eq($$SELECT operation_id, status, sqlstate FROM res WHERE n = 5 ORDER BY operation_id$$,
                  $$VALUES ('reins', 'applied', NULL), ('upd-after', 'applied', NULL), ('upd-gone', 'rejected', 'P0002')$$,
                  'a row_missing rejection does not hold back the key''s next mutations');
SELECT is((SELECT total FROM tap_proto_inv WHERE id = 'gone'), 3::numeric, '... which apply');
-- Other rejections still do.
SELECT pg_temp.push(6, jsonb_build_array(
  pg_temp.m('bad-total', 'tap_proto_inv', 'update', '{"id": "i1"}', '{"total": "many"}'),
  pg_temp.m('after-bad', 'tap_proto_inv', 'update', '{"id": "i1"}', '{"total": "11"}')));
SELECT results_eq($$SELECT status, sqlstate FROM res WHERE n = 6 ORDER BY operation_id$$,
                  $$VALUES ('rejected', 'OF020'), ('rejected', '22P02')$$,
                  'other rejections hold back later mutations of the row (OF020)');

-- A clock far ahead: replaced by the origin's, and the device recorded.
SELECT ok((SELECT clock_ahead IS NULL FROM ofs.devices WHERE device = 'tap-proto'), 'an honest device is not recorded');
SELECT pg_temp.push(7, jsonb_build_array(
  pg_temp.m('future', 'tap_proto_inv', 'insert', '{"id": "f1"}', '{"total": "7"}') || jsonb_build_object('hlc', ofs.hlc_now() + (600000::bigint << 16))));
SELECT is((SELECT status FROM res WHERE n = 7), 'applied', 'a write with a clock ten minutes ahead applies');
SELECT ok((SELECT hlc FROM ofs.change_log WHERE operation_id = 'future') < ofs.hlc_now(),
          '... stamped with the origin''s clock, not its own');
SELECT ok(ofs.hlc_now() < ((extract(epoch FROM clock_timestamp()) * 1000)::bigint + 5000) << 16,
          '... which it did not drag ahead');
SELECT ok((SELECT clock_ahead BETWEEN interval '9 minutes' AND interval '11 minutes' AND clock_ahead_at IS NOT NULL
             FROM ofs.devices WHERE device = 'tap-proto'), 'the device is recorded with how far ahead it ran');

-- The device's own rejections.
SELECT is((SELECT jsonb_path_query_array(r->'dead_letters', '$[*].operation_id') FROM ofs.device_rejections('tap-proto') r),
          '["g2-a", "g2-b", "g2-c", "del-kept", "upd-gone", "bad-total", "after-bad"]',
          'a device lists its dead letters not cleared (retried ones until cleared)');
SELECT ok((SELECT (r->'dead_letters') @> '[{"operation_id": "bad-total", "status": "open", "op": "update"}]'
             FROM ofs.device_rejections('tap-proto') r), '... with their status and what they were');
CREATE TEMP TABLE v AS SELECT (ofs.device_rejections('tap-proto')->>'version')::bigint AS before;
SELECT ofs.discard_dead_letter(id) FROM ofs.dead_letters WHERE operation_id = 'after-bad';
SELECT ok((ofs.device_rejections('tap-proto')->>'version')::bigint > (SELECT before FROM v),
          'closing a dead letter moves the version the device is sent');
SELECT is((SELECT r->'dead_letters' @> '[{"operation_id": "after-bad", "status": "discarded"}]'
             FROM ofs.device_rejections('tap-proto') r), true, '... and the device sees it discarded');
SELECT is((SELECT jsonb_path_query_array(r->'dead_letters', '$[*].operation_id')
             FROM ofs.device_rejections('tap-proto',
                    jsonb_build_object('dead_letters', (SELECT jsonb_agg(id) FROM ofs.dead_letters
                                                         WHERE operation_id IN ('g2-a', 'g2-b', 'g2-c', 'bad-total', 'after-bad')))) r),
          '["del-kept", "upd-gone"]', 'clearing removes closed entries and discards open ones the device gives up');
SELECT is((SELECT status || '/' || closed_by FROM ofs.dead_letters WHERE operation_id = 'bad-total'),
          'discarded/tap_proto_role', '... discarded by the device''s role');
SELECT throws_ok($$SELECT ofs.device_rejections('tap-proto', '{"dead_letters": ["1"]}')$$, '22023', NULL,
                 'clearing takes integer ids only');

-- A cursor older than one the device confirmed.
CREATE TEMP TABLE c AS SELECT ofs.pull('tap-proto', NULL, 1)->>'cursor' AS c1;
ALTER TABLE c ADD COLUMN c2 text;
UPDATE c SET c2 = ofs.pull('tap-proto', c1, 1)->>'cursor';
SELECT lives_ok($$SELECT ofs.pull('tap-proto', (SELECT c1 FROM c), 1)$$,
                'pulling again from the cursor last sent is safe');
SELECT ofs.pull('tap-proto', (SELECT c2 FROM c), 1) IS NOT NULL;
SELECT throws_ok($$SELECT ofs.pull('tap-proto', (SELECT c1 FROM c), 1)$$, 'OF011', NULL,
                 'a cursor older than one the device confirmed is refused');
SELECT ofs.unsubscribe('tap-proto', 'tap_proto_inv') IS NOT NULL;
UPDATE c SET c1 = ofs.pull('tap-proto', NULL, 1)->>'cursor';
SELECT lives_ok($$SELECT ofs.pull('tap-proto', (SELECT c1 FROM c), 1)$$,
                'starting afresh, even with nothing to send, gives a cursor the device may go on from');

-- A group waits only for what came before it, not for the device's later
-- mutations of its rows; discarding one of a group discards the group; a
-- member that was rejected before fails its group again.
SELECT pg_temp.push(9, jsonb_build_array(
  pg_temp.m('g3-a', 'tap_proto_inv', 'update', '{"id": "i1"}', '{"total": "30"}', 'g3'),
  pg_temp.m('g3-b', 'tap_proto_line', 'insert', '{"id": "l9"}', '{"inv": "nope", "qty": 1}', 'g3'),
  pg_temp.m('g3-later', 'tap_proto_inv', 'update', '{"id": "i1"}', '{"total": "31"}')));
SELECT is((SELECT string_agg(status || ':' || sqlstate, ' ' ORDER BY operation_id) FROM res WHERE n = 9),
          'rejected:OF021 rejected:23503 rejected:OF020', 'a failed group holds back the device''s later mutation of its row');
INSERT INTO tap_proto_inv (id, total) VALUES ('nope', 1);
SELECT is((SELECT ofs.retry_dead_letter(id)->>'status' FROM ofs.dead_letters WHERE operation_id = 'g3-a' AND status = 'open'),
          'applied', 'retrying the group does not wait for the later mutation');
SELECT is((SELECT total FROM tap_proto_inv WHERE id = 'i1'), 30::numeric, '... and applies it whole');
SELECT pg_temp.push(10, jsonb_build_array(
  pg_temp.m('g4-a', 'tap_proto_inv', 'insert', '{"id": "h1"}', '{"total": "1"}', 'g4'),
  pg_temp.m('g4-b', 'tap_proto_line', 'insert', '{"id": "hl"}', '{"inv": "h1", "qty": 1}', 'g4'),
  pg_temp.m('g4-c', 'tap_proto_line', 'insert', '{"id": "hf"}', '{"inv": "nope2", "qty": 1}', 'g4')));
SELECT ofs.discard_dead_letter(id) FROM ofs.dead_letters WHERE operation_id = 'g4-b' AND status = 'open';
SELECT is((SELECT string_agg(status, ' ' ORDER BY id) FROM ofs.dead_letters WHERE grp = 'g4'), 'discarded discarded discarded',
          'discarding one dead letter of a group discards the group');
SELECT pg_temp.push(11, jsonb_build_array(
  pg_temp.m('g5-new', 'tap_proto_inv', 'insert', '{"id": "q1"}', '{"total": "1"}', 'g5'),
  pg_temp.m('g4-c', 'tap_proto_line', 'insert', '{"id": "hf"}', '{"inv": "nope2", "qty": 1}', 'g5')));
SELECT is((SELECT string_agg(status || ':' || coalesce(sqlstate, ''), ' ' ORDER BY operation_id) FROM res WHERE n = 11),
          'duplicate:23503 rejected:OF021', 'a member rejected before fails its group again');
SELECT ok(NOT EXISTS (SELECT 1 FROM tap_proto_inv WHERE id = 'q1'), '... which writes nothing');

-- A long list comes a hundred at a time.
SELECT pg_temp.push(8, (SELECT jsonb_agg(pg_temp.m('nx-' || g, 'tap_proto_inv', 'update', jsonb_build_object('id', 'nx-' || g), '{"total": "1"}'))
                          FROM generate_series(1, 120) g));
SELECT is((SELECT jsonb_array_length(r->'dead_letters') FROM ofs.device_rejections('tap-proto') r), 100,
          'the device''s rejections are listed a hundred at most');
SELECT is((SELECT r->'more' FROM ofs.device_rejections('tap-proto') r), 'true'::jsonb, '... with more when there are others');

-- Discovery.
SELECT ofs.subscribe('tap-proto', 'tap_proto_inv') IS NOT NULL;
SELECT is((SELECT jsonb_agg(t->>'name' || ':' || (t->>'subscribed') ORDER BY t->>'name')
             FROM jsonb_array_elements(ofs.device_schema('tap-proto', true)->'tables') t),
          '["public.tap_proto_inv:true", "public.tap_proto_line:false", "public.tap_proto_other:false"]',
          'schema with all lists every table the role may read, and which are subscribed');

SELECT * FROM finish();
ROLLBACK;
