#!/usr/bin/env bash
# demo.sh: the invoice story, narrated, with two real devices.
#
# A throwaway PostgreSQL cluster with ofs preloaded is the origin; its sync
# worker serves the database ofs_demo over WebSocket.  Two sales reps, alice
# and bob, each have a device: a SQLite file driven by ofs-cli.  They work
# offline, sync, and the origin decides: official invoice numbers, the
# invoice flow with its roles, who sees which rows.  Every step states what
# should happen and checks it; the demo exits 0 only if every expectation
# held, and it stops and removes its cluster and its files at the end;
# with OFS_DEMO_KEEP=1 (make demo KEEP=1) it leaves the origin running
# until Ctrl-C, and prints where its /metrics and /status pages are.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
. test/lib/cluster.sh

CLI=${OFS_CLI:-$(command -v ofs-cli || echo client/build/ofs-cli)}
[ -x "$CLI" ] || { echo "ofs-cli is not built: run make demo (or make install)" >&2; exit 1; }
CLI=$(cd "$(dirname "$CLI")" && pwd)/$(basename "$CLI")

TMP=$(ofs_mktemp ofs-demo)
trap 'ofs_cluster_destroy; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM
FAILS=0
START=$SECONDS

say()  { printf '\n== %s\n' "$*"; }
note() { printf '   %s\n' "$*"; }
# expect WHAT EXPECTED ACTUAL
expect() {
  if [ "$2" == "$3" ]; then printf '   ok: %s\n' "$1"
  else printf '   FAILED: %s\n     expected: %s\n     got:      %s\n' "$1" "$2" "$3"; FAILS=$((FAILS + 1)); fi
}
# expect_has WHAT NEEDLE HAYSTACK: the text contains the needle.
expect_has() {
  if [[ "$3" == *"$2"* ]]; then printf '   ok: %s\n' "$1"
  else printf '   FAILED: %s\n     expected to contain: %s\n     got: %s\n' "$1" "$2" "$3"; FAILS=$((FAILS + 1)); fi
}
indent() { sed 's/^/     /'; }

# The origin, from psql.
sql() { ofs_psql -d ofs_demo "$@" 2>&1; }
as_role() { local r=$1; shift; sql -c "SET ROLE $r" "$@"; }
# jget JSON PATH: a field of a JSON text (PostgreSQL reads it), e.g. jget "$j" hint,kind
jget() { echo "SELECT :'j'::jsonb #>> :'p'" | ofs_psql -d postgres -v j="$1" -v p="{$2}" 2>&1; }
# same_json A B: t when two JSON texts are equal as values.
same_json() { echo "SELECT :'a'::jsonb = :'b'::jsonb" | ofs_psql -d postgres -v a="$1" -v b="$2" 2>&1; }
# clock HLC: a hybrid logical clock value in words: UTC time, then its counter.
clock() { sql -c "SELECT to_char(to_timestamp(($1 >> 16) / 1000.0) AT TIME ZONE 'UTC', 'HH24:MI:SS.MS') || ' #' || ($1 & 65535)"; }

