#!/usr/bin/env bash
# http_endpoints: the sync worker's HTTP port (ofs.http_port): /metrics in
# Prometheus' text format with the figures a device's work moves;
# /status only with a status token (Bearer or ?token=), refused once the
# token is revoked; clear status codes for unknown paths, other methods,
# huge headers and a flood of connections, while a live device on the same
# worker keeps syncing, and the server never crashes.
set -uo pipefail
. "$OFS_ROOT/test/lib/devices.sh"

HTTP_PORT=$(ofs_free_port) || die "no free port"
dev_origin http_endpoints "ofs.http_port = $HTTP_PORT" "ofs.workers = 1"
H="http://127.0.0.1:$HTTP_PORT"
for _ in $(seq 1 80); do
  grep -q "serving /metrics and /status on 127.0.0.1 port $HTTP_PORT" "$DEV_DIR/cluster/server.log" && break
  sleep 0.25
done
check "the worker says where it serves /metrics and /status" \
  "grep -q 'serving /metrics and /status on 127.0.0.1 port $HTTP_PORT' '$DEV_DIR/cluster/server.log'"

dev_sql >/dev/null <<'SQL' || die "schema"
CREATE ROLE http_dev;
GRANT USAGE ON SCHEMA public TO http_dev;
CREATE TABLE notes (id text PRIMARY KEY, body text NOT NULL CHECK (body <> 'bad'));
GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO http_dev;
SELECT ofs.sync_table('notes');
SQL
dev_new a http_dev notes
cli a sync >/dev/null || die "first sync"

