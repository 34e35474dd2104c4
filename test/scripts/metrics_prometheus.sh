#!/usr/bin/env bash
# metrics_prometheus: the real Prometheus (Debian's prometheus) scrapes the
# sync worker's /metrics every second while two devices sync, with the
# example alert rules of docs/prometheus loaded; queries through its HTTP
# API return the series and the values the test caused: mutations applied
# equal to what the devices pushed, the rejected one, the open dead letter,
# the messages by type, the histograms.  promtool checks the exposition
# format and the example configuration and rules.
set -uo pipefail
. "$OFS_ROOT/test/lib/devices.sh"
DEV_TIME_LIMIT=120
for tool in prometheus promtool curl; do
  command -v "$tool" >/dev/null || { echo "not ok 1 - $tool is needed (Debian package prometheus; scripts/deps.sh)"; echo "1..1"; exit 1; }
done

HTTP_PORT=$(ofs_free_port) || die "no free port"
dev_origin metrics_prom "ofs.http_port = $HTTP_PORT"
dev_sql >/dev/null <<'SQL' || die "schema"
CREATE ROLE prom_dev;
GRANT USAGE ON SCHEMA public TO prom_dev;
CREATE TABLE items (id text PRIMARY KEY, qty int NOT NULL CHECK (qty >= 0));
GRANT SELECT, INSERT, UPDATE, DELETE ON items TO prom_dev;
SELECT ofs.sync_table('items');
SQL
for _ in $(seq 1 80); do curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$HTTP_PORT/metrics" && break; sleep 0.25; done

# The format and the example files, by Prometheus' own checker.
curl -s --max-time 5 "http://127.0.0.1:$HTTP_PORT/metrics" >"$DEV_DIR/metrics.txt"
check "promtool check metrics accepts /metrics" "promtool check metrics <'$DEV_DIR/metrics.txt' >'$DEV_DIR/promtool.out' 2>&1" \
  "$(cat "$DEV_DIR/promtool.out" 2>/dev/null)"
check "promtool accepts the example alert rules" \
  "promtool check rules '$OFS_ROOT/docs/prometheus/ofs-alerts.yml' >'$DEV_DIR/rules.out' 2>&1" "$(cat "$DEV_DIR/rules.out" 2>/dev/null)"

# Prometheus, scraping every second, with the example rules.
PROM_PORT=$(ofs_free_port) || die "no free port"
cp "$OFS_ROOT/docs/prometheus/ofs-alerts.yml" "$DEV_DIR/ofs-alerts.yml"
cat >"$DEV_DIR/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - ofs-alerts.yml
scrape_configs:
  - job_name: ofs
    static_configs:
      - targets: ['127.0.0.1:$HTTP_PORT']
YML
check "promtool accepts the configuration (the example's, scraping every second)" \
  "promtool check config '$DEV_DIR/prometheus.yml' >'$DEV_DIR/config.out' 2>&1" "$(cat "$DEV_DIR/config.out" 2>/dev/null)"
dev_bg prometheus --config.file="$DEV_DIR/prometheus.yml" --storage.tsdb.path="$DEV_DIR/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$DEV_DIR/prometheus.log" 2>&1
P="http://127.0.0.1:$PROM_PORT"
# q PROMQL: the first value of an instant query ("" when none).
q() { curl -s --max-time 5 --data-urlencode "query=$1" "$P/api/v1/query" | jq -r '.data.result[0].value[1] // empty'; }
up=""
for _ in $(seq 1 80); do up=$(q 'up{job="ofs"}'); [ "$up" = 1 ] && break; sleep 0.25; done
check_eq "Prometheus scrapes the worker (up is 1)" "$up" 1

# Two devices sync while it scrapes: 30 writes applied, 1 rejected.
dev_new a prom_dev items
dev_new b prom_dev items
cli a sync >/dev/null || die "sync of a"
cli b sync >/dev/null || die "sync of b"
sql=""
for i in $(seq 1 20); do sql+="INSERT INTO items VALUES ('a$i', $i);"; done
cli a exec "$sql" >/dev/null
sql=""
for i in $(seq 1 10); do sql+="INSERT INTO items VALUES ('b$i', $i);"; done
sql+="INSERT INTO items VALUES ('bad', -1);"
cli b exec "$sql" >/dev/null
cli a sync >/dev/null
cli b sync >/dev/null 2>&1
cli a sync >/dev/null
origin=$(dev_sql -c "SELECT count(*) FROM items")
check_eq "the origin has the 30 rows the devices wrote" "$origin" 30

# The scrapes that follow carry the figures.
applied=""
for _ in $(seq 1 40); do applied=$(q 'ofs_mutations_total{result="applied"}'); [ "$applied" = 30 ] && break; sleep 0.25; done
check_eq "ofs_mutations_total{result=\"applied\"} equals what the devices pushed" "$applied" 30
check_eq "ofs_mutations_total{result=\"rejected\"} is the one rejected" "$(q 'ofs_mutations_total{result="rejected"}')" 1
# The figures of SQL are read at most once a second, then scraped: wait for them as for the counters.
dl=""
for _ in $(seq 1 40); do dl=$(q 'ofs_dead_letters_open'); [ "$dl" = 1 ] && break; sleep 0.25; done
check_eq "ofs_dead_letters_open is 1" "$dl" 1
check_eq "ofs_errors_total by code: no server_error" "$(q 'ofs_errors_total{code="server_error"}')" 0
check "hellos and pushes are counted by type" \
  "[ \"\$(q 'ofs_messages_received_total{type=\"hello\"}')\" -ge 5 ] && [ \"\$(q 'ofs_messages_received_total{type=\"push\"}')\" -ge 2 ]"
check_eq "ofs_push_apply_seconds counted every push (as many as push messages)" \
  "$(q 'ofs_push_apply_seconds_count')" "$(q 'ofs_messages_received_total{type="push"}')"
p99=$(q 'histogram_quantile(0.99, sum(rate(ofs_pull_page_seconds_bucket[1m])) by (le))')
check "histogram_quantile over ofs_pull_page_seconds gives a number" "[ -n '$p99' ] && [ '$p99' != NaN ]" "got '$p99'"
check_eq "ofs_workers_running is ofs.workers" "$(q 'ofs_workers_running')" "$(ofs_psql -d postgres -c 'SHOW ofs.workers')"
check "the connections the devices closed are counted" "[ \"\$(q 'sum(ofs_connections_closed_total)')\" -ge 1 ]"
check "the same figure as ofs.stats (mutations applied)" \
  "[ \"\$(dev_sql -c 'SELECT mutations_applied FROM ofs.stats')\" = 30 ]"
rules=$(curl -s --max-time 5 "$P/api/v1/rules" | jq -r '[.data.groups[].rules[] | select(.health == "ok") | .name] | sort | join(",")')
check_eq "the example alert rules are loaded and evaluate without error" "$rules" \
  "OfsConflictsOpen,OfsDeadLettersGrowing,OfsDeviceBehind,OfsWorkerRestarted,OfsWorkersMissing"
check "the server never crashed" "! grep -q 'terminated by signal' '$DEV_DIR/cluster/server.log'"

dev_finish
