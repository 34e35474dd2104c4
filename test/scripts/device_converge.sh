#!/usr/bin/env bash
# device_converge: two devices (two SQLite files driven by ofs-cli) edit the
# same table offline: conflicting edits of the same rows (lww columns, a
# manual column, a counter column), edits of different rows, inserts and
# deletes on both, then a batch of seeded random edits.  Both sync twice;
# afterwards both devices and the origin hold the same rows, the merge
# rules gave the documented results (later clock wins, increments add up,
# the delete wins, a concurrent manual change is a conflict recorded on the
# origin and on the device), and every intent was answered exactly once.
# Last, a write made on a device while its sync is pulling (held on the
# origin by the pull's advisory lock) meets an origin write of the same row:
# two more syncs must still leave the device equal to the origin.
set -uo pipefail
. "$OFS_ROOT/test/lib/devices.sh"

SEED=${OFS_SEED:-$(( (RANDOM << 15) | RANDOM ))}
note "seed $SEED (OFS_SEED=$SEED reproduces the random edits)"
dev_origin devices_converge

dev_sql >/dev/null <<'SQL' || die "schema"
CREATE ROLE conv_rep;
CREATE TABLE items (id text PRIMARY KEY, title text, qty int, price numeric(10,2), note text,
                    hits int NOT NULL DEFAULT 0);
GRANT SELECT, INSERT, UPDATE, DELETE ON items TO conv_rep;
SELECT ofs.sync_table('items', '{"note": "manual", "hits": "counter"}');
INSERT INTO items (id, title, qty, price, note)
  SELECT 'r' || lpad(i::text, 3, '0'), 'title ' || i, i, (i || '.25')::numeric, 'note ' || i FROM generate_series(1, 200) i;
SQL

COLS="id, title, qty, price, note, hits"
origin_items() { origin_rows "SELECT row_to_json(t) FROM (SELECT id, title, qty, price::text AS price, note, hits FROM items) t"; }
device_items() { dev_rows "$1" "SELECT $COLS FROM items"; }
origin_row() { dev_sql -c "SELECT row_to_json(t) FROM (SELECT id, title, qty, price::text AS price, note, hits FROM items WHERE id = '$1') t" | jq -cS .; }
device_row() { cli "$1" exec "SELECT $COLS FROM items WHERE id = '$2'" | jq -cS .; }
field() { origin_row "$1" | jq -r ".$2"; }

dev_new dev_a conv_rep items
dev_new dev_b conv_rep items
for d in dev_a dev_b; do
  out=$(cli $d sync) || die "first sync of $d: $out"
done
O=$(origin_items)
check_same "device A starts with the origin's 200 rows" "$(device_items dev_a)" "$O"
check_same "device B starts with the origin's 200 rows" "$(device_items dev_b)" "$O"

# Offline edits.  A edits first, B later: B's clock is later wherever both
# wrote the same lww column.  B syncs first, so A's older writes arrive last.
cli dev_a exec "
UPDATE items SET title = 'A1' WHERE id = 'r001';
UPDATE items SET qty = 222 WHERE id = 'r002';
UPDATE items SET note = 'A3' WHERE id = 'r003';
UPDATE items SET note = 'same' WHERE id = 'r004';
UPDATE items SET note = 'A5' WHERE id = 'r005';
UPDATE items SET hits = hits + 1 WHERE id = 'r006';
UPDATE items SET hits = hits + 1 WHERE id = 'r006';
UPDATE items SET hits = hits + 1 WHERE id = 'r006';
DELETE FROM items WHERE id = 'r007';
UPDATE items SET title = 'A8' WHERE id = 'r008';
DELETE FROM items WHERE id = 'r009';
UPDATE items SET price = '12.50' WHERE id = 'r010';
UPDATE items SET title = 'A-' || id WHERE id BETWEEN 'r011' AND 'r020';
INSERT INTO items (id, title, qty, price) VALUES ('dup1', 'from A', 1, '1.00');
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 10)
  INSERT INTO items (id, title, qty, price, note) SELECT printf('a%02d', i), 'A new ' || i, i, '0.10', 'A' FROM s;
" || die "A's edits"
sleep 0.01
cli dev_b exec "
UPDATE items SET title = 'B1' WHERE id = 'r001';
UPDATE items SET title = 'B2' WHERE id = 'r002';
UPDATE items SET note = 'B3' WHERE id = 'r003';
UPDATE items SET note = 'same' WHERE id = 'r004';
UPDATE items SET hits = hits + 5 WHERE id = 'r006';
UPDATE items SET title = 'B7' WHERE id = 'r007';
DELETE FROM items WHERE id = 'r008';
DELETE FROM items WHERE id = 'r009';
UPDATE items SET qty = qty + 1000 WHERE id BETWEEN 'r021' AND 'r030';
INSERT INTO items (id, title, qty, price) VALUES ('dup1', 'from B', 2, '2.00');
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 10)
  INSERT INTO items (id, title, qty, price, note) SELECT printf('b%02d', i), 'B new ' || i, i, '0.20', 'B' FROM s;
" || die "B's edits"

