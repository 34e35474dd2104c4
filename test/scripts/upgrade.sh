#!/usr/bin/env bash
# upgrade: ALTER EXTENSION ofs UPDATE on a live origin, as users do it.
#
# The cluster runs the shared library of this tree from the start (it is
# installed first; the SQL follows).  The extension is created at 1.0 from
# the script exactly as released, and filled: a gap-free sequence with
# issued numbers, a transition constraint and check, a synced table with
# feed entries, two devices with tokens, subscriptions (one filtered), held
# rows and a dead letter.  Then, with one device live, ALTER EXTENSION ofs
# UPDATE.  Afterwards:
#   - the database equals a fresh install of the default version, object
#     for object (test/lib/schema_signature.sql: functions, types, tables and
#     their attribute numbers, views, indexes, triggers, grants, initial
#     privileges, comments, membership, dumped configuration);
#   - ofs's data is what it was;
#   - the live device hears of an origin write, the other device pushes
#     and pulls without a re-snapshot, numbering continues without a gap;
# and the sync workers follow the SQL they find: they wait, with one log
# line, for a missing extension, for SQL older than they serve and for SQL
# newer than the library, closing live connections meanwhile, and serve
# again when it is right.
set -uo pipefail
. "$OFS_ROOT/test/lib/devices.sh"

# ofs--1.0.sql as released (SPEC.md: frozen byte for byte).
RELEASED_1_0_SHA256=220ff1258df2931cf4e63498a81548a57869c2221521116913b248d652808c92
SIG="$OFS_ROOT/test/lib/schema_signature.sql"
DEFAULT_VERSION=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$OFS_ROOT/ofs.control")

check_eq "ofs--1.0.sql is the released 1.0 script, byte for byte" \
  "$(sha256sum "$OFS_ROOT/ofs--1.0.sql" | cut -d' ' -f1)" "$RELEASED_1_0_SHA256"
check "every version from 1.0 to $DEFAULT_VERSION has a full script" \
  "[ -f '$OFS_ROOT/ofs--$DEFAULT_VERSION.sql' ]"

# No compaction: it would change ofs's data while the test compares it.
DEV_EXT_VERSION=none dev_origin upgrade "ofs.compact_interval = 0"
LOG="$DEV_DIR/cluster/server.log"
# log_count TEXT: lines of the server log holding TEXT.
log_count() { grep -cF -- "$1" "$LOG"; }
# wait_for SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
  local end=$((SECONDS + $1)); shift
  while [ $SECONDS -lt $end ]; do "$@" && return 0; sleep 0.2; done
  return 1
}
log_has() { [ "$(log_count "$1")" -ge "${2:-1}" ]; }

# No extension yet: the workers wait, saying so once each.
wait_for 10 log_has 'is waiting for the ofs extension in database "upgrade"' 2
sleep 2.5
check_eq "without the extension, each sync worker logs one line and waits" \
  "$(log_count 'ofs sync worker is waiting for the ofs extension in database "upgrade"')" 2
check "... and does not listen" "! dev_listening"

dev_sql -c "CREATE EXTENSION ofs VERSION '1.0'" >/dev/null || die "CREATE EXTENSION ofs VERSION '1.0'"
dev_wait_listening 10 || die "the workers do not serve 1.0"
check "the new library's workers serve the SQL of 1.0" \
  "log_has 'ofs sync worker serves version 1.0 of the ofs extension in database \"upgrade\"' 2"
check_eq "ofs.library_version() does not exist before the update" \
  "$(dev_sql -c "SELECT count(*) FROM pg_proc WHERE proname = 'library_version'")" 0

# Fill 1.0: numbering, rules, sync, devices, a dead letter.
dev_sql >/dev/null <<'SQL' || die "schema at 1.0"
CREATE ROLE up_rep;
SELECT ofs.create_gapless_sequence('up_inv', 'UP-{n:4}');
CREATE TABLE items (
  id text PRIMARY KEY,
  number text,
  status text NOT NULL DEFAULT 'draft',
  qty int NOT NULL CHECK (qty >= 0),
  note text,
  hits int NOT NULL DEFAULT 0
);
-- Official numbers are issued by the origin, in arrival order.
CREATE FUNCTION items_number() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN NEW.number := ofs.gapless_next('up_inv'); RETURN NEW; END $$;
CREATE TRIGGER items_number BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION items_number();
GRANT SELECT, INSERT, UPDATE, DELETE ON items TO up_rep;
SELECT ofs.add_transition_constraint('items', 'flow', 'status',
  $$'draft' -> 'open', 'open' -> 'done', 'open' -> 'draft'$$, ARRAY['draft']);
