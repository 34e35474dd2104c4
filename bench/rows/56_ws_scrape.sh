#!/usr/bin/env bash
# The cost of being watched: the live fan-out of bench/rows/51_ws_fanout.sh
# (1,000 live devices, 20 changes, the time until the last device has each)
# while /metrics is scraped every second (curl, as Prometheus would: a new
# connection each time), against the same fan-out without scraping, same
# run.  Two rounds of each, alternating, the better of each side.
# Ratio: p99 with scraping / p99 without (target: less than 5% more).
set -euo pipefail
. "$OFS_ROOT/bench/tools/ws_common.sh"
ws_prepare
scraper=""
stop_scraper() { if [ -n "$scraper" ]; then kill "$scraper" 2>/dev/null || true; wait "$scraper" 2>/dev/null || true; fi; scraper=""; }
trap 'stop_scraper; ws_fanout_cleanup' EXIT
curl -sf --max-time 5 -o /dev/null "http://127.0.0.1:$OFS_HTTP_PORT/metrics" ||
  { echo "/metrics does not answer on port $OFS_HTTP_PORT" >&2; exit 1; }
plain99=""; plain50=""; scraped99=""; scraped50=""; scrapes=0
for round in 1 2; do
  ws_fanout scrape 1000 20 110
  echo "round $round, no scraping: p50 $FAN_P50 ms, p99 $FAN_P99 ms ($FAN_REST)" >&2
  if [ -z "$plain99" ] || awk -v a="$FAN_P99" -v b="$plain99" 'BEGIN { exit !(a < b) }'; then plain99=$FAN_P99; plain50=$FAN_P50; fi
  ( while :; do curl -s --max-time 2 -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$OFS_HTTP_PORT/metrics"; sleep 1; done ) \
    >"$OFS_TMP/scrape.codes" &
  scraper=$!
  ws_fanout scrape 1000 20 110
  stop_scraper
  echo "scrape answers: $(sort "$OFS_TMP/scrape.codes" | uniq -c | tr "\n" " ")" >&2
  scrapes=$((scrapes + $(grep -c "^200$" "$OFS_TMP/scrape.codes" || true)))
  echo "round $round, scraping: p50 $FAN_P50 ms, p99 $FAN_P99 ms ($FAN_REST)" >&2
  if [ -z "$scraped99" ] || awk -v a="$FAN_P99" -v b="$scraped99" 'BEGIN { exit !(a < b) }'; then scraped99=$FAN_P99; scraped50=$FAN_P50; fi
done
[ "$scrapes" -gt 0 ] || { echo "no scrape succeeded" >&2; exit 1; }
awk -v s="$scraped99" -v p="$plain99" -v s5="$scraped50" -v p5="$plain50" -v n="$scrapes" 'BEGIN {
  printf "fan-out 1,000 live devices, /metrics scraped every second (%d scrapes)|p99 %.0f ms (p50 %.0f)|p99 %.0f ms (p50 %.0f) without scraping|%.2f|<= 1.05\n",
         n, s, s5, p, p5, (p > 0 ? s / p : 0) }'
