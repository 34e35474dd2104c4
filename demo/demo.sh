#!/usr/bin/env bash
# demo.sh: the ofs story on a throwaway cluster, narrated.  Every step states
# what should happen and checks it; the demo exits 0 only if every
# expectation held, and it always stops and removes its cluster.
set -uo pipefail
cd "$(dirname "$0")/.."
. test/lib/cluster.sh

TMP=$(ofs_mktemp ofs-demo)
trap 'ofs_cluster_destroy; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM
FAILS=0

say()  { printf '\n== %s\n' "$*"; }
# expect WHAT EXPECTED ACTUAL
expect() {
  if [ "$2" == "$3" ]; then printf '   ok: %s\n' "$1"
  else printf '   FAILED: %s\n     expected: %s\n     got:      %s\n' "$1" "$2" "$3"; FAILS=$((FAILS + 1)); fi
}
sql() { ofs_psql -d ofs_demo "$@" 2>&1; }

say "Starting a throwaway PostgreSQL cluster with ofs preloaded"
ofs_cluster_init "$TMP/cluster" >"$TMP/init.log" 2>&1 || { cat "$TMP/init.log"; exit 1; }
ofs_psql -d postgres -c "CREATE DATABASE ofs_demo" >/dev/null
sql -c "CREATE EXTENSION ofs" >/dev/null
echo "   cluster on $PGHOST, port $PGPORT"

say "Invoice numbers: a gap-free sequence INV-{YY}-{MM}-{n:5}, reset monthly"
sql -c "SELECT ofs.create_gapless_sequence('invoice_seq', 'INV-{YY}-{MM}-{n:5}', 'monthly')" >/dev/null
sql >/dev/null <<'SQL'
CREATE TABLE invoices (
  id serial PRIMARY KEY,
  invoice_number text NOT NULL,
  customer_id text NOT NULL,
  amount numeric(12,2) NOT NULL
);
SQL
first=$(sql -c "INSERT INTO invoices (invoice_number, customer_id, amount)
                VALUES (ofs.gapless_next('invoice_seq'), 'cust-001', 120.00) RETURNING invoice_number")
echo "   first invoice:  $first"
month=$(sql -c "SELECT to_char(now() AT TIME ZONE 'UTC', 'YY-MM')")
expect "the first invoice of the month is number 1" "INV-$month-00001" "$first"

say "A transaction takes the next number and then fails: it rolls back"
sql -c "BEGIN" -c "INSERT INTO invoices (invoice_number, customer_id, amount)
                   VALUES (ofs.gapless_next('invoice_seq'), 'cust-002', -1)" \
    -c "SELECT 1/0" >/dev/null 2>&1
echo "   (the transaction that held INV-$month-00002 rolled back)"

second=$(sql -c "INSERT INTO invoices (invoice_number, customer_id, amount)
                 VALUES (ofs.gapless_next('invoice_seq'), 'cust-003', 75.50) RETURNING invoice_number")
echo "   next invoice:   $second"
expect "the rolled-back number is issued again: no gap" "INV-$month-00002" "$second"

say "Four sessions number invoices at the same time"
for c in a b c d; do
  (for i in 1 2 3 4 5; do
     sql -c "INSERT INTO invoices (invoice_number, customer_id, amount)
             VALUES (ofs.gapless_next('invoice_seq'), 'cust-$c', $i)" >/dev/null
   done) &
done
wait
numbers=$(sql -c "SELECT string_agg(invoice_number, ' ' ORDER BY invoice_number) FROM invoices")
echo "   committed: $numbers"
expect "22 invoices numbered exactly 1..22" "22 1 22" \
  "$(sql -c "SELECT count(DISTINCT invoice_number) || ' ' || min(right(invoice_number, 5)::int) || ' ' || max(right(invoice_number, 5)::int) FROM invoices")"
expect "the audit holds every issued number" "22" \
  "$(sql -c "SELECT count(*) FROM ofs.gapless_issued WHERE sequence_name = 'invoice_seq'")"

say "The invoice flow: draft -> submitted -> approved (manager) -> issued (accountant) -> voided (controller)"
sql >/dev/null <<'SQL'
CREATE ROLE demo_rep; CREATE ROLE demo_manager; CREATE ROLE demo_accountant; CREATE ROLE demo_controller;
CREATE TABLE flow_invoices (
  id int PRIMARY KEY,
  invoice_number text NOT NULL,
  status text NOT NULL,
  amount numeric(12,2) NOT NULL
);
GRANT SELECT, INSERT, UPDATE ON flow_invoices TO demo_rep, demo_manager, demo_accountant, demo_controller;
SELECT ofs.add_transition_constraint('flow_invoices', 'invoice_flow', 'status', $$
  'draft' -> 'submitted', 'submitted' -> 'approved' BY ROLE 'demo_manager', 'submitted' -> 'draft',
  'approved' -> 'issued' BY ROLE 'demo_accountant', 'issued' -> 'voided' BY ROLE 'demo_controller'$$,
  ARRAY['draft']);
SELECT ofs.add_transition_check('flow_invoices', 'official_number_required',
  $$NEW.status <> 'issued' OR NEW.invoice_number NOT LIKE 'DRAFT-%'$$);
-- The origin replaces the provisional number when an invoice is issued.
CREATE FUNCTION flow_assign_number() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  IF NEW.status = 'issued' AND NEW.invoice_number LIKE 'DRAFT-%' THEN
    NEW.invoice_number := ofs.gapless_next('invoice_seq');
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER flow_assign_number BEFORE UPDATE ON flow_invoices
  FOR EACH ROW EXECUTE FUNCTION flow_assign_number();
SQL
as_role() { local r=$1; shift; sql -c "SET ROLE $r" "$@"; }
as_role demo_rep -c "INSERT INTO flow_invoices VALUES (1, 'DRAFT-01JXQ3', 'draft', 750)" >/dev/null
echo "   the rep creates invoice 1 as a draft with number DRAFT-01JXQ3"
out=$(as_role demo_rep -c "UPDATE flow_invoices SET status = 'issued' WHERE id = 1")
echo "   the rep tries draft -> issued:"; echo "$out" | sed 's/^/     /'
expect "draft -> issued is refused (no such edge)" "yes" "$([[ "$out" == *"violates transition constraint"* ]] && echo yes)"
as_role demo_rep -c "UPDATE flow_invoices SET status = 'submitted' WHERE id = 1" >/dev/null
expect "draft -> submitted is allowed" "submitted" "$(sql -c "SELECT status FROM flow_invoices WHERE id = 1")"
out=$(as_role demo_rep -c "UPDATE flow_invoices SET status = 'approved' WHERE id = 1")
echo "   the rep tries to approve:"; echo "$out" | sed 's/^/     /'
expect "a rep may not approve (role guard)" "yes" "$([[ "$out" == *"requires role \"demo_manager\""* ]] && echo yes)"
as_role demo_manager -c "UPDATE flow_invoices SET status = 'approved' WHERE id = 1" >/dev/null
as_role demo_accountant -c "UPDATE flow_invoices SET status = 'issued' WHERE id = 1" >/dev/null
row=$(sql -c "SELECT status || ' ' || invoice_number FROM flow_invoices WHERE id = 1")
echo "   the manager approves, the accountant issues: $row"
expect "issuing replaced the DRAFT- number with the next official one" "issued INV-$month-00023" "$row"
echo "   the audit trail:"
sql -c "SELECT format('%s -> %s by %s', coalesce(from_state, '(new)'), to_state, role) FROM ofs.transition_log ORDER BY id" | sed 's/^/     /'
expect "the audit holds the four state changes" "4" "$(sql -c "SELECT count(*) FROM ofs.transition_log")"
sql -c "DROP TABLE flow_invoices" -c "DROP FUNCTION flow_assign_number()" \
    -c "DROP ROLE demo_rep, demo_manager, demo_accountant, demo_controller" >/dev/null

