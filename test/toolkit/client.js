'use strict';
// client.js: the one WebSocket client of the sync protocol that ofs's
// end-to-end tests (test/e2e), soak (test/soak) and bench (bench/tools)
// use, with the psql helpers they share.
//
// - connect(url, opts): a WebSocket (npm `ws`) offering the subprotocol
//   `ofs.v1` and permessage-deflate, wrapped in a Client that matches
//   answers to requests by id and queues unsolicited messages (or hands
//   them to client.onPush(msg, at, raw)).  By default it checks as a test
//   must: every message is parsed exactly (integers beyond 2^53, such as
//   hybrid logical clocks, become BigInt), logged, checked for protocol
//   violations, and the rows `changes` messages describe are kept as a
//   replica.  opts.record = false keeps none of that and parses with
//   JSON.parse, for measuring many devices (bench).
// - probe(): one handshake; `node client.js probe` exits 0 once the workers
//   accept connections (bench/tools/ws_common.sh, test/lib/devices.sh).
// - psql(sql), psqlAsync(sql): psql on $OFS_E2E_DB (PGHOST, PGPORT, PGUSER
//   from the environment), stopping at the first error.

const { execFileSync, spawn } = require('node:child_process');
const { performance } = require('node:perf_hooks');

const nowMs = () => performance.timeOrigin + performance.now();
const WebSocket = require('ws');

const WS_URL = process.env.OFS_WS_URL || 'ws://127.0.0.1:7878/';
const DB = process.env.OFS_E2E_DB || process.env.OFS_WS_DB || 'ofs_e2e';
const REQUEST_TIMEOUT_MS = 10000;

// ---------------------------------------------------------------- JSON

// parseJSON: strict JSON (RFC 8259).  Integers that a double cannot hold
// exactly become BigInt, so a hybrid logical clock survives the trip.
function parseJSON(text) {
  // Runs of plain characters match at once: a string of megabytes must not
  // cost a regular-expression step (and stack) per character.
  const STRING = /"(?:[^"\\\u0000-\u001f]+|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
  const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
  const n = text.length;
  let i = 0;
  const fail = (what) => {
    throw new SyntaxError(`invalid JSON at offset ${i}: ${what}`);
  };
  const space = () => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 32 || c === 9 || c === 10 || c === 13) i++;
      else break;
    }
  };
  const string = () => {
    STRING.lastIndex = i;
    const m = STRING.exec(text);
    if (!m) fail('malformed string');
    i = STRING.lastIndex;
    return JSON.parse(m[0]);
  };
  const value = (depth) => {
    if (depth > 512) fail('nested too deeply');
    space();
    const c = text[i];
    if (c === '{') {
      i++;
      const o = {};
      space();
      if (text[i] === '}') { i++; return o; }
      for (;;) {
        space();
        if (text[i] !== '"') fail('expected a key');
        const k = string();
        space();
        if (text[i] !== ':') fail("expected ':'");
        i++;
        const v = value(depth + 1);
        Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
        space();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === '}') { i++; return o; }
        fail("expected ',' or '}'");
      }
    }
    if (c === '[') {
      i++;
      const a = [];
      space();
      if (text[i] === ']') { i++; return a; }
      for (;;) {
        a.push(value(depth + 1));
        space();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ']') { i++; return a; }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    if (text.startsWith('true', i)) { i += 4; return true; }
    if (text.startsWith('false', i)) { i += 5; return false; }
    if (text.startsWith('null', i)) { i += 4; return null; }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) fail('unexpected character');
    i = NUMBER.lastIndex;
    if (m[1] === undefined && m[2] === undefined) {
      const v = Number(m[0]);
      return Number.isSafeInteger(v) ? v : BigInt(m[0]);
    }
    return Number(m[0]);
  };
  const v = value(0);
  space();
  if (i !== n) fail('trailing characters');
  return v;
}

// toJSON: JSON.stringify that writes BigInt as a bare integer.
function toJSON(v) {
  return JSON.stringify(v, (k, x) => (typeof x === 'bigint' ? `\u0000bigint:${x}` : x))
    .replace(/"\\u0000bigint:(-?[0-9]+)"/g, '$1');
}

