'use strict';
// ws_lib.js: the WebSocket client the sync worker benchmark rows share.
//
// - connect(): a connection to the worker offering the subprotocol ofs.v1
//   and permessage-deflate (as a device would; not with
//   OFS_BENCH_WS_DEFLATE=0): the toolkit's client, recording nothing, with
//   answers as {msg, raw, at} (requestMeta) and every other message handed
//   to c.onPush(msg, receivedAtMs, raw).
// - deflateMode(conns): "deflate" when every connection negotiated
//   permessage-deflate, "no deflate" when none did.
// - nowMs(): wall-clock milliseconds with sub-millisecond resolution, on
//   the same clock as PostgreSQL's clock_timestamp().
// - psql(sql) / spawnAsync(cmd, args): child processes that do not block
//   the event loop, so that messages keep arriving while they run.
// - openDevices(): many connections, each with hello (and subscriptions).
//
// The client itself is the toolkit's (test/toolkit/client.js), as in the
// end-to-end tests; `node test/toolkit/client.js probe` is how
// ws_common.sh waits for the workers.

const path = require('node:path');

const toolkit = require(path.join(__dirname, '../../test/toolkit/client'));

const { WS_URL, nowMs, sleep, spawnAsync } = toolkit;
const OFFER_DEFLATE = process.env.OFS_BENCH_WS_DEFLATE !== '0';
const DB = process.env.OFS_WS_DB || 'ofs_bench_ws';

// connect: a toolkit client that records nothing (a thousand devices) and
// stamps arrivals with nowMs; answers come as {msg, raw, at} through
// requestMeta, other messages go to c.onPush(msg, at, raw).
function connect(label = 'conn', opts = {}) {
  return toolkit.connect(opts.url || WS_URL, {
    label,
    deflate: opts.deflate === undefined ? OFFER_DEFLATE : opts.deflate,
    record: false,
    clock: nowMs,
    handshakeTimeout: 10000,
    maxPayload: 64 * 1024 * 1024,
    localAddress: opts.localAddress,
  });
}

function deflateMode(conns) {
  const on = conns.filter((c) => c.deflate).length;
  if (on === conns.length) return 'deflate';
  if (on === 0) return 'no deflate';
  throw new Error(`permessage-deflate was negotiated on ${on} of ${conns.length} connections only`);
}

// expect: the answer's message if it has the type, else an exception.
function expect(answer, type, what) {
  if (!answer.msg || answer.msg.type !== type) {
    throw new Error(`${what}: expected ${type}, got ${answer.raw.slice(0, 400)}`);
  }
  return answer.msg;
}

// openDevices: connect and hello for each token, `concurrency` at a time.
// hello(i) gives the hello's extra fields; localAddresses, if given, are
// the source addresses of the connections in turn.  Returns the
// connections in the order of tokens.
async function openDevices(tokens, opts = {}) {
  const conns = new Array(tokens.length);
  let next = 0;
  const worker = async () => {
    while (next < tokens.length) {
      const i = next++;
      const local = opts.localAddresses ? opts.localAddresses[i % opts.localAddresses.length] : undefined;
      const c = await connect(`device-${i + 1}`, { ...opts, localAddress: local });
      const extra = opts.hello ? opts.hello(i) : {};
      const w = await c.requestMeta({ type: 'hello', token: tokens[i], ...extra });
      expect(w, 'welcome', `device ${i + 1} hello`);
      c.welcome = w.msg;
      conns[i] = c;
      if (opts.after) await opts.after(c, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency || 50, tokens.length) }, worker));
  return conns;
}

// pullThenLive: pull from no cursor until `more` is false, then go live
// with the last cursor.  Returns the rows received on the way.
async function pullThenLive(c) {
  let cursor = null;
  const changes = [];
  for (let page = 0; page < 10000; page++) {
    const a = expect(await c.requestMeta({ type: 'pull', cursor }), 'changes', `${c.label} pull`);
    changes.push(...a.changes);
    cursor = a.cursor;
    if (a.more !== true) break;
  }
  const live = expect(await c.requestMeta({ type: 'live', cursor }), 'changes', `${c.label} live`);
  changes.push(...live.changes);
  c.cursor = live.cursor;
  return changes;
}

// psql: run SQL on the benchmark database; the output without the last newline.
const psql = (sql, db = DB) => toolkit.psqlAsync(sql, { db });

// percentile: nearest rank of sorted numbers.
function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const k = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[k - 1];
}

// fail: print the reason on stderr (the row's last line of it is reported).
function fail(msg) {
  process.stderr.write(`${msg}\n`);
  process.exit(1);
}

module.exports = {
  WS_URL,
  DB,
  nowMs,
  sleep,
  connect,
  expect,
  deflateMode,
  openDevices,
  pullThenLive,
  spawnAsync,
  psql,
  percentile,
  fail,
};
