-- pgTAP: the invoice flow of seed 000 with real roles.  A rep drafts and
-- submits; a manager approves; an accountant issues; a controller voids.
-- Forbidden jumps, role refusals and the DRAFT- number check are refused
-- with ofs's SQLSTATEs, and every state change is audited.
BEGIN;
SELECT plan(19);

CREATE ROLE tap_rep;
CREATE ROLE tap_manager;
CREATE ROLE tap_accountant;
CREATE ROLE tap_controller;
CREATE TABLE tap_invoices (
  id int PRIMARY KEY,
  invoice_number text NOT NULL,
  status text NOT NULL,
  amount numeric(12,2) NOT NULL
);
GRANT SELECT, INSERT, UPDATE ON tap_invoices TO tap_rep, tap_manager, tap_accountant, tap_controller;

SELECT lives_ok($$SELECT ofs.add_transition_constraint('tap_invoices', 'invoice_flow', 'status',
  $q$'draft' -> 'submitted', 'submitted' -> 'approved' BY ROLE 'tap_manager', 'submitted' -> 'draft',
     'approved' -> 'issued' BY ROLE 'tap_accountant', 'issued' -> 'voided' BY ROLE 'tap_controller'$q$,
  ARRAY['draft'])$$, 'the flow of seed 000 is accepted');
SELECT lives_ok($$SELECT ofs.add_transition_check('tap_invoices', 'official_number_required',
  $q$OLD.status <> 'approved' OR NEW.status <> 'issued' OR NEW.invoice_number NOT LIKE 'DRAFT-%'$q$)$$,
  'the DRAFT- number check is accepted');
SELECT is((SELECT count(*)::int FROM ofs.transition_rules WHERE table_name = 'tap_invoices'::regclass), 6,
  'transition_rules shows five edges and one initial state');

SET ROLE tap_rep;
SELECT lives_ok($$INSERT INTO tap_invoices VALUES (1, 'DRAFT-01JXQ3', 'draft', 750)$$, 'a rep creates a draft');
SELECT throws_ok($$INSERT INTO tap_invoices VALUES (2, 'DRAFT-01JXQ4', 'approved', 1)$$, 'OF004', NULL,
  'a rep cannot create an approved invoice');
SELECT throws_ok($$UPDATE tap_invoices SET status = 'issued' WHERE id = 1$$, 'OF001', NULL,
  'draft -> issued is not an edge');
SELECT lives_ok($$UPDATE tap_invoices SET status = 'submitted' WHERE id = 1$$, 'a rep submits');
SELECT throws_ok($$UPDATE tap_invoices SET status = 'approved' WHERE id = 1$$, 'OF002', NULL,
  'a rep cannot approve');
RESET ROLE;

SET ROLE tap_manager;
SELECT lives_ok($$UPDATE tap_invoices SET status = 'approved' WHERE id = 1$$, 'a manager approves');
SELECT throws_ok($$UPDATE tap_invoices SET status = 'issued' WHERE id = 1$$, 'OF002', NULL,
  'a manager cannot issue');
RESET ROLE;

SET ROLE tap_accountant;
SELECT throws_ok($$UPDATE tap_invoices SET status = 'issued' WHERE id = 1$$, 'OF003', NULL,
  'an invoice with a DRAFT- number cannot be issued');
SELECT lives_ok($$UPDATE tap_invoices SET status = 'issued', invoice_number = 'INV-26-04-00024' WHERE id = 1$$,
  'an accountant issues it with an official number');
SELECT throws_ok($$UPDATE tap_invoices SET status = 'voided' WHERE id = 1$$, 'OF002', NULL,
  'an accountant cannot void');
RESET ROLE;

SET ROLE tap_controller;
SELECT lives_ok($$UPDATE tap_invoices SET status = 'voided' WHERE id = 1$$, 'a controller voids');
SELECT throws_ok($$UPDATE tap_invoices SET status = 'draft' WHERE id = 1$$, 'OF001', NULL,
  'voided is final');
RESET ROLE;

-- A rep who is made a member of manager may approve.
INSERT INTO tap_invoices VALUES (3, 'DRAFT-01JXQ5', 'draft', 10);
GRANT tap_manager TO tap_rep;
SET ROLE tap_rep;
UPDATE tap_invoices SET status = 'submitted' WHERE id = 3;
SELECT lives_ok($$UPDATE tap_invoices SET status = 'approved' WHERE id = 3$$,
  'a rep who is a member of manager approves');
RESET ROLE;

SELECT results_eq(
  $$SELECT format('%s -> %s by %s', from_state, to_state, role) COLLATE "default" FROM ofs.transition_log
     WHERE tbl = 'tap_invoices'::regclass AND pk = '{"id": 1}' ORDER BY id$$,
  ARRAY[' -> draft by tap_rep', 'draft -> submitted by tap_rep',
        'submitted -> approved by tap_manager', 'approved -> issued by tap_accountant',
        'issued -> voided by tap_controller'],
  'the audit holds every state change of the invoice with its role');
SELECT is((SELECT count(DISTINCT xid)::int FROM ofs.transition_log WHERE tbl = 'tap_invoices'::regclass), 1,
  'all of it in this transaction');
SELECT is((SELECT status FROM tap_invoices WHERE id = 1), 'voided', 'the invoice ends voided');

SELECT * FROM finish();
ROLLBACK;