# code URL [curl args...]: the HTTP status code (000: no answer).
code() { local u=$1; shift; curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$u"; }

# /metrics: the format and the figures.
before=$(curl -s --max-time 5 "$H/metrics")
applied0=$(printf '%s\n' "$before" | awk '/^ofs_mutations_total\{result="applied"\}/ { print $2 }')
cli a exec "INSERT INTO notes VALUES ('n1', 'one'); INSERT INTO notes VALUES ('n2', 'two'); INSERT INTO notes VALUES ('n3', 'bad')" >/dev/null
cli a sync >/dev/null 2>&1
m=$(curl -s -D "$DEV_DIR/m.headers" --max-time 5 "$H/metrics")
check "GET /metrics answers 200 in the text exposition format" \
  "grep -qi '^content-type: text/plain; version=0.0.4' '$DEV_DIR/m.headers' && head -1 '$DEV_DIR/m.headers' | grep -q ' 200'" \
  "$(cat "$DEV_DIR/m.headers")"
applied=$(printf '%s\n' "$m" | awk '/^ofs_mutations_total\{result="applied"\}/ { print $2 }')
rejected=$(printf '%s\n' "$m" | awk '/^ofs_mutations_total\{result="rejected"\}/ { print $2 }')
check_eq "mutations applied moved by the two the device pushed" "$((applied - ${applied0:-0}))" 2
check "the rejected one is counted" "[ '${rejected:-0}' -ge 1 ]"
# The figures of SQL are read at most once a second.
dl=""
for _ in $(seq 1 12); do
  dl=$(curl -s --max-time 5 "$H/metrics" | awk '/^ofs_dead_letters_open / { print $2 }')
  [ "$dl" = 1 ] && break
  sleep 0.25
done
check_eq "one dead letter open (within a second)" "$dl" 1
check "push messages are counted by type" "printf '%s\n' \"\$m\" | grep -Eq '^ofs_messages_received_total\{type=\"push\"\} [1-9]'"
check "histograms have buckets, a sum and a count" \
  "printf '%s\n' \"\$m\" | grep -q '^ofs_push_apply_seconds_bucket{le=\"+Inf\"} ' && printf '%s\n' \"\$m\" | grep -q '^ofs_push_apply_seconds_count '"
check "every metric has HELP and TYPE" \
  "[ \"\$(printf '%s\n' \"\$m\" | grep -c '^# TYPE ')\" = \"\$(printf '%s\n' \"\$m\" | grep -c '^# HELP ')\" ] && [ \"\$(printf '%s\n' \"\$m\" | grep -c '^# TYPE ')\" -ge 20 ]"
check "no device name appears in /metrics" "! printf '%s\n' \"\$m\" | grep -q '\"a\"'"

# A live device, to show that nothing below disturbs it.
cli_bg a live --seconds 60
live_pid=$CLI_PID
sleep 1.5

# /status and its credential.
check_eq "GET /status without a token: 401" "$(code "$H/status")" 401
check "... saying how to get one (WWW-Authenticate: Bearer)" \
  "curl -s -D - -o /dev/null --max-time 5 '$H/status' | grep -qi '^www-authenticate: Bearer'"
check_eq "a wrong token: 401" "$(code "$H/status?token=ofs_status_nope")" 401
check_eq "a wrong Bearer token: 401" "$(code "$H/status" -H 'Authorization: Bearer ofs_status_nope')" 401
long=$(code "$H/status" -H "Authorization: Bearer $(head -c 3000 /dev/zero | tr '\0' x)")
check_eq "a token of 3 kB: 401" "$long" 401
tok=$(dev_sql -c "SELECT ofs.create_status_token('oncall')") || die "create_status_token"
check_eq "with the token (?token=): 200" "$(code "$H/status?token=$tok")" 200
check_eq "with the token (Bearer): 200" "$(code "$H/status" -H "Authorization: Bearer $tok")" 200
page=$(curl -s --max-time 5 "$H/status?token=$tok")
check "the page shows the device, the dead letter and the SQL to run" \
  "printf '%s' \"\$page\" | grep -q '>a<' && printf '%s' \"\$page\" | grep -q 'ofs.retry_dead_letter(' && printf '%s' \"\$page\" | grep -q '23514'"
check "the page has no external asset" "! printf '%s' \"\$page\" | grep -Eiq '(src|href)=\"(https?:)?//'"
dev_sql -c "SELECT ofs.revoke_status_token('oncall')" >/dev/null
check_eq "a revoked token: 401" "$(code "$H/status?token=$tok")" 401
check "revoking twice is an error" "! dev_sql -c \"SELECT ofs.revoke_status_token('oncall')\" >/dev/null 2>&1"
check "a role without the grant cannot make tokens" \
  "! ofs_psql -d $DEV_DB -c \"SET ROLE http_dev; SELECT ofs.create_status_token('x')\" >/dev/null 2>&1"

# A role that may create functions in public plants better matches for the
# functions the worker's SQL calls: the worker, a superuser, must not call them.
dev_sql >/dev/null <<'SQL' || die "planting"
CREATE ROLE schemer;
GRANT CREATE, USAGE ON SCHEMA public TO schemer;
CREATE TABLE public.hijacked (who text);
GRANT INSERT ON public.hijacked TO PUBLIC;
SET ROLE schemer;
CREATE FUNCTION public.convert_to(t text, enc text) RETURNS bytea LANGUAGE plpgsql AS
  $$BEGIN INSERT INTO public.hijacked VALUES (current_user); RETURN pg_catalog.convert_to(t, enc::name); END$$;
CREATE FUNCTION public.jsonb_build_object(a text, b bigint) RETURNS jsonb LANGUAGE plpgsql AS
  $$BEGIN INSERT INTO public.hijacked VALUES (current_user); RETURN pg_catalog.jsonb_build_object(a, b); END$$;
RESET ROLE;
SQL
code "$H/status?token=anything" >/dev/null
code "$H/status" -H "Authorization: Bearer anything" >/dev/null
code "$H/metrics" >/dev/null
cli a exec "INSERT INTO notes VALUES ('n9', 'nine')" >/dev/null
cli a sync >/dev/null 2>&1
check_eq "the worker never calls a function a role planted in public" "$(dev_sql -c "SELECT count(*) FROM public.hijacked")" 0

# Pipelined requests, one with a body, and upgrades: answered or closed, and the worker goes on.
for _ in $(seq 1 6); do
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$HTTP_PORT; printf 'GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\n\r\na' >&3; sleep 0.2" 2>/dev/null
done
check_eq "after pipelined requests with a body, /metrics still answers 200" "$(code "$H/metrics")" 200
check_eq "a WebSocket upgrade on the HTTP port is refused (closed)" \
  "$(code "$H/metrics" -H 'Upgrade: websocket' -H 'Connection: Upgrade' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' -H 'Sec-WebSocket-Version: 13')" 000
check "an answer closes its connection (Connection: close)" \
  "curl -s -D - -o /dev/null --max-time 5 '$H/metrics' | grep -qi '^connection: close'"

# Bad requests.
check_eq "an unknown path: 404" "$(code "$H/nope")" 404
check_eq "the root: 404" "$(code "$H/")" 404
check_eq "POST /metrics: 405" "$(code "$H/metrics" -X POST -d 'x=1')" 405
check "... with Allow: GET" "curl -s -D - -o /dev/null --max-time 5 -X PUT '$H/metrics' | grep -qi '^allow: GET'"
check_eq "DELETE /status: 405" "$(code "$H/status" -X DELETE)" 405
# Headers beyond libwebsockets' 4 kB of header space: the connection is closed unanswered.
big=$(code "$H/metrics" -H "X-Big: $(head -c 20000 /dev/zero | tr '\0' y)")
check "a 20 kB header: refused with a 4xx status or the connection closed, not answered 200" \
  "[ '$big' != 200 ] && { [ '$big' = 000 ] || [ '${big:0:1}' = 4 ]; }" "got $big"
garbage=$(timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$HTTP_PORT; printf 'NOT HTTP AT ALL\r\n\r\n' >&3; head -1 <&3" 2>/dev/null | tr -d '\r')
check "a line that is not HTTP gets an error status or a close" \
  "[ -z '$garbage' ] || printf '%s' '$garbage' | grep -q ' 4[0-9][0-9]'" "got: $garbage"
check_eq "plain HTTP on the devices' port: 426, at once" "$(code "http://127.0.0.1:$DEV_PORT/metrics")" 426
# A flood: more connections than a worker keeps, all at once.
flood=()
for _ in $(seq 1 150); do curl -s -o /dev/null --max-time 5 "$H/metrics" & flood+=($!); done
for p in "${flood[@]}"; do wait "$p" 2>/dev/null; done
check_eq "after the flood, /metrics still answers 200" "$(code "$H/metrics")" 200

# The live device was not disturbed: a change at the origin reaches it.
dev_sql -c "INSERT INTO notes VALUES ('origin1', 'from the origin')" >/dev/null
got=""
for _ in $(seq 1 40); do
  got=$(sqlite3 "$DEV_DIR/a.db" "SELECT body FROM notes WHERE id = 'origin1'" 2>/dev/null)
  [ -n "$got" ] && break
  sleep 0.25
done
check_eq "the live device on the same worker received a change all along" "$got" "from the origin"
check "its connection stayed open" "kill -0 $live_pid 2>/dev/null"
check "the server never crashed" "! grep -q 'terminated by signal' '$DEV_DIR/cluster/server.log'"

# Off by default: a cluster without ofs.http_port has no such port (checked on this one's config).
check_eq "ofs.http_port is 0 (off) by default" \
  "$(ofs_psql -d postgres -c "SELECT boot_val FROM pg_settings WHERE name = 'ofs.http_port'")" 0
check_eq "ofs.http_listen_addresses is loopback by default" \
  "$(ofs_psql -d postgres -c "SELECT boot_val FROM pg_settings WHERE name = 'ofs.http_listen_addresses'")" 127.0.0.1

dev_finish
