#!/usr/bin/env bash
# run.sh: run every test suite of ofs against one throwaway cluster.
#
# Suites, in order: regression (pg_regress), isolation (pg_isolation_regress),
# pgTAP (pg_prove), client unit tests, and scripts (test/scripts/*.sh:
# stress, crash and dump tests, end-to-end).  One line per suite, then a last
# line "N passed, N failed" counting individual tests; exit 1 if any failed.
# The cluster is always stopped and removed, also on failure or interrupt.
#
# OFS_TESTS=regress,isolation,pgtap,unit,client,scripts selects suites;
# OFS_SCRIPTS=regex selects scripts of that suite by name;
# OFS_KEEP=1 keeps the temporary directory for inspection.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. test/lib/cluster.sh

SUITES=${OFS_TESTS:-regress,isolation,pgtap,unit,client,scripts}
PGXS_DIR=$(dirname "$(pg_config --pgxs)")/../..
TMP=$(ofs_mktemp ofs-test)
PASSED=0
FAILED=0
FAILURES=()

cleanup() {
  ofs_cluster_stop immediate
  if [ -n "${OFS_KEEP:-}" ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wants() { [[ ",$SUITES," == *",$1,"* ]]; }

# report SUITE PASSED FAILED [DETAIL]: one line per suite, and the totals.
report() {
  PASSED=$((PASSED + $2)); FAILED=$((FAILED + $3))
  local status=ok
  [ "$3" -gt 0 ] && { status=FAILED; FAILURES+=("$1"); }
  printf 'suite %-10s %-6s (%d of %d tests passed)%s\n' "$1" "$status" "$2" $(($2 + $3)) "${4:+ $4}"
}

# count_pg_regress LOG: the ok and failed tests in a pg_regress output.
count_pg_regress() {
  local ok failed
  ok=$(grep -Ec '\.\.\. ok|\.\.\. failed \(ignored\)' "$1")
  failed=$(grep -Ec '\.\.\. FAILED' "$1")
  echo "$ok $failed"
}

# The sync workers serve database ofs_e2e (created by the end-to-end tests)
# on a port of their own.
OFS_WS_PORT=$(ofs_free_port); export OFS_WS_PORT
ofs_cluster_init "$TMP/cluster" "ofs.port = $OFS_WS_PORT" "ofs.database = 'ofs_e2e'" \
  >"$TMP/init.log" 2>&1 || {
  cat "$TMP/init.log"; echo "could not start the test cluster"; echo "0 passed, 1 failed"; exit 1; }

# The cluster's owner runs pg_regress and must read its inputs wherever the
# checkout lives (a clone under /root is closed to it): it gets a copy, and
# runs from a directory of its own.
INPUT="$TMP/input"
mkdir -p "$INPUT"
cp -r test/sql test/expected test/specs "$INPUT/" 2>/dev/null
[ "$(id -u)" -eq 0 ] && chown -R "$OFS_PG_USER" "$INPUT"

if wants regress; then
  tests=$(cd test/sql && ls *.sql 2>/dev/null | sed 's/\.sql$//' | sort)
  if [ -n "$tests" ]; then
    out=$(ofs_mktemp ofs-regress); mv "$out" "$TMP/regress"; out="$TMP/regress"
    [ "$(id -u)" -eq 0 ] && chown "$OFS_PG_USER" "$out"
    (cd "$INPUT" && ofs_as_pg "$PGXS_DIR/src/test/regress/pg_regress" \
      --host="$PGHOST" --port="$PGPORT" --user="$PGUSER" \
      --bindir="$OFS_PG_BINDIR" --inputdir="$INPUT" --outputdir="$out" \
      --dbname=ofs_regress --load-extension=ofs $tests >"$out/log" 2>&1)
    read -r ok failed < <(count_pg_regress "$out/log")
    # A test that did not report (pg_regress stopped early) is a failure.
    total=$(echo $tests | wc -w)
    [ $((ok + failed)) -lt "$total" ] && failed=$((total - ok))
    report regress "$ok" "$failed"
    [ "$failed" -gt 0 ] && { cat "$out/log"; [ -f "$out/regression.diffs" ] && head -200 "$out/regression.diffs"; }
  fi
fi

if wants isolation; then
  specs=$(cd test/specs && ls *.spec 2>/dev/null | sed 's/\.spec$//' | sort)
  if [ -n "$specs" ]; then
    out="$TMP/isolation"; ofs_as_pg mkdir -p "$out"
    (cd "$INPUT" && ofs_as_pg "$PGXS_DIR/src/test/isolation/pg_isolation_regress" \
      --host="$PGHOST" --port="$PGPORT" --user="$PGUSER" \
      --bindir="$OFS_PG_BINDIR" --inputdir="$INPUT" --outputdir="$out" \
      --dbname=ofs_isolation --load-extension=ofs $specs >"$out/log" 2>&1)
    read -r ok failed < <(count_pg_regress "$out/log")
    total=$(echo $specs | wc -w)
    [ $((ok + failed)) -lt "$total" ] && failed=$((total - ok))
    report isolation "$ok" "$failed"
    [ "$failed" -gt 0 ] && { cat "$out/log"; [ -f "$out/regression.diffs" ] && head -200 "$out/regression.diffs"; }
  fi
fi

if wants pgtap; then
  files=$(ls test/pgtap/*.sql 2>/dev/null | sort)
  if [ -n "$files" ]; then
    ofs_psql -d postgres -c "CREATE DATABASE ofs_pgtap" &&
      ofs_psql -d ofs_pgtap -c "CREATE EXTENSION pgtap; CREATE EXTENSION ofs" >"$TMP/pgtap.log" 2>&1
    ok=0; failed=0
    for f in $files; do
      if pg_prove -d ofs_pgtap "$f" >>"$TMP/pgtap.log" 2>&1; then ok=$((ok + 1)); else failed=$((failed + 1)); fi
    done
    report pgtap "$ok" "$failed"
    [ "$failed" -gt 0 ] && cat "$TMP/pgtap.log"
  fi
fi

# Unit tests of the extension's pure C parts (test/unit/test_X.c tests
# src/X.c, or the header src/X.h alone), under AddressSanitizer and UBSan
# like the client's.
if wants unit; then
  ok=0; failed=0
  for t in test/unit/test_*.c; do
    name=$(basename "$t" .c); src="src/${name#test_}.c"; [ -f "$src" ] || src=
    if ${CC:-cc} -std=c11 -Wall -Wextra ${WERROR:-} -g -fsanitize=address,undefined \
         -fno-sanitize-recover=all -Isrc -Iclient/test -o "$TMP/$name" "$t" $src >"$TMP/$name.log" 2>&1 &&
       "$TMP/$name" >>"$TMP/$name.log" 2>&1; then :; else echo "not ok - $name did not build or run" >>"$TMP/$name.log"; fi
    ok=$((ok + $(grep -Ec '^ok ' "$TMP/$name.log"))); n=$(grep -Ec '^not ok' "$TMP/$name.log")
    failed=$((failed + n)); [ "$n" -gt 0 ] && cat "$TMP/$name.log"
  done
  report unit "$ok" "$failed"
fi

if wants client && [ -f client/Makefile ]; then
  if make -s -C client test >"$TMP/client.log" 2>&1; then
    ok=$(grep -Ec '^ok ' "$TMP/client.log"); failed=$(grep -Ec '^not ok ' "$TMP/client.log")
  else
    ok=$(grep -Ec '^ok ' "$TMP/client.log"); failed=$(( $(grep -Ec '^not ok ' "$TMP/client.log") + 1 ))
  fi
  report client "$ok" "$failed"
  [ "$failed" -gt 0 ] && tail -100 "$TMP/client.log"
fi

if wants scripts; then
  files=$(ls test/scripts/*.sh 2>/dev/null | sort)
  ok=0; failed=0; names=()
  for f in $files; do
    name=$(basename "$f" .sh)
    [[ -n "${OFS_SCRIPTS:-}" && ! "$name" =~ ${OFS_SCRIPTS} ]] && continue
    log="$TMP/script-$name.log"
    if OFS_ROOT="$ROOT" OFS_TMP="$TMP" timeout 900 bash "$f" >"$log" 2>&1; then
      ok=$((ok + 1))
    else
      failed=$((failed + 1)); names+=("$name")
      echo "--- $name failed:"
      grep -A8 '^not ok' "$log" | head -120; echo "..."; tail -15 "$log"
    fi
    # A script may crash and restart the shared cluster; make sure it is up.
    ofs_as_pg "$OFS_PG_BINDIR/pg_ctl" -D "$OFS_CLUSTER_DIR/data" status >/dev/null 2>&1 || ofs_cluster_start
  done
  [ -n "$files" ] && report scripts "$ok" "$failed" "${names[*]:+(failed: ${names[*]})}"
fi

[ ${#FAILURES[@]} -gt 0 ] && echo "failed suites: ${FAILURES[*]}"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
