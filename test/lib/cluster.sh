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
