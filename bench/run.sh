#!/usr/bin/env bash
# run.sh: the benchmark table of ofs.  Each file in bench/rows/ measures one
# row against its baseline in the same run, on one throwaway cluster, and
# prints "row|ofs|baseline|ratio|target".  Timings are never asserted: the
# table is for people and notes.  OFS_BENCH=pattern runs only matching rows;
# OFS_BENCH_SECONDS scales the measuring time of each side (default 10).
set -uo pipefail
cd "$(dirname "$0")/.."
# The feed reader client is built by its row; libpq comes with the server packages.
ROOT=$(pwd)
. test/lib/cluster.sh

TMP=$(ofs_mktemp ofs-bench)
trap 'ofs_cluster_destroy; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM
# The sync worker rows (bench/rows/5*_ws_*.sh) talk to the workers over
# WebSocket on OFS_WS_PORT; the workers serve the database ofs_bench_ws.
# The origin runs as deployed by default, without permessage-deflate
# (docs/PROTOCOL.md, "Transport"); OFS_BENCH_WS_DEFLATE=1 turns it on at
# both ends, to measure what it costs.  All the bench's devices come from
# one address, so the per-address connection limit is lifted.
OFS_WS_PORT=$(ofs_free_port); export OFS_WS_PORT
# /metrics (bench/rows/56_ws_scrape.sh) on a port of its own.
OFS_HTTP_PORT=$(ofs_free_port); export OFS_HTTP_PORT
export OFS_BENCH_WS_DEFLATE=${OFS_BENCH_WS_DEFLATE:-0}
ws_deflate=on; [ "$OFS_BENCH_WS_DEFLATE" = 0 ] && ws_deflate=off
ofs_cluster_init "$TMP/cluster" "synchronous_commit = on" "shared_buffers = 256MB" \
  "max_wal_size = 4GB" "checkpoint_timeout = 30min" \
  "ofs.port = $OFS_WS_PORT" "ofs.database = 'ofs_bench_ws'" "ofs.http_port = $OFS_HTTP_PORT" \
  "ofs.permessage_deflate = $ws_deflate" \
  "ofs.max_connections_per_address = 100000" >"$TMP/init.log" 2>&1 || {
  cat "$TMP/init.log"; exit 1; }
# Until a sync worker row creates the extension there, the workers wait in
# that database, polling once a second, as they would in any database
# without it.
ofs_psql -d postgres -c "CREATE DATABASE ofs_bench_ws" >/dev/null

export OFS_ROOT=$ROOT OFS_TMP=$TMP OFS_BENCH_SECONDS=${OFS_BENCH_SECONDS:-10}
rows="$TMP/rows"
: >"$rows"
for f in bench/rows/*.sh; do
  name=$(basename "$f" .sh)
  [[ -n "${OFS_BENCH:-}" && "$name" != *${OFS_BENCH}* ]] && continue
  echo "measuring $name ..." >&2
  if ! bash "$f" >>"$rows" 2>"$TMP/$name.err"; then
    echo "$name|failed: $(tail -1 "$TMP/$name.err")|||" >>"$rows"
  fi
done

echo
{ echo "row|ofs|baseline|ratio|target"; cat "$rows"; } | column -t -s '|'