SELECT ofs.add_transition_check('items', 'done_has_qty', $$NEW.status <> 'done' OR NEW.qty > 0$$);
SELECT ofs.sync_table('items', '{"hits": "counter", "note": "manual"}');
INSERT INTO items (id, qty, note) SELECT 'o' || i, i, 'origin ' || i FROM generate_series(1, 150) i;
UPDATE items SET status = 'open' WHERE id IN ('o1', 'o2', 'o3');
UPDATE items SET status = 'done' WHERE id = 'o1';
DELETE FROM items WHERE id = 'o150';
SQL
dev_new dev_a up_rep items
dev_new dev_b up_rep
dev_new dev_c up_rep
cli dev_b subscribe items "qty <= 100" >/dev/null || die "filtered subscription"
cli dev_c subscribe items "qty <= 100" >/dev/null || die "filtered subscription of C"
for d in dev_a dev_b dev_c; do out=$(cli $d sync) || die "first sync of $d: $out"; done
cli dev_a exec "
INSERT INTO items (id, status, qty, note) VALUES ('a1', 'draft', 5, 'from A'), ('a2', 'draft', 6, 'from A');
INSERT INTO items (id, status, qty, note) VALUES ('bad', 'draft', -1, 'the origin refuses this');
UPDATE items SET status = 'open' WHERE id = 'o4';
UPDATE items SET hits = hits + 2 WHERE id = 'o5';" || die "A's writes at 1.0"
out=$(cli dev_a sync); note "A's sync at 1.0: $out"
check_eq "at 1.0, with the new library, a push is applied" "$(printf '%s\n' "$out" | tail -1 | jq -r .applied)" 4
check_eq "... and the refused insert is a dead letter" \
  "$(dev_sql -c "SELECT count(*) FROM ofs.dead_letters WHERE device = 'dev_a' AND status = 'open'")" 1
cli dev_b sync >/dev/null || die "B's second sync at 1.0"
# C is live at 1.0 while rows outside its shape are written: live rounds
# move the origin's record of its cursor on without sending it anything,
# so the cursor C keeps lags that record when C goes away.
cli_bg dev_c live --seconds 20; live_c=$CLI_PID
sleep 2
dev_sql -c "INSERT INTO items (id, qty, note) VALUES ('outside-c', 500, 'not in the shape of B and C')" >/dev/null
sleep 2
kill "$live_c" 2>/dev/null; wait "$live_c" 2>/dev/null
check "at 1.0 the devices hold rows" \
  "[ \"\$(dev_sql -c 'SELECT count(*) FROM ofs.device_row')\" -gt 200 ]"
check "at 1.0 numbers were issued" \
  "[ \"\$(dev_sql -c 'SELECT count(*) FROM ofs.gapless_issued')\" -eq 153 ]"
check "at 1.0 the transition log has rows" \
  "[ \"\$(dev_sql -c 'SELECT count(*) FROM ofs.transition_log')\" -ge 4 ]"

