#!/usr/bin/env bash
# Capture overhead: pgbench's built-in TPC-B-like workload with its four
# tables synced, against the same workload on an identical database without
# ofs, in the same run (alternating, twice each).  pgbench_history gets a
# primary key in both databases, since synced tables need one.
set -euo pipefail
. "$OFS_ROOT/test/lib/cluster.sh"
secs=$(( (OFS_BENCH_SECONDS + 1) / 2 ))
for db in ofs_bench_tpcb ofs_bench_tpcb_plain; do
  ofs_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
  pgbench -i -q -s 1 -d $db >/dev/null 2>&1
  ofs_psql -d $db -c "ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY" >/dev/null
done
ofs_psql -d ofs_bench_tpcb >/dev/null <<'SQL'
CREATE EXTENSION ofs;
SELECT ofs.sync_table(t) FROM unnest(ARRAY['pgbench_accounts', 'pgbench_branches',
                                           'pgbench_tellers', 'pgbench_history']::regclass[]) t;
SQL
tps() { pgbench -n -c 4 -j 2 -T "$secs" -d "$1" 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p'; }
b1=$(tps ofs_bench_tpcb_plain); o1=$(tps ofs_bench_tpcb)
b2=$(tps ofs_bench_tpcb_plain); o2=$(tps ofs_bench_tpcb)
awk -v o1="$o1" -v o2="$o2" -v b1="$b1" -v b2="$b2" 'BEGIN {
  o = (o1 + o2) / 2; b = (b1 + b2) / 2;
  printf "capture, pgbench TPC-B, 4 tables synced|%.0f tps|%.0f tps (no ofs)|%.2f|>= 0.70\n", o, b, o / b }'
for db in ofs_bench_tpcb ofs_bench_tpcb_plain; do
  ofs_psql -d postgres -c "DROP DATABASE $db" >/dev/null
done
