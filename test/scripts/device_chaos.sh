#!/usr/bin/env bash
# device_chaos: four devices, each with a role of its own, write at random
# (inserts, lww updates, updates the origin rejects, manual and counter
# columns, deletes, keys several devices insert) on a shared table and on a
# table where row-level security gives each device its own rows, some of
# them while a sync of the device runs.  Connectivity comes and goes at
# random: some rounds sync and some do not, a device is pointed at a
# closed port for a few rounds, and the whole cluster is stopped for a few
# seconds.  Then every device syncs, twice: each replica equals the origin
# (its own rows of the per-device table), every intent the device made is
# either applied on the origin or in the device's rejected list, and the
# device's rejections and conflicts are the origin's.  The random choices
# come from a seed, printed first (OFS_SEED repeats them; the timing of
# the processes still varies).
set -uo pipefail
export LC_ALL=C
. "$OFS_ROOT/test/lib/devices.sh"

SEED=${OFS_SEED:-$(( (RANDOM << 15) | RANDOM ))}
note "seed $SEED (OFS_SEED=$SEED repeats the random choices)"
ROUNDS=${CHAOS_ROUNDS:-40}
DEVICES="d1 d2 d3 d4"
dev_origin devices_chaos

dev_sql >/dev/null <<'SQL' || die "schema"
CREATE ROLE chaos_rep;
CREATE ROLE chaos_d1 IN ROLE chaos_rep;
CREATE ROLE chaos_d2 IN ROLE chaos_rep;
CREATE ROLE chaos_d3 IN ROLE chaos_rep;
CREATE ROLE chaos_d4 IN ROLE chaos_rep;
CREATE TABLE shared (id text PRIMARY KEY, title text, qty int CHECK (qty >= 0), note text,
                     hits int NOT NULL DEFAULT 0);
CREATE TABLE mine (id text PRIMARY KEY, owner name NOT NULL DEFAULT current_user, v int, label text);
ALTER TABLE mine ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON mine USING (owner = current_user) WITH CHECK (owner = current_user);
GRANT SELECT, INSERT, UPDATE, DELETE ON shared, mine TO chaos_rep;
SELECT ofs.sync_table('shared', '{"note": "manual", "hits": "counter"}');
SELECT ofs.sync_table('mine');
INSERT INTO shared (id, title, qty, note) SELECT 'x' || lpad(i::text, 2, '0'), 'title ' || i, i, 'note ' || i
  FROM generate_series(1, 40) i;
INSERT INTO mine (id, owner, v, label) SELECT 'init-' || d || '-' || i, 'chaos_d' || d, i, 'initial'
  FROM generate_series(1, 4) d, generate_series(1, 10) i;
SQL
SHARED_O="SELECT row_to_json(t) FROM (SELECT id, title, qty, note, hits FROM shared) t"
SHARED_D="SELECT id, title, qty, note, hits FROM shared"
mine_o() { echo "SELECT row_to_json(t) FROM (SELECT id, owner, v, label FROM mine WHERE owner = 'chaos_$1') t"; }
MINE_D="SELECT id, owner, v, label FROM mine"

CLOSED_PORT=$(ofs_free_port)
for d in $DEVICES; do
  dev_new $d chaos_$d shared mine
  cli $d sync >/dev/null || die "first sync of $d"
  # Every intent the device makes is also logged here, to account for it
  # (its operation id: its transaction and place in hex, docs/client.md).
  sqlite3 "$DEV_DIR/$d.db" "CREATE TABLE test_intents (op_id TEXT);
    CREATE TRIGGER test_intents_shared AFTER INSERT ON _ofs_intents_shared BEGIN
      INSERT INTO test_intents VALUES (printf('%016x%016x', NEW.txn, NEW.seq)); END;
    CREATE TRIGGER test_intents_mine AFTER INSERT ON _ofs_intents_mine BEGIN
      INSERT INTO test_intents VALUES (printf('%016x%016x', NEW.txn, NEW.seq)); END;" ||
    die "the intent log of $d"
done

