#!/usr/bin/env bash
# gapless_dump: pg_dump and restore keep gap-free sequences, their counters
# and the audit, so numbering continues where it stopped.
set -euo pipefail
. "$OFS_ROOT/test/lib/cluster.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for db in ofs_dump_src ofs_dump_dst; do
  ofs_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
done
ofs_psql -d ofs_dump_src <<'SQL'
CREATE EXTENSION ofs;
SELECT ofs.create_gapless_sequence('inv', 'INV-{YYYY}-{n:4}', 'yearly', 10, 'Europe/Madrid');
SELECT ofs.gapless_next('inv', '2025-12-31 23:30+00');  -- 2026 in Madrid
SELECT ofs.gapless_next('inv', '2025-12-31 12:00+00');
SELECT ofs.gapless_next('inv', '2025-12-31 12:00+00');
SQL
pg_dump -Fc -d ofs_dump_src -f "$work/dump"
pg_restore -d ofs_dump_dst "$work/dump"

got=$(ofs_psql -d ofs_dump_dst -c "SELECT ofs.gapless_next('inv', '2025-06-01')" \
               -c "SELECT ofs.gapless_next('inv', '2026-06-01')" \
               -c "SELECT format || '|' || reset || '|' || time_zone FROM ofs.gapless_sequences" \
               -c "SELECT count(*) FROM ofs.gapless_issued")
expected=$'INV-2025-0012\nINV-2026-0011\nINV-{YYYY}-{n:4}|yearly|Europe/Madrid\n5'
if [ "$got" != "$expected" ]; then
  echo "after restore, expected:"; echo "$expected"; echo "got:"; echo "$got"; exit 1
fi
echo "ok: numbering continues after dump and restore"
for db in ofs_dump_src ofs_dump_dst; do ofs_psql -d postgres -c "DROP DATABASE $db"; done