# Seeded random edits of rows r101..r200 (and new rows of each device's own).
# Increments are remembered to check that concurrent increments add up.
declare -A INC DEL
RANDOM=$SEED
random_edits() {
  local d=$1 tag=$2 i r id k sql=""
  for i in $(seq 1 80); do
    r=$((RANDOM % 100)); id="r$((101 + RANDOM % 100))"; k=$RANDOM
    if [ $r -lt 30 ]; then sql+="UPDATE items SET title = '$tag t$k' WHERE id = '$id';"
    elif [ $r -lt 45 ]; then sql+="UPDATE items SET qty = $k WHERE id = '$id';"
    elif [ $r -lt 60 ]; then sql+="UPDATE items SET note = '$tag n$k' WHERE id = '$id';"
    elif [ $r -lt 65 ]; then sql+="UPDATE items SET price = '$((k % 1000)).$((k % 10))5' WHERE id = '$id';"
    elif [ $r -lt 85 ]; then
      sql+="UPDATE items SET hits = hits + $((k % 3 + 1)) WHERE id = '$id';"
      [ -z "${DEL[$d$id]:-}" ] && INC[$id]=$(( ${INC[$id]:-0} + k % 3 + 1 ))
    elif [ $r -lt 92 ]; then sql+="DELETE FROM items WHERE id = '$id';"; DEL[$id]=1; DEL[$d$id]=1
    else sql+="INSERT INTO items (id, title, qty, price, note) VALUES ('$tag-$i', '$tag $k', $((k % 50)), '$((k % 100)).01', '$tag');"
    fi
  done
  cli "$d" exec "$sql" || die "random edits of $d"
}
random_edits dev_a ra
random_edits dev_b rb

pa=$(dev_status dev_a pending); pb=$(dev_status dev_b pending)
note "pending intents: A $pa, B $pb"

# Two rounds: B, A, B, A.
declare -A SUM
for round in 1 2; do
  for d in dev_b dev_a; do
    out=$(cli $d sync 2>&1); rc=$?
    check "round $round: $d syncs (exit 0)" "[ $rc -eq 0 ]" "exit $rc: $out"
    note "$d: $out"
    for f in applied rejected conflicts; do
      v=$(printf '%s\n' "$out" | tail -1 | jq -r ".$f" 2>/dev/null)
      SUM[$d.$f]=$(( ${SUM[$d.$f]:-0} + ${v:-0} ))
    done
  done
done

O=$(origin_items)
check_same "device A equals the origin" "$(device_items dev_a)" "$O"
check_same "device B equals the origin" "$(device_items dev_b)" "$O"
for d in dev_a dev_b; do
  check_eq "$d has no pending intent" "$(dev_status $d pending)" 0
done

# The merge rules.
check_eq "lww: the later write wins although it arrived first (r001.title)" "$(field r001 title)" "B1"
check_eq "lww: different columns of one row both apply (r002)" "$(field r002 title)/$(field r002 qty)" "B2/222"
check_eq "manual: the first write stays (r003.note)" "$(field r003 note)" "B3"
check_eq "manual: the same value on both sides is no conflict (r004.note)" "$(field r004 note)" "same"
check_eq "manual: a change on one side applies (r005.note)" "$(field r005 note)" "A5"
check_eq "counter: 3 + 5 increments add up (r006.hits)" "$(field r006 hits)" "8"
check_eq "delete wins over a concurrent update (r007, r008) and a double delete is fine (r009)" \
  "$(dev_sql -c "SELECT count(*) FROM items WHERE id IN ('r007', 'r008', 'r009')")" 0
check_eq "numeric travels as exact decimal text (r010.price)" "$(field r010 price)" "12.50"
check_eq "non-conflicting edits of different rows all apply" \
  "$(dev_sql -c "SELECT count(*) FROM items WHERE (id BETWEEN 'r011' AND 'r020' AND title = 'A-' || id)
                   OR (id BETWEEN 'r021' AND 'r030' AND qty = substr(id, 2)::int + 1000)")" 20
check_eq "inserts of both devices are on the origin" \
  "$(dev_sql -c "SELECT count(*) FROM items WHERE id ~ '^[ab][0-9][0-9]$'")" 20
check_eq "the same key inserted on both: the first stays (dup1)" "$(field dup1 title)" "from B"

# Conflicts: recorded on the origin, and by the device whose write lost.
check_eq "the origin recorded the manual conflict of r003 (device A's value, B's kept)" \
  "$(dev_sql -c "SELECT device || ' ' || column_name || ' ' || device_value::text || ' ' || origin_value::text
                   FROM ofs.conflicts WHERE pk->>'id' = 'r003'")" 'dev_a note "A3" "B3"'
check_eq "no conflict was recorded for r004 (same value) or r005 (one side)" \
  "$(dev_sql -c "SELECT count(*) FROM ofs.conflicts WHERE pk->>'id' IN ('r004', 'r005')")" 0
check "device A keeps its conflict of r003" \
  "[ \"\$(sqlite3 '$DEV_DIR/dev_a.db' \"SELECT count(*) FROM _ofs_conflicts WHERE json_extract(pk, '\$.id') = 'r003'\")\" = 1 ]"
