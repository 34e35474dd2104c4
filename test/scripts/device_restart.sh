#!/usr/bin/env bash
# device_restart: live devices (ofs-cli live) through origin outages.
#
# First, a write made while a live device is still catching up (its first
# pull held on the origin) must reach the origin while the device is live.
# Then two devices stay live while both devices and the origin keep
# writing (inserts, increments of a shared counter, lww edits of shared
# rows).  The sync workers are killed (SIGKILL: the postmaster restarts
# every process), later PostgreSQL is restarted (pg_ctl restart), then
# stopped for 4 seconds.  The live devices must reconnect on their own
# (an origin row written after each outage reaches them, a device row
# reaches the origin while they are live, every local write is pushed
# before they end) and, after the live processes end and a final sync,
# every device equals the origin: no write lost, none applied twice (the
# counter holds exactly the increments that committed).
set -uo pipefail
. "$OFS_ROOT/test/lib/devices.sh"

SEED=${OFS_SEED:-$(( (RANDOM << 15) | RANDOM ))}
note "seed $SEED"
RANDOM=$SEED
dev_origin devices_restart

dev_sql >/dev/null <<'SQL' || die "schema"
CREATE ROLE rs_rep;
CREATE TABLE items (id text PRIMARY KEY, src text, k int, title text, hits int NOT NULL DEFAULT 0);
GRANT SELECT, INSERT, UPDATE, DELETE ON items TO rs_rep;
SELECT ofs.sync_table('items', '{"hits": "counter"}');
INSERT INTO items VALUES ('counter', 'origin', 0, 'the shared counter', 0);
INSERT INTO items SELECT 's' || i, 'origin', i, 'shared ' || i, 0 FROM generate_series(1, 20) i;
SQL
ITEMS="SELECT row_to_json(t) FROM (SELECT id, src, k, title, hits FROM items) t"
device_items() { dev_rows "$1" "SELECT id, src, k, title, hits FROM items"; }
# has NAME ID: does the device file hold the row (read without ofs-cli)?
has() { [ "$(sqlite3 "$DEV_DIR/$1.db" "SELECT count(*) FROM items WHERE id = '$2'" 2>/dev/null)" = 1 ]; }
# wait_for SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
  local end=$((SECONDS + $1)); shift
  while [ $SECONDS -lt $end ]; do "$@" && return 0; sleep 0.2; done
  return 1
}
both_have() { has dev_a "$1" && has dev_b "$1"; }
# live_running: are both live processes still there?  wait_live SECONDS
# COMMAND...: poll COMMAND while they are.  why_ended: their last words.
live_running() { kill -0 "$live_a" 2>/dev/null && kill -0 "$live_b" 2>/dev/null; }
wait_live() {
  local end=$((SECONDS + $1)); shift
  while [ $SECONDS -lt $end ] && live_running; do "$@" && return 0; sleep 0.2; done
  "$@"
}
why_ended() {
  local d
  for d in dev_a dev_b; do
    echo "$d: $(grep -v '^{"event"' "$DEV_DIR/$d.bg.out" | tail -n 2)"
  done
}
origin_has() { [ "$(dev_sql -c "SELECT count(*) FROM items WHERE id = '$1'" 2>/dev/null)" = 1 ]; }
worker_pids() { ofs_psql -d postgres -c "SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity WHERE backend_type = 'ofs sync worker'" 2>/dev/null; }

dev_new dev_a rs_rep items
dev_new dev_b rs_rep items
dev_new dev_c rs_rep items
for d in dev_a dev_b dev_c; do cli $d sync >/dev/null || die "first sync of $d"; done

# 0. A write made while a live device is catching up (its first pull waits
# on the origin) is pushed once the device is live.
dev_sql -c "UPDATE items SET title = 'changed before C goes live' WHERE id = 's1'" >/dev/null
dev_lock "hashtext('ofs.pull')" "hashtext('dev_c')" || die "advisory lock"
cli_bg dev_c live --seconds 8; live_c=$CLI_PID
wait_for 10 dev_waiting_on_lock
"$OFS_CLI" --db "$DEV_DIR/dev_c.db" exec "INSERT INTO items (id, src, k, title) VALUES ('c-1', 'dev_c', 1, 'written while C catches up')" ||
  notok "device C writes"
dev_unlock
check "a write made while a live device catches up reaches the origin while it is live" "wait_for 5 origin_has c-1" \
  "device C's pending intents: $(dev_status dev_c pending)"
