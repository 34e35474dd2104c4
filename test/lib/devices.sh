# shellcheck shell=bash
# devices.sh: device tests (ofs-cli files) against an origin on a cluster of
# the test's own.  Source it from a test script (OFS_ROOT set), then call
# dev_origin DBNAME: it starts a throwaway cluster whose sync workers serve
# DBNAME, creates the database and the extension, and waits for the worker
# to listen.  Everything (background processes started with dev_bg, the
# cluster, the temporary directory) goes away when the script exits.
#
# OFS_KEEP=1 keeps the directory (device files, server log) for inspection.
#
# Output follows the other scripts: "ok N - ..." / "not ok N - ..." lines,
# "# ..." diagnostics, "1..N" at the end (dev_finish), exit 1 on a failure.

. "$OFS_ROOT/test/lib/cluster.sh"

DEV_TIME_LIMIT=${DEV_TIME_LIMIT:-85}
OFS_CLI=${OFS_CLI:-$OFS_ROOT/client/build/ofs-cli}
[ -x "$OFS_CLI" ] || OFS_CLI=$(command -v ofs-cli)

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() {
  n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"
  [ -n "${2:-}" ] && printf '%s\n' "$2" | head -40 | sed 's/^/# /'
  return 0
}
check() { if eval "$2"; then ok "$1"; else notok "$1" "${3:-}"; fi; }
# check_eq NAME GOT EXPECTED
check_eq() { if [ "$2" = "$3" ]; then ok "$1"; else notok "$1" "expected: $3
got:      $2"; fi; }
die() { echo "# $*"; notok "setup: $*"; echo "1..$n"; exit 1; }
note() { echo "# $*"; }

DEV_BG=()
# dev_bg CMD...: run CMD in the background; it is killed at exit if still running.
dev_bg() { "$@" & DEV_BG+=($!); }

dev_cleanup() {
  local p
  if [ -n "${DEV_WATCHDOG:-}" ]; then kill -TERM "$DEV_WATCHDOG" 2>/dev/null; wait "$DEV_WATCHDOG" 2>/dev/null; fi
  for p in "${DEV_BG[@]}"; do kill -9 "$p" 2>/dev/null; done
  for p in "${DEV_BG[@]}"; do wait "$p" 2>/dev/null; done
  [ -n "${DEV_LOCK_PID:-}" ] && { kill -9 "$DEV_LOCK_PID" 2>/dev/null; wait "$DEV_LOCK_PID" 2>/dev/null; }
  if [ -n "${OFS_KEEP:-}" ] && [ -n "${DEV_DIR:-}" ]; then
    ofs_cluster_stop immediate; echo "# kept $DEV_DIR"
  else
    ofs_cluster_destroy
    [ -n "${DEV_DIR:-}" ] && rm -rf "$DEV_DIR"
  fi
  return 0
}

# dev_origin DBNAME [postgresql.conf lines...]: the cluster, the database
# and the extension (at version $DEV_EXT_VERSION if set; none: without it); sets DEV_DIR (a temporary directory), DEV_DB, DEV_PORT
# and DEV_URL.
dev_origin() {
  DEV_DB=$1; shift
  unset PGPORT_OFS
  # The cluster of whoever runs the script (test/run.sh's) is not ours to stop.
  OFS_CLUSTER_DIR=
  DEV_DIR=$(ofs_mktemp "ofs-$DEV_DB")
  trap dev_cleanup EXIT
  trap 'exit 130' INT
  # A time limit: past it the script reports the overrun and stops (after
  # the command running then, each bounded by a timeout).
  trap 'notok "the test ended within ${DEV_TIME_LIMIT}s"; echo "1..$n"; exit 1' TERM
  local main=$$
  ( trap 'kill "$sp" 2>/dev/null; exit 0' TERM
    sleep "$DEV_TIME_LIMIT" & sp=$!; wait "$sp"; kill -TERM "$main" ) &
  DEV_WATCHDOG=$!
  local tool
  for tool in jq sqlite3 "$OFS_CLI"; do
    command -v "$tool" >/dev/null || die "$tool is needed (Debian packages jq and sqlite3; make -C client)"
  done
  DEV_PORT=$(ofs_free_port) || die "no free port"
  DEV_URL="ws://127.0.0.1:$DEV_PORT/"
  ofs_cluster_init "$DEV_DIR/cluster" "ofs.port = $DEV_PORT" "ofs.database = '$DEV_DB'" "$@" >/dev/null ||
    die "the cluster did not start"
  ofs_psql -d postgres -c "CREATE DATABASE $DEV_DB" >/dev/null || die "CREATE DATABASE failed"
  # DEV_EXT_VERSION=V creates the extension at version V; =none leaves it out.
  [ "${DEV_EXT_VERSION:-}" = none ] && return 0
  ofs_psql -d "$DEV_DB" -c "CREATE EXTENSION ofs${DEV_EXT_VERSION:+ VERSION '$DEV_EXT_VERSION'}" >/dev/null ||
    die "CREATE EXTENSION failed"
  dev_wait_listening 30 || die "the sync worker does not listen on port $DEV_PORT"
}

# dev_listening: does anything accept connections on the worker's port?
dev_listening() { ofs_listening "$DEV_PORT"; }

# dev_wait_listening SECONDS: until the workers serve (cluster.sh).
dev_wait_listening() { ofs_wait_workers "$DEV_PORT" "$1"; }

# dev_sql SQL...: psql on the origin database, bare values.
dev_sql() { ofs_psql -d "$DEV_DB" "$@"; }

# cli NAME ARGS...: ofs-cli on device NAME's file, bounded in time.
cli() { local name=$1; shift; timeout 40 "$OFS_CLI" --db "$DEV_DIR/$name.db" "$@"; }

# cli_bg NAME ARGS...: ofs-cli in the background, its own process in
# CLI_PID (so that kill -9 $CLI_PID kills ofs-cli itself); output in
# DEV_DIR/NAME.bg.out.
cli_bg() {
  local name=$1; shift
  "$OFS_CLI" --db "$DEV_DIR/$name.db" "$@" >"$DEV_DIR/$name.bg.out" 2>&1 &
  CLI_PID=$!
  DEV_BG+=($CLI_PID)
}

# dev_new NAME ROLE TABLE...: a device with a token of ROLE, subscribed to TABLEs.
dev_new() {
  local name=$1 role=$2 token; shift 2
  token=$(dev_sql -c "SELECT ofs.create_device_token('$role', '$name')") || die "no token for $name"
  cli "$name" init --url "$DEV_URL" --token "$token" >/dev/null || die "init of $name failed"
  local t
  for t in "$@"; do cli "$name" subscribe "$t" >/dev/null || die "subscribe $name $t failed"; done
}

# dev_token NAME: the device's token (to point it elsewhere and back).
dev_token() { sqlite3 "$DEV_DIR/$1.db" "SELECT value FROM _ofs_meta WHERE key = 'token'"; }

# dev_rows NAME SQL: the device's rows as sorted, normalized JSON lines.
dev_rows() { cli "$1" exec "$2" | jq -cS . | LC_ALL=C sort; }

# origin_rows SQL: a query's rows (SELECT ... FROM (...) t) as sorted,
# normalized JSON lines; SQL must return one JSON value per row.
origin_rows() { dev_sql -c "$1" | jq -cS . | LC_ALL=C sort; }

# check_same NAME DEVICE_ROWS ORIGIN_ROWS: equal sets of rows, or the difference.
check_same() {
  if [ "$2" = "$3" ]; then ok "$1"; return 0; fi
  local d
  d=$(diff <(printf '%s\n' "$2") <(printf '%s\n' "$3") | grep '^[<>]' | head -12)
  notok "$1" "device rows: $(printf '%s\n' "$2" | grep -c .), origin rows: $(printf '%s\n' "$3" | grep -c .)
(< only on the device, > only on the origin)
$d"
}

# dev_status NAME FIELD: a field of ofs-cli status.
dev_status() { cli "$1" status | jq -r ".$2"; }

# dev_sync_until NAME TRIES: sync until a sync succeeds with nothing pending.
dev_sync_until() {
  local i out rc
  for i in $(seq 1 "$2"); do
    out=$(cli "$1" sync 2>&1); rc=$?
    if [ $rc -eq 0 ] && [ "$(printf '%s\n' "$out" | tail -1 | jq -r .pending 2>/dev/null)" = 0 ]; then
      return 0
    fi
    note "sync of $1: exit $rc: $out"
    sleep 0.3
  done
  return 1
}

# dev_lock KEY1 KEY2: hold an advisory lock on the origin in a session of
# its own until dev_unlock (used to hold a push or a pull of a device).
dev_lock() {
  rm -f "$DEV_DIR/lock.fifo" "$DEV_DIR/lock.out"
  mkfifo "$DEV_DIR/lock.fifo"
  psql -X -q -At -d "$DEV_DB" <"$DEV_DIR/lock.fifo" >"$DEV_DIR/lock.out" 2>&1 &
  DEV_LOCK_PID=$!
  exec 8>"$DEV_DIR/lock.fifo"
  echo "SELECT pg_advisory_lock($1, $2); SELECT 'locked';" >&8
  local i
  for i in $(seq 1 50); do grep -q locked "$DEV_DIR/lock.out" && return 0; sleep 0.1; done
  return 1
}
dev_unlock() {
  echo "SELECT pg_advisory_unlock_all();" >&8
  exec 8>&-
  wait "$DEV_LOCK_PID" 2>/dev/null
  DEV_LOCK_PID=
}

# dev_waiting_on_lock: is an origin session waiting for an advisory lock?
dev_waiting_on_lock() {
  [ "$(ofs_psql -d postgres -c "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")" -gt 0 ]
}

dev_finish() {
  echo "1..$n"
  [ "$failed" -eq 0 ]
}