# writes NAME TAG: a random batch of writes into SQL (in this shell, so
# that the seeded sequence of RANDOM is followed).
writes() {
  local d=$1 tag=$2 j r
  SQL=""
  for j in $(seq 1 $((RANDOM % 6 + 1))); do
    r=$((RANDOM % 100))
    if [ $r -lt 25 ]; then
      SQL+="INSERT INTO shared (id, title, qty, note) VALUES ('$d-$tag-$j', '$d new', $((RANDOM % 100)), '$d');"
    elif [ $r -lt 30 ]; then
      SQL+="INSERT OR IGNORE INTO shared (id, title, qty) VALUES ('c$((RANDOM % 12))', 'contested by $d', 1);"
    elif [ $r -lt 45 ]; then
      SQL+="UPDATE shared SET title = '$d $tag.$j' WHERE id = (SELECT id FROM shared ORDER BY id LIMIT 1 OFFSET $((RANDOM % 40)));"
    elif [ $r -lt 53 ]; then
      # One in four is negative: the origin's CHECK rejects it.
      SQL+="UPDATE shared SET qty = $(( RANDOM % 4 == 0 ? -1 : RANDOM % 500 )) WHERE id = (SELECT id FROM shared ORDER BY id LIMIT 1 OFFSET $((RANDOM % 40)));"
    elif [ $r -lt 61 ]; then
      SQL+="UPDATE shared SET note = '$d n$tag.$j' WHERE id = (SELECT id FROM shared ORDER BY id LIMIT 1 OFFSET $((RANDOM % 40)));"
    elif [ $r -lt 69 ]; then
      SQL+="UPDATE shared SET hits = hits + $((RANDOM % 3 + 1)) WHERE id = (SELECT id FROM shared ORDER BY id LIMIT 1 OFFSET $((RANDOM % 40)));"
    elif [ $r -lt 74 ]; then
      SQL+="DELETE FROM shared WHERE id = (SELECT id FROM shared ORDER BY id LIMIT 1 OFFSET $((RANDOM % 40)));"
    elif [ $r -lt 84 ]; then
      SQL+="INSERT INTO mine (id, v, label) VALUES ('$d-m$tag-$j', $((RANDOM % 1000)), 'new');"
    elif [ $r -lt 95 ]; then
      SQL+="UPDATE mine SET v = v + 1, label = '$tag' WHERE id = (SELECT id FROM mine ORDER BY id LIMIT 1 OFFSET $((RANDOM % 20)));"
    else
      SQL+="DELETE FROM mine WHERE id = (SELECT id FROM mine ORDER BY id LIMIT 1 OFFSET $((RANDOM % 20)));"
    fi
  done
}

# chaos_device NAME SEED: the device's rounds.  Each round writes, maybe
# loses or regains the origin, and maybe syncs; one sync in four runs while
# the device writes more (an application does not stop for a sync).  Logs:
# NAME.syncs (one exit code a line, with whether it was offline), NAME.round.
chaos_device() {
  local d=$1 round rc offline=0 token sp
  RANDOM=$2
  token=$(dev_token $d)
  for round in $(seq 1 $ROUNDS); do
    echo "$round" >"$DEV_DIR/$d.round"
    writes $d "$round"
    "$OFS_CLI" --db "$DEV_DIR/$d.db" exec "$SQL" >/dev/null 2>>"$DEV_DIR/$d.exec.err" ||
      echo "round $round: exec failed: $SQL" >>"$DEV_DIR/$d.exec.err"
    # Connectivity: now and then the device loses the origin for a few rounds.
    if [ $offline -gt 0 ]; then
      offline=$((offline - 1))
      [ $offline -eq 0 ] && "$OFS_CLI" --db "$DEV_DIR/$d.db" init --url "$DEV_URL" --token "$token" >/dev/null
    elif [ $((RANDOM % 10)) -eq 0 ]; then
      offline=$((RANDOM % 3 + 2))
      "$OFS_CLI" --db "$DEV_DIR/$d.db" init --url "ws://127.0.0.1:$CLOSED_PORT/" --token "$token" >/dev/null
    fi
    if [ $((RANDOM % 100)) -lt 55 ]; then
      if [ $((RANDOM % 4)) -eq 0 ]; then
        timeout 40 "$OFS_CLI" --db "$DEV_DIR/$d.db" sync >"$DEV_DIR/$d.last" 2>&1 &
        sp=$!
        writes $d "${round}w"
        "$OFS_CLI" --db "$DEV_DIR/$d.db" exec "$SQL" >/dev/null 2>>"$DEV_DIR/$d.exec.err" ||
          echo "round $round: exec during a sync failed: $SQL" >>"$DEV_DIR/$d.exec.err"
        wait $sp; rc=$?
      else
        timeout 40 "$OFS_CLI" --db "$DEV_DIR/$d.db" sync >"$DEV_DIR/$d.last" 2>&1; rc=$?
      fi
      echo "$rc $([ $offline -gt 0 ] && echo offline || echo online) round $round $(tail -n 1 "$DEV_DIR/$d.last")" >>"$DEV_DIR/$d.syncs"
    fi
    sleep "0.$((RANDOM % 20))"
  done
  "$OFS_CLI" --db "$DEV_DIR/$d.db" init --url "$DEV_URL" --token "$token" >/dev/null
}

i=0; pids=()
for d in $DEVICES; do
  i=$((i + 1)); : >"$DEV_DIR/$d.syncs"; echo 0 >"$DEV_DIR/$d.round"
  dev_bg chaos_device $d $((SEED + i)); pids+=($!)
