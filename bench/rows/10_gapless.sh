#!/usr/bin/env bash
# Gap-free numbering: 8 clients, each transaction does ~2 ms of other work and
# then inserts a row numbered by ofs.gapless_nextval, durable commits.  The
# baseline is the same workload numbered by a native sequence.  Both sides
# alternate twice so that drift in the machine hits both.
set -euo pipefail
. "$OFS_ROOT/test/lib/cluster.sh"
db=ofs_bench_gapless
secs=$(( (OFS_BENCH_SECONDS + 1) / 2 ))
ofs_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
ofs_psql -d $db >/dev/null <<'SQL'
CREATE EXTENSION ofs;
SELECT ofs.create_gapless_sequence('bench');
CREATE SEQUENCE bench_native;
CREATE TABLE doc_ofs (no bigint PRIMARY KEY, body text);
CREATE TABLE doc_native (no bigint PRIMARY KEY, body text);
SQL
cat >"$OFS_TMP/gapless_ofs.sql" <<'EOF2'
BEGIN;
SELECT pg_sleep(0.002);
INSERT INTO doc_ofs VALUES (ofs.gapless_nextval('bench'), 'invoice body');
COMMIT;
EOF2
sed 's/doc_ofs VALUES (ofs.gapless_nextval(.bench.)/doc_native VALUES (nextval($$bench_native$$)/' \
  "$OFS_TMP/gapless_ofs.sql" >"$OFS_TMP/gapless_native.sql"

tps() { pgbench -n -c 8 -j 2 -T "$secs" -f "$1" -d $db 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p'; }
b1=$(tps "$OFS_TMP/gapless_native.sql"); o1=$(tps "$OFS_TMP/gapless_ofs.sql")
b2=$(tps "$OFS_TMP/gapless_native.sql"); o2=$(tps "$OFS_TMP/gapless_ofs.sql")
awk -v o1="$o1" -v o2="$o2" -v b1="$b1" -v b2="$b2" 'BEGIN {
  o = (o1 + o2) / 2; b = (b1 + b2) / 2;
  printf "gapless numbering, 8 clients, 2 ms work|%.0f tps|%.0f tps (native sequence)|%.2f|>= 0.80\n", o, b, o / b }'
ofs_psql -d postgres -c "DROP DATABASE $db" >/dev/null