oc_a=$(dev_sql -c "SELECT count(*) FROM ofs.conflicts WHERE device = 'dev_a' AND column_name = 'note'")
oc_b=$(dev_sql -c "SELECT count(*) FROM ofs.conflicts WHERE device = 'dev_b' AND column_name = 'note'")
note "conflicts on the origin: A $oc_a, B $oc_b"
check_eq "every conflict on the origin is one the device recorded (A)" "$(dev_status dev_a conflicts)" "$oc_a"
check_eq "every conflict on the origin is one the device recorded (B)" "$(dev_status dev_b conflicts)" "$oc_b"

# Rejections: B's deletes make A's update of r008 and A's insert of dup1 fail.
rej_a=$(cli dev_a rejected | jq -cs '[.[] | {id: .pk.id, sqlstate}] | sort_by(.id)')
note "A rejected: $rej_a"
check "A's update of r008 (deleted by B) is rejected as row missing (P0002)" \
  "printf '%s' '$rej_a' | jq -e 'any(.[]; .id == \"r008\" and .sqlstate == \"P0002\")' >/dev/null"
check "A's insert of dup1 (inserted by B) is rejected as a unique violation (23505)" \
  "printf '%s' '$rej_a' | jq -e 'any(.[]; .id == \"dup1\" and .sqlstate == \"23505\")' >/dev/null"

# Every intent was answered once: as many results on the origin as intents.
for d in dev_a dev_b; do
  p=$([ $d = dev_a ] && echo "$pa" || echo "$pb")
  check_eq "$d: the origin holds one result per intent ($p)" \
    "$(dev_sql -c "SELECT count(*) FROM ofs.applied_op WHERE device = '$d'")" "$p"
  check_eq "$d: the sync summaries account for every intent" \
    "$(( ${SUM[$d.applied]} + ${SUM[$d.rejected]} + ${SUM[$d.conflicts]} ))" "$p"
  check_eq "$d: its rejected intents are the origin's dead letters" \
    "$(dev_status $d rejected)" "$(dev_sql -c "SELECT count(*) FROM ofs.dead_letters WHERE device = '$d'")"
done

# Counter increments of the random edits add up on rows nobody deleted.
bad=""
for id in "${!INC[@]}"; do
  [[ $id == r* ]] || continue
  [ -n "${DEL[$id]:-}" ] && continue
  got=$(field "$id" hits)
  [ "$got" = "${INC[$id]}" ] || bad+="$id: expected ${INC[$id]}, got $got; "
done
check "random increments of both devices add up on every surviving row" "[ -z '$bad' ]" "$bad"

# A write made while the device's sync is pulling.  The pull waits for the
# device's advisory lock; meanwhile the device writes rows r031 (an lww
# column) and r032 (the manual column), then the origin writes the same
# columns (later, so the origin's lww value wins).  The held sync applies
# the origin's rows and replays the device's pending intents on top; the
# next sync pushes them: the origin keeps its values.  After two more
# syncs the device must equal the origin.
for d in dev_a dev_b; do cli $d sync >/dev/null || die "sync of $d"; done
dev_lock "hashtext('ofs.pull')" "hashtext('dev_a')" || die "advisory lock"
cli_bg dev_a sync; held=$CLI_PID
for _ in $(seq 1 50); do dev_waiting_on_lock && break; sleep 0.1; done
check "the sync of A waits for its pull" "dev_waiting_on_lock"
cli dev_a exec "UPDATE items SET title = 'A during pull' WHERE id = 'r031';
                UPDATE items SET note = 'A during pull' WHERE id = 'r032'" || die "write during the pull"
sleep 0.01
dev_sql -c "UPDATE items SET title = 'origin later' WHERE id = 'r031'" \
        -c "UPDATE items SET note = 'origin later' WHERE id = 'r032'" >/dev/null
dev_unlock
wait $held; rc=$?
check "the held sync ends (exit 0)" "[ $rc -eq 0 ]" "$(cat "$DEV_DIR/dev_a.bg.out")"
note "held sync: $(cat "$DEV_DIR/dev_a.bg.out")"
for i in 1 2; do out=$(cli dev_a sync 2>&1) || notok "sync of A after the held one" "$out"; note "dev_a: $out"; done
cli dev_b sync >/dev/null
check_eq "lww: the origin keeps its later write of r031" "$(field r031 title)" "origin later"
check_eq "manual: the origin keeps its write of r032" "$(field r032 note)" "origin later"
check_same "after an lww write that lost, device A's r031 equals the origin's" "$(device_row dev_a r031)" "$(origin_row r031)"
check_same "after a manual conflict, device A's r032 equals the origin's" "$(device_row dev_a r032)" "$(origin_row r032)"
O=$(origin_items)
check_same "device A equals the origin at the end" "$(device_items dev_a)" "$O"
check_same "device B equals the origin at the end" "$(device_items dev_b)" "$O"
check "the server never crashed" "! grep -q 'terminated by signal' '$OFS_CLUSTER_DIR/server.log'"
note "runtime ${SECONDS}s"
dev_finish
