'use strict';
// ws_lib.js: the WebSocket client the sync worker benchmark rows share.
//
// - connect(): a connection to the worker offering the subprotocol ofs.v1
//   and permessage-deflate (as a device would; not with
//   OFS_BENCH_WS_DEFLATE=0), wrapped in a Conn that matches answers to
//   requests by id and hands every other message to
//   conn.onPush(msg, receivedAtMs, raw).
// - deflateMode(conns): "deflate" when every connection negotiated
//   permessage-deflate, "no deflate" when none did.
// - nowMs(): wall-clock milliseconds with sub-millisecond resolution, on
//   the same clock as PostgreSQL's clock_timestamp().
// - psql(sql) / spawnAsync(cmd, args): child processes that do not block
//   the event loop, so that messages keep arriving while they run.
// - openDevices(): many connections, each with hello (and subscriptions).
//
// `node ws_lib.js probe` exits 0 once a WebSocket handshake with the worker
// succeeds (used by ws_common.sh to wait for the workers).

const path = require('node:path');
const { spawn } = require('node:child_process');
const { performance } = require('node:perf_hooks');

const ROOT = process.env.OFS_ROOT || path.join(__dirname, '..', '..');
const WebSocket = require(path.join(ROOT, 'test/e2e/node_modules/ws'));

const WS_URL = process.env.OFS_WS_URL || 'ws://127.0.0.1:7878/';
const OFFER_DEFLATE = process.env.OFS_BENCH_WS_DEFLATE !== '0';
const DB = process.env.OFS_WS_DB || 'ofs_bench_ws';

const nowMs = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class Conn {
  constructor(ws, label) {
    this.ws = ws;
    this.label = label;
    this.pending = new Map();
    this.nextId = 1;
    this.onPush = null;
    this.closed = null;
    ws.on('message', (data, isBinary) => {
      const at = nowMs();
      const raw = data.toString('utf8');
      let msg;
      try {
        msg = JSON.parse(raw);
      } catch (e) {
        msg = null;
      }
      if (isBinary || msg === null || typeof msg !== 'object') {
        // Not a protocol message: the tools count it as unexpected.
        if (this.onPush) this.onPush({ type: isBinary ? '(binary message)' : '(not a JSON object)' }, at, raw);
        return;
      }
      if (msg.id !== undefined && msg.id !== null && this.pending.has(msg.id)) {
        const p = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        clearTimeout(p.timer);
        p.resolve({ msg, raw, at });
      } else if (this.onPush) {
        this.onPush(msg, at, raw);
      }
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: String(reason || '') };
      for (const [, p] of this.pending) {
        clearTimeout(p.timer);
        p.reject(new Error(`${this.label}: connection closed (${code} ${this.closed.reason}) before the answer to ${p.what}`));
      }
      this.pending.clear();
    });
    ws.on('error', (e) => { this.error = e; });
  }

  get deflate() {
    return Object.prototype.hasOwnProperty.call(this.ws.extensions || {}, 'permessage-deflate') ||
      /permessage-deflate/.test(String(this.ws.extensions || ''));
  }

  // request: send msg (an object, or JSON text whose id is given) and
  // resolve with {msg, raw, at} of the answer carrying the same id.
  request(msg, timeoutMs = 30000, textId) {
    let id = textId;
    let text = msg;
    if (typeof msg !== 'string') {
      id = msg.id !== undefined ? msg.id : this.nextId++;
      text = JSON.stringify({ ...msg, id });
    }
    const what = typeof msg === 'string' ? `request ${id}` : `${msg.type} ${id}`;
    return new Promise((resolve, reject) => {
      if (this.closed) {
        reject(new Error(`${this.label}: connection closed (${this.closed.code} ${this.closed.reason}); cannot send ${what}`));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.label}: no answer to ${what} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer, what });
      this.ws.send(text);
    });
  }

  send(obj) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj));
  }

  close() {
    try {
      this.ws.terminate();
    } catch (e) {
      // already gone
    }
  }
}

function connect(label = 'conn', opts = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(opts.url || WS_URL, ['ofs.v1'], {
      perMessageDeflate: opts.deflate === undefined ? OFFER_DEFLATE : opts.deflate,
      handshakeTimeout: 10000,
      maxPayload: 64 * 1024 * 1024,
    });
    const onError = (e) => reject(new Error(`${label}: cannot connect to ${opts.url || WS_URL}: ${e.message}`));
    ws.once('error', onError);
    ws.once('open', () => {
      ws.removeListener('error', onError);
      resolve(new Conn(ws, label));
    });
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
// hello(i) gives the hello's extra fields.  Returns the connections in the
// order of tokens.
async function openDevices(tokens, opts = {}) {
  const conns = new Array(tokens.length);
  let next = 0;
  const worker = async () => {
    while (next < tokens.length) {
      const i = next++;
      const c = await connect(`device-${i + 1}`, opts);
      const extra = opts.hello ? opts.hello(i) : {};
      const w = await c.request({ type: 'hello', token: tokens[i], ...extra });
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
    const a = expect(await c.request({ type: 'pull', cursor }), 'changes', `${c.label} pull`);
    changes.push(...a.changes);
    cursor = a.cursor;
    if (a.more !== true) break;
  }
  const live = expect(await c.request({ type: 'live', cursor }), 'changes', `${c.label} live`);
  changes.push(...live.changes);
  c.cursor = live.cursor;
  return changes;
}

function spawnAsync(cmd, args, input, env) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: env || process.env });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    p.on('error', reject);
    p.on('close', (code) => {
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} failed (${code}): ${err.trim().slice(0, 1000)}`));
    });
    p.stdin.end(input || '');
  });
}

// psql: run SQL on the benchmark database; the output without the last newline.
async function psql(sql, db = DB) {
  const out = await spawnAsync('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', db], sql);
  return out.replace(/\n$/, '');
}

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

async function probe() {
  const c = await connect('probe');
  c.close();
}

if (require.main === module && process.argv[2] === 'probe') {
  probe().then(() => process.exit(0), (e) => fail(e.message));
}

module.exports = {
  WebSocket,
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
