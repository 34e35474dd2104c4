#!/usr/bin/env bash
# Transition constraints: UPDATE throughput on a table with one transition
# constraint and one check (every update changes the state, so each also
# writes an audit row), against the same table without them.  Commits are
# asynchronous here so that the row measures the CPU cost of the rules, not
# the disk.
set -euo pipefail
. "$OFS_ROOT/test/lib/cluster.sh"
db=ofs_bench_transition
secs=$(( (OFS_BENCH_SECONDS + 1) / 2 ))
ofs_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
ofs_psql -d $db >/dev/null <<'SQL'
CREATE EXTENSION ofs;
CREATE TABLE ruled (id int PRIMARY KEY, status text NOT NULL, amount int NOT NULL);
CREATE TABLE plain (id int PRIMARY KEY, status text NOT NULL, amount int NOT NULL);
INSERT INTO ruled SELECT g, 'a', 0 FROM generate_series(1, 10000) g;
INSERT INTO plain SELECT g, 'a', 0 FROM generate_series(1, 10000) g;
SELECT ofs.add_transition_constraint('ruled', 'flip', 'status', $$'a' -> 'b', 'b' -> 'a'$$);
SELECT ofs.add_transition_check('ruled', 'grows', 'NEW.amount >= OLD.amount');
SQL
for t in ruled plain; do
  cat >"$OFS_TMP/transition_$t.sql" <<EOF2
\set id random(1, 10000)
UPDATE $t SET status = CASE status WHEN 'a' THEN 'b' ELSE 'a' END, amount = amount + 1 WHERE id = :id;
EOF2
done
tps() { PGOPTIONS="-c synchronous_commit=off" pgbench -n -c 4 -j 2 -T "$secs" -f "$1" -d $db 2>&1 |
          sed -n 's/^tps = \([0-9.]*\).*/\1/p'; }
b1=$(tps "$OFS_TMP/transition_plain.sql"); o1=$(tps "$OFS_TMP/transition_ruled.sql")
b2=$(tps "$OFS_TMP/transition_plain.sql"); o2=$(tps "$OFS_TMP/transition_ruled.sql")
awk -v o1="$o1" -v o2="$o2" -v b1="$b1" -v b2="$b2" 'BEGIN {
  o = (o1 + o2) / 2; b = (b1 + b2) / 2;
  printf "transition rules, UPDATE, 4 clients|%.0f tps|%.0f tps (no rules)|%.2f|>= 0.80\n", o, b, o / b }'
ofs_psql -d postgres -c "DROP DATABASE $db" >/dev/null