// canon: a canonical text of a JSON value (keys sorted, 5 and 5n alike), for
// comparisons and map keys.
function canon(v) {
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v).toString();
  if (Array.isArray(v)) return `[${v.map(canon).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v === undefined ? null : v);
}

function same(a, b) {
  return canon(a) === canon(b);
}

// show: a value for a diagnostic line, cut to a readable length.
function show(v, max = 1500) {
  let s;
  try {
    s = typeof v === 'string' ? JSON.stringify(v) : toJSON(v);
  } catch (e) {
    s = String(v);
  }
  if (s === undefined) s = 'undefined';
  return s.length > max ? `${s.slice(0, max)}... (${s.length} chars)` : s;
}

function big(v) {
  return typeof v === 'bigint' ? v : BigInt(v);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// clock: a device's hybrid logical clock (milliseconds since 1970 shifted
// left 16 bits, plus a counter), never behind `seen` (e.g. welcome.hlc).
function clock(seen = 0n) {
  let last = big(seen);
  return () => {
    const wall = BigInt(Date.now()) << 16n;
    last = wall > last ? wall : last + 1n;
    return last;
  };
}

// ---------------------------------------------------------------- psql

function psqlArgs(db) {
  return ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', db || DB];
}

// psql: run SQL (several statements allowed) and return the output of the
// queries, without the last newline.  Throws with psql's message on error.
function psql(sql, opts = {}) {
  try {
    return execFileSync('psql', psqlArgs(opts.db), {
      input: sql,
      encoding: 'utf8',
      timeout: opts.timeout || 60000,
      stdio: ['pipe', 'pipe', 'pipe'],
    }).replace(/\n$/, '');
  } catch (e) {
    const err = new Error(`psql failed: ${String(e.stderr || e.message).trim()}\n  SQL: ${sql.trim().slice(0, 600)}`);
    err.stderr = String(e.stderr || '');
    throw err;
  }
}

// spawnAsync: a child process that does not block the event loop; its
// standard output, or an error with its standard error.
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

// psqlAsync: psql without blocking the event loop, so that messages keep
// arriving while the statement runs.
async function psqlAsync(sql, opts = {}) {
  try {
    return (await spawnAsync('psql', psqlArgs(opts.db), sql)).replace(/\n$/, '');
  } catch (e) {
    throw new Error(`${e.message}\n  SQL: ${sql.trim().slice(0, 600)}`);
  }
}

// psqlRetry: psql until it succeeds or timeoutMs passes (the cluster may be
// restarting after a crash).
async function psqlRetry(sql, timeoutMs = 60000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await psqlAsync(sql);
    } catch (e) {
      if (Date.now() > until) throw e;
      await sleep(300);
    }
  }
}

function psqlJSON(sql, opts) {
  const out = psql(sql, opts);
  return parseJSON(out === '' ? 'null' : out);
}

// lit, ident: SQL quoting for test-made names and values.
const lit = (s) => `'${String(s).replace(/'/g, "''")}'`;
const ident = (s) => `"${String(s).replace(/"/g, '""')}"`;

// workerPids: the sync workers of the cluster (a fresh session each time,
// so pg_stat_activity is never a cached snapshot).
async function workerPids() {
  const out = await psqlAsync("SELECT pid FROM pg_stat_activity WHERE backend_type = 'ofs sync worker' ORDER BY pid");
  return out === '' ? [] : out.split('\n').map(Number);
}

// ---------------------------------------------------------------- client

const idKey = (id) => `${typeof id}:${id}`;

class Client {
  // opts: record (default true: log, check and replicate every message),
  // clock (the time stamped on arrivals; default performance.now).
  constructor(ws, label, opts = {}) {
    this.ws = ws;
    this.label = label || 'client';
    this.record = opts.record !== false;
    this.clock = opts.clock || (() => performance.now());
    this.onPush = null; // (msg, at, raw) for unsolicited messages, instead of the queue
    this.log = []; // every message received: {at, raw, msg}
    this.violations = []; // what a v1 worker must never send
    this.pending = new Map(); // id key -> {resolve, reject, timer, what}
    this.unanswered = []; // id keys in the order their requests were sent
    this.queue = []; // messages not matched to a pending request
    this.waiters = new Set();
    this.replica = new Map(); // "table pk" -> {table, pk, row}
    this.cursor = null; // the cursor of the last changes message
    this.closed = null; // {code, reason, at}
    this.errors = [];
    this.autoAck = false;
    this.nextId = 1;
    ws.on('message', (data, isBinary) => this._onMessage(data, isBinary));
    ws.on('close', (code, reason) => this._onClose(code, reason));
    ws.on('error', (err) => this.errors.push(err));
  }