wait $live_c

LIVE=40
cli_bg dev_a live --seconds $LIVE; live_a=$CLI_PID
cli_bg dev_b live --seconds $LIVE; live_b=$CLI_PID
live_start=$SECONDS

# Writers: each device and the origin, one transaction per step.  A device
# step that committed locally is remembered; an origin step commits its
# row and its increment together (counted from the rows at the end).
device_writer() {
  local d=$1 k=0 r
  RANDOM=$2
  while [ ! -e "$DEV_DIR/stop" ]; do
    k=$((k + 1)); r=$((RANDOM % 20 + 1))
    if "$OFS_CLI" --db "$DEV_DIR/$d.db" exec "BEGIN;
        INSERT INTO items (id, src, k, title) VALUES ('$d-$k', '$d', $k, 'written by $d');
        UPDATE items SET hits = hits + 1 WHERE id = 'counter';
        UPDATE items SET title = '$d step $k' WHERE id = 's$r';
        COMMIT;" >/dev/null 2>>"$DEV_DIR/$d.writer.err"; then
      echo "$d-$k" >>"$DEV_DIR/$d.ok"
    fi
    sleep 0.0$((RANDOM % 9 + 1))
  done
}
origin_writer() {
  local k=0 r
  RANDOM=$1
  while [ ! -e "$DEV_DIR/stop" ]; do
    k=$((k + 1)); r=$((RANDOM % 20 + 1))
    psql -X -q -At -d "$DEV_DB" -c "BEGIN;
        INSERT INTO items (id, src, k, title) VALUES ('o-$k', 'origin', $k, 'written by the origin');
        UPDATE items SET hits = hits + 1 WHERE id = 'counter';
        UPDATE items SET title = 'origin step $k' WHERE id = 's$r';
        COMMIT;" >/dev/null 2>&1
    sleep 0.0$((RANDOM % 9 + 1))
  done
}
: >"$DEV_DIR/dev_a.ok"; : >"$DEV_DIR/dev_b.ok"
dev_bg device_writer dev_a $((SEED + 1)); wa=$!
dev_bg device_writer dev_b $((SEED + 2)); wb=$!
dev_bg origin_writer $((SEED + 3)); wo=$!

sleep 3
check "both devices are live" "live_running" "$(why_ended)"

