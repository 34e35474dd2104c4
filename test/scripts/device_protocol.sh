#!/usr/bin/env bash
# device_protocol: the protocol's atomic groups, clocks, rejections,
# up_to_date and cursor_too_old, end to end with ofs-cli devices.
#
# 1. A transaction of an invoice and its lines (ofs-cli exec "BEGIN; ...;
#    COMMIT") reaches the origin whole; one whose last line breaks a CHECK
#    is rolled back whole, on the origin and on the device, its three
#    intents kept as rejected in one group (23514 and OF021 twice).
# 2. The origin's view of the device's rejections is fetched by the sync
#    (three open dead letters) and cleared with rejected --clear.
# 3. Clocks: device A's clock runs 20 s ahead (within ofs.max_clock_skew);
#    device B, whose wall clock is behind A's stamp, receives A's edit and
#    edits the same column: B's edit must win, since B's clock followed
#    the origin's.
# 4. status says synced after a sync with nothing pending, as of the
#    origin's clock.
# 5. cursor_too_old: device B restored from a backup taken before two
#    syncs confirmed newer cursors starts afresh, keeps a write made after
#    the restore, and ends equal to the origin.
set -uo pipefail
. "$OFS_ROOT/test/lib/devices.sh"

dev_origin devices_protocol "ofs.max_clock_skew = 30000"

dev_sql >/dev/null <<'SQL' || die "schema"
CREATE ROLE pr_rep;
CREATE TABLE invoices (id text PRIMARY KEY, title text, total numeric(10,2));
CREATE TABLE lines (invoice text NOT NULL REFERENCES invoices (id) DEFERRABLE INITIALLY DEFERRED,
                    n int NOT NULL, amount numeric(10,2) CHECK (amount > 0), PRIMARY KEY (invoice, n));
GRANT SELECT, INSERT, UPDATE, DELETE ON invoices, lines TO pr_rep;
SELECT ofs.sync_table('invoices');
SELECT ofs.sync_table('lines');
INSERT INTO invoices VALUES ('inv-0', 'from the origin', 1);
CREATE TABLE notes (id text PRIMARY KEY, body text);
CREATE TABLE secrets (id text PRIMARY KEY);
GRANT SELECT ON notes TO pr_rep;
SELECT ofs.sync_table('notes');
SELECT ofs.sync_table('secrets');
SQL
INVOICES="SELECT row_to_json(t) FROM (SELECT id, title, total::text AS total FROM invoices) t"
LINES="SELECT row_to_json(t) FROM (SELECT invoice, n, amount::text AS amount FROM lines) t"
dev_invoices() { dev_rows "$1" "SELECT id, title, total FROM invoices"; }
dev_lines() { dev_rows "$1" "SELECT invoice, n, amount FROM lines"; }
# meta NAME KEY: a value of the device's _ofs_meta, read exactly (jq reads
# integers beyond 2^53, such as clocks, as doubles).
meta() { sqlite3 "$DEV_DIR/$1.db" "SELECT value FROM _ofs_meta WHERE key = '$2'"; }

dev_new dev_a pr_rep invoices lines
dev_new dev_b pr_rep invoices lines
for d in dev_a dev_b; do out=$(cli $d sync 2>&1) || die "first sync of $d: $out"; done

# --- Discovery: what the device may subscribe to ----------------------------
out=$(cli dev_a tables 2>&1); rc=$?
check "tables asks the origin (exit 0)" "[ $rc -eq 0 ]" "$out"
check_eq "... and lists every synced table the role may read, and which are subscribed" \
  "$(printf '%s\n' "$out" | jq -r '"\(.table) \(.subscribed) \(.primary_key | join(","))"' | sort | tr '\n' ';')" \
  "public.invoices true id;public.lines true invoice,n;public.notes false id;"

# 1. Groups.
cli dev_a exec "BEGIN;
  INSERT INTO invoices (id, title, total) VALUES ('inv-1', 'whole', '3.00');
  INSERT INTO lines (invoice, n, amount) VALUES ('inv-1', 1, '1.00');
  INSERT INTO lines (invoice, n, amount) VALUES ('inv-1', 2, '2.00');
  COMMIT;" >/dev/null || notok "device A writes a transaction"
