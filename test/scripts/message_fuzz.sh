#!/usr/bin/env bash
# message_fuzz: the libFuzzer target of the sync worker's message handling
# (test/fuzz/), for a bounded time (OFS_FUZZ_SECONDS, default 60) from the
# committed seed corpus.  `make fuzz` runs it as long as asked.
set -uo pipefail
cd "$OFS_ROOT"
dir=$(mktemp -d /tmp/ofs-fuzz.XXXXXX)
trap 'rm -rf "$dir"' EXIT
status=0
if OFS_FUZZ_DIR="$dir" bash test/fuzz/run.sh "${OFS_FUZZ_SECONDS:-60}" >"$dir/log" 2>&1; then
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log")
  echo "ok 1 - the message fuzz target ran ${OFS_FUZZ_SECONDS:-60}s without a finding (${runs:-?} inputs)"
else
  echo "not ok 1 - the message fuzz target found a crash, a leak or undefined behaviour"
  grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$dir/log" | head -20 | sed 's/^/# /'
  mkdir -p /tmp/ofs-fuzz-findings && cp "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* /tmp/ofs-fuzz-findings/ 2>/dev/null
  echo "# findings copied to /tmp/ofs-fuzz-findings"
  status=1
fi
echo "1..1"
exit $status
