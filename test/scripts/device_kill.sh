#!/usr/bin/env bash
# device_kill: devices killed (SIGKILL) in the middle of ofs-cli sync.
#
# 1. A device is killed during a large initial pull (20,000 rows) several
#    times, at seeded random points, the origin changing rows in between:
#    what it holds is always rows of the origin, and after a sync it holds
#    exactly the origin's rows.  Then the device, holding 20,000 rows,
#    pulls 300 changes: at once, also before the origin has statistics of
#    the rows devices hold.
# 2. A device with 5,220 pending intents (5,000 inserts, 200 counter
#    increments, 20 updates the origin rejects) is killed during sync
#    several times at seeded random points; then sync is restarted until
#    it succeeds.  Nothing is lost (every insert on the origin once),
#    nothing is applied twice (each intent has one result on the origin,
#    the counters hold exactly the increments), the rejected intents are in
#    the device's rejected list and rolled back, and the device equals the
#    origin.
# 3. The answer to a push is lost: the push waits on the origin (the
#    device's advisory lock), the device is killed, then the origin applies
#    the batch.  The next sync re-sends it and gets "duplicate" answers: the
#    device must still end as if it had read the first answers.
#
# Autovacuum is off so that statistics exist only where the test makes
# them (ANALYZE): part 1 runs on a fresh origin without statistics (its
# timing is taken without, then with); parts 2 and 3 run after an ANALYZE
# once their device holds rows.
set -uo pipefail
. "$OFS_ROOT/test/lib/devices.sh"

SEED=${OFS_SEED:-$(( (RANDOM << 15) | RANDOM ))}
note "seed $SEED (OFS_SEED=$SEED repeats the random choices)"
RANDOM=$SEED
dev_origin devices_kill "autovacuum = off"

dev_sql >/dev/null <<'SQL' || die "schema"
CREATE ROLE kill_rep;
CREATE TABLE items (id text PRIMARY KEY, title text, qty int CHECK (qty >= 0), hits int NOT NULL DEFAULT 0);
GRANT SELECT, INSERT, UPDATE, DELETE ON items TO kill_rep;
SELECT ofs.sync_table('items', '{"hits": "counter"}');
INSERT INTO items (id, title, qty) SELECT 'b' || lpad(i::text, 3, '0'), 'base ' || i, i FROM generate_series(1, 300) i;
CREATE TABLE big (id int PRIMARY KEY, payload text, n int);
GRANT SELECT ON big TO kill_rep;
SELECT ofs.sync_table('big');
INSERT INTO big SELECT i, md5(i::text) || '-' || md5((i * 7)::text), i % 97 FROM generate_series(1, 20000) i;
SQL

ITEMS="SELECT row_to_json(t) FROM (SELECT id, title, qty, hits FROM items) t"
BIG="SELECT row_to_json(t) FROM (SELECT id, payload, n FROM big) t"

# killed_pushes NAME COUNT: up to COUNT syncs of NAME, each killed once
# the origin has answered for a random number (300 to 1,500) more of its
# pending intents (the last one: once none is left, during the pull that
# follows), a few random milliseconds later.
pending_now() { sqlite3 "$DEV_DIR/$1.db" "SELECT count(*) FROM _ofs_outbox" 2>/dev/null || echo -1; }
killed_pushes() {
  local name=$1 i start want pid ms
  for i in $(seq 1 "$2"); do
    start=$(pending_now "$name"); want=$(( start - 300 - RANDOM % 1200 )); ms=$((RANDOM % 30))
    [ $start -eq 0 ] && break
    [ $want -lt 0 ] && want=0
    cli_bg "$name" sync; pid=$CLI_PID
    while kill -0 "$pid" 2>/dev/null && [ "$(pending_now "$name")" -gt $want ]; do sleep 0.01; done
    sleep "0.$(printf '%03d' $ms)"
    if kill -9 "$pid" 2>/dev/null; then wait "$pid" 2>/dev/null; note "kill $i of $name: pending $start, killed at $(pending_now "$name") (+${ms} ms)"
    else wait "$pid"; note "kill $i of $name: pending $start, the sync had ended (exit $?)"; fi
  done
}

