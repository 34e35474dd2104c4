# cluster.sh: a throwaway PostgreSQL cluster with ofs preloaded, for tests,
# the demo and benchmarks.  Source it, then call ofs_cluster_init.
#
# PostgreSQL refuses to run as root, so as root every server-side command runs
# as the unprivileged user $OFS_PG_USER (default postgres), and the cluster's
# directories belong to that user.  The cluster listens only on a Unix socket
# in its own directory; the port number only names the socket.
#
# After ofs_cluster_init: OFS_CLUSTER_DIR, PGHOST, PGPORT, PGUSER, PGDATABASE
# are exported, so psql, pgbench and pg_prove reach the cluster directly.
#
# It is the one shell library of the tests, the bench and the demo:
# test/lib/devices.sh (device tests) and bench/tools/*_common.sh (bench
# rows) build on it.  Their node side is test/toolkit/ (one WebSocket
# client of the protocol, npm ws installed by ofs_toolkit_ready).

OFS_PG_USER=${OFS_PG_USER:-postgres}
OFS_PG_BINDIR=${OFS_PG_BINDIR:-$(pg_config --bindir)}

# ofs_as_pg CMD...: run a command as the cluster's owner, from /, since the
# checkout may be closed to that user (a clone under /root): paths given to
# it must be absolute.
ofs_as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u "$OFS_PG_USER" -- env PATH="$PATH" "$@")
  else
    "$@"
  fi
}

# ofs_mktemp PREFIX: a fresh directory owned by the cluster's owner.
ofs_mktemp() {
  local d
  d=$(mktemp -d "/tmp/$1.XXXXXX")
  chmod 755 "$d"
  [ "$(id -u)" -eq 0 ] && chown "$OFS_PG_USER" "$d"
  echo "$d"
}

# ofs_free_port: a TCP port nobody listens on, from a private range.
ofs_free_port() {
  local p
  for _ in $(seq 1 200); do
    # Below the kernel's range for outgoing connections (32768 up), and
    # used by no socket at all, listening or not.
    p=$((15000 + RANDOM % 17000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null &&
       ! grep -qi ":$(printf '%04X' "$p") " /proc/net/tcp /proc/net/tcp6 2>/dev/null &&
       [ ! -e "/tmp/.s.PGSQL.$p" ]; then
      echo "$p"; return 0
    fi
  done
  return 1
}

# ofs_cluster_init DIR [extra postgresql.conf lines...]: initdb and start.
ofs_cluster_init() {
  OFS_CLUSTER_DIR=$1; shift
  export OFS_CLUSTER_DIR
  export PGHOST="$OFS_CLUSTER_DIR/sock"
  export PGPORT=${PGPORT_OFS:-$(ofs_free_port)}
  export PGUSER=$OFS_PG_USER
  export PGDATABASE=postgres
  ofs_as_pg mkdir -p "$OFS_CLUSTER_DIR/sock"
  ofs_as_pg "$OFS_PG_BINDIR/initdb" -D "$OFS_CLUSTER_DIR/data" -U "$OFS_PG_USER" \
    --auth=trust --no-sync -E UTF8 --locale=C >"$OFS_CLUSTER_DIR/initdb.log" 2>&1 || {
      cat "$OFS_CLUSTER_DIR/initdb.log" >&2; return 1; }
  {
    echo "port = $PGPORT"
    echo "listen_addresses = ''"
    echo "unix_socket_directories = '$PGHOST'"
    echo "shared_preload_libraries = 'ofs'"
    echo "max_connections = 1100"
    echo "max_prepared_transactions = 10"
    echo "fsync = on"
    echo "log_min_messages = warning"
    echo "log_line_prefix = '%m [%p] '"
    for line in "$@"; do echo "$line"; done
  } | ofs_as_pg tee -a "$OFS_CLUSTER_DIR/data/postgresql.conf" >/dev/null
  ofs_cluster_start
}

ofs_cluster_start() {
  ofs_as_pg "$OFS_PG_BINDIR/pg_ctl" -D "$OFS_CLUSTER_DIR/data" -l "$OFS_CLUSTER_DIR/server.log" \
    -w -t 60 start >/dev/null || { tail -20 "$OFS_CLUSTER_DIR/server.log" >&2; return 1; }
}

# ofs_cluster_stop [MODE]: fast by default; immediate simulates a crash.
ofs_cluster_stop() {
  [ -n "${OFS_CLUSTER_DIR:-}" ] && [ -f "$OFS_CLUSTER_DIR/data/postmaster.pid" ] || return 0
  ofs_as_pg "$OFS_PG_BINDIR/pg_ctl" -D "$OFS_CLUSTER_DIR/data" -m "${1:-fast}" -w -t 60 stop >/dev/null 2>&1
}

# ofs_cluster_destroy: stop the cluster and remove its directory.
ofs_cluster_destroy() {
  [ -n "${OFS_CLUSTER_DIR:-}" ] || return 0
  ofs_cluster_stop immediate
  rm -rf "$OFS_CLUSTER_DIR"
  OFS_CLUSTER_DIR=
}

# ofs_psql ARGS...: psql that stops at the first error and prints bare values.
ofs_psql() {
  psql -X -q -v ON_ERROR_STOP=1 -At "$@"
}

# ofs_toolkit_ready: node and the toolkit's npm packages (test/toolkit,
# installed by scripts/deps.sh; npm ci here when they are missing).
ofs_toolkit_ready() {
  local dir
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../toolkit" && pwd)"
  command -v node >/dev/null || { echo "node is not installed (scripts/deps.sh)" >&2; return 1; }
  if [ ! -d "$dir/node_modules/ws" ]; then
    npm ci --prefix "$dir" --no-audit --no-fund >/dev/null 2>&1 || {
      echo "npm ci in test/toolkit failed: the npm package ws is missing" >&2; return 1; }
  fi
}

# ofs_listening PORT: does anything accept TCP connections on the port?
ofs_listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ofs_wait_workers PORT SECONDS: until the sync workers serve WebSocket on
# the port: as many sockets listen as ofs.workers says (when ss can tell)
# and a handshake succeeds (test/toolkit/client.js probe; a TCP connect
# without node).  Each worker polls once a second for the extension before
# it listens.  Returns 1, saying why on stderr, after SECONDS.
ofs_wait_workers() {
  local port=$1 end=$((SECONDS + $2)) workers listening probe
  probe="$(cd "$(dirname "${BASH_SOURCE[0]}")/../toolkit" && pwd)/client.js"
  workers=$(ofs_psql -d postgres -c "SHOW ofs.workers" 2>/dev/null || echo 1)
  while [ $SECONDS -lt $end ]; do
    listening=$workers
    command -v ss >/dev/null && listening=$(ss -Hltn "sport = :$port" | wc -l)
    if [ "$listening" -ge "$workers" ]; then
      if command -v node >/dev/null && [ -d "$(dirname "$probe")/node_modules/ws" ]; then
        OFS_WS_URL="ws://127.0.0.1:$port/" timeout 10 node "$probe" probe >/dev/null 2>&1 && return 0
      else
        ofs_listening "$port" && return 0
      fi
    fi
    sleep 0.2
  done
  echo "the sync workers do not accept connections on port $port after $2 s ($listening of $workers listening)" >&2
  return 1
}
