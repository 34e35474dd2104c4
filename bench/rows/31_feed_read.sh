#!/usr/bin/env bash
# Feed read: a client follows ofs.changes over 100,000 changed rows in pages
# of 10,000, against COPY (SELECT * FROM t) TO STDOUT of the same rows, both
# read by the same libpq program (bench/tools/feed_reader.c); best of three.
set -euo pipefail
. "$OFS_ROOT/test/lib/cluster.sh"
db=ofs_bench_feed
reader="$OFS_TMP/feed_reader"
[ -x "$reader" ] || gcc -O2 -I"$(pg_config --includedir)" -o "$reader" \
  "$OFS_ROOT/bench/tools/feed_reader.c" -L"$(pg_config --libdir)" -lpq
ofs_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
ofs_psql -d $db >/dev/null <<'SQL'
CREATE EXTENSION ofs;
CREATE TABLE todos (id text PRIMARY KEY, text text, done integer);
SELECT ofs.sync_table('todos');
INSERT INTO todos SELECT 'todo-' || g, md5(g::text) || 'abcdefgh', g % 2 FROM generate_series(1, 100000) g;
VACUUM ANALYZE todos;
VACUUM ANALYZE ofs.change_log;
SQL
conn="host=$PGHOST port=$PGPORT dbname=$db user=$PGUSER"
best() { local b=""; for _ in 1 2 3; do t=$("$reader" "$conn" "$@" | awk '{print $2}');
         b=$(awk -v a="$b" -v t="$t" 'BEGIN { print (a == "" || t < a) ? t : a }'); done; echo "$b"; }
feed=$(best 10000)
copy=$(best copy todos)
awk -v f="$feed" -v c="$copy" 'BEGIN {
  printf "feed read, 100,000 rows, pages of 10,000|%.0f ms|%.0f ms (COPY TO STDOUT)|%.2f|>= 0.30\n", f * 1000, c * 1000, c / f }'
ofs_psql -d postgres -c "DROP DATABASE $db" >/dev/null