# killed_pulls NAME COUNT MIN SPAN: COUNT syncs of NAME, each killed once
# the device holds MIN + a random part of SPAN more rows of big than when
# it started (or when the sync ends first).
big_rows() { sqlite3 "$DEV_DIR/$1.db" "SELECT count(*) FROM big" 2>/dev/null || echo 0; }
killed_pulls() {
  local name=$1 i want start pid
  for i in $(seq 1 "$2"); do
    start=$(big_rows "$name"); want=$(( start + $3 + RANDOM % $4 ))
    cli_bg "$name" sync; pid=$CLI_PID
    while kill -0 "$pid" 2>/dev/null && [ "$(big_rows "$name")" -lt $want ]; do sleep 0.02; done
    if kill -9 "$pid" 2>/dev/null; then wait "$pid" 2>/dev/null; note "kill $i of $name at $(big_rows "$name") rows (from $start, aiming at $want)"
    else wait "$pid"; note "kill $i of $name: the sync had ended (exit $?) at $(big_rows "$name") rows"; fi
  done
}

# --- 1. A large initial pull ---------------------------------------------------
dev_new kill_c kill_rep big
killed_pulls kill_c 3 500 3000
held=$(dev_rows kill_c "SELECT id, payload, n FROM big"); origin=$(origin_rows "$BIG")
note "after 3 kills the device holds $(printf '%s\n' "$held" | grep -c .) of 20000 rows"
check_eq "what the device holds after the kills are rows of the origin" \
  "$(comm -23 <(printf '%s\n' "$held" | grep .) <(printf '%s\n' "$origin") | head -3)" ""
dev_sql -c "DELETE FROM big WHERE id % 200 = 0" \
        -c "UPDATE big SET payload = 'changed', n = n + 1000 WHERE id % 200 = 1" \
        -c "INSERT INTO big SELECT i, 'new', 0 FROM generate_series(20001, 20100) i" >/dev/null
killed_pulls kill_c 3 300 2000
check "after the kills, sync succeeds" "dev_sync_until kill_c 6"
check_same "the device holds exactly the origin's rows" "$(dev_rows kill_c "SELECT id, payload, n FROM big")" "$(origin_rows "$BIG")"
check_eq "... 20,000 - 100 + 100 rows" "$(cli kill_c exec "SELECT count(*) AS c FROM big" | jq .c)" 20000
note "kills of the initial pull done at ${SECONDS}s"

# A device holding 20,000 rows pulls about 300 changes (one page): before
# the origin has statistics of the rows devices hold, then after.
timed_sync() {
  dev_sql -c "UPDATE big SET n = n + 1 WHERE id % 67 = $1" >/dev/null
  local start out rc
  start=$(date +%s%N)
  out=$(cli kill_c sync 2>&1); rc=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  note "sync of ~300 changes for a device holding 20,000 rows ($2): ${ms} ms: $out"
  [ $rc -eq 0 ]
}
timed_sync 2 "no statistics"; rc=$?; ms_cold=$ms
dev_sql -c "ANALYZE ofs.device_row" >/dev/null
timed_sync 3 "after ANALYZE ofs.device_row"; ms_warm=$ms
check "a device holding 20,000 rows syncs 300 changes in under 2 s (took ${ms_cold} ms; ${ms_warm} ms once ofs.device_row is analyzed)" \
  "[ $rc -eq 0 ] && [ $ms_cold -lt 2000 ]"
check_same "... and equals the origin" "$(dev_rows kill_c "SELECT id, payload, n FROM big")" "$(origin_rows "$BIG")"

# --- 2. Pending intents -----------------------------------------------------
dev_new kill_a kill_rep items
cli kill_a sync >/dev/null || die "first sync of kill_a"
dev_sql -c "ANALYZE" >/dev/null     # statistics for parts 2 and 3
# Each statement commits on its own (one transaction would be one atomic
# group, larger than a push may be): an insert of 250 rows is a group.
sql=""
for c in $(seq 0 19); do
  sql+="WITH RECURSIVE s(i) AS (SELECT $((c * 250 + 1)) UNION ALL SELECT i + 1 FROM s WHERE i < $((c * 250 + 250)))
        INSERT INTO items (id, title, qty) SELECT printf('k%05d', i), 'n' || i, i FROM s;"
  for m in $(seq 0 9); do
    sql+="UPDATE items SET hits = hits + 1 WHERE id = printf('b%03d', $(( (c * 10 + m) % 50 + 1 )));"
  done
  sql+="UPDATE items SET qty = -1 WHERE id = printf('b%03d', $((201 + c)));"
done
cli kill_a exec "$sql" || die "the device's writes"
check_eq "the device holds 5,220 pending intents" "$(dev_status kill_a pending)" 5220

killed_pushes kill_a 8
check "after the kills, sync succeeds with nothing pending" "dev_sync_until kill_a 10"
cli kill_a sync >/dev/null

check_eq "every insert is on the origin once, as written" \
  "$(dev_sql -c "SELECT count(*) || '/' || count(*) FILTER (WHERE title = 'n' || substr(id, 2)::int AND qty = substr(id, 2)::int)
                   FROM items WHERE id LIKE 'k%'")" "5000/5000"
