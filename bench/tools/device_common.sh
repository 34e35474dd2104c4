# device_common.sh: what the device rows (bench/rows/6*_device_*.sh) share.
# Source it from a row; bench/run.sh exports OFS_ROOT, OFS_TMP, OFS_WS_PORT
# and the cluster's PGHOST/PGPORT/PGUSER.  The devices are libofs itself
# (client/build/libofs.a, built here with make -C client) driven by
# bench/tools/device_bench.c; they talk to the sync workers of the bench
# cluster, which serve ofs_bench_ws (bench/tools/ws_common.sh prepares that
# database and waits until the workers listen).  libofs offers
# permessage-deflate only with OFS_PERMESSAGE_DEFLATE=1: the rows measure its
# default, without.
#
# dev_prepare ROLE PREFIX: builds libofs and the tool, prepares the
# database, and arranges for dev_row_cleanup at exit: the row's tables
# (DEV_TABLES), its devices (named PREFIX...) and what the origin keeps of
# them (vacuumed away), the role, the device files (DEV_DIR) and the row's
# processes.
#
# dev_table NAME [ROWS]: a synced table todos(id text primary key, text
# text, done integer) that ROLE may read and write, with ROWS rows (text of
# 40 bytes, md5 || 'abcdefgh').
#
# dev_issue_token DEVICE: a new device of ROLE and its token (unlike
# test/lib/devices.sh's dev_token, which reads a device's token).
#
# dev_run SECONDS ARGS...: the tool, bounded in time; its output in DEV_OUT.

. "$OFS_ROOT/bench/tools/ws_common.sh"
unset OFS_PERMESSAGE_DEFLATE
DEV_TOOL="$OFS_TMP/device_bench"
DEV_DB=$WS_DB
DEV_CONNINFO="host=$PGHOST port=$PGPORT dbname=$WS_DB user=$PGUSER"
DEV_TABLES=()

dev_build() {
  local src="$OFS_ROOT/bench/tools/device_bench.c" lib="$OFS_ROOT/client/build/libofs.a"
  make -C "$OFS_ROOT/client" all >"$OFS_TMP/device_make.log" 2>&1 || {
    cat "$OFS_TMP/device_make.log" >&2; echo "make -C client failed" >&2; return 1; }
  if [ ! -x "$DEV_TOOL" ] || [ "$src" -nt "$DEV_TOOL" ] || [ "$lib" -nt "$DEV_TOOL" ]; then
    cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -o "$DEV_TOOL.$$" "$src" \
      -I "$OFS_ROOT/client/include" -I "$(pg_config --includedir)" "$lib" \
      -L "$(pg_config --libdir)" -lpq -lsqlite3 -lwebsockets -ljansson -lpthread >&2 || {
      echo "cannot compile bench/tools/device_bench.c" >&2; return 1; }
    mv "$DEV_TOOL.$$" "$DEV_TOOL"
  fi
}

dev_row_cleanup() {
  local t
  set +e
  if [ -n "${DEV_PID:-}" ]; then kill -TERM "$DEV_PID" 2>/dev/null; wait "$DEV_PID" 2>/dev/null; DEV_PID=; fi
  for t in "${DEV_TABLES[@]}"; do
    ofs_psql -d $DEV_DB -c "DROP TABLE IF EXISTS $t" >/dev/null 2>&1
  done
  ofs_psql -d $DEV_DB -c "DELETE FROM ofs.device WHERE device LIKE '${DEV_PREFIX}%'" \
    -c "DELETE FROM ofs.applied_op WHERE device LIKE '${DEV_PREFIX}%'" \
    -c "DELETE FROM ofs.dead_letters WHERE device LIKE '${DEV_PREFIX}%'" \
    -c "DELETE FROM ofs.conflicts WHERE device LIKE '${DEV_PREFIX}%'" >/dev/null 2>&1
  ofs_psql -d $DEV_DB -c "DO \$\$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '$DEV_ROLE')
                          THEN DROP OWNED BY $DEV_ROLE; DROP ROLE $DEV_ROLE; END IF; END \$\$" >/dev/null 2>&1
  # The rows the origin kept for the devices and the feed of the dropped
  # tables are dead tuples until vacuumed; left there, they slow the pulls
  # of the rows that come next (100,000 held rows of three devices: a pull
  # of 10,000 rows then took over 30 s instead of under 1 s).
  ofs_psql -d $DEV_DB -c "VACUUM ofs.device_row, ofs.change_log" >/dev/null 2>&1
  [ -n "${DEV_DIR:-}" ] && rm -rf "$DEV_DIR"
  return 0
}

dev_prepare() {
  DEV_ROLE=$1 DEV_PREFIX=$2
  DEV_DIR="$OFS_TMP/$DEV_PREFIX"
  trap dev_row_cleanup EXIT
  trap 'exit 130' INT TERM
  dev_build
  ws_prepare
  (dev_row_cleanup)
  mkdir -p "$DEV_DIR"
  ofs_psql -d $DEV_DB -c "CREATE ROLE $DEV_ROLE" -c "GRANT USAGE ON SCHEMA public TO $DEV_ROLE" >/dev/null
}

dev_table() {
  local t=$1 rows=${2:-0}
  DEV_TABLES+=("$t")
  ofs_psql -d $DEV_DB >/dev/null <<SQL
SET client_min_messages = warning;
DROP TABLE IF EXISTS $t;
CREATE TABLE $t (id text PRIMARY KEY, text text, done integer);
GRANT SELECT, INSERT, UPDATE, DELETE ON $t TO $DEV_ROLE;
SELECT ofs.sync_table('$t');
INSERT INTO $t SELECT 'todo-' || g, md5(g::text) || 'abcdefgh', g % 2 FROM generate_series(1, $rows) g;
VACUUM ANALYZE $t;
SQL
}

dev_issue_token() {
  ofs_psql -d $DEV_DB -c "SELECT ofs.create_device_token('$DEV_ROLE', '$1')"
}

# The tool runs in the background, so that the EXIT trap can stop it; its
# output goes to DEV_OUT.
dev_run() {
  local secs=$1 rc=0; shift
  timeout -k 5 "$secs" "$DEV_TOOL" "$@" >"$DEV_DIR/out" &
  DEV_PID=$!
  wait "$DEV_PID" || rc=$?
  DEV_PID=
  DEV_OUT=$(cat "$DEV_DIR/out")
  if [ $rc = 124 ] || [ $rc = 137 ]; then
    echo "device_bench $1 did not finish within $secs s" >&2
  fi
  return $rc
}

# dev_min A B: the smaller number.
dev_min() { awk -v x="$1" -v y="$2" 'BEGIN { print (x == "" || y + 0 < x + 0) ? y : x }'; }
