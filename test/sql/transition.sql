-- Transition constraints and checks: definition, enforcement, errors, audit.

-- err(sql): the error a statement raises, with SQLSTATE, detail, hint, and
-- the table, column and constraint fields.
CREATE FUNCTION pg_temp.err(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text; det text; hnt text; tbl text; col text; con text; ctx text;
BEGIN
  EXECUTE sql;
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
    det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT, tbl = TABLE_NAME,
    col = COLUMN_NAME, con = CONSTRAINT_NAME, ctx = PG_EXCEPTION_CONTEXT;
  ctx := split_part(ctx, E'\n', 1);
  RETURN st || ': ' || msg || coalesce(E'\nDETAIL: ' || nullif(det, ''), '')
            || coalesce(E'\nHINT: ' || nullif(hnt, ''), '')
            || CASE WHEN ctx LIKE '%PL/pgSQL%' OR ctx LIKE 'SQL statement%' OR ctx = '' THEN ''
                    ELSE E'\nCONTEXT: ' || ctx END
            || coalesce(E'\nFIELDS: table=' || nullif(tbl, '') || ' column=' || coalesce(nullif(col, ''), '-')
                        || ' constraint=' || coalesce(nullif(con, ''), '-'), '');
END $$;

CREATE ROLE tr_rep;
CREATE ROLE tr_manager;
CREATE ROLE tr_accountant;
CREATE ROLE tr_controller;
CREATE TABLE invoices (
  id int PRIMARY KEY,
  invoice_number text NOT NULL,
  status text NOT NULL DEFAULT 'draft',
  payment text,
  amount numeric(12,2)
);
GRANT SELECT, INSERT, UPDATE ON invoices TO tr_rep, tr_manager, tr_accountant, tr_controller;

-- The seed's flow, written over several lines, and a second constraint on
-- another column of the same table.
SELECT ofs.add_transition_constraint('invoices', 'invoice_flow', 'status', $$
  'draft'     -> 'submitted',
  'submitted' -> 'approved' BY ROLE 'tr_manager',
  'submitted' -> 'draft',
  'approved'  -> 'issued'   BY ROLE tr_accountant,
  'issued'    -> 'voided'   by role 'tr_controller'
$$, ARRAY['draft']);
SELECT ofs.add_transition_constraint('invoices', 'payment_flow', 'payment',
  $$'open' -> 'paid', 'open' -> 'written off' BY ROLE 'tr_controller', 'paid' -> 'open'$$);
SELECT ofs.add_transition_check('invoices', 'official_number_required',
  $$NEW.status <> 'issued' OR NEW.invoice_number NOT LIKE 'DRAFT-%'$$);
SELECT ofs.add_transition_check('invoices', 'amount_frozen_after_approval',
  $$OLD.status IN ('draft', 'submitted') OR NEW.amount = OLD.amount$$);
SELECT * FROM ofs.transition_rules ORDER BY constraint_name, from_state NULLS FIRST, to_state;
SELECT table_name, check_name, expression FROM ofs.transition_checks ORDER BY check_name;
SELECT tgname, tgtype FROM pg_trigger WHERE tgrelid = 'invoices'::regclass;

-- Initial states.
INSERT INTO invoices (id, invoice_number, amount) VALUES (1, 'DRAFT-01', 100);
INSERT INTO invoices (id, invoice_number, status, amount) VALUES (2, 'DRAFT-02', 'draft', 200);
SELECT pg_temp.err($$INSERT INTO invoices (id, invoice_number, status) VALUES (3, 'DRAFT-03', 'approved')$$);

-- Updates that leave the state alone are always allowed.
UPDATE invoices SET amount = 150 WHERE id = 1;
UPDATE invoices SET status = 'draft' WHERE id = 1;

-- A missing edge; its hint lists the allowed next states.
SELECT pg_temp.err($$UPDATE invoices SET status = 'issued' WHERE id = 1$$);
UPDATE invoices SET status = 'submitted' WHERE id = 1;

-- Role guards: a rep may not approve; superusers pass guards.
SET ROLE tr_rep;
SELECT pg_temp.err($$UPDATE invoices SET status = 'approved' WHERE id = 1$$);
UPDATE invoices SET status = 'draft' WHERE id = 1;
UPDATE invoices SET status = 'submitted' WHERE id = 1;
RESET ROLE;
-- Membership (direct or inherited) satisfies a guard.
CREATE ROLE tr_senior IN ROLE tr_manager;
GRANT tr_senior TO tr_rep;
SET ROLE tr_rep;
UPDATE invoices SET status = 'approved' WHERE id = 1;
-- The approval froze the amount (a check over OLD and NEW).
SELECT pg_temp.err($$UPDATE invoices SET amount = 1 WHERE id = 1$$);
SELECT pg_temp.err($$UPDATE invoices SET status = 'issued' WHERE id = 1$$);
RESET ROLE;
REVOKE tr_senior FROM tr_rep;

-- Superusers pass role guards but never a missing edge.
SELECT pg_temp.err($$UPDATE invoices SET status = 'draft' WHERE id = 1$$);

-- The check judges the final row: a BEFORE trigger that replaces the
-- provisional number when an invoice is issued makes the check pass.
SELECT ofs.create_gapless_sequence('tr_inv', 'INV-{n:4}');
-- Taking numbers needs EXECUTE: the numbering trigger runs as its owner.
CREATE FUNCTION assign_number() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  IF NEW.status = 'issued' AND NEW.invoice_number LIKE 'DRAFT-%' THEN
    NEW.invoice_number := ofs.gapless_next('tr_inv');
  END IF;
  RETURN NEW;
END $$;
SELECT pg_temp.err($$UPDATE invoices SET status = 'issued' WHERE id = 1$$);
CREATE TRIGGER zz_assign_number BEFORE UPDATE ON invoices FOR EACH ROW EXECUTE FUNCTION assign_number();
SET ROLE tr_accountant;
UPDATE invoices SET status = 'issued' WHERE id = 1;
RESET ROLE;
SELECT id, invoice_number, status FROM invoices ORDER BY id;

-- A check that is NULL passes, as CHECK constraints do.
UPDATE invoices SET amount = NULL WHERE id = 2;
UPDATE invoices SET status = 'submitted' WHERE id = 2;
SET ROLE tr_manager;
UPDATE invoices SET status = 'approved' WHERE id = 2;
UPDATE invoices SET amount = 5 WHERE id = 2;  -- NEW.amount = OLD.amount is NULL
RESET ROLE;

-- The second constraint: NULL -> a state is no edge, so payment starts as
-- 'open' only through an UPDATE that follows an edge... which there is none of.
SELECT pg_temp.err($$UPDATE invoices SET payment = 'open' WHERE id = 2$$);
INSERT INTO invoices (id, invoice_number, payment) VALUES (4, 'DRAFT-04', 'open');
UPDATE invoices SET payment = 'paid' WHERE id = 4;
SELECT pg_temp.err($$UPDATE invoices SET payment = NULL WHERE id = 4$$);
UPDATE invoices SET payment = 'open' WHERE id = 4;
SET ROLE tr_rep;
SELECT pg_temp.err($$UPDATE invoices SET payment = 'written off' WHERE id = 4$$);
RESET ROLE;

-- A statement judges every row it changes: one bad row refuses all.
SELECT pg_temp.err($$UPDATE invoices SET status = 'submitted' WHERE id IN (2, 4)$$);
SELECT id, status FROM invoices WHERE id IN (2, 4) ORDER BY id;

-- The audit: one row per state change, with the role that made it.
SELECT table_name, pk, constraint_name, col, from_state, to_state, role,
       device IS NULL AS no_device, xid IS NOT NULL AS has_xid
  FROM ofs.transition_log ORDER BY id;

-- States are values of the column's type: canonical text, checked at definition.
CREATE TYPE ticket_state AS ENUM ('new', 'open', 'closed');
CREATE TABLE tickets (id int PRIMARY KEY, state ticket_state NOT NULL, level int NOT NULL);
SELECT ofs.add_transition_constraint('tickets', 'ticket_flow', 'state', $$'new' -> 'open', 'open' -> 'closed'$$);
SELECT ofs.add_transition_constraint('tickets', 'escalation', 'level', $$'01' -> '2', '2' -> '3'$$, ARRAY['1']);
SELECT from_state, to_state FROM ofs.transition_rules WHERE constraint_name = 'escalation' ORDER BY 1 NULLS FIRST;
INSERT INTO tickets VALUES (1, 'new', 1);
UPDATE tickets SET state = 'open', level = 2 WHERE id = 1;
SELECT pg_temp.err($$UPDATE tickets SET state = 'new' WHERE id = 1$$);
SELECT pg_temp.err($$UPDATE tickets SET level = 1 WHERE id = 1$$);
SELECT pg_temp.err($$INSERT INTO tickets VALUES (2, 'new', 3)$$);

-- Definition errors: each refused with its position, installing nothing.
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('tickets', 'x', 'state', '')$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('invoices', 'x', 'amount', $q$'1' -> '2',, '3' -> '4'$q$)$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('invoices', 'x', 'amount', $q$'1' '2'$q$)$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('invoices', 'x', 'amount', $q$'1' -> '2$q$)$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('invoices', 'x', 'amount', $q$'1' -> '2' BY 'x'$q$)$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('invoices', 'x', 'amount', $q$'1' -> '2' BY ROLE$q$)$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('invoices', 'x', 'amount', $q$'1' -> '2',$q$)$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('invoices', 'x', 'amount', $q$'1' -> '2' 'x'$q$)$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('invoices', 'x', 'amount', $q$'1' -> ''$q$)$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('invoices', 'x', 'amount', $q$'1' -> 'one'$q$)$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('tickets', 'x', 'state', $q$'new' -> 'gone'$q$)$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('invoices', 'x', 'amount', $q$'1' -> '1.00'$q$)$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('invoices', 'x', 'amount', $q$'1' -> '2', '1.0' -> '2'$q$)$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('invoices', 'x', 'amount', $q$'1' -> '2' BY ROLE 'nobody'$q$)$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('invoices', 'x', 'nosuch', $q$'1' -> '2'$q$)$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('invoices', 'invoice_flow', 'amount', $q$'1' -> '2'$q$)$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('invoices', 'x', 'status', $q$'1' -> '2'$q$)$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('invoices', 'x', 'amount', $q$'1' -> '2'$q$, ARRAY[]::text[])$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('invoices', 'x', 'amount', $q$'1' -> '2'$q$, ARRAY[NULL])$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('invoices', 'x', 'amount', $q$'1' -> '2'$q$, ARRAY['x'])$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('invoices', '', 'amount', $q$'1' -> '2'$q$)$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('invoices', NULL, 'amount', $q$'1' -> '2'$q$)$$);
CREATE TABLE no_pk (state text);
CREATE VIEW invoice_view AS SELECT * FROM invoices;
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('no_pk', 'x', 'state', $q$'a' -> 'b'$q$)$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('invoice_view', 'x', 'status', $q$'a' -> 'b'$q$)$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_check('no_pk', 'x', 'true')$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_check('invoices', 'x', 'OLD.nosuch = 1')$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_check('invoices', 'x', 'NEW.amount >')$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_check('invoices', 'x', 'NEW.amount')$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_check('invoices', 'x', 'amount > 0')$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_check('invoices', 'x', '$1 > 0')$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_check('invoices', 'x', '1) OR (true')$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_check('invoices', 'official_number_required', 'true')$$);
SELECT pg_temp.err($$SELECT ofs.add_transition_check('invoices', '', 'true')$$);
SELECT pg_temp.err($$SELECT ofs.drop_transition_constraint('invoices', 'nosuch')$$);
SELECT pg_temp.err($$SELECT ofs.drop_transition_check('invoices', 'nosuch')$$);
-- Only the table's owner defines rules.
GRANT EXECUTE ON FUNCTION ofs.add_transition_constraint(regclass, text, name, text, text[]) TO tr_rep;
SET ROLE tr_rep;
SELECT pg_temp.err($$SELECT ofs.add_transition_constraint('invoices', 'x', 'amount', $q$'1' -> '2'$q$)$$);
SELECT pg_temp.err($$SELECT ofs.drop_transition_check('invoices', 'official_number_required')$$);
RESET ROLE;
REVOKE EXECUTE ON FUNCTION ofs.add_transition_constraint(regclass, text, name, text, text[]) FROM tr_rep;
SELECT count(*) AS constraints, (SELECT count(*) FROM ofs.transition_check_def) AS checks
  FROM ofs.transition_constraint_def;
SELECT pg_temp.err($$SELECT ofs_internal.transition_trigger()$$);

-- Dropping rules: enforcement stops at once, in this session too, and the
-- trigger goes with the last rule of a table.
SELECT ofs.drop_transition_constraint('invoices', 'payment_flow');
UPDATE invoices SET payment = 'written off' WHERE id = 4;
SELECT ofs.drop_transition_check('invoices', 'amount_frozen_after_approval');
UPDATE invoices SET amount = 7 WHERE id = 1;
SELECT ofs.drop_transition_constraint('invoices', 'invoice_flow');
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'invoices'::regclass AND tgname = 'ofs_transition';
SELECT ofs.drop_transition_check('invoices', 'official_number_required');
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'invoices'::regclass AND tgname = 'ofs_transition';
UPDATE invoices SET status = 'draft' WHERE id = 1;

-- Rules of dropped columns and tables are forgotten.
ALTER TABLE tickets DROP COLUMN level;
SELECT constraint_name FROM ofs.transition_rules WHERE table_name = 'tickets'::regclass GROUP BY 1;
DROP TABLE tickets;
SELECT count(*) AS rules_left FROM ofs.transition_constraint_def;

DROP VIEW invoice_view;
DROP TABLE invoices, no_pk;
DROP TYPE ticket_state;
DROP FUNCTION assign_number();
DROP ROLE tr_rep, tr_senior, tr_manager, tr_accountant, tr_controller;