out=$(cli dev_a sync 2>&1); rc=$?
check "a sync pushes a transaction of three writes (exit 0)" "[ $rc -eq 0 ]" "$out"
check_eq "... applied whole" "$(printf '%s\n' "$out" | tail -1 | jq -c '[.applied, .rejected]')" "[3,0]"
check_eq "the origin has the invoice and its two lines" \
  "$(dev_sql -c "SELECT (SELECT count(*) FROM invoices WHERE id = 'inv-1') || ' ' || (SELECT count(*) FROM lines WHERE invoice = 'inv-1')")" "1 2"

cli dev_a exec "BEGIN;
  INSERT INTO invoices (id, title, total) VALUES ('inv-2', 'broken', '4.00');
  INSERT INTO lines (invoice, n, amount) VALUES ('inv-2', 1, '5.00');
  INSERT INTO lines (invoice, n, amount) VALUES ('inv-2', 2, '-1.00');
  COMMIT;" >/dev/null || notok "device A writes a transaction the origin will refuse"
out=$(cli dev_a sync 2>&1); rc=$?
check "a sync pushes a transaction whose last write breaks a CHECK (exit 0)" "[ $rc -eq 0 ]" "$out"
check_eq "... all three rejected" "$(printf '%s\n' "$out" | tail -1 | jq -c '[.applied, .rejected]')" "[0,3]"
check_eq "nothing of it is on the origin" \
  "$(dev_sql -c "SELECT (SELECT count(*) FROM invoices WHERE id = 'inv-2') + (SELECT count(*) FROM lines WHERE invoice = 'inv-2')")" "0"
check_eq "nothing of it is left on the device" \
  "$(cli dev_a exec "SELECT (SELECT count(*) FROM invoices WHERE id = 'inv-2') + (SELECT count(*) FROM lines WHERE invoice = 'inv-2') AS n" | jq .n)" "0"
rej=$(cli dev_a rejected)
check_eq "the device keeps the three intents as rejected: 23514 once, OF021 twice" \
  "$(printf '%s\n' "$rej" | jq -r .sqlstate | LC_ALL=C sort | tr '\n' ' ')" "23514 OF021 OF021 "
check_eq "... in one group" "$(printf '%s\n' "$rej" | jq -r '.group // "none"' | sort -u | grep -vc none)" "1"
check_eq "... the OF021 ones with hint group_rolled_back" \
  "$(printf '%s\n' "$rej" | jq -r 'select(.sqlstate == "OF021") | .hint.kind' | sort -u)" "group_rolled_back"

# 2. The origin's view of the rejections.
view=$(cli dev_a rejected --origin 2>&1); rc=$?
check "rejected --origin works (exit 0)" "[ $rc -eq 0 ]" "$view"
check_eq "the sync fetched the origin's three open dead letters" \
  "$(printf '%s\n' "$view" | jq -r 'select(.kind == "dead_letter" and .status == "open") | .operation_id' | grep -c .)" "3"
check_eq "... the dead letters of the rejected intents" \
  "$(printf '%s\n' "$rej" | jq -r 'select(.origin != null) | .origin.status' | sort -u)" "open"
check_eq "status counts them" "$(dev_status dev_a dead_letters)" "3"
ids=$(printf '%s\n' "$view" | jq -r 'select(.kind == "dead_letter") | "dl:\(.id)"' | paste -sd, -)
out=$(cli dev_a rejected --clear "$ids" 2>&1); rc=$?
check "rejected --clear $ids works (exit 0)" "[ $rc -eq 0 ]" "$out"
check_eq "... and the origin lists them no more" "$(printf '%s\n' "$out" | grep -c '"dead_letter"')" "0"
check_eq "... having discarded them" \
  "$(dev_sql -c "SELECT count(*) FROM ofs.dead_letters WHERE device = 'dev_a' AND status = 'open'" 2>/dev/null)" "0"

# 3. Clocks: A's clock 20 s ahead, B's wall clock behind A's stamp.  B is
# live: A's edit reaches it in a live page (not in a welcome), and B's own
# edit is made by another process (ofs-cli exec), which must still stamp it
# after the clock the live page brought.
wait_for() {
  local end=$((SECONDS + $1)); shift
  while [ $SECONDS -lt $end ]; do "$@" && return 0; sleep 0.2; done
  return 1
}
title_is() { [ "$(sqlite3 "$DEV_DIR/$1.db" "SELECT title FROM invoices WHERE id = 'inv-0'" 2>/dev/null)" = "$2" ]; }
origin_title_is() { [ "$(dev_sql -c "SELECT title FROM invoices WHERE id = 'inv-0'")" = "$1" ]; }
cli_bg dev_b live --seconds 12; live_b=$CLI_PID
wait_for 10 grep -q '"state"\|"event"' "$DEV_DIR/dev_b.bg.out" 2>/dev/null
sleep 1
ahead=$(( ($(date +%s%3N) + 20000) << 16 ))
sqlite3 "$DEV_DIR/dev_a.db" "INSERT OR REPLACE INTO _ofs_meta (key, value) VALUES ('hlc', '$ahead')" ||
  notok "device A's clock set ahead"
