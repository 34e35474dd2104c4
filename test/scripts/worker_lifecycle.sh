#!/usr/bin/env bash
# worker_lifecycle: the sync worker on a cluster of its own.  Its port is
# taken by another program at start: the worker logs it clearly, does not
# crash, and listens once the port is free.  Then TLS: with a certificate
# configured the worker speaks wss:// (and permessage-deflate, turned on
# here with ofs.permessage_deflate), and a
# reload changes ofs.max_message_bytes for open connections' next messages.
set -euo pipefail
. "$OFS_ROOT/test/lib/cluster.sh"
ofs_toolkit_ready
WS="$OFS_ROOT/test/toolkit/node_modules/ws"
n=0; failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; [ -n "${2:-}" ] && echo "# $2"; }
check() { if eval "$2"; then ok "$1"; else notok "$1" "${3:-}"; fi; }

dir=$(ofs_mktemp ofs-lifecycle)
port=$(ofs_free_port)
# Another program holds the port.
node -e "require('net').createServer().listen($port, '127.0.0.1'); setTimeout(() => process.exit(0), 8000)" &
holder=$!
cleanup() { kill $holder 2>/dev/null || true; ofs_cluster_destroy; rm -rf "$dir"; }
trap cleanup EXIT
sleep 0.5
unset PGPORT_OFS
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 2 \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1
chown "$OFS_PG_USER" "$dir" "$dir"/*.pem; chmod 600 "$dir/key.pem"
ofs_cluster_init "$dir/cluster" "ofs.port = $port" "ofs.database = 'lifecycle'" \
  "ofs.tls_cert_file = '$dir/cert.pem'" "ofs.tls_key_file = '$dir/key.pem'" \
  "ofs.permessage_deflate = on" >/dev/null
ofs_psql -d postgres -c "CREATE DATABASE lifecycle"
ofs_psql -d lifecycle >/dev/null <<'SQL'
CREATE EXTENSION ofs;
CREATE ROLE lifecycle_device;
CREATE TABLE t (id int PRIMARY KEY, v text);
GRANT SELECT ON t TO lifecycle_device;
SELECT ofs.sync_table('t');
SQL
token=$(ofs_psql -d lifecycle -c "SELECT ofs.create_device_token('lifecycle_device', 'lc')")

# The worker says why it cannot listen, and retries instead of exiting.
for _ in $(seq 1 40); do grep -q "could not listen on 127.0.0.1 port $port" "$dir/cluster/server.log" && break; sleep 0.25; done
check "a port in use is logged with the address and port" \
  "grep -q 'could not listen on 127.0.0.1 port $port' '$dir/cluster/server.log'"
check "the log says what to do" "grep -q 'HINT:  Another program may use the port' '$dir/cluster/server.log'"
pids1=$(ofs_psql -d postgres -c "SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity WHERE backend_type = 'ofs sync worker'")
check "the workers keep running while the port is taken" "[ -n '$pids1' ]"
wait $holder || true
for _ in $(seq 1 40); do grep -q "listening on 127.0.0.1 port $port" "$dir/cluster/server.log" && break; sleep 0.25; done
check "the worker listens once the port is free" "grep -q 'listening on 127.0.0.1 port $port' '$dir/cluster/server.log'"
pids2=$(ofs_psql -d postgres -c "SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity WHERE backend_type = 'ofs sync worker'")
check "... without restarting (same processes)" "[ '$pids1' = '$pids2' ]" "before $pids1, after $pids2"
check "the server never crashed" "! grep -q 'terminated by signal' '$dir/cluster/server.log'"

# wss://, deflate, and a reload of the message limit.
cat >"$dir/client.js" <<'JS'
const WebSocket = require(process.env.WS);
const [url, token] = process.argv.slice(2);
const out = {};
const ws = new WebSocket(url, 'ofs.v1', { perMessageDeflate: true, rejectUnauthorized: false });
const answers = [];
let waiting = null;
ws.on('message', (d) => {
  const m = JSON.parse(d);
  if (out.first) out.second = m.type + ':' + (m.code || '');
  answers.push(m);
  if (waiting) { const w = waiting; waiting = null; w(); }
});
const next = () => new Promise((r) => { if (answers.length) r(); else waiting = r; }).then(() => answers.shift());
ws.on('close', (code) => { out.close = code; console.log(JSON.stringify(out)); process.exit(0); });
ws.on('error', (e) => { out.error = String(e); console.log(JSON.stringify(out)); process.exit(0); });
ws.on('open', async () => {
  out.extensions = ws.extensions;
  ws.send(JSON.stringify({ type: 'hello', id: 1, token }));
  out.hello = (await next()).type;
  // 3,000 bytes: under the default limit, over the limit set by the reload.
  ws.send(JSON.stringify({ type: 'schema', id: 2, pad: 'x'.repeat(3000) }));
  out.first = (await next()).type;
  await new Promise((r) => setTimeout(r, 1500));   // the reload happens now
  ws.send(JSON.stringify({ type: 'schema', id: 3, pad: 'x'.repeat(3000) }));
  await next();
});
setTimeout(() => { out.timeout = true; console.log(JSON.stringify(out)); process.exit(0); }, 10000);
JS
( sleep 0.7
  echo "ofs.max_message_bytes = 2048" | ofs_as_pg tee -a "$dir/cluster/data/postgresql.conf" >/dev/null;
  ofs_as_pg "$OFS_PG_BINDIR/pg_ctl" -D "$dir/cluster/data" reload >/dev/null ) &
res=$(WS=$WS node "$dir/client.js" "wss://127.0.0.1:$port/" "$token")
echo "# $res"
check "a device connects over TLS and says hello" "echo '$res' | grep -q '\"hello\":\"welcome\"'"
check "permessage-deflate is negotiated over TLS" "echo '$res' | grep -q 'permessage-deflate'"
check "a 3,000-byte message passes under the default limit" "echo '$res' | grep -q '\"first\":\"schema\"'"
check "after a reload to 2,048 bytes the same message is refused as too big" "echo '$res' | grep -q '\"second\":\"error:too_big\"'"
check "... and the connection is closed with 1009" "echo '$res' | grep -q '\"close\":1009'"
plain=$(WS=$WS node -e "
const WebSocket = require(process.env.WS);
const ws = new WebSocket('ws://127.0.0.1:$port/');
ws.on('open', () => { console.log('open'); process.exit(0); });
ws.on('error', () => { console.log('refused'); process.exit(0); });
ws.on('close', () => { console.log('closed'); process.exit(0); });
setTimeout(() => { console.log('timeout'); process.exit(0); }, 5000);")
check "plain ws:// is not served when TLS is configured" "[ '$plain' != open ]" "got $plain"
check "the server never crashed" "! grep -q 'terminated by signal' '$dir/cluster/server.log'"
echo "1..$n"
[ "$failed" -eq 0 ]