# The devices.  dev DEVICE ARGS... runs ofs-cli on the device's file and
# leaves its output in OUT, its messages in ERR and its exit code in RC.
dev() {
  local d=$1; shift
  OUT=$("$CLI" --db "$TMP/$d.db" "$@" 2>"$TMP/stderr"); RC=$?
  ERR=$(cat "$TMP/stderr")
}
# on DEVICE SQL: the rep's app runs SQL on the device; prints it and the outcome.
on() {
  printf '     %s> %s\n' "$1" "$2"
  dev "$1" exec "$2"
  [ -n "$OUT" ] && printf '%s\n' "$OUT" | indent
  [ -n "$ERR" ] && printf '%s\n' "$ERR" | sed 's/^/       refused: /'
  return 0
}
# value DEVICE SQL: the single value of a query on the device (SELECT ... AS v).
value() {
  local o
  o=$("$CLI" --db "$TMP/$1.db" exec "$2" 2>&1)
  o=${o#\{\"v\":}; o=${o%\}}
  [[ "$o" == \"*\" ]] && o=${o:1:${#o}-2}
  printf '%s' "$o"
}
# pending DEVICE: the pending intents ofs-cli status reports.
pending() { dev "$1" status; [[ "$OUT" =~ \"pending\":([0-9]+) ]] && echo "${BASH_REMATCH[1]}"; }
# sync_dev DEVICE: one sync cycle, its summary printed.
sync_dev() {
  dev "$1" sync
  printf '     %s syncs: %s%s (exit %s)\n' "$1" "$OUT" "$ERR" "$RC"
}

# ulid: a ULID (time in ms, then 80 random bits) in Crockford's base32, as
# an app makes for a document created offline.
CROCKFORD=0123456789ABCDEFGHJKMNPQRSTVWXYZ
ulid() {
  local t s="" b
  sleep 0.01   # one per millisecond at most, so that ids sort by creation
  t=$(date +%s%3N)
  for _ in 1 2 3 4 5 6 7 8 9 10; do s="${CROCKFORD:$((t % 32)):1}$s"; t=$((t / 32)); done
  for b in $(od -An -N16 -tu1 /dev/urandom); do s+="${CROCKFORD:$((b % 32)):1}"; done
  printf '%s' "$s"
}

# wait_worker: the sync worker polls until ofs_demo has the extension, then
# listens; wait (at most 30 s) until it serves (test/lib/cluster.sh).
wait_worker() { ofs_wait_workers "$WSPORT" 30; }

say "Starting a throwaway PostgreSQL cluster with ofs preloaded: the origin"
WSPORT=$(ofs_free_port) || { echo "no free TCP port for the sync worker" >&2; exit 1; }
HTTPPORT=$(ofs_free_port) || { echo "no free TCP port for /metrics and /status" >&2; exit 1; }
ofs_cluster_init "$TMP/cluster" "ofs.port = $WSPORT" "ofs.database = 'ofs_demo'" "ofs.http_port = $HTTPPORT" \
  >"$TMP/init.log" 2>&1 || { cat "$TMP/init.log"; exit 1; }
ofs_psql -d postgres -c "CREATE DATABASE ofs_demo" >/dev/null
sql -c "CREATE EXTENSION ofs" >/dev/null
note "PostgreSQL on $PGHOST (port $PGPORT); the sync worker serves ofs_demo on ws://127.0.0.1:$WSPORT/"
wait_worker
expect "the sync worker accepts connections" "0" "$?"
[ "$FAILS" -eq 0 ] || { tail -20 "$TMP/cluster/server.log"; exit 1; }
MONTH=$(sql -c "SELECT to_char(now() AT TIME ZONE 'UTC', 'YY-MM')")

say "The origin's rules, written once in SQL"
sql >"$TMP/setup.log" <<'SQL' || { cat "$TMP/setup.log"; exit 1; }
-- Who is who.  Bob covered for the manager last week, so he is still a member of manager.
CREATE ROLE rep; CREATE ROLE manager; CREATE ROLE accountant; CREATE ROLE controller;
CREATE ROLE rep_alice IN ROLE rep;
CREATE ROLE rep_bob IN ROLE rep, manager;
CREATE ROLE mgr_carol IN ROLE manager;
CREATE ROLE acct_dan IN ROLE accountant;

-- Legal invoice numbers: gap-free, reset every month.
SELECT ofs.create_gapless_sequence('invoice_seq', 'INV-{YY}-{MM}-{n:5}', 'monthly');

CREATE TABLE invoices (
  id text PRIMARY KEY,                       -- a ULID made on the device
  invoice_number text NOT NULL,              -- DRAFT-<ulid> until the origin numbers it
  owner text NOT NULL DEFAULT current_user,  -- the rep who wrote it
  customer_id text NOT NULL,
  jurisdiction text NOT NULL,
  amount numeric(12,2) NOT NULL,
  tax_rate numeric(6,4) NOT NULL,
  status text NOT NULL DEFAULT 'draft'
);
GRANT SELECT, INSERT, UPDATE ON invoices TO rep, manager, accountant, controller;

-- The flow, its roles, and the check that no invoice is issued under a DRAFT- number.
SELECT ofs.add_transition_constraint('invoices', 'invoice_flow', 'status', $$
  'draft' -> 'submitted', 'submitted' -> 'approved' BY ROLE 'manager', 'submitted' -> 'draft',
  'approved' -> 'issued' BY ROLE 'accountant', 'issued' -> 'voided' BY ROLE 'controller'$$,
  ARRAY['draft']);
SELECT ofs.add_transition_check('invoices', 'official_number_required',
  $$NEW.status <> 'issued' OR NEW.invoice_number NOT LIKE 'DRAFT-%'$$);

-- The official number is taken when an invoice arrives submitted.
CREATE FUNCTION assign_invoice_number() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  IF NEW.status = 'submitted' AND NEW.invoice_number LIKE 'DRAFT-%' THEN
    NEW.invoice_number := ofs.gapless_next('invoice_seq');
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER assign_invoice_number BEFORE INSERT OR UPDATE ON invoices
  FOR EACH ROW EXECUTE FUNCTION assign_invoice_number();

-- A rep sees and writes only their own invoices; the back office sees all.
ALTER TABLE invoices ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_invoices ON invoices TO rep
  USING (owner = current_user) WITH CHECK (owner = current_user);
CREATE POLICY back_office ON invoices TO manager, accountant, controller
  USING (true) WITH CHECK (true);

CREATE TABLE tax_rates (
  id text PRIMARY KEY,
  jurisdiction text NOT NULL,
  rate numeric(6,4) NOT NULL,
  effective_from date NOT NULL
);
GRANT SELECT ON tax_rates TO rep, manager, accountant, controller;
INSERT INTO tax_rates VALUES
  ('ca-2024', 'CA', 0.0725, '2024-01-01'), ('nv-2024', 'NV', 0.0685, '2024-01-01'),
  ('or-2024', 'OR', 0.0000, '2024-01-01'), ('wa-2024', 'WA', 0.0650, '2024-01-01'),
  ('ny-2024', 'NY', 0.0400, '2024-01-01');

SELECT ofs.sync_table('invoices');
SELECT ofs.sync_table('tax_rates');
SQL
note "roles: rep_alice and rep_bob (members of rep), mgr_carol (manager), acct_dan (accountant)"
note "invoice numbers: gap-free sequence INV-{YY}-{MM}-{n:5}, reset monthly"
note "invoice flow: draft -> submitted -> approved (manager) -> issued (accountant) -> voided (controller)"
note "check: no invoice is issued with a DRAFT- number"
note "the origin replaces a DRAFT- number by the next official one when an invoice arrives submitted"
note "row-level security: a rep sees only the invoices they own; the back office sees all"
note "tax_rates: CA, NV, OR, WA, NY; devices subscribe by jurisdiction"
note "bob covered for the manager last week: rep_bob is still a member of manager"

say "Two devices join: alice's tablet and bob's phone, each a SQLite file"
ALICE_TOKEN=$(sql -c "SELECT ofs.create_device_token('rep_alice', 'alice-tablet')")
BOB_TOKEN=$(sql -c "SELECT ofs.create_device_token('rep_bob', 'bob-phone')")
URL="ws://127.0.0.1:$WSPORT/"
rcs=""
dev alice-tablet init --url "$URL" --token "$ALICE_TOKEN"; rcs+="$RC"
dev alice-tablet subscribe invoices; rcs+="$RC"
dev alice-tablet subscribe tax_rates "jurisdiction = 'CA'"; rcs+="$RC"
dev bob-phone init --url "$URL" --token "$BOB_TOKEN"; rcs+="$RC"
dev bob-phone subscribe invoices; rcs+="$RC"
dev bob-phone subscribe tax_rates "jurisdiction IN ('NV','OR')"; rcs+="$RC"
expect "each device is given the origin's address, its token and its shapes" "000000" "$rcs"
note "alice subscribes to her invoices and to tax_rates where jurisdiction = 'CA'"
note "bob subscribes to his invoices and to tax_rates where jurisdiction IN ('NV','OR')"
sync_dev alice-tablet; a_rc=$RC
sync_dev bob-phone; b_rc=$RC
expect "both first syncs succeed" "0 0" "$a_rc $b_rc"
note "the tax rates each device now holds:"
dev alice-tablet exec "SELECT jurisdiction, rate, effective_from FROM tax_rates ORDER BY id"
printf '%s\n' "$OUT" | sed 's/^/       alice-tablet: /'
dev bob-phone exec "SELECT jurisdiction, rate, effective_from FROM tax_rates ORDER BY id"
printf '%s\n' "$OUT" | sed 's/^/       bob-phone:    /'
expect "alice's tablet holds the CA rates only" "CA" \
  "$(value alice-tablet "SELECT group_concat(DISTINCT jurisdiction) AS v FROM tax_rates")"
expect "bob's phone holds the NV and OR rates only" "NV,OR" \
  "$(value bob-phone "SELECT group_concat(jurisdiction) AS v FROM (SELECT DISTINCT jurisdiction FROM tax_rates ORDER BY 1)")"
note "the invoice flow came with the schema; bob's phone also learned his roles:"
note "  $(value bob-phone "SELECT value AS v FROM _ofs_meta WHERE key = 'roles'" | tr -d '\\')"

say "Carol is back: the administrator withdraws bob's manager role"
sql -c "REVOKE manager FROM rep_bob" -c "SELECT ofs.resnapshot_device('bob-phone')" >/dev/null
note "REVOKE manager FROM rep_bob, and ofs.resnapshot_device('bob-phone') so that his phone re-reads"
note "what he may see at its next sync; until then it still believes he may approve"

say "The network goes away: the origin is stopped, the reps keep working offline"
ofs_cluster_stop fast
A1=$(ulid); A2=$(ulid); B1=$(ulid); B2=$(ulid)
# draft DEVICE ID OWNER CUSTOMER JURISDICTION AMOUNT: a new invoice, taxed at the
# rate in force today in the device's own copy of tax_rates.
draft() {
  on "$1" "INSERT INTO invoices (id, invoice_number, owner, customer_id, jurisdiction, amount, tax_rate, status)
           SELECT '$2', 'DRAFT-$2', '$3', '$4', jurisdiction, '$6', rate, 'draft' FROM tax_rates
            WHERE jurisdiction = '$5' AND effective_from <= date('now') ORDER BY effective_from DESC LIMIT 1"
}
note "alice writes two drafts with provisional numbers; the tax rate is looked up on her tablet:"
draft alice-tablet "$A1" rep_alice cust-005 CA 750.00
draft alice-tablet "$A2" rep_alice cust-011 CA 120.00
note "and submits them, the first one first:"
on alice-tablet "UPDATE invoices SET status = 'submitted' WHERE id = '$A1'"
on alice-tablet "UPDATE invoices SET status = 'submitted' WHERE id = '$A2'"
on alice-tablet "SELECT invoice_number, status, amount, tax_rate FROM invoices ORDER BY id"
note "alice tries to approve her own invoice; her tablet refuses at once, offline:"
on alice-tablet "UPDATE invoices SET status = 'approved' WHERE id = '$A1'"
expect "the refusal is immediate (ofs-cli exit 5)" "5" "$RC"
expect_has "it names the rule and the allowed next states" \
  'requires role manager (ofs OF002); allowed next states: approved (by manager), draft' "$ERR"

note "bob writes two drafts, submits the first:"
draft bob-phone "$B1" rep_bob cust-020 NV 99.90
draft bob-phone "$B2" rep_bob cust-021 OR 310.00
on bob-phone "UPDATE invoices SET status = 'submitted' WHERE id = '$B1'"
note "bob tries to issue his second draft directly:"
on bob-phone "UPDATE invoices SET status = 'issued' WHERE id = '$B2'"
expect "draft -> issued is refused on the phone (ofs-cli exit 5)" "5" "$RC"
expect_has "there is no such edge; the only next state is submitted" \
  'is not allowed (ofs OF001); allowed next states: submitted' "$ERR"
note "bob approves his submitted invoice: his phone still lists him as a manager, so it lets him"
on bob-phone "UPDATE invoices SET status = 'approved' WHERE id = '$B1'"
expect "the phone accepts the approval locally" "0" "$RC"

note "alice tries to sync while the origin is away:"
sync_dev alice-tablet
expect "sync says the origin cannot be reached (exit 2)" "2" "$RC"
expect "nothing is lost: alice's four writes wait as intents; the refused one left none" "4" "$(pending alice-tablet)"
expect "bob's four writes wait too" "4" "$(pending bob-phone)"

say "The origin is back; alice syncs first, then bob"
ofs_cluster_start
wait_worker
expect "the sync worker accepts connections again" "0" "$?"
[ "$FAILS" -eq 0 ] || { tail -20 "$TMP/cluster/server.log"; exit 1; }
sync_dev alice-tablet
expect_has "alice's four intents are applied" '"pushed":4,"applied":4,"rejected":0' "$OUT"
sync_dev bob-phone
expect_has "bob's intents: three applied, the approval rejected" '"pushed":4,"applied":3,"rejected":1' "$OUT"
note "the official numbers, in arrival order, as the devices now show them:"
dev alice-tablet exec "SELECT invoice_number, status FROM invoices ORDER BY invoice_number"
printf '%s\n' "$OUT" | sed 's/^/       alice-tablet: /'
dev bob-phone exec "SELECT invoice_number, status FROM invoices ORDER BY invoice_number"
printf '%s\n' "$OUT" | sed 's/^/       bob-phone:    /'
expect "numbers 1 and 2 went to alice's invoices, in the order she submitted them" \
  "INV-$MONTH-00001 INV-$MONTH-00002" \
  "$(value alice-tablet "SELECT invoice_number AS v FROM invoices WHERE id = '$A1'") $(value alice-tablet "SELECT invoice_number AS v FROM invoices WHERE id = '$A2'")"
expect "number 3 went to bob's submitted invoice, which arrived after them" "INV-$MONTH-00003" \
  "$(value bob-phone "SELECT invoice_number AS v FROM invoices WHERE id = '$B1'")"
expect "bob's unsubmitted draft keeps its provisional number" "DRAFT-$B2" \
  "$(value bob-phone "SELECT invoice_number AS v FROM invoices WHERE id = '$B2'")"
expect "each device holds only its rep's invoices" "rep_alice:2 rep_bob:2" \
  "$(value alice-tablet "SELECT group_concat(DISTINCT owner) || ':' || count(*) AS v FROM invoices") $(value bob-phone "SELECT group_concat(DISTINCT owner) || ':' || count(*) AS v FROM invoices")"
expect "the origin issued exactly 1..3 this month, no gap" "1 2 3" \
  "$(sql -c "SELECT string_agg(value::text, ' ' ORDER BY value) FROM ofs.gapless_issued WHERE sequence_name = 'invoice_seq'")"

say "The origin rejected bob's approval; his phone rolled it back"
expect "bob's invoice is back to the origin's row: submitted, official number" "submitted INV-$MONTH-00003" \
  "$(value bob-phone "SELECT status || ' ' || invoice_number AS v FROM invoices WHERE id = '$B1'")"
dev bob-phone rejected
REJ=$OUT
note "ofs-cli rejected on bob's phone shows the intent, the origin's message and the hint:"
printf '%s\n' "$REJ" | cut -c1-150 | sed 's/$/.../' | indent
note "  message: $(jget "$REJ" message)"
note "  hint:"
echo "SELECT jsonb_pretty(:'j'::jsonb -> 'hint')" | ofs_psql -d postgres -v j="$REJ" 2>&1 | sed 's/^/         /'
expect "one rejected intent, kept with its hint" "1" "$(printf '%s\n' "$REJ" | grep -c .)"
expect "the hint: role manager required, roll back to the submitted row" "OF002 role_required manager submitted" \
  "$(jget "$REJ" sqlstate) $(jget "$REJ" hint,kind) $(jget "$REJ" hint,required_role) $(jget "$REJ" hint,row,status)"
expect "the origin keeps it as a dead letter" "bob-phone OF002 open" \
  "$(sql -c "SELECT device || ' ' || sqlstate || ' ' || status FROM ofs.dead_letters")"
expect "row-level security: on the origin each rep sees only their own invoices" "2 2 4" \
  "$(as_role rep_alice -c "SELECT count(*) FROM invoices") $(as_role rep_bob -c "SELECT count(*) FROM invoices") $(as_role mgr_carol -c "SELECT count(*) FROM invoices")"

say "The back office: carol approves, dan issues"
sql -c "SELECT ofs.discard_dead_letter(id) FROM ofs.dead_letters WHERE device = 'bob-phone'" >/dev/null
note "carol takes bob's approval over, and the administrator closes his dead letter (while it is open,"
note "later edits of that invoice from his phone are held back as dependent on the rejected one)"
as_role mgr_carol -c "UPDATE invoices SET status = 'approved' WHERE id IN ('$A1', '$B1')" >/dev/null
note "carol (manager) approves $(value alice-tablet "SELECT invoice_number AS v FROM invoices WHERE id = '$A1'") and INV-$MONTH-00003 on the origin"
expect "both are approved" "approved approved" \
  "$(sql -c "SELECT string_agg(status, ' ') FROM invoices WHERE id IN ('$A1', '$B1')")"
out=$(as_role acct_dan -c "UPDATE invoices SET status = 'issued', invoice_number = 'DRAFT-$A1' WHERE id = '$A1'")
note "a script of dan's (accountant) issues alice's invoice but prints the tablet's provisional number:"
printf '%s\n' "$out" | indent
expect_has "the check refuses an issued invoice with a DRAFT- number" 'official_number_required' "$out"
as_role acct_dan -c "UPDATE invoices SET status = 'issued' WHERE id = '$A1'" >/dev/null
expect "with its official number it is issued" "issued INV-$MONTH-00001" \
  "$(sql -c "SELECT status || ' ' || invoice_number FROM invoices WHERE id = '$A1'")"

say "The same field edited on two sides at once"
note "alice, offline, sets her second invoice's amount to 125.00; a moment later carol corrects it on the origin:"
on alice-tablet "UPDATE invoices SET amount = '125.00' WHERE id = '$A2'"
as_role mgr_carol -c "UPDATE invoices SET amount = 118.00 WHERE id = '$A2'" >/dev/null
note "  origin (mgr_carol)> UPDATE invoices SET amount = 118.00 ..."
note "the other way round on bob's invoice: carol sets 95.00 on the origin first, then bob, offline, 95.50:"
as_role mgr_carol -c "UPDATE invoices SET amount = 95.00 WHERE id = '$B1'" >/dev/null
note "  origin (mgr_carol)> UPDATE invoices SET amount = 95.00 ..."
on bob-phone "UPDATE invoices SET amount = '95.50' WHERE id = '$B1'"
sql -c "INSERT INTO tax_rates VALUES ('ca-next', 'CA', 0.0750, date_trunc('month', now()) + interval '1 month'),
                                     ('wa-next', 'WA', 0.0700, date_trunc('month', now()) + interval '1 month')" >/dev/null
note "meanwhile the origin publishes next month's CA and WA rates"
note "every write carries a hybrid logical clock (a time, then a counter); the origin keeps the later one,"
note "whatever order the writes arrive in:"
# race DEVICE ID DEVICE_VALUE ORIGIN_VALUE: which write the clocks make the later one.
race() {
  local d=$1 id=$2 mine=$3 theirs=$4 dh oh
  dh=$(value "$d" "SELECT hlc AS v FROM _ofs_outbox WHERE json_extract(pk, '\$.id') = '$id' ORDER BY seq DESC LIMIT 1")
  oh=$(sql -c "SELECT ofs_internal.row_versions('invoices'::regclass, jsonb_build_object('id', '$id')) #>> '{amount,0}'")
  if [ "${dh:-0}" -gt "${oh:-0}" ] 2>/dev/null; then WIN=$mine; else WIN=$theirs; fi
  note "  $d's $mine at $(clock "$dh"), the origin's $theirs at $(clock "$oh"): $WIN is later"
}
race alice-tablet "$A2" 125.00 118.00; WIN_A=$WIN
race bob-phone "$B1" 95.50 95.00; WIN_B=$WIN
if [ "$WIN_B" = 95.00 ]; then
  note "(bob wrote after carol, yet his clock is earlier: for up to 10 s after its restart the origin's clock"
  note " runs ahead of the wall clock, so that it never repeats a value even after a crash, and the devices"
  note " take it up when they sync; until the wall clock catches up, the counters order the writes)"
fi
sync_dev alice-tablet
sync_dev bob-phone
expect "alice's invoice converged: $WIN_A on her tablet and on the origin" "$WIN_A $WIN_A" \
  "$(value alice-tablet "SELECT amount AS v FROM invoices WHERE id = '$A2'") $(sql -c "SELECT amount FROM invoices WHERE id = '$A2'")"
expect "bob's invoice converged: $WIN_B on his phone and on the origin" "$WIN_B $WIN_B" \
  "$(value bob-phone "SELECT amount AS v FROM invoices WHERE id = '$B1'") $(sql -c "SELECT amount FROM invoices WHERE id = '$B1'")"
expect "the new CA rate reached alice's tablet only; bob's phone still holds NV and OR" "CA:2 NV,OR" \
  "$(value alice-tablet "SELECT group_concat(DISTINCT jurisdiction) || ':' || count(*) AS v FROM tax_rates") $(value bob-phone "SELECT group_concat(jurisdiction) AS v FROM (SELECT DISTINCT jurisdiction FROM tax_rates ORDER BY 1)")"

say "Both devices and the origin agree"
cols="id, invoice_number, owner, customer_id, jurisdiction, amount, tax_rate, status"
for who in alice-tablet:rep_alice bob-phone:rep_bob; do
  d=${who%%:*}; role=${who##*:}
  dev "$d" exec "SELECT $cols FROM invoices ORDER BY id"
  devrows="[$(printf '%s\n' "$OUT" | paste -sd, -)]"
  note "$d holds:"
  printf '%s\n' "$OUT" | indent
  origin=$(as_role "$role" -c "SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'invoice_number', invoice_number,
      'owner', owner, 'customer_id', customer_id, 'jurisdiction', jurisdiction, 'amount', amount::text,
      'tax_rate', tax_rate::text, 'status', status) ORDER BY id), '[]') FROM invoices")
  expect "$d's invoices equal the origin's rows as $role sees them" "t" \
    "$(same_json "$devrows" "$origin")"
  expect "$d has no pending intent" "0" "$(pending "$d")"
done
for who in "alice-tablet:jurisdiction = 'CA'" "bob-phone:jurisdiction IN ('NV','OR')"; do
  d=${who%%:*}; shape=${who#*:}
  dev "$d" exec "SELECT id, jurisdiction, rate, effective_from FROM tax_rates ORDER BY id"
  devrows="[$(printf '%s\n' "$OUT" | paste -sd, -)]"
  origin=$(sql -c "SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'jurisdiction', jurisdiction,
      'rate', rate::text, 'effective_from', effective_from::text) ORDER BY id), '[]') FROM tax_rates WHERE $shape")
  expect "$d's tax rates equal the origin's rows where $shape" "t" \
    "$(same_json "$devrows" "$origin")"
done
note "the audit of every state change: who made it, and from which device:"
sql -c "SELECT format('%-32s %-9s -> %-9s by %-9s %s', i.invoice_number, coalesce(l.from_state, '(new)'), l.to_state, l.role,
               coalesce('from ' || l.device, 'on the origin'))
          FROM ofs.transition_log l JOIN invoices i ON i.id = l.pk->>'id' ORDER BY l.id" | indent
expect "the audit holds the 10 state changes" "10" "$(sql -c "SELECT count(*) FROM ofs.transition_log")"

say "Watching it: /metrics for Prometheus, /status for whoever is on call"
metrics=$(curl -s --max-time 5 "http://127.0.0.1:$HTTPPORT/metrics")
applied=$(printf '%s\n' "$metrics" | awk '/^ofs_mutations_total\{result="applied"\}/ { print $2 }')
expect "/metrics counts the mutations the origin applied, as ofs.stats does" \
  "$(sql -c "SELECT mutations_applied FROM ofs.stats")" "$applied"
token=$(sql -c "SELECT ofs.create_status_token('demo')")
expect "/status is refused without a status token" "401" \
  "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$HTTPPORT/status")"
expect "/status is served with one" "200" \
  "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$HTTPPORT/status?token=$token")"

echo
if [ "$FAILS" -eq 0 ]; then echo "demo: every expectation held ($((SECONDS - START)) s)"
else echo "demo: $FAILS expectation(s) failed"; fi
if [ "${OFS_DEMO_KEEP:-}" = 1 ]; then
  echo
  echo "The origin keeps running (OFS_DEMO_KEEP=1); Ctrl-C stops it and removes everything."
  echo "  status page:  http://127.0.0.1:$HTTPPORT/status?token=$token"
  echo "  metrics:      http://127.0.0.1:$HTTPPORT/metrics"
  echo "  psql:         psql -h $PGHOST -p $PGPORT -U $PGUSER ofs_demo"
  echo "  devices:      $CLI --db $TMP/alice-tablet.db status"
  while :; do sleep 3600; done
fi
[ "$FAILS" -eq 0 ]