done

# The origin goes away for 3 seconds once the devices are a quarter through.
for _ in $(seq 1 300); do [ "$(cat "$DEV_DIR/d1.round")" -ge $((ROUNDS / 4)) ] && break; sleep 0.1; done
note "the cluster stops at ${SECONDS}s (d1 at round $(cat "$DEV_DIR/d1.round"))"
ofs_cluster_stop fast || notok "pg_ctl stop"
sleep 3
ofs_cluster_start || die "the cluster does not start again"
dev_wait_listening 30 || notok "the worker listens again after the start"
note "the cluster is back at ${SECONDS}s (d1 at round $(cat "$DEV_DIR/d1.round"))"
wait "${pids[@]}"
note "chaos done at ${SECONDS}s"

for d in $DEVICES; do
  bad=$(awk '$1 != 0 && !($1 == 2) {print}' "$DEV_DIR/$d.syncs")
  note "$d: $(grep -c . "$DEV_DIR/$d.syncs") syncs, $(awk '$1 == 0' "$DEV_DIR/$d.syncs" | grep -c .) succeeded, $(awk '$1 == 2' "$DEV_DIR/$d.syncs" | grep -c .) unreachable, pending $(dev_status $d pending)"
  check "$d: every sync during the chaos succeeded or found the origin unreachable (exit 0 or 2)" "[ -z \"\$bad\" ]" "$bad"
  bad=$(awk '$2 == "offline" && $1 != 2 {print}' "$DEV_DIR/$d.syncs")
  check "$d: a sync pointed at a closed port exits 2" "[ -z \"\$bad\" ]" "$bad"
  check "$d: every local write succeeded" "[ ! -s '$DEV_DIR/$d.exec.err' ]" "$(head -c 600 "$DEV_DIR/$d.exec.err" 2>/dev/null)"
done

# Final syncs of all devices, twice.
for round in 1 2; do
  for d in $DEVICES; do
    out=$(cli $d sync 2>&1); rc=$?
    pending=$(printf '%s\n' "$out" | tail -n 1 | jq -r .pending 2>/dev/null)
    check "final sync $round of $d (exit 0, nothing pending)" "[ $rc -eq 0 ] && [ '$pending' = 0 ]" "$out"
  done
done

O=$(origin_rows "$SHARED_O")
note "the origin holds $(printf '%s\n' "$O" | grep -c .) shared rows, $(dev_sql -c "SELECT count(*) FROM mine") rows of mine"
for d in $DEVICES; do
  check_same "$d: the shared table equals the origin's" "$(dev_rows $d "$SHARED_D")" "$O"
  check_same "$d: its own rows equal the origin's rows of chaos_$d" "$(dev_rows $d "$MINE_D")" "$(origin_rows "$(mine_o $d)")"

  # Every intent: applied on the origin, or rejected and in the rejected list.
  sqlite3 "$DEV_DIR/$d.db" "SELECT op_id FROM test_intents" | sort -u >"$DEV_DIR/$d.ops.all"
  dev_sql -c "SELECT operation_id || ' ' || status FROM ofs.applied_op WHERE device = '$d'" | LC_ALL=C sort >"$DEV_DIR/$d.origin"
  cli $d rejected | jq -r .op_id | LC_ALL=C sort >"$DEV_DIR/$d.rejected"
  nops=$(grep -c . "$DEV_DIR/$d.ops.all")
  note "$d: $nops intents; on the origin: $(cut -d' ' -f2 "$DEV_DIR/$d.origin" | sort | uniq -c | tr '\n' ' ')"
  missing=$(join -v1 "$DEV_DIR/$d.ops.all" "$DEV_DIR/$d.origin" | head -5)
  check "$d: the origin answered every intent the device made" "[ -z '$missing' ]" "not on the origin: $missing"
  extra=$(join -v2 "$DEV_DIR/$d.ops.all" "$DEV_DIR/$d.origin" | head -5)
  check "$d: the origin holds no intent the device did not make" "[ -z '$extra' ]" "$extra"
  check_eq "$d: the rejected list is exactly the intents the origin rejected" \
    "$(tr '\n' ' ' <"$DEV_DIR/$d.rejected")" "$(awk '$2 == "rejected" {print $1}' "$DEV_DIR/$d.origin" | tr '\n' ' ')"
  check_eq "$d: its conflicts are the origin's" "$(dev_status $d conflicts)" \
    "$(dev_sql -c "SELECT count(DISTINCT operation_id) FROM ofs.conflicts WHERE device = '$d'")"
done
check "no server process crashed" "! grep -q 'terminated by signal' '$OFS_CLUSTER_DIR/server.log'"
note "runtime ${SECONDS}s"
dev_finish