  _onMessage(data, isBinary) {
    const at = this.clock();
    if (!this.record) return this._onMessageLean(data, isBinary, at);
    if (isBinary) {
      this.violations.push(`a binary message (${data.length} bytes)`);
      this.log.push({ at, raw: null, msg: undefined });
      return this._wake();
    }
    const raw = data.toString('utf8');
    let msg;
    try {
      msg = parseJSON(raw);
    } catch (e) {
      this.violations.push(`a message that is not JSON (${e.message}): ${raw.slice(0, 300)}`);
      this.log.push({ at, raw, msg: undefined });
      return this._wake();
    }
    this.log.push({ at, raw, msg });
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg) || typeof msg.type !== 'string') {
      this.violations.push(`a message that is not an object with a string type: ${raw.slice(0, 300)}`);
      return this._wake();
    }
    if (msg.type === 'changes') this._applyChanges(msg);
    if (msg.id !== undefined && msg.id !== null) {
      const key = idKey(msg.id);
      const p = this.pending.get(key);
      if (p) {
        if (this.unanswered[0] !== key) {
          this.violations.push(`the answer to request ${key} came before the answer to the earlier request ${this.unanswered[0]}`);
        }
        this.unanswered = this.unanswered.filter((k) => k !== key);
        this.pending.delete(key);
        clearTimeout(p.timer);
        p.resolve(p.meta ? { msg, raw, at } : msg);
        return this._wake();
      }
    } else if (msg.type === 'changes' && this.autoAck && typeof msg.cursor === 'string') {
      this.send({ type: 'ack', cursor: msg.cursor });
    }
    if (this.onPush) this.onPush(msg, at, raw);
    else this.queue.push(msg);
    return this._wake();
  }

  // _onMessageLean: a message when nothing is recorded (opts.record false).
  _onMessageLean(data, isBinary, at) {
    const raw = data.toString('utf8');
    let msg = null;
    try {
      msg = isBinary ? null : JSON.parse(raw);
    } catch (e) {
      msg = null;
    }
    if (msg === null || typeof msg !== 'object') {
      // Not a protocol message: callers count it as unexpected.
      msg = { type: isBinary ? '(binary message)' : '(not a JSON object)' };
    } else if (msg.id !== undefined && msg.id !== null) {
      const key = idKey(msg.id);
      const p = this.pending.get(key);
      if (p) {
        this.unanswered = this.unanswered.filter((k) => k !== key);
        this.pending.delete(key);
        clearTimeout(p.timer);
        p.resolve(p.meta ? { msg, raw, at } : msg);
        return this._wake();
      }
    }
    if (this.onPush) this.onPush(msg, at, raw);
    else this.queue.push(msg);
    return this._wake();
  }

  _applyChanges(msg) {
    if (!Array.isArray(msg.changes)) {
      this.violations.push(`a changes message without a changes array: ${show(msg, 300)}`);
      return;
    }
    for (const c of msg.changes) {
      const key = `${c.table} ${canon(c.pk)}`;
      if (c.op === 'upsert') this.replica.set(key, { table: c.table, pk: c.pk, row: c.row });
      else if (c.op === 'delete') this.replica.delete(key);
      else this.violations.push(`a change with op ${show(c.op)}: ${show(c, 300)}`);
    }
    if (typeof msg.cursor === 'string') this.cursor = msg.cursor;
  }

  _onClose(code, reason) {
    this.closed = { code, reason: reason ? reason.toString() : '', at: this.clock() };
    for (const [key, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new Error(`${this.label}: the connection closed (code ${code}${this.closed.reason ? `, "${this.closed.reason}"` : ''}) before the answer to ${p.what}${this._lastError()}`));
      this.pending.delete(key);
    }
    this._wake();
  }

  _lastError() {
    if (!this.record) return '';
    const e = [...this.log].reverse().find((m) => m.msg && m.msg.type === 'error');
    return e ? `; last error message: ${e.raw.slice(0, 400)}` : '';
  }

  _wake() {
    for (const w of [...this.waiters]) {
      const v = w.check();
      if (v !== undefined) {
        clearTimeout(w.timer);
        this.waiters.delete(w);
        w.resolve(v);
      }
    }
  }

  // _waitFor: resolves with check()'s first defined value, or null after ms.
  _waitFor(check, ms) {
    const v = check();
    if (v !== undefined) return Promise.resolve(v);
    return new Promise((resolve) => {
      const w = { check, resolve };
      w.timer = setTimeout(() => { this.waiters.delete(w); resolve(null); }, ms);
      this.waiters.add(w);
    });
  }

  get open() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  // send: a message as JSON text, no answer awaited.
  send(obj) {
    this.sendRaw(toJSON(obj));
  }

  sendRaw(data, opts = {}) {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(data, { binary: !!opts.binary }, (err) => { if (err) this.errors.push(err); });
    return true;
  }

  // request: send msg with a fresh id (unless it has one) and resolve with
  // the message that carries the same id.  Rejects after timeoutMs or when
  // the connection closes first.
  request(msg, timeoutMs = REQUEST_TIMEOUT_MS) {
    const m = { ...msg };
    if (m.id === undefined) m.id = `${this.label}-${this.nextId++}`;
    return this.requestRaw(toJSON(m), m.id, timeoutMs, `${m.type} ${show(m, 200)}`);
  }

  // requestMeta: request, resolving with {msg, raw, at} of the answer
  // (its text as sent, and when it arrived by this client's clock).
  requestMeta(msg, timeoutMs = REQUEST_TIMEOUT_MS) {
    const m = { ...msg };
    if (m.id === undefined) m.id = `${this.label}-${this.nextId++}`;
    return this.requestRaw(toJSON(m), m.id, timeoutMs, `${m.type} ${show(m, 200)}`, true);
  }

  // requestRaw: send text as it is and await the answer carrying id (with
  // meta, as requestMeta does).
  requestRaw(text, id, timeoutMs = REQUEST_TIMEOUT_MS, what, meta = false) {
    const key = idKey(id);
    const desc = what || `request id ${show(id)}`;
    return new Promise((resolve, reject) => {
      if (this.closed) {
        reject(new Error(`${this.label}: the connection is closed (code ${this.closed.code}); cannot send ${desc}${this._lastError()}`));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(key);
        this.unanswered = this.unanswered.filter((k) => k !== key);
        reject(new Error(`${this.label}: no answer to ${desc} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.pending.set(key, { resolve, reject, timer, what: desc, meta });
      this.unanswered.push(key);
      this.sendRaw(text);
    });
  }

  // next: the next message that was not an answer to a pending request and
  // matches pred (a type name or a function), or null after ms or on close.
  next(pred, ms = REQUEST_TIMEOUT_MS) {
    const f = typeof pred === 'string' ? (m) => m.type === pred && (m.id === undefined || m.id === null) : pred;
    return this._waitFor(() => {
      const k = this.queue.findIndex(f);
      if (k >= 0) return this.queue.splice(k, 1)[0];
      if (this.closed) return null;
      return undefined;
    }, ms);
  }

  // until: resolves true once pred() holds (checked at each message), or
  // false after ms.
  async until(pred, ms = REQUEST_TIMEOUT_MS) {
    const v = await this._waitFor(() => (pred() ? true : this.closed ? false : undefined), ms);
    return v === true;
  }

  // waitClose: {code, reason, at} once the connection is closed, or null.
  waitClose(ms = REQUEST_TIMEOUT_MS) {
    return this._waitFor(() => (this.closed ? this.closed : undefined), ms);
  }

  hello(token, extra = {}) {
    return this.request({ type: 'hello', token, ...extra });
  }

  // pullAll: pull with maxRows until `more` is false.  Returns the answers.
  async pullAll(maxRows, opts = {}) {
    const answers = [];
    let cursor = opts.cursor !== undefined ? opts.cursor : this.cursor;
    for (let page = 0; page < (opts.maxPages || 100000); page++) {
      const msg = { type: 'pull', cursor };
      if (maxRows !== undefined) msg.max_rows = maxRows;
      const a = await this.request(msg);
      answers.push(a);
      if (a.type !== 'changes') {
        throw new Error(`${this.label}: pull answered with ${show(a)}`);
      }
      cursor = a.cursor;
      if (a.more !== true) return answers;
    }
    throw new Error(`${this.label}: pull still had more after ${opts.maxPages} pages`);
  }

  // rows: the replica's rows of a table, sorted by primary key.
  rows(table) {
    return [...this.replica.values()]
      .filter((r) => r.table === table)
      .sort((a, b) => (canon(a.pk) < canon(b.pk) ? -1 : canon(a.pk) > canon(b.pk) ? 1 : 0));
  }

  close(code = 1000) {
    try {
      if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(code);
    } catch (e) {
      this.errors.push(e);
    }
  }

  // deflate: whether the connection negotiated permessage-deflate.
  get deflate() {
    return Object.prototype.hasOwnProperty.call(this.ws.extensions || {}, 'permessage-deflate') ||
      /permessage-deflate/.test(String(this.ws.extensions || ''));
  }

  terminate() {
    try {
      this.ws.terminate();
    } catch (e) {
      this.errors.push(e);
    }
  }
}

// connect: open a WebSocket to the worker.  opts: protocols (default
// ['ofs.v1']; [] offers none), deflate (default true), label, record and
// clock (as Client's), maxPayload, localAddress (the source address, e.g.
// another loopback address, as devices come from many).
function connect(url = WS_URL, opts = {}) {
  return new Promise((resolve, reject) => {
    const protocols = opts.protocols === undefined ? ['ofs.v1'] : opts.protocols;
    let ws;
    try {
      ws = new WebSocket(url, protocols, {
        perMessageDeflate: opts.deflate !== false,
        handshakeTimeout: opts.handshakeTimeout || 5000,
        maxPayload: opts.maxPayload || 512 * 1024 * 1024,
        ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
      });
    } catch (e) {
      reject(e);
      return;
    }
    const c = new Client(ws, opts.label, opts);
    const onError = (e) => reject(new Error(`cannot connect to ${url}: ${e.message}`));
    ws.once('error', onError);
    ws.once('open', () => {
      ws.removeListener('error', onError);
      resolve(c);
    });
  });
}

// waitForWorker: until a WebSocket handshake with the worker succeeds
// (t, a test, if given, says what it is waiting for).
async function waitForWorker(t, ms) {
  if (t) t.step = 'waiting for the worker to accept connections';
  const until = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const c = await connect(WS_URL, { label: 'probe' });
      c.close();
      return;
    } catch (e) {
      last = e;
    }
    if (Date.now() > until) {
      let pids = '?';
      try { pids = (await workerPids()).join(', ') || 'none'; } catch (e) { pids = e.message; }
      throw new Error(`the worker does not accept connections at ${WS_URL} after ${ms / 1000} s (${last.message}); ofs sync worker pids: ${pids}`);
    }
    await sleep(250);
  }
}

// probe: one handshake with the worker; true if it succeeded.
async function probe(url = WS_URL) {
  try {
    const c = await connect(url, { label: 'probe', record: false });
    c.terminate();
    return true;
  } catch (e) {
    return false;
  }
}

module.exports = {
  WS_URL,
  DB,
  REQUEST_TIMEOUT_MS,
  nowMs,
  parseJSON,
  toJSON,
  canon,
  same,
  show,
  big,
  sleep,
  clock,
  psql,
  psqlAsync,
  psqlRetry,
  spawnAsync,
  psqlJSON,
  lit,
  ident,
  workerPids,
  waitForWorker,
  probe,
  connect,
  Client,
};

if (require.main === module && process.argv[2] === 'probe') {
  probe().then((ok) => process.exit(ok ? 0 : 1));
}
