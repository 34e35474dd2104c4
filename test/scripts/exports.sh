#!/usr/bin/env bash
# exports: the installed library exports only what PostgreSQL looks up by
# name (Makefile, ofs.map): _PG_init, the module magic, the workers' entry
# points and the SQL-callable functions, all prefixed ofs_ except the bare
# names that ofs 1.0's SQL declares (src/sql_compat.c).  Every symbol each
# install script names is exported.
set -uo pipefail
. "$OFS_ROOT/test/lib/cluster.sh"
n=0; failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/# /'; }

lib="$(pg_config --pkglibdir)/ofs.so"
exported=$(nm -D --defined-only "$lib" | awk '{print $3}' | sort)
compat=$(sed -n 's/^\tX(\([a-z_0-9]*\)).*/\1/p' "$OFS_ROOT/src/sql_compat.c" | sort)
declared() { grep -o "MODULE_PATHNAME', '[a-z_0-9]*'" "$1" | awk -F"'" '{print $3}' | sort -u; }

stray=$(printf '%s\n' "$exported" | grep -vxE '_PG_init|Pg_magic_func|ofs_[a-z0-9_]+|pg_finfo_ofs_[a-z0-9_]+' |
  grep -vxF -f <(printf '%s\n' "$compat"; printf 'pg_finfo_%s\n' $compat))
if [ -z "$stray" ]; then ok "every exported symbol is an entry point with the prefix ofs_ or a 1.0 name"
else notok "symbols exported that are not entry points" "$stray"; fi

count=$(printf '%s\n' "$exported" | wc -l)
if [ "$count" -lt 200 ]; then ok "the library exports $count symbols, not its internals"
else notok "the library exports $count symbols"; fi

for f in "$OFS_ROOT"/ofs--*.sql; do
  v=$(basename "$f" .sql)
  missing=$(comm -23 <(declared "$f") <(printf '%s\n' "$exported"))
  if [ -z "$missing" ]; then ok "every C symbol $v names is exported"
  else notok "$v names symbols the library does not export" "$missing"; fi
done

unprefixed=$(declared "$OFS_ROOT/ofs--$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$OFS_ROOT/ofs.control").sql" | grep -v '^ofs_')
if [ -z "$unprefixed" ]; then ok "the newest script names only ofs_ symbols"
else notok "the newest script names unprefixed symbols" "$unprefixed"; fi

for s in WorkerInit SessionSend MessageParse OfsInsertDirect RowJsonValue HlcNow; do
  if printf '%s\n' "$exported" | grep -qx "$s"; then notok "internal function $s is exported"
  else ok "internal function $s is not exported"; fi
done

echo "1..$n"
[ "$failed" -eq 0 ]