say "Two reps work offline; when they reconnect their intents are pushed to the origin"
echo "   (each device's batch goes to ofs.apply_batch, the function the sync worker calls)"
sql >/dev/null <<'SQL'
CREATE ROLE rep_ana; CREATE ROLE rep_ben; CREATE ROLE mgr_cruz;
CREATE TABLE sales (
  id text PRIMARY KEY,
  invoice_number text NOT NULL,
  owner name NOT NULL DEFAULT current_user,
  status text NOT NULL DEFAULT 'draft',
  amount numeric(12,2) NOT NULL
);
GRANT SELECT, INSERT, UPDATE ON sales TO rep_ana, rep_ben, mgr_cruz;
ALTER TABLE sales ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON sales USING (owner = current_user OR pg_has_role('mgr_cruz', 'member'))
  WITH CHECK (owner = current_user OR pg_has_role('mgr_cruz', 'member'));
SELECT ofs.sync_table('sales');
SELECT ofs.add_transition_constraint('sales', 'sale_flow', 'status',
  $$'draft' -> 'submitted', 'submitted' -> 'approved' BY ROLE 'mgr_cruz', 'submitted' -> 'draft'$$, ARRAY['draft']);
SELECT ofs.create_gapless_sequence('sale_seq', 'INV-{YY}-{MM}-{n:5}', 'monthly');
CREATE FUNCTION sale_number() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  IF NEW.status = 'submitted' AND NEW.invoice_number LIKE 'DRAFT-%' THEN
    NEW.invoice_number := ofs.gapless_next('sale_seq');
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER sale_number BEFORE UPDATE ON sales FOR EACH ROW EXECUTE FUNCTION sale_number();
SELECT ofs.create_device_token('rep_ana', 'ana-tablet'), ofs.create_device_token('rep_ben', 'ben-phone'),
       ofs.create_device_token('mgr_cruz', 'cruz-laptop');
