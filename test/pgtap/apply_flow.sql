-- pgTAP: the invoice flow of seed 000 driven through ofs.apply_batch, as
-- devices of a rep, a manager and an accountant push it.
BEGIN;
SELECT plan(17);

CREATE ROLE tf_rep;
CREATE ROLE tf_manager;
CREATE ROLE tf_accountant;
CREATE TABLE tf_invoices (
  id text PRIMARY KEY,
  invoice_number text NOT NULL,
  status text NOT NULL DEFAULT 'draft',
  amount numeric(12,2) NOT NULL
);
GRANT SELECT, INSERT, UPDATE ON tf_invoices TO tf_rep, tf_manager, tf_accountant;
SELECT ofs.sync_table('tf_invoices');
SELECT ofs.add_transition_constraint('tf_invoices', 'flow', 'status',
  $$'draft' -> 'submitted', 'submitted' -> 'approved' BY ROLE 'tf_manager', 'submitted' -> 'draft',
    'approved' -> 'issued' BY ROLE 'tf_accountant'$$, ARRAY['draft']);
SELECT ofs.add_transition_check('tf_invoices', 'official_number_required',
  $$NEW.status <> 'issued' OR NEW.invoice_number NOT LIKE 'DRAFT-%'$$);
SELECT ofs.create_gapless_sequence('tf_seq', 'INV-{n:5}');
CREATE FUNCTION tf_number() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  IF NEW.status = 'submitted' AND NEW.invoice_number LIKE 'DRAFT-%' THEN
    NEW.invoice_number := ofs.gapless_next('tf_seq');
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER tf_number BEFORE UPDATE ON tf_invoices FOR EACH ROW EXECUTE FUNCTION tf_number();
SELECT ofs.create_device_token('tf_rep', 'tf-rep-phone') IS NOT NULL;
SELECT ofs.create_device_token('tf_manager', 'tf-manager-laptop') IS NOT NULL;
SELECT ofs.create_device_token('tf_accountant', 'tf-accounts') IS NOT NULL;

CREATE FUNCTION pg_temp.push(device text, op_id text, op text, id text, data jsonb)
RETURNS TABLE (operation_id text, status text, sqlstate text, message text, hint jsonb) LANGUAGE sql AS $$
  SELECT * FROM ofs.apply_batch(device, jsonb_build_array(jsonb_build_object(
    'op_id', op_id, 'table', 'public.tf_invoices', 'op', op, 'pk', jsonb_build_object('id', id),
    'data', data, 'hlc', ofs.hlc_now())))
$$;

SELECT is((SELECT status FROM pg_temp.push('tf-rep-phone', 'r1', 'insert', 'inv-1',
            '{"invoice_number": "DRAFT-01JXQ3", "amount": "750.00"}')), 'applied',
  'the rep''s offline draft is applied');
SELECT is((SELECT status FROM pg_temp.push('tf-rep-phone', 'r2', 'update', 'inv-1', '{"status": "issued"}')),
  'rejected', 'draft -> issued is rejected');
SELECT is((SELECT sqlstate FROM ofs.dead_letters WHERE operation_id = 'r2'), 'OF001', '... as a missing edge');
SELECT ofs.discard_dead_letter((SELECT id FROM ofs.dead_letters WHERE operation_id = 'r2'));
SELECT is((SELECT status FROM pg_temp.push('tf-rep-phone', 'r3', 'update', 'inv-1', '{"status": "submitted"}')),
  'applied', 'the rep submits');
SELECT is((SELECT invoice_number FROM tf_invoices WHERE id = 'inv-1'), 'INV-00001',
  'the origin assigned the official number on submit');
SELECT is((SELECT data->>'invoice_number' FROM ofs.change_log WHERE operation_id = 'r3'), 'INV-00001',
  'the official number is captured for the feed, attributed to the submit');
SELECT results_eq(
  $$SELECT status, sqlstate, hint->>'kind', hint->>'required_role' FROM pg_temp.push('tf-rep-phone', 'r4', 'update', 'inv-1', '{"status": "approved"}')$$,
  $$VALUES ('rejected'::text, 'OF002'::text, 'role_required'::text, 'tf_manager'::text)$$,
  'an approval from the rep''s device is rejected with the role it needs');
SELECT is((SELECT hint->'row'->>'status' FROM ofs.dead_letters WHERE operation_id = 'r4'), 'submitted',
  'the hint carries the origin''s row to roll back to');
SELECT is((SELECT status FROM pg_temp.push('tf-manager-laptop', 'm1', 'update', 'inv-1', '{"status": "approved"}')),
  'applied', 'the manager approves');
SELECT is((SELECT status FROM pg_temp.push('tf-manager-laptop', 'm2', 'update', 'inv-1', '{"status": "issued"}')),
  'rejected', 'the manager may not issue');
SELECT is((SELECT status FROM pg_temp.push('tf-accounts', 'a1', 'update', 'inv-1', '{"status": "issued"}')),
  'applied', 'the accountant issues');
SELECT results_eq(
  $$SELECT format('%s -> %s by %s from %s/%s', from_state, to_state, role, device, operation_id) COLLATE "default"
      FROM ofs.transition_log WHERE tbl = 'tf_invoices'::regclass ORDER BY id$$,
  ARRAY[' -> draft by tf_rep from tf-rep-phone/r1',
        'draft -> submitted by tf_rep from tf-rep-phone/r3',
        'submitted -> approved by tf_manager from tf-manager-laptop/m1',
        'approved -> issued by tf_accountant from tf-accounts/a1'],
  'every applied state change is audited with its device and operation');
SELECT is((SELECT status FROM pg_temp.push('tf-rep-phone', 'r3', 'update', 'inv-1', '{"status": "submitted"}')),
  'duplicate', 'a re-sent submit is a duplicate and changes nothing');
SELECT is((SELECT count(*)::int FROM ofs.gapless_issued WHERE sequence_name = 'tf_seq'), 1,
  'exactly one official number was issued');

-- The writer ends with the mutation: after a rejection, the origin's own
-- write in the same transaction is the origin's.
SELECT is((SELECT status FROM pg_temp.push('tf-manager-laptop', 'm3', 'update', 'inv-1', '{"status": "draft"}')),
  'rejected', 'a mutation rejected inside a trigger');
UPDATE tf_invoices SET amount = amount + 1 WHERE id = 'inv-1';
SELECT is((SELECT site || '/' || coalesce(operation_id, '-') FROM ofs.change_log
            WHERE tbl = 'tf_invoices'::regclass ORDER BY seq DESC LIMIT 1),
  'origin/-', 'the origin''s next write is attributed to the origin, not to the rejected device');
-- Saved plans name the table: a rename drops them.
ALTER TABLE tf_invoices RENAME TO tf_invoices_renamed;
SELECT is((SELECT status FROM ofs.apply_batch('tf-rep-phone', jsonb_build_array(jsonb_build_object(
    'op_id', 'r9', 'table', 'public.tf_invoices_renamed', 'op', 'update', 'pk', jsonb_build_object('id', 'inv-1'),
    'data', '{"amount": 5}'::jsonb, 'hlc', ofs.hlc_now())))),
  'applied', 'an update of a renamed table is planned anew');

SELECT * FROM finish();
ROLLBACK;