# ofs's data, one JSON line per row of each of its tables of 1.0 (the
# columns that move on their own are left out: a live device's contact and
# its cursor as live rounds advance it, the maintenance worker's last
# compaction).
OFS_TABLES_1_0=$(dev_sql -c "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'ofs'::regnamespace
                                AND c.relkind = 'r' ORDER BY 1")
declare -A OFS_COLUMNS_1_0
for t in $OFS_TABLES_1_0; do
  OFS_COLUMNS_1_0[$t]=$(dev_sql -c "SELECT array_agg(attname ORDER BY attnum)::text FROM pg_attribute
                                     WHERE attrelid = 'ofs.$t'::regclass AND attnum > 0 AND NOT attisdropped
                                       AND attname NOT IN ('last_contact', 'caught_up_at', 'last_cursor', 'page_seq', 'compacted_at')")
done
# Columns that an update adds are not compared: only those of 1.0.
ofs_data() {
  local t
  for t in $OFS_TABLES_1_0; do
    dev_sql -c "SELECT '$t ' || (SELECT jsonb_object_agg(k, v) FROM jsonb_each(to_jsonb(x)) e(k, v)
                                   WHERE k = ANY ('${OFS_COLUMNS_1_0[$t]}'::text[]))::text FROM ofs.$t x" | LC_ALL=C sort
  done
}
before=$(ofs_data)
note "ofs's tables hold $(printf '%s\n' "$before" | wc -l) rows before the update"

# B goes live; the update happens while it is connected.
cli_bg dev_b live --seconds 30; live_b=$CLI_PID
connected() { [ "$(dev_sql -c 'SELECT connected_devices FROM ofs.stats')" -ge 1 ]; }
wait_for 10 connected || notok "B is connected before the update"
sleep 0.5
serving_before=$(log_count "ofs sync worker serves version $DEFAULT_VERSION of the ofs extension")
hellos_before=$(dev_sql -c 'SELECT sessions FROM ofs.stats')
dev_sql -c "ALTER EXTENSION ofs UPDATE" >/dev/null
check_eq "ALTER EXTENSION ofs UPDATE reaches the default version" \
  "$(dev_sql -c "SELECT extversion FROM pg_extension WHERE extname = 'ofs'")" "$DEFAULT_VERSION"
check "the workers notice the update at once (the script wakes them)" \
  "wait_for 3 log_has 'ofs sync worker serves version $DEFAULT_VERSION of the ofs extension' $((serving_before + 2))"
check_eq "the update made the key that seals cursors" "$(dev_sql -c 'SELECT count(*) FROM ofs.cursor_key WHERE length(key) = 32')" 1
check_eq "ofs.library_version() is the default version of ofs.control" \
  "$(dev_sql -c 'SELECT ofs.library_version()')" "$DEFAULT_VERSION"
after=$(ofs_data)
check_same "ofs's data survived the update" "$after" "$before"

# The upgraded database equals a fresh install, object for object.
ofs_psql -d postgres -c "CREATE DATABASE upgrade_fresh" >/dev/null
ofs_psql -d upgrade_fresh -c "CREATE EXTENSION ofs" >/dev/null || notok "a fresh CREATE EXTENSION ofs"
psql -X -q -v ON_ERROR_STOP=1 -d upgrade -f "$SIG" >"$DEV_DIR/upgraded.sig" 2>&1 || notok "signature of the upgraded database" "$(cat "$DEV_DIR/upgraded.sig")"
psql -X -q -v ON_ERROR_STOP=1 -d upgrade_fresh -f "$SIG" >"$DEV_DIR/fresh.sig" 2>&1 || notok "signature of the fresh database" "$(cat "$DEV_DIR/fresh.sig")"
note "$(wc -l <"$DEV_DIR/fresh.sig") lines of schema signature"
if diff "$DEV_DIR/upgraded.sig" "$DEV_DIR/fresh.sig" >"$DEV_DIR/sig.diff"; then
  ok "the upgraded extension equals a fresh install of $DEFAULT_VERSION, object for object"
else
  notok "the upgraded extension equals a fresh install of $DEFAULT_VERSION, object for object" \
    "(< upgraded, > fresh: the upgrade script and the full script disagree)
$(grep '^[<>]' "$DEV_DIR/sig.diff" | cut -c1-400 | head -30)"
fi
check "the schema signature covers functions, columns, grants and comments" \
  "grep -q '^function ofs.gapless_next(text)' '$DEV_DIR/fresh.sig' && grep -q '^column ofs.change_log #12 captured_at' '$DEV_DIR/fresh.sig' && grep -q '^init privs ' '$DEV_DIR/fresh.sig'"

# Devices after the update: no re-snapshot, writes both ways.
dev_sql -c "INSERT INTO items (id, qty, note) VALUES ('after-origin', 7, 'written after the update')" >/dev/null
has() { [ "$(sqlite3 "$DEV_DIR/$1.db" "SELECT count(*) FROM items WHERE id = '$2'" 2>/dev/null)" = 1 ]; }
check "the live device hears of an origin write made after the update" "wait_for 10 has dev_b after-origin"
check_eq "... on the connection it had before the update (no hello since)" \
  "$(dev_sql -c 'SELECT sessions FROM ofs.stats')" "$hellos_before"
cli dev_a exec "
INSERT INTO items (id, status, qty, note) VALUES ('after-a', 'draft', 8, 'from A after the update');
UPDATE items SET status = 'done' WHERE id = 'o4';
UPDATE items SET hits = hits + 3 WHERE id = 'o5';" || notok "A's writes after the update"
out=$(cli dev_a sync); rc=$?
note "A's sync after the update: $out"
check_eq "A syncs after the update" "$rc" 0
check_eq "... its three writes are applied" "$(printf '%s\n' "$out" | tail -1 | jq -r .applied)" 3
pulled=$(printf '%s\n' "$out" | tail -1 | jq -r .pulled)
check "... and it pulls only what changed, not a snapshot ($pulled rows)" "[ '$pulled' -ge 1 ] && [ '$pulled' -le 10 ]"
check "... and stores a cursor sealed by the origin" \
  "sqlite3 '$DEV_DIR/dev_a.db' \"SELECT value FROM _ofs_meta WHERE key = 'cursor'\" | grep -q '^c1\\.'"
out=$(cli dev_c sync); note "C's sync after the update: $out"
pulled=$(printf '%s\n' "$out" | tail -1 | jq -r .pulled)
check "a device whose live cursor lagged at 1.0 syncs after the update without a snapshot ($pulled rows)" \
  "[ '$pulled' -ge 1 ] && [ '$pulled' -le 10 ]"
check_eq "numbering continues without a gap after the update" \
  "$(dev_sql -c "SELECT count(*) || ' ' || min(value) || ' ' || max(value) FROM ofs.gapless_issued WHERE sequence_name = 'up_inv'")" "155 1 155"
check_eq "the transition check and the log work after the update" \
  "$(dev_sql -c "SELECT count(*) FROM ofs.transition_log WHERE device = 'dev_a' AND to_state = 'done'")" 1
check_eq "the counter adds up across the update" "$(dev_sql -c "SELECT hits FROM items WHERE id = 'o5'")" 5
check "the live device receives A's row" "wait_for 10 has dev_b after-a"
kill "$live_b" 2>/dev/null; wait "$live_b" 2>/dev/null
cli dev_b sync >/dev/null || notok "B's sync after the update"
cli dev_a sync >/dev/null || notok "A's second sync after the update"
check_same "device A equals the origin" \
  "$(dev_rows dev_a "SELECT id, number, status, qty, hits FROM items")" \
  "$(origin_rows "SELECT row_to_json(t) FROM (SELECT id, number, status, qty, hits FROM items) t")"
check_same "device B equals its shape of the origin" \
  "$(dev_rows dev_b "SELECT id, number, status, qty, hits FROM items")" \
  "$(origin_rows "SELECT row_to_json(t) FROM (SELECT id, number, status, qty, hits FROM items WHERE qty <= 100) t")"

# SQL newer than the library, then older than it serves: the workers close
# live connections, stop listening and wait with one line each; they serve
# again when the SQL is right.  (pg_extension is edited by hand to stand
# for a library left behind, or a version this library no longer serves.)
cli_bg dev_b live --seconds 30; live_b=$CLI_PID
wait_for 10 connected || notok "B is live again"
set_version() {
  dev_sql -c "UPDATE pg_extension SET extversion = '$1' WHERE extname = 'ofs'" -c "SELECT ofs.notify_device_change()" >/dev/null
}
set_version 99.0
check "SQL newer than the library closes the workers' connections" \
  "wait_for 5 eval '[ \"\$(dev_sql -c \"SELECT connected_devices FROM ofs.stats\")\" = 0 ]'"
check "... and they stop listening" "wait_for 5 eval '! dev_listening'"
sleep 2.5
check_eq "... with one log line each saying what to do" \
  "$(log_count 'ofs sync worker is waiting: the ofs extension in database "upgrade" is at version 99.0, newer than this library')" 2
check "... which names the library to install" "log_has 'HINT:  Install the ofs shared library of version 99.0'"
set_version 0.9
wait_for 5 log_has 'is at version 0.9, older than this library' 2
sleep 1.5
check_eq "SQL older than the library serves: one line each" "$(log_count 'ofs sync worker is waiting: the ofs extension in database "upgrade" is at version 0.9, older than this library')" 2
check "... which says to run ALTER EXTENSION ofs UPDATE" "log_has 'HINT:  Run ALTER EXTENSION ofs UPDATE in database \"upgrade\"'"
set_version "$DEFAULT_VERSION"
check "once the SQL is right the workers listen again" "wait_for 10 dev_listening"
dev_sql -c "INSERT INTO items (id, qty, note) VALUES ('after-wait', 9, 'after the workers waited')" >/dev/null
check "the live device reconnects and hears of a new write" "wait_for 20 has dev_b after-wait"
kill "$live_b" 2>/dev/null; wait "$live_b" 2>/dev/null
check "no worker crashed" "! grep -q 'terminated by signal' '$LOG'"

# A table of ofs's that the library writes directly, in a layout it does not
# know (here: a column it has never heard of), is refused with a clear
# error, never written at the wrong positions.
known=$(dev_sql -c "SELECT count(*) FROM pg_attribute WHERE attrelid = 'ofs.change_log'::regclass AND attnum > 0 AND NOT attisdropped")
out=$(dev_sql -c "BEGIN" -c "ALTER TABLE ofs.change_log ADD COLUMN from_the_future int" \
  -c "INSERT INTO items (id, qty) VALUES ('future', 1)" -c "ROLLBACK" 2>&1)
check "a directly written table of an unknown layout is refused, with what to do" \
  "printf '%s' \"\$out\" | grep -q 'ofs.change_log has $((known + 1)) columns, but this ofs library knows only $known' &&
   printf '%s' \"\$out\" | grep -q 'HINT:  Install the ofs shared library of the version shown by'" "$out"
check_eq "... and nothing was written" "$(dev_sql -c "SELECT count(*) FROM items WHERE id = 'future'")" 0

dev_finish
