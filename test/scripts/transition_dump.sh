#!/usr/bin/env bash
# transition_dump: pg_dump and restore keep transition constraints, checks,
# their trigger and the audit, and the restored rules are enforced.
set -euo pipefail
. "$OFS_ROOT/test/lib/cluster.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for db in ofs_tdump_src ofs_tdump_dst; do
  ofs_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
done
ofs_psql -d postgres -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tdump_manager')
                         THEN CREATE ROLE tdump_manager; END IF; END \$\$"
ofs_psql -d ofs_tdump_src <<'SQL'
CREATE EXTENSION ofs;
CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL, total numeric NOT NULL);
SELECT ofs.add_transition_constraint('orders', 'order_flow', 'status',
  $$'new' -> 'paid', 'paid' -> 'shipped' BY ROLE 'tdump_manager'$$, ARRAY['new']);
SELECT ofs.add_transition_check('orders', 'total_kept', $$NEW.total = OLD.total OR OLD.status = 'new'$$);
INSERT INTO orders VALUES (1, 'new', 10);
UPDATE orders SET status = 'paid' WHERE id = 1;
SQL
pg_dump -Fc -d ofs_tdump_src -f "$work/dump"
pg_restore -d ofs_tdump_dst "$work/dump"

check() {  # check WHAT EXPECTED SQL
  local got
  got=$(ofs_psql -d ofs_tdump_dst -c "$3" 2>&1 | head -1 || true)
  if [[ "$got" != *"$2"* ]]; then echo "FAILED: $1: expected '$2', got '$got'"; exit 1; fi
  echo "ok: $1"
}
check "rules restored" "3" "SELECT count(*) FROM ofs.transition_rules WHERE table_name = 'orders'::regclass"
check "check restored" "total_kept" "SELECT check_name FROM ofs.transition_checks"
check "audit restored" "2" "SELECT count(*) FROM ofs.transition_log"
check "missing edge refused after restore" "violates transition constraint" \
  "UPDATE orders SET status = 'new' WHERE id = 1"
check "check enforced after restore" "violates transition check" \
  "UPDATE orders SET total = 99 WHERE id = 1"
check "initial state enforced after restore" "initial state" \
  "INSERT INTO orders VALUES (2, 'paid', 1)"
check "an allowed transition passes" "shipped" \
  "UPDATE orders SET status = 'shipped' WHERE id = 1 RETURNING status"
for db in ofs_tdump_src ofs_tdump_dst; do ofs_psql -d postgres -c "DROP DATABASE $db"; done