SQL
# push DEVICE MUTATIONS: what the sync worker does with a device's batch.
push() {
  echo "SELECT format('     %s %-9s %s', operation_id, status, concat_ws(' ', sqlstate, hint->>'kind'))
          FROM ofs.apply_batch(:'dev', :'batch'::jsonb)" |
    ofs_psql -d ofs_demo -v dev="$1" -v batch="$2" 2>&1
}
h=$(sql -c "SELECT ofs.hlc_now()")
mut() {  # mut OP_ID OP ID DATA HLC_OFFSET
  printf '{"op_id": "%s", "table": "public.sales", "op": "%s", "pk": {"id": "%s"}, "data": %s, "hlc": %s}' \
    "$1" "$2" "$3" "$4" $((h + $5 * 65536))
}
echo "   ana, offline: two drafts with provisional numbers, both submitted"
push ana-tablet "[$(mut a1 insert s-ana-1 '{"invoice_number": "DRAFT-01JXQ3A", "amount": "750.00"}' 1),
                  $(mut a2 update s-ana-1 '{"status": "submitted"}' 2),
                  $(mut a3 insert s-ana-2 '{"invoice_number": "DRAFT-01JXQ3B", "amount": "120.00"}' 3),
                  $(mut a4 update s-ana-2 '{"status": "submitted"}' 4)]"
echo "   ben, offline: a draft, submitted, and an approval he is not allowed to give"
push ben-phone "[$(mut b1 insert s-ben-1 '{"invoice_number": "DRAFT-01JXQ4A", "amount": "99.90"}' 5),
                 $(mut b2 update s-ben-1 '{"status": "submitted"}' 6),
                 $(mut b3 update s-ben-1 '{"status": "approved"}' 7)]"
numbers=$(sql -c "SELECT string_agg(id || '=' || invoice_number, ' ' ORDER BY id) FROM sales")
echo "   official numbers assigned by the origin in arrival order: $numbers"
expect "drafts got gap-free official numbers 1..3 in arrival order" \
  "s-ana-1=INV-$month-00001 s-ana-2=INV-$month-00002 s-ben-1=INV-$month-00003" "$numbers"
hint=$(sql -c "SELECT hint FROM ofs.dead_letters WHERE operation_id = 'b3'")
echo "   ben's approval was rejected; the hint his device rolls back with:"
echo "     $hint"
expect "the rejection names the role it needs and the row to roll back to" "mgr_cruz submitted" \
  "$(sql -c "SELECT (hint->>'required_role') || ' ' || (hint->'row'->>'status') FROM ofs.dead_letters WHERE operation_id = 'b3'")"
echo "   the official numbers flow back to the devices through the feed:"
sql -c "SELECT format('     %s %s %s (from %s/%s)', op, pk->>'id', data->>'invoice_number', device, operation_id)
          FROM ofs.changes() WHERE table_name = 'public.sales' AND changed_columns @> '{invoice_number}'"
expect "ana's device sees only her rows: RLS scopes what a role may read" "2" \
  "$(sql -c "SET ROLE rep_ana" -c "SELECT count(*) FROM sales")"

say "A concurrent edit: the manager and ana change the same invoice's amount offline"
push cruz-laptop "[$(mut c1 update s-ana-1 '{"amount": "700.00"}' 200)]"
push ana-tablet "[$(mut a5 update s-ana-1 '{"amount": "745.00"}' 100)]"
expect "last writer wins by hybrid logical clock, whatever the arrival order" "700.00" \
  "$(sql -c "SELECT amount FROM sales WHERE id = 's-ana-1'")"
push cruz-laptop "[$(mut c2 update s-ben-1 '{"status": "approved"}' 300)]"
expect "the manager's approval is applied" "approved" "$(sql -c "SELECT status FROM sales WHERE id = 's-ben-1'")"
echo "   ana's tablet re-sends its batch after a lost acknowledgement:"
push ana-tablet "[$(mut a1 insert s-ana-1 '{"invoice_number": "DRAFT-01JXQ3A", "amount": "750.00"}' 1)]"
expect "nothing is applied twice" "3 3" \
  "$(sql -c "SELECT count(*) || ' ' || (SELECT max(value) FROM ofs.gapless_issued WHERE sequence_name = 'sale_seq') FROM sales")"

echo
if [ "$FAILS" -eq 0 ]; then echo "demo: every expectation held"; else echo "demo: $FAILS expectation(s) failed"; fi
[ "$FAILS" -eq 0 ]
