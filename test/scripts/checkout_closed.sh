#!/usr/bin/env bash
# checkout_closed: the suites that the cluster's owner runs itself
# (pg_regress, pg_isolation_regress) pass from a checkout that only root may
# enter, such as a clone under /root: the harness hands that user a copy of
# their inputs.  The suites run here against a cluster of their own.
set -uo pipefail
. "$OFS_ROOT/test/lib/cluster.sh"
n=0; failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/# /'; }

if [ "$(id -u)" -ne 0 ]; then
  # Only root can make a directory its cluster's owner cannot enter.
  echo "ok 1 - # SKIP needs root"; echo "1..1"; exit 0
fi
closed=$(mktemp -d /root/ofs-closed.XXXXXX 2>/dev/null || mktemp -d /tmp/ofs-closed.XXXXXX)
trap 'rm -rf "$closed"' EXIT
chmod 700 "$closed"
mkdir "$closed/ofs"
(cd "$OFS_ROOT" && tar --exclude=node_modules -cf - test ofs.control) | (cd "$closed/ofs" && tar -xf -)
if runuser -u "$OFS_PG_USER" -- test -r "$closed/ofs/test/sql"; then
  notok "the checkout is closed to $OFS_PG_USER" "$OFS_PG_USER can read $closed"
fi
out=$(cd "$closed/ofs" && env -u PGHOST -u PGPORT OFS_TESTS=regress,isolation timeout 300 bash test/run.sh 2>&1)
rc=$?
printf '%s\n' "$out" | grep -E '^suite|passed' | sed 's/^/# /'
if [ $rc -eq 0 ] && printf '%s\n' "$out" | grep -qE '^suite regress +ok' &&
   printf '%s\n' "$out" | grep -qE '^suite isolation +ok'; then
  ok "regression and isolation suites pass from a checkout closed to the cluster's owner"
else
  notok "regression and isolation suites pass from a checkout closed to the cluster's owner" \
    "$(printf '%s\n' "$out" | grep -iE 'denied|FAILED|failed' | head -20)"
fi
echo "1..$n"
[ "$failed" -eq 0 ]
