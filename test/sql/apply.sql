-- The write path: devices, ofs.apply_batch, merge policies, dead letters,
-- conflicts and compensation hints.

CREATE FUNCTION pg_temp.err(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text; hnt text;
BEGIN
  EXECUTE sql;
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hnt = PG_EXCEPTION_HINT;
  RETURN st || ': ' || msg || coalesce(E'\nHINT: ' || nullif(hnt, ''), '');
END $$;

CREATE ROLE ap_rep;
CREATE ROLE ap_rep2;
CREATE ROLE ap_manager;
CREATE TABLE customers (id text PRIMARY KEY, name text NOT NULL);
INSERT INTO customers VALUES ('cust-1', 'Ada'), ('cust-2', 'Bob');
CREATE TABLE invoices (
  id text PRIMARY KEY,
  invoice_number text NOT NULL UNIQUE,
  customer_id text NOT NULL REFERENCES customers,
  owner name NOT NULL DEFAULT current_user,
  status text NOT NULL DEFAULT 'draft',
  amount numeric(12,2) NOT NULL CHECK (amount >= 0),
  qty int NOT NULL DEFAULT 0,
  notes text,
  extra jsonb
);
GRANT SELECT ON customers TO ap_rep, ap_rep2, ap_manager;
GRANT SELECT, INSERT, UPDATE, DELETE ON invoices TO ap_rep, ap_rep2, ap_manager;
-- Row-level security: a rep sees and changes only their own invoices.
ALTER TABLE invoices ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON invoices USING (owner = current_user OR pg_has_role('ap_manager', 'member'))
  WITH CHECK (owner = current_user OR pg_has_role('ap_manager', 'member'));
SELECT ofs.sync_table('invoices', '{"qty": "counter", "notes": "manual"}');
SELECT ofs.add_transition_constraint('invoices', 'invoice_flow', 'status',
  $$'draft' -> 'submitted', 'submitted' -> 'approved' BY ROLE 'ap_manager', 'submitted' -> 'draft'$$,
  ARRAY['draft']);
SELECT ofs.add_transition_check('invoices', 'official_number_required',
  $$NEW.status <> 'approved' OR NEW.invoice_number NOT LIKE 'DRAFT-%'$$);
-- Origin logic: a submitted draft gets its official number.
SELECT ofs.create_gapless_sequence('ap_inv', 'INV-{n:4}');
CREATE FUNCTION number_on_submit() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  IF NEW.status = 'submitted' AND NEW.invoice_number LIKE 'DRAFT-%' THEN
    NEW.invoice_number := ofs.gapless_next('ap_inv');
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER number_on_submit BEFORE UPDATE ON invoices FOR EACH ROW EXECUTE FUNCTION number_on_submit();

-- Devices.
SELECT length(ofs.create_device_token('ap_rep', 'tablet-1')) AS token_length,
       ofs.create_device_token('ap_rep', 'tablet-1') <> ofs.create_device_token('ap_rep', 'tablet-1') AS tokens_differ;
SELECT length(ofs.create_device_token('ap_rep2', 'tablet-2', '1 day')) > 0 AS ok;
SELECT length(ofs.create_device_token('ap_manager', 'desk-1')) > 0 AS ok;
SELECT device, role, status, expires_at IS NOT NULL AS expires FROM ofs.devices ORDER BY device;
SELECT count(*) AS tokens_stored_in_clear FROM ofs.device WHERE token_sha256::text LIKE '%ofs_%';
SELECT pg_temp.err($$SELECT ofs.create_device_token('nobody', 'x')$$);
SELECT pg_temp.err($$SELECT ofs.create_device_token('postgres', 'x')$$);
SELECT pg_temp.err($$SELECT ofs.create_device_token('ap_rep', 'origin')$$);
SELECT pg_temp.err($$SELECT ofs.create_device_token('ap_rep', 'x', '-1 day')$$);
SELECT pg_temp.err($$SELECT * FROM ofs.apply_batch('nosuch', '[]')$$);
SELECT pg_temp.err($$SELECT * FROM ofs.apply_batch('tablet-1', '{}')$$);

SELECT ofs.hlc_now() AS h \gset

-- Insert, update, and the origin's trigger assigning the official number.
SELECT * FROM ofs.apply_batch('tablet-1', jsonb_build_array(
  jsonb_build_object('op_id', 'op-1', 'table', 'public.invoices', 'op', 'insert', 'pk', '{"id": "inv-a"}'::jsonb,
    'data', '{"invoice_number": "DRAFT-01JXQ3", "customer_id": "cust-1", "amount": "750.00", "qty": 1, "extra": "{\"tags\": [1]}"}'::jsonb, 'hlc', :h + 1),
  jsonb_build_object('op_id', 'op-2', 'table', 'public.invoices', 'op', 'update', 'pk', '{"id": "inv-a"}'::jsonb,
    'data', '{"status": "submitted"}'::jsonb, 'base', '{"status": "draft"}'::jsonb, 'hlc', :h + 2)));
SELECT id, invoice_number, owner, status, amount, qty, extra FROM invoices;
-- The replaced number flows back through the feed, attributed to the intent.
SELECT op, data->>'invoice_number' AS number, device, operation_id, changed_columns
  FROM ofs.changes() WHERE pk = '{"id": "inv-a"}';
SELECT from_state, to_state, role, device, operation_id FROM ofs.transition_log ORDER BY id;

-- A whole batch re-sent after a lost acknowledgement changes nothing.
SELECT operation_id, status FROM ofs.apply_batch('tablet-1', jsonb_build_array(
  jsonb_build_object('op_id', 'op-1', 'table', 'public.invoices', 'op', 'insert', 'pk', '{"id": "inv-a"}'::jsonb,
    'data', '{"invoice_number": "DRAFT-01JXQ3", "customer_id": "cust-1", "amount": "750.00"}'::jsonb, 'hlc', :h + 1),
  jsonb_build_object('op_id', 'op-2', 'table', 'public.invoices', 'op', 'update', 'pk', '{"id": "inv-a"}'::jsonb,
    'data', '{"status": "submitted"}'::jsonb, 'hlc', :h + 2)));
SELECT count(*) AS feed_entries_for_inv_a FROM ofs.change_log WHERE pk = '{"id": "inv-a"}';

-- Role guard: a rep may not approve.  Rejected with a compensation hint
-- (the origin's row, allowed next states, the role required).
SELECT operation_id, status, sqlstate, hint FROM ofs.apply_batch('tablet-1', jsonb_build_array(
  jsonb_build_object('op_id', 'op-3', 'table', 'public.invoices', 'op', 'update', 'pk', '{"id": "inv-a"}'::jsonb,
    'data', '{"status": "approved"}'::jsonb, 'base', '{"status": "submitted"}'::jsonb, 'hlc', :h + 3),
  -- a later mutation of the same row is rejected as dependent
  jsonb_build_object('op_id', 'op-4', 'table', 'public.invoices', 'op', 'update', 'pk', '{"id": "inv-a"}'::jsonb,
    'data', '{"amount": "800.00"}'::jsonb, 'hlc', :h + 4)));
SELECT id, operation_id, sqlstate, status FROM ofs.dead_letters ORDER BY id;
-- After the rep is made a manager, the dead letter is retried and applies;
-- the dependent one is retried too.
GRANT ap_manager TO ap_rep;
SELECT r->>'status' AS retried FROM ofs.retry_dead_letter(1) r;
SELECT r->>'status' AS retried FROM ofs.retry_dead_letter(2) r;
SELECT status, amount FROM invoices WHERE id = 'inv-a';
SELECT id, status, closed_by IS NOT NULL AS audited, retry_result->>'status' AS retry FROM ofs.dead_letters ORDER BY id;
REVOKE ap_manager FROM ap_rep;
SELECT pg_temp.err($$SELECT ofs.retry_dead_letter(1)$$);

-- Every kind of rejection, each with its hint.
SELECT operation_id, status, sqlstate, hint->>'kind' AS kind, hint->'allowed_next' AS allowed_next
  FROM ofs.apply_batch('tablet-1', jsonb_build_array(
  jsonb_build_object('op_id', 'k-transition', 'table', 'public.invoices', 'op', 'update', 'pk', '{"id": "inv-a"}'::jsonb,
    'data', '{"status": "draft"}'::jsonb, 'hlc', :h + 5),
  jsonb_build_object('op_id', 'k-initial', 'table', 'public.invoices', 'op', 'insert', 'pk', '{"id": "inv-b"}'::jsonb,
    'data', '{"invoice_number": "DRAFT-B", "customer_id": "cust-1", "amount": "1", "status": "approved"}'::jsonb, 'hlc', :h + 5),
  jsonb_build_object('op_id', 'k-unique', 'table', 'public.invoices', 'op', 'insert', 'pk', '{"id": "inv-c"}'::jsonb,
    'data', '{"invoice_number": "INV-0001", "customer_id": "cust-1", "amount": "1"}'::jsonb, 'hlc', :h + 5),
  jsonb_build_object('op_id', 'k-fk', 'table', 'public.invoices', 'op', 'insert', 'pk', '{"id": "inv-d"}'::jsonb,
    'data', '{"invoice_number": "DRAFT-D", "customer_id": "cust-9", "amount": "1"}'::jsonb, 'hlc', :h + 5),
  jsonb_build_object('op_id', 'k-check', 'table', 'public.invoices', 'op', 'insert', 'pk', '{"id": "inv-e"}'::jsonb,
    'data', '{"invoice_number": "DRAFT-E", "customer_id": "cust-1", "amount": "-1"}'::jsonb, 'hlc', :h + 5),
  jsonb_build_object('op_id', 'k-notnull', 'table', 'public.invoices', 'op', 'insert', 'pk', '{"id": "inv-f"}'::jsonb,
    'data', '{"invoice_number": "DRAFT-F", "amount": "1"}'::jsonb, 'hlc', :h + 5),
  jsonb_build_object('op_id', 'k-rls', 'table', 'public.invoices', 'op', 'insert', 'pk', '{"id": "inv-g"}'::jsonb,
    'data', '{"invoice_number": "DRAFT-G", "customer_id": "cust-1", "amount": "1", "owner": "ap_rep2"}'::jsonb, 'hlc', :h + 5),
  jsonb_build_object('op_id', 'k-value', 'table', 'public.invoices', 'op', 'insert', 'pk', '{"id": "inv-h"}'::jsonb,
    'data', '{"invoice_number": "DRAFT-H", "customer_id": "cust-1", "amount": "lots"}'::jsonb, 'hlc', :h + 5),
  jsonb_build_object('op_id', 'k-column', 'table', 'public.invoices', 'op', 'update', 'pk', '{"id": "inv-a"}'::jsonb,
    'data', '{"nosuch": 1}'::jsonb, 'hlc', :h + 5),
  jsonb_build_object('op_id', 'k-table', 'table', 'public.nosuch', 'op', 'update', 'pk', '{"id": "inv-a"}'::jsonb,
    'data', '{}'::jsonb, 'hlc', :h + 5),
  jsonb_build_object('op_id', 'k-op', 'table', 'public.invoices', 'op', 'upsert', 'pk', '{"id": "inv-a"}'::jsonb, 'hlc', :h + 5),
  jsonb_build_object('op_id', 'k-hlc', 'table', 'public.invoices', 'op', 'update', 'pk', '{"id": "inv-a"}'::jsonb,
    'data', '{"amount": "1"}'::jsonb),
  jsonb_build_object('op_id', 'k-key', 'table', 'public.invoices', 'op', 'update', 'pk', '{"nope": 1}'::jsonb,
    'data', '{"amount": "1"}'::jsonb, 'hlc', :h + 5),
  jsonb_build_object('op_id', '', 'op', 'insert'),
  '"not an object"'::jsonb));
-- A transition check judges the final row (as the manager's desk).
SELECT operation_id, status, sqlstate, hint->>'kind' AS kind, hint->>'constraint' AS check_name
  FROM ofs.apply_batch('desk-1', jsonb_build_array(
  jsonb_build_object('op_id', 'k-check-transition', 'table', 'public.invoices', 'op', 'update',
    'pk', '{"id": "inv-a"}'::jsonb, 'data', '{"invoice_number": "DRAFT-Z"}'::jsonb, 'hlc', ofs.hlc_now() + 5000000)));
-- The compensation row of an RLS-hidden row is NULL: nothing about it leaks.
SELECT hint->'row' AS row_hint FROM ofs.dead_letters WHERE operation_id = 'k-rls';

-- Merge policies.  lww: a later HLC wins whatever the arrival order; an
-- earlier one loses its columns (reported, not an error).
INSERT INTO invoices (id, invoice_number, customer_id, owner, amount, notes)
VALUES ('inv-m', 'INV-M', 'cust-1', 'ap_manager', 10, 'origin note');
SELECT operation_id, status, hint FROM ofs.apply_batch('desk-1', jsonb_build_array(
  jsonb_build_object('op_id', 'm-1', 'table', 'public.invoices', 'op', 'update', 'pk', '{"id": "inv-m"}'::jsonb,
    'data', '{"amount": "20.00"}'::jsonb, 'base', '{"amount": "10.00"}'::jsonb, 'hlc', ofs.hlc_now() + 1000000)));
SELECT operation_id, status, hint FROM ofs.apply_batch('desk-1', jsonb_build_array(
  jsonb_build_object('op_id', 'm-2', 'table', 'public.invoices', 'op', 'update', 'pk', '{"id": "inv-m"}'::jsonb,
    'data', '{"amount": "15.00"}'::jsonb, 'base', '{"amount": "10.00"}'::jsonb, 'hlc', :h + 6)));
SELECT amount FROM invoices WHERE id = 'inv-m';
-- counter: concurrent increments add up.
SELECT operation_id, status FROM ofs.apply_batch('desk-1', jsonb_build_array(
  jsonb_build_object('op_id', 'c-1', 'table', 'public.invoices', 'op', 'update', 'pk', '{"id": "inv-m"}'::jsonb,
    'data', '{"qty": 3}'::jsonb, 'base', '{"qty": 0}'::jsonb, 'hlc', :h + 7),
  jsonb_build_object('op_id', 'c-2', 'table', 'public.invoices', 'op', 'update', 'pk', '{"id": "inv-m"}'::jsonb,
    'data', '{"qty": 5}'::jsonb, 'base', '{"qty": 0}'::jsonb, 'hlc', :h + 7)));
SELECT qty FROM invoices WHERE id = 'inv-m';
-- manual: a concurrent change becomes a conflict; the origin's value stays.
UPDATE invoices SET notes = 'changed on the origin' WHERE id = 'inv-m';
SELECT operation_id, status, hint->>'kind' AS kind, hint->'columns' AS columns FROM ofs.apply_batch('desk-1', jsonb_build_array(
  jsonb_build_object('op_id', 'x-1', 'table', 'public.invoices', 'op', 'update', 'pk', '{"id": "inv-m"}'::jsonb,
    'data', '{"notes": "changed on the desk", "amount": "21.00"}'::jsonb, 'base', '{"notes": "origin note"}'::jsonb,
    'hlc', ofs.hlc_now() + 2000000)));
SELECT notes, amount FROM invoices WHERE id = 'inv-m';
SELECT id, table_name, pk, column_name, origin_value, device_value, base_value, device, status FROM ofs.conflicts;
SELECT ofs.resolve_conflict(1, 'device');
SELECT notes FROM invoices WHERE id = 'inv-m';
SELECT status, resolution, resolved_by IS NOT NULL AS audited FROM ofs.conflicts;
SELECT pg_temp.err($$SELECT ofs.resolve_conflict(1)$$);
SELECT pg_temp.err($$SELECT ofs.resolve_conflict(99)$$);

-- Delete wins over a concurrent update: the update finds no row.
SELECT operation_id, status, sqlstate, hint FROM ofs.apply_batch('desk-1', jsonb_build_array(
  jsonb_build_object('op_id', 'd-1', 'table', 'public.invoices', 'op', 'delete', 'pk', '{"id": "inv-m"}'::jsonb, 'hlc', :h + 8),
  jsonb_build_object('op_id', 'd-2', 'table', 'public.invoices', 'op', 'delete', 'pk', '{"id": "inv-m"}'::jsonb, 'hlc', :h + 9)));
SELECT operation_id, status, sqlstate, hint->>'kind' AS kind, hint->'row' AS row FROM ofs.apply_batch('tablet-2', jsonb_build_array(
  jsonb_build_object('op_id', 'd-3', 'table', 'public.invoices', 'op', 'update', 'pk', '{"id": "inv-m"}'::jsonb,
    'data', '{"amount": "1"}'::jsonb, 'hlc', :h + 10)));

-- Hostile input is rejected, never a crash: nulls and objects where numbers
-- belong, an oversized operation id or key, a non-row for encode_row.
INSERT INTO invoices (id, invoice_number, customer_id, owner, amount) VALUES ('inv-h1', 'INV-H1', 'cust-1', 'ap_manager', 1);
SELECT operation_id, status, sqlstate, hint->>'kind' AS kind FROM ofs.apply_batch('desk-1', jsonb_build_array(
  jsonb_build_object('op_id', 'h-1', 'table', 'public.invoices', 'op', 'update', 'pk', '{"id": "inv-h1"}'::jsonb,
    'data', '{"qty": null}'::jsonb, 'base', '{"qty": 0}'::jsonb, 'hlc', :h + 11),
  jsonb_build_object('op_id', 'h-2', 'table', 'public.invoices', 'op', 'update', 'pk', '{"id": "inv-h1"}'::jsonb,
    'data', '{"qty": {"x": 1}}'::jsonb, 'base', '{"qty": null}'::jsonb, 'hlc', :h + 12),
  jsonb_build_object('op_id', repeat('x', 300), 'table', 'public.invoices', 'op', 'delete',
    'pk', '{"id": "inv-h1"}'::jsonb, 'hlc', :h + 13),
  jsonb_build_object('op_id', 'h-4', 'table', 'public.invoices', 'op', 'delete',
    'pk', jsonb_build_object('id', repeat('k', 2000)), 'hlc', :h + 14),
  jsonb_build_object('op_id', 'h-5', 'table', 'public.invoices', 'op', 'update', 'pk', '{"id": "inv-h1"}'::jsonb,
    'data', '{"amount": "2.00"}'::jsonb, 'hlc', 99999999999999999999999)));
SELECT pg_temp.err($$SELECT ofs.encode_row(1)$$);

-- Clock sanity: an HLC too far ahead is clamped to the origin's clock plus
-- ofs.max_clock_skew, so a wrong clock cannot win every conflict forever.
SELECT operation_id, status FROM ofs.apply_batch('desk-1', jsonb_build_array(
  jsonb_build_object('op_id', 'skew-1', 'table', 'public.invoices', 'op', 'update', 'pk', '{"id": "inv-a"}'::jsonb,
    'data', '{"notes": "from the future"}'::jsonb, 'hlc', ofs.hlc_now() * 2)));
SELECT hlc <= ofs.hlc_now() + (300000::bigint << 16) AS clamped FROM ofs.change_log
 WHERE operation_id = 'skew-1';

-- Discarding closes a dead letter; later mutations of that row apply again.
SELECT id FROM ofs.dead_letters WHERE operation_id = 'k-transition' \gset dl_
SELECT ofs.discard_dead_letter(:dl_id);
SELECT pg_temp.err(format('SELECT ofs.discard_dead_letter(%s)', :dl_id));
SELECT status, closed_by IS NOT NULL AS audited FROM ofs.dead_letters WHERE id = :dl_id;

-- A revoked or expired device may not push.
SELECT ofs.revoke_device('tablet-2');
SELECT pg_temp.err($$SELECT * FROM ofs.apply_batch('tablet-2', '[]')$$);
UPDATE ofs.device SET expires_at = now() - interval '1 minute', revoked_at = NULL WHERE device = 'tablet-2';
SELECT pg_temp.err($$SELECT * FROM ofs.apply_batch('tablet-2', '[]')$$);
SELECT device, status FROM ofs.devices ORDER BY device;
SELECT pg_temp.err($$SELECT ofs.revoke_device('nosuch')$$);

-- Only administrators apply batches and write attributions.
SET ROLE ap_rep;
SELECT pg_temp.err($$SELECT * FROM ofs.apply_batch('tablet-1', '[]')$$);
SELECT pg_temp.err($$SELECT ofs_internal.apply_one('tablet-1', '{"op_id": "forged"}')$$);
SELECT pg_temp.err($$SELECT ofs.create_device_token('ap_rep', 'mine')$$);
RESET ROLE;

-- Only a member of a role may create devices acting as it; no device acts
-- as a superuser or a role that bypasses row-level security, even if the
-- role became one after its token was made.
GRANT EXECUTE ON FUNCTION ofs.create_device_token(name, text, interval) TO ap_rep;
SET ROLE ap_rep;
SELECT pg_temp.err($$SELECT ofs.create_device_token('ap_manager', 'sneaky')$$);
RESET ROLE;
REVOKE EXECUTE ON FUNCTION ofs.create_device_token(name, text, interval) FROM ap_rep;
CREATE ROLE ap_bypass BYPASSRLS;
SELECT pg_temp.err($$SELECT ofs.create_device_token('ap_bypass', 'x')$$);
ALTER ROLE ap_manager SUPERUSER;
SELECT pg_temp.err($$SELECT * FROM ofs.apply_batch('desk-1', jsonb_build_array(jsonb_build_object(
  'op_id', 'su-1', 'table', 'public.invoices', 'op', 'delete', 'pk', '{"id": "inv-a"}'::jsonb, 'hlc', 1)))$$);
ALTER ROLE ap_manager NOSUPERUSER;
SELECT count(*) AS inv_a_still_there FROM invoices WHERE id = 'inv-a';
DROP ROLE ap_bypass;

DROP TABLE invoices, customers;
SELECT count(*) AS feed_entries_left FROM ofs.change_log;
SELECT count(*) AS synced_left FROM ofs.synced_table;
DROP FUNCTION number_on_submit();
SELECT ofs.drop_gapless_sequence('ap_inv');
DELETE FROM ofs.gapless_issued;
DELETE FROM ofs.transition_log;
DELETE FROM ofs.applied_op;
DELETE FROM ofs.dead_letters;
DELETE FROM ofs.conflicts;
DELETE FROM ofs.device;
DROP ROLE ap_rep, ap_rep2, ap_manager;
