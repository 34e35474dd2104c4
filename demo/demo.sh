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

echo
if [ "$FAILS" -eq 0 ]; then echo "demo: every expectation held"; else echo "demo: $FAILS expectation(s) failed"; fi
[ "$FAILS" -eq 0 ]
