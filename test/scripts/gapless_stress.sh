#!/usr/bin/env bash
# gapless_stress: 8 concurrent clients take gap-free numbers, with random
# rollbacks of transactions and savepoints, and the cluster is shut down
# immediately (a crash) midway and restarted.  Afterwards the committed
# numbers must be exactly 1..N: no gap, no duplicate, and the audit must hold
# exactly the committed numbers.
set -euo pipefail
. "$OFS_ROOT/test/lib/cluster.sh"
db=ofs_gapless_stress
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ofs_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
ofs_psql -d $db <<'SQL'
CREATE EXTENSION ofs;
SELECT ofs.create_gapless_sequence('stress', 'S-{n:6}');
CREATE TABLE stress_doc (id bigserial PRIMARY KEY, number text NOT NULL UNIQUE, client int);
SQL

cat >"$work/take.sql" <<'EOF2'
\set r random(1, 100)
BEGIN;
SELECT pg_sleep(0.001);
\if :r <= 15
SAVEPOINT s;
INSERT INTO stress_doc (number, client) VALUES (ofs.gapless_next('stress'), :client_id);
ROLLBACK TO SAVEPOINT s;
\endif
INSERT INTO stress_doc (number, client) VALUES (ofs.gapless_next('stress'), :client_id);
\if :r > 75
ROLLBACK;
\else
COMMIT;
\endif
EOF2

# Phase 1: 8 clients; the server crashes under them after 3 seconds.
pgbench -n -c 8 -j 2 -T 8 -f "$work/take.sql" -d $db >"$work/phase1.log" 2>&1 &
bench=$!
sleep 3
ofs_cluster_stop immediate
wait $bench || true   # the clients lose their connections: expected
echo "crashed under load; restarting"
ofs_cluster_start

# Phase 2: after recovery, numbering goes on without a gap.
pgbench -n -c 8 -j 2 -T 3 -f "$work/take.sql" -d $db >"$work/phase2.log" 2>&1

ofs_psql -d $db <<'SQL'
SELECT count(*) AS docs FROM stress_doc \gset
\echo committed documents: :docs
DO $$
DECLARE n bigint; lo bigint; hi bigint; d bigint; audit bigint; mismatch bigint; last bigint;
BEGIN
  SELECT count(*), min(substr(number, 3)::bigint), max(substr(number, 3)::bigint),
         count(DISTINCT number)
    INTO n, lo, hi, d FROM stress_doc;
  IF n < 100 THEN RAISE EXCEPTION 'too few documents committed: %', n; END IF;
  IF lo <> 1 OR hi <> n OR d <> n THEN
    RAISE EXCEPTION 'numbers are not exactly 1..%: min %, max %, distinct %', n, lo, hi, d;
  END IF;
  SELECT count(*) INTO audit FROM ofs.gapless_issued WHERE sequence_name = 'stress';
  SELECT count(*) INTO mismatch FROM (
    SELECT formatted FROM ofs.gapless_issued WHERE sequence_name = 'stress'
    EXCEPT SELECT number FROM stress_doc) x;
  IF audit <> n OR mismatch <> 0 THEN
    RAISE EXCEPTION 'audit has % rows (% not in the table) for % documents', audit, mismatch, n;
  END IF;
  SELECT last_value INTO last FROM ofs.gapless_sequences WHERE name = 'stress';
  IF last <> n THEN RAISE EXCEPTION 'counter at % for % documents', last, n; END IF;
  RAISE NOTICE 'ok: % documents numbered exactly 1..%', n, n;
END $$;
SQL
ofs_psql -d postgres -c "DROP DATABASE $db"
