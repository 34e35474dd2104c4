#!/usr/bin/env bash
# status_browser: the status page in a real browser (Debian's chromium,
# headless, driven by puppeteer-core, test/browser/status.js): refused
# without a status token; with it, it shows a device that is behind and a
# dead letter the test caused, with the SQL to run; it updates itself
# once the test discards the dead letter.  Screenshots are kept in
# test/artifacts/ (OFS_ARTIFACTS elsewhere).
set -uo pipefail
. "$OFS_ROOT/test/lib/devices.sh"
DEV_TIME_LIMIT=120
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || { echo "not ok 1 - chromium is needed (Debian package chromium; scripts/deps.sh)"; echo "1..1"; exit 1; }
ofs_toolkit_ready || die "the test toolkit"
TOOLKIT="$OFS_ROOT/test/toolkit"
[ -d "$TOOLKIT/node_modules/puppeteer-core" ] ||
  npm ci --prefix "$TOOLKIT" --no-audit --no-fund >/dev/null 2>&1 || die "npm ci in test/toolkit (puppeteer-core)"
ART=${OFS_ARTIFACTS:-$OFS_ROOT/test/artifacts}
mkdir -p "$ART"

HTTP_PORT=$(ofs_free_port) || die "no free port"
dev_origin status_browser "ofs.http_port = $HTTP_PORT"
dev_sql >/dev/null <<'SQL' || die "schema"
CREATE ROLE browser_dev;
GRANT USAGE ON SCHEMA public TO browser_dev;
CREATE TABLE tasks (id text PRIMARY KEY, title text NOT NULL CHECK (title <> ''));
GRANT SELECT, INSERT, UPDATE, DELETE ON tasks TO browser_dev;
SELECT ofs.sync_table('tasks');
SQL
for _ in $(seq 1 80); do curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$HTTP_PORT/metrics" && break; sleep 0.25; done

# A device that is behind: it synced once, then the origin changed.
dev_new lagging browser_dev tasks
cli lagging sync >/dev/null || die "sync of lagging"
# A dead letter: a write the origin's CHECK refuses.
dev_new writer browser_dev tasks
cli writer sync >/dev/null || die "sync of writer"
cli writer exec "INSERT INTO tasks VALUES ('t-bad', '')" >/dev/null
cli writer sync >/dev/null 2>&1
dev_sql -c "INSERT INTO tasks SELECT 'o' || g, 'origin task ' || g FROM generate_series(1, 5) g" >/dev/null
check_eq "the origin has one open dead letter" "$(dev_sql -c "SELECT count(*) FROM ofs.dead_letters WHERE status = 'open'")" 1
check "the lagging device is behind" \
  "[ \"\$(dev_sql -c \"SELECT changes_behind FROM ofs.devices WHERE device = 'lagging'\")\" -gt 0 ]"
token=$(dev_sql -c "SELECT ofs.create_status_token('browser test')") || die "create_status_token"

# The browser, on the page; the test discards the dead letter when it is ready.
coproc BROWSER { NODE_PATH="$TOOLKIT/node_modules" CHROMIUM="$CHROMIUM" timeout 90 node "$OFS_ROOT/test/browser/status.js" \
  "http://127.0.0.1:$HTTP_PORT" "$token" lagging "$ART/status.png" 2>"$DEV_DIR/browser.err"; }
bpid=$BROWSER_PID
out="$DEV_DIR/browser.out"
: >"$out"
while IFS= read -r line <&"${BROWSER[0]}"; do
  printf '%s\n' "$line" >>"$out"
  if printf '%s' "$line" | grep -q '"ready":true'; then
    id=$(dev_sql -c "SELECT id FROM ofs.dead_letters WHERE status = 'open'")
    dev_sql -c "SELECT ofs.discard_dead_letter($id)" >/dev/null
    echo resolved >&"${BROWSER[1]}"
  fi
done
wait "$bpid" 2>/dev/null
checks=0
while IFS= read -r line; do
  name=$(printf '%s' "$line" | jq -r '.name // empty')
  [ -z "$name" ] && continue
  checks=$((checks + 1))
  if [ "$(printf '%s' "$line" | jq -r .ok)" = true ]; then ok "$name"; else notok "$name" "$(printf '%s' "$line" | jq -r .detail)"; fi
done <"$out"
check "the browser made its 10 checks" "[ $checks -eq 10 ]" "$(tail -20 "$DEV_DIR/browser.err")"
check "a screenshot of the page is kept ($ART/status.png)" "[ -s '$ART/status.png' ] && [ -s '$ART/status-after.png' ]"
check "the server never crashed" "! grep -q 'terminated by signal' '$DEV_DIR/cluster/server.log'"

dev_finish
