#!/usr/bin/env bash
# feed_dump_restart: pg_dump keeps the sync registration; after restore,
# ofs.rebuild_feed brings the feed back under a new epoch.  An immediate
# shutdown keeps committed changes in the feed and the HLC monotonic.
set -euo pipefail
. "$OFS_ROOT/test/lib/cluster.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for db in ofs_fdump_src ofs_fdump_dst; do
  ofs_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
done
ofs_psql -d ofs_fdump_src <<'SQL'
CREATE EXTENSION ofs;
CREATE TABLE notes (id int PRIMARY KEY, body text, qty int);
INSERT INTO notes VALUES (1, 'one', 1), (2, 'two', 2);
SELECT ofs.sync_table('notes', '{"qty": "counter"}');
UPDATE notes SET body = 'uno' WHERE id = 1;
SQL
pg_dump -Fc -d ofs_fdump_src -f "$work/dump"
pg_restore -d ofs_fdump_dst "$work/dump"
got=$(ofs_psql -d ofs_fdump_dst -c "SELECT merge::text FROM ofs.synced_table" \
                -c "SELECT count(*) FROM ofs.changes()" \
                -c "SELECT ofs.rebuild_feed()" \
                -c "SELECT string_agg(data->>'body', ',' ORDER BY pk->>'id') FROM ofs.changes()" \
                -c "INSERT INTO notes VALUES (3, 'three', 3)" \
                -c "SELECT count(*) FROM ofs.changes()")
expected=$'{"qty": "counter"}\n0\n2\nuno,two\n3'
if [ "$got" != "$expected" ]; then
  echo "after restore, expected:"; echo "$expected"; echo "got:"; echo "$got"; exit 1
fi
echo "ok: registration restored, feed rebuilt and capturing"

before=$(ofs_psql -d ofs_fdump_src -c "SELECT ofs.hlc_now()")
ofs_psql -d ofs_fdump_src -c "INSERT INTO notes VALUES (9, 'before crash', 9)"
reserved=$(ofs_as_pg od -An -t d8 "$OFS_CLUSTER_DIR/data/pg_ofs_hlc" | tr -d ' ')
[ "$reserved" -ge "$before" ] || { echo "reservation $reserved below an HLC handed out: $before"; exit 1; }
ofs_cluster_stop immediate
ofs_cluster_start
after=$(ofs_psql -d ofs_fdump_src -c "SELECT ofs.hlc_now()")
[ "$after" -gt "$reserved" ] || { echo "after restart the clock did not start past the reservation: $reserved -> $after"; exit 1; }
n=$(ofs_psql -d ofs_fdump_src -c "SELECT count(*) FROM ofs.changes() WHERE pk = '{\"id\": 9}'")
[ "$n" = 1 ] || { echo "committed change lost in the crash"; exit 1; }
echo "ok: HLC monotonic across an immediate shutdown ($before -> $after), committed change kept"
for db in ofs_fdump_src ofs_fdump_dst; do ofs_psql -d postgres -c "DROP DATABASE $db"; done