cli dev_a exec "UPDATE invoices SET title = 'A, 20 s ahead' WHERE id = 'inv-0'" >/dev/null
cli dev_a sync >/dev/null || notok "device A syncs its edit"
check "live device B receives A's edit" "wait_for 8 title_is dev_b 'A, 20 s ahead'" "$(tail -n 3 "$DEV_DIR/dev_b.bg.out")"
check "device B's stored clock followed the origin's past A's stamp" "[ $(meta dev_b hlc) -ge $ahead ]" \
  "B's clock $(meta dev_b hlc), A's stamp $ahead"
cli dev_b exec "UPDATE invoices SET title = 'B, after seeing A' WHERE id = 'inv-0'" >/dev/null
check "B's edit (another process than the live one) is stamped after A's" \
  "[ $(sqlite3 "$DEV_DIR/dev_b.db" "SELECT coalesce(max(hlc), 0) FROM _ofs_outbox") -gt $ahead ] || origin_title_is 'B, after seeing A'"
check "B's edit, made after seeing A's, wins on the origin" "wait_for 8 origin_title_is 'B, after seeing A'" \
  "origin: $(dev_sql -c "SELECT title FROM invoices WHERE id = 'inv-0'")"
wait $live_b; rc=$?
check "B's live process ends with exit 0" "[ $rc -eq 0 ]" "$(tail -n 3 "$DEV_DIR/dev_b.bg.out")"

# 4. Synced.
for d in dev_a dev_b; do
  out=$(cli $d sync 2>&1) || notok "sync of $d" "$out"
  check_eq "$d: status says synced, nothing pending" "$(cli $d status | jq -c '[.synced, .up_to_date, .pending]')" "[true,true,0]"
  check "$d: synced as of an origin clock no later than its own" \
    "[ -n \"$(meta $d synced_hlc)\" ] && [ $(meta $d synced_hlc) -le $(meta $d hlc) ]"
done
cli dev_a exec "UPDATE invoices SET total = '9.00' WHERE id = 'inv-1'" >/dev/null
check_eq "a pending write: not synced" "$(dev_status dev_a synced)" "false"
cli dev_a sync >/dev/null

# 5. cursor_too_old: B restored from a backup.
sqlite3 "$DEV_DIR/dev_b.db" ".backup '$DEV_DIR/dev_b.backup'" || notok "backup of device B"
dev_sql -c "INSERT INTO invoices VALUES ('inv-9', 'after the backup', 9)" >/dev/null
cli dev_b sync >/dev/null || notok "B syncs after the backup"
dev_sql -c "INSERT INTO invoices VALUES ('inv-10', 'after the backup too', 10); DELETE FROM lines WHERE invoice = 'inv-1' AND n = 2" >/dev/null
cli dev_b sync >/dev/null || notok "B syncs again (confirming a newer cursor)"
cli dev_b sync >/dev/null || notok "B syncs once more"
rm -f "$DEV_DIR/dev_b.db-wal" "$DEV_DIR/dev_b.db-shm"
cp "$DEV_DIR/dev_b.backup" "$DEV_DIR/dev_b.db"
cli dev_b exec "INSERT INTO invoices (id, title, total) VALUES ('inv-b', 'written after the restore', '2.00')" >/dev/null ||
  notok "device B writes after the restore"
out=$(cli dev_b sync 2>&1); rc=$?
check "the restored device syncs (exit 0): it starts afresh on cursor_too_old" "[ $rc -eq 0 ]" "$out"
check_eq "... its write made after the restore reached the origin" \
  "$(dev_sql -c "SELECT title FROM invoices WHERE id = 'inv-b'")" "written after the restore"
cli dev_a sync >/dev/null
for d in dev_a dev_b; do
  check_same "$d: invoices equal the origin's" "$(dev_invoices $d)" "$(origin_rows "$INVOICES")"
  check_same "$d: lines equal the origin's" "$(dev_lines $d)" "$(origin_rows "$LINES")"
done
check "no server process crashed" "! grep -q 'terminated by signal' '$OFS_CLUSTER_DIR/server.log'"
dev_finish
