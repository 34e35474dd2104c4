#!/usr/bin/env bash
# feed_stress: 8 writers do random inserts, updates and deletes in
# transactions of random length (some rolled back, some retried after
# deadlocks) while a reader follows ofs.changes in small pages and applies
# what it reads to a mirror table, and compaction runs now and then.  At the
# end the mirror must equal the table, row for row and value for value.
set -euo pipefail
. "$OFS_ROOT/test/lib/cluster.sh"
db=ofs_feed_stress
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

ofs_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
ofs_psql -d $db <<'SQL'
CREATE EXTENSION ofs;
CREATE TABLE st (id int PRIMARY KEY, n int NOT NULL, note text, amount numeric(14,4), at timestamptz);
SELECT ofs.sync_table('st');
CREATE TABLE st_mirror (LIKE st);
ALTER TABLE st_mirror ADD PRIMARY KEY (id);
CREATE TABLE st_cursor (c text);
INSERT INTO st_cursor VALUES (NULL);
CREATE FUNCTION read_feed(page int) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE cur text; r record; total bigint := 0; n int;
BEGIN
  SELECT c INTO cur FROM st_cursor;
  LOOP
    n := 0;
    FOR r IN SELECT * FROM ofs.changes(cur, page) LOOP
      IF r.op = 'delete' THEN
        DELETE FROM st_mirror WHERE id = (r.pk->>'id')::int;
      ELSE
        INSERT INTO st_mirror SELECT * FROM jsonb_populate_record(NULL::st_mirror, r.data)
          ON CONFLICT (id) DO UPDATE SET n = EXCLUDED.n, note = EXCLUDED.note,
                                         amount = EXCLUDED.amount, at = EXCLUDED.at;
      END IF;
      cur := r.cursor;
      n := n + 1;
    END LOOP;
    total := total + n;
    EXIT WHEN n < page;
  END LOOP;
  UPDATE st_cursor SET c = cur WHERE cur IS NOT NULL;
  RETURN total;
END $$;
SQL

cat >"$work/write.sql" <<'EOF2'
\set id random(1, 300)
\set id2 random(1, 300)
\set id3 random(1, 300)
\set r random(1, 100)
\set amt random(-100000, 100000)
BEGIN;
INSERT INTO st VALUES (:id, 1, 'w' || :client_id, :amt / 7.0, now())
  ON CONFLICT (id) DO UPDATE SET n = st.n + 1, note = 'u' || :client_id, amount = EXCLUDED.amount;
SELECT pg_sleep(random() * 0.004);
UPDATE st SET n = n + 1, at = clock_timestamp() WHERE id = :id2;
\if :r <= 35
DELETE FROM st WHERE id = :id3;
\endif
\if :r > 85
ROLLBACK;
\else
COMMIT;
\endif
EOF2

pgbench -n -c 8 -j 2 -T 12 --max-tries=20 -f "$work/write.sql" -d $db >"$work/pgbench.log" 2>&1 &
writers=$!
reads=0
while kill -0 $writers 2>/dev/null; do
  ofs_psql -d $db -c "SELECT read_feed($((RANDOM % 7 + 1)))" >/dev/null
  reads=$((reads + 1))
  if [ $((reads % 25)) -eq 0 ]; then
    ofs_psql -d $db -c "SELECT ofs.compact_changes()" >/dev/null
  fi
done
wait $writers || { cat "$work/pgbench.log"; exit 1; }
grep -E "number of transactions actually processed|number of failed|number of transactions retried" "$work/pgbench.log" || true
ofs_psql -d $db -c "SELECT read_feed(50)" >/dev/null
echo "reader passes while writing: $reads"

ofs_psql -d $db <<'SQL'
DO $$
DECLARE rows bigint; missing bigint; extra bigint;
BEGIN
  SELECT count(*) INTO rows FROM st;
  SELECT count(*) INTO missing FROM (SELECT * FROM st EXCEPT SELECT * FROM st_mirror) x;
  SELECT count(*) INTO extra FROM (SELECT * FROM st_mirror EXCEPT SELECT * FROM st) x;
  IF missing <> 0 OR extra <> 0 THEN
    RAISE EXCEPTION 'mirror diverged: % rows of the table missing or different, % extra', missing, extra;
  END IF;
  IF rows < 50 THEN RAISE EXCEPTION 'too few rows to mean anything: %', rows; END IF;
  RAISE NOTICE 'ok: mirror equals the table (% rows)', rows;
END $$;
SQL
ofs_psql -d postgres -c "DROP DATABASE $db"