# 1. The sync worker is killed.
before=$(worker_pids)
note "sync workers: $before"
for p in ${before//,/ }; do kill -9 "$p"; done
wait_for 30 eval '[ -n "$(worker_pids)" ] && [ "$(worker_pids)" != "$before" ] && dev_listening'
after=$(worker_pids)
check "the killed sync workers are replaced and listen again" "[ -n '$after' ] && [ '$after' != '$before' ] && dev_listening" "after: $after"
note "sync workers after the kill: $after ($((SECONDS - live_start))s into live)"
wait_for 10 eval 'dev_sql -c "INSERT INTO items (id, src, k, title) VALUES ('"'"'marker-1'"'"', '"'"'origin'"'"', 0, '"'"'after the worker kill'"'"')" >/dev/null 2>&1'
check "after the worker kill, the live devices receive an origin write" "wait_live 20 both_have marker-1" \
  "dev_a: $(has dev_a marker-1 && echo yes || echo no), dev_b: $(has dev_b marker-1 && echo yes || echo no)"
both_have marker-1 && note "marker-1 reached both devices $((SECONDS - live_start))s into live"

# 2. PostgreSQL is restarted.
sleep 2
out=$(ofs_as_pg "$OFS_PG_BINDIR/pg_ctl" -D "$OFS_CLUSTER_DIR/data" -l "$OFS_CLUSTER_DIR/server.log" -w -t 60 restart -m fast 2>&1)
check "pg_ctl restart" "[ $? -eq 0 ]" "$out"
note "restarted $((SECONDS - live_start))s into live"
check "the worker listens after the restart" "dev_wait_listening 30"
check "the live devices are still running" "live_running" "$(why_ended)"
dev_sql -c "INSERT INTO items (id, src, k, title) VALUES ('marker-2', 'origin', 0, 'after the restart')" >/dev/null
check "after the restart, the live devices receive an origin write" "wait_live 20 both_have marker-2" \
  "dev_a: $(has dev_a marker-2 && echo yes || echo no), dev_b: $(has dev_b marker-2 && echo yes || echo no)"
"$OFS_CLI" --db "$DEV_DIR/dev_a.db" exec "INSERT INTO items (id, src, k, title) VALUES ('marker-a', 'dev_a', 0, 'live after the restart')" ||
  notok "device A writes its marker"
check "after the restart, a live device's write reaches the origin" "wait_live 20 origin_has marker-a"
check "... and the other live device" "wait_live 20 has dev_b marker-a"
note "markers done $((SECONDS - live_start))s into live"

# 3. PostgreSQL is down for 4 seconds: the devices retry with backoff.
sleep 1
ofs_cluster_stop fast || notok "pg_ctl stop"
note "stopped $((SECONDS - live_start))s into live"
sleep 4
ofs_cluster_start || die "the cluster does not start again"
check "the worker listens after the start" "dev_wait_listening 30"
dev_sql -c "INSERT INTO items (id, src, k, title) VALUES ('marker-3', 'origin', 0, 'after the outage')" >/dev/null
check "after the outage, the live devices receive an origin write" "wait_live 25 both_have marker-3" \
  "dev_a: $(has dev_a marker-3 && echo yes || echo no), dev_b: $(has dev_b marker-3 && echo yes || echo no)"
both_have marker-3 && note "marker-3 reached both devices $((SECONDS - live_start))s into live"

# Writes stop a few seconds before the live processes end.
remaining=$((LIVE - (SECONDS - live_start) - 5))
[ $remaining -gt 0 ] && sleep $remaining
touch "$DEV_DIR/stop"
wait $wa $wb $wo
wait $live_a; rc=$?
check "the live process of A ends with exit 0 when its time is up" "[ $rc -eq 0 ]" "$(grep -v '^{"event"' "$DEV_DIR/dev_a.bg.out" | tail -n 2)"
wait $live_b; rc=$?
check "the live process of B ends with exit 0 when its time is up" "[ $rc -eq 0 ]" "$(grep -v '^{"event"' "$DEV_DIR/dev_b.bg.out" | tail -n 2)"
note "writer steps that committed: dev_a $(wc -l <"$DEV_DIR/dev_a.ok"), dev_b $(wc -l <"$DEV_DIR/dev_b.ok"), origin $(dev_sql -c "SELECT count(*) FROM items WHERE id LIKE 'o-%'")"
note "device writes that failed: dev_a $(cat "$DEV_DIR/dev_a.writer.err" 2>/dev/null | grep -c .), dev_b $(cat "$DEV_DIR/dev_b.writer.err" 2>/dev/null | grep -c .)"
check_eq "the live devices pushed every write before they ended" "$(dev_status dev_a pending) $(dev_status dev_b pending)" "0 0"

for i in 1 2; do
  for d in dev_a dev_b; do
    out=$(cli $d sync 2>&1); rc=$?
    check "final sync $i of $d (exit 0)" "[ $rc -eq 0 ]" "$out"
  done
done
O=$(origin_rows "$ITEMS")
check_same "device A equals the origin" "$(device_items dev_a)" "$O"
check_same "device B equals the origin" "$(device_items dev_b)" "$O"
for d in dev_a dev_b; do
  check_eq "$d: every write that committed on the device is on the origin" \
    "$(dev_sql -c "SELECT count(*) FROM items WHERE src = '$d' AND id <> 'marker-a'")" "$(wc -l <"$DEV_DIR/$d.ok")"
  check_eq "$d: nothing pending, nothing rejected" "$(cli $d status | jq -c '[.pending, .rejected]')" "[0,0]"
done
check_eq "the counter holds every committed increment once" \
  "$(dev_sql -c "SELECT hits FROM items WHERE id = 'counter'")" \
  "$(dev_sql -c "SELECT count(*) FROM items WHERE id ~ '^(o|dev_a|dev_b)-[0-9]+$'")"
check_eq "the origin answered each intent once (3 per device step, and A's marker)" \
  "$(dev_sql -c "SELECT count(*) FROM ofs.applied_op WHERE device IN ('dev_a', 'dev_b')")" \
  "$(( 3 * ($(wc -l <"$DEV_DIR/dev_a.ok") + $(wc -l <"$DEV_DIR/dev_b.ok")) + 1 ))"
check "no server process crashed (besides the killed workers)" \
  "! grep 'terminated by signal' '$OFS_CLUSTER_DIR/server.log' | grep -v 'signal 9'"
note "runtime ${SECONDS}s"
dev_finish