check_eq "the counters hold each increment once" \
  "$(dev_sql -c "SELECT coalesce(string_agg(id || '=' || hits, ' '), '') FROM items
                   WHERE id LIKE 'b%' AND hits <> CASE WHEN substr(id, 2)::int <= 50 THEN 4 ELSE 0 END")" ""
check_eq "the origin has one result per intent: 5,200 applied, 20 rejected" \
  "$(dev_sql -c "SELECT count(*) || ' ' || count(DISTINCT operation_id) || ' ' || count(*) FILTER (WHERE status = 'applied')
                        || ' ' || count(*) FILTER (WHERE status = 'rejected') FROM ofs.applied_op WHERE device = 'kill_a'")" \
  "5220 5220 5200 20"
check_eq "the origin kept 20 dead letters" "$(dev_sql -c "SELECT count(*) FROM ofs.dead_letters WHERE device = 'kill_a'")" 20
check_eq "the device's rejected list holds the 20 rejected intents (check violations)" \
  "$(cli kill_a rejected | jq -s -r '[length, ([.[] | select(.sqlstate == "23514")] | length)] | join(" ")')" "20 20"
check_same "the rejected updates are rolled back on the device" \
  "$(dev_rows kill_a "SELECT id, title, qty, hits FROM items WHERE id BETWEEN 'b201' AND 'b220'")" \
  "$(origin_rows "$ITEMS WHERE id BETWEEN 'b201' AND 'b220'")"
check_same "the device equals the origin" "$(dev_rows kill_a "SELECT id, title, qty, hits FROM items")" "$(origin_rows "$ITEMS")"

note "part 2 done at ${SECONDS}s"

# --- 3. A lost answer ----------------------------------------------------------
dev_new kill_b kill_rep items
cli kill_b sync >/dev/null || die "first sync of kill_b"
cli kill_b exec "INSERT INTO items (id, title, qty) VALUES ('lost1', 'lost answer', 1);
                 UPDATE items SET hits = hits + 1 WHERE id = 'b051';
                 UPDATE items SET qty = -1 WHERE id = 'b221';" || die "kill_b's writes"
dev_lock "hashtext('ofs.device')" "hashtext('kill_b')" || die "advisory lock"
cli_bg kill_b sync; pid=$CLI_PID
for _ in $(seq 1 50); do dev_waiting_on_lock && break; sleep 0.1; done
check "the push waits on the origin" "dev_waiting_on_lock"
kill -9 $pid; wait $pid 2>/dev/null
dev_unlock
for _ in $(seq 1 50); do
  [ "$(dev_sql -c "SELECT count(*) FROM ofs.applied_op WHERE device = 'kill_b' AND status <> 'applying'")" = 3 ] && break
  sleep 0.1
done
check_eq "the origin applied the batch after the device died" \
  "$(dev_sql -c "SELECT string_agg(status, ',' ORDER BY status) FROM ofs.applied_op WHERE device = 'kill_b'")" "applied,applied,rejected"
check_eq "the device still holds its 3 intents" "$(dev_status kill_b pending)" 3
out=$(cli kill_b sync 2>&1); rc=$?
note "kill_b: $out"
check "the next sync succeeds" "[ $rc -eq 0 ]" "$out"
check_eq "the re-sent insert is on the origin once, the increment counted once" \
  "$(dev_sql -c "SELECT (SELECT count(*) FROM items WHERE id = 'lost1') || ' ' || (SELECT hits FROM items WHERE id = 'b051')")" "1 1"
check_eq "the origin has one result per intent" "$(dev_sql -c "SELECT count(*) FROM ofs.applied_op WHERE device = 'kill_b'")" 3
check_eq "the intent rejected by the first answer is in the device's rejected list" \
  "$(cli kill_b rejected | jq -s -r '[.[] | .pk.id + " " + .sqlstate] | join(",")')" "b221 23514"
check_same "the rejected update is rolled back on the device (b221)" \
  "$(dev_rows kill_b "SELECT id, title, qty, hits FROM items WHERE id = 'b221'")" "$(origin_rows "$ITEMS WHERE id = 'b221'")"
cli kill_b sync >/dev/null
check_same "the device equals the origin" "$(dev_rows kill_b "SELECT id, title, qty, hits FROM items")" "$(origin_rows "$ITEMS")"

note "part 3 done at ${SECONDS}s"
check "the server never crashed" "! grep -q 'terminated by signal' '$OFS_CLUSTER_DIR/server.log'"
note "runtime ${SECONDS}s"
dev_finish
