'use strict';
// lib.js: what the end-to-end tests of the sync worker share: the toolkit's
// client and psql helpers (test/toolkit/client.js), and
// - test(name, opts, body): plan-less TAP output (`ok N - name`,
//   `not ok N - name` with `#` diagnostics), a hard time limit for the whole
//   file, cleanups that run however the file ends, and an exit code that is
//   non-zero when any check failed.

const toolkit = require('../toolkit/client');

const {
  WS_URL, DB, REQUEST_TIMEOUT_MS, same, show, sleep, psql, psqlAsync, lit, ident, connect, waitForWorker,
} = toolkit;

// ---------------------------------------------------------------- TAP

class T {
  constructor(name) {
    this.name = name;
    this.n = 0;
    this.failed = 0;
    this.step = 'setup';
    this.clients = [];
    this.cleanups = [];
    this.finished = false;
  }

  _out(line) {
    process.stdout.write(`${line}\n`);
  }

  diag(msg) {
    for (const line of String(msg).split('\n')) this._out(`# ${line}`);
  }

  ok(cond, name, diag) {
    this.n++;
    this._out(`${cond ? 'ok' : 'not ok'} ${this.n} - ${name}`);
    if (!cond) {
      this.failed++;
      if (diag !== undefined) this.diag(typeof diag === 'function' ? diag() : diag);
    }
    return !!cond;
  }

  pass(name) {
    return this.ok(true, name);
  }

  fail(name, diag) {
    return this.ok(false, name, diag);
  }

  skip(name, reason) {
    this.n++;
    this._out(`ok ${this.n} - ${name} # SKIP ${reason}`);
  }

  is(actual, expected, name) {
    return this.ok(actual === expected, name, () => `expected: ${show(expected)}\n     got: ${show(actual)}`);
  }

  same(actual, expected, name) {
    return this.ok(same(actual, expected), name, () => `expected: ${show(expected)}\n     got: ${show(actual)}`);
  }

  match(actual, re, name) {
    return this.ok(typeof actual === 'string' && re.test(actual), name, () => `expected a string matching ${re}\n     got: ${show(actual)}`);
  }

  // answer: checks that a request was answered with a message of the type.
  answer(msg, type, name, extra) {
    return this.ok(msg && msg.type === type && (!extra || extra(msg)), name,
      () => `expected a ${type} message\n     got: ${show(msg)}`);
  }

  // error: checks an error message's code (and sqlstate when given).
  error(msg, code, name, opts = {}) {
    const good = msg && msg.type === 'error' && msg.code === code &&
      typeof msg.message === 'string' && msg.message.length > 0 &&
      (opts.sqlstate === undefined || (Array.isArray(opts.sqlstate) ? opts.sqlstate.includes(msg.sqlstate) : msg.sqlstate === opts.sqlstate)) &&
      (opts.message === undefined || opts.message.test(msg.message));
    return this.ok(good, name, () => `expected an error with code ${show(code)}` +
      `${opts.sqlstate !== undefined ? `, sqlstate ${show(opts.sqlstate)}` : ''}` +
      `${opts.message ? `, a message matching ${opts.message}` : ', a message'}\n     got: ${show(msg)}`);
  }

  // section: run fn as one part of the file; an exception fails the part
  // and the file goes on with the next one.
  async section(name, fn) {
    this.step = name;
    try {
      await fn();
    } catch (e) {
      this.ok(false, `${name}: ran to the end`, e && e.stack ? e.stack : String(e));
    }
  }

  cleanup(fn) {
    this.cleanups.push(fn);
  }

  async connect(opts = {}) {
    const c = await connect(opts.url || WS_URL, opts);
    this.clients.push(c);
    return c;
  }

  // role: a fresh role (any leftover of an interrupted run is dropped first),
  // dropped again when the file ends.
  role(name, attrs = '') {
    if (!/^e2e_[a-z0-9_]+$/.test(name)) throw new Error(`test roles are named e2e_...: ${name}`);
    dropRole(name);
    psql(`CREATE ROLE ${name} ${attrs}`);
    this.cleanup(() => dropRole(name));
    return name;
  }

  token(role, device, validFor) {
    return psql(`SELECT ofs.create_device_token(${lit(role)}, ${lit(device)}${validFor ? `, ${lit(validFor)}::interval` : ''})`);
  }

  // device: connect (opts as for connect) and hello; checks the welcome.
  async device(token, label, extra = {}, opts = {}) {
    const c = await this.connect({ ...opts, label });
    const w = await c.hello(token, extra);
    if (!w || w.type !== 'welcome') throw new Error(`${label}: hello answered with ${show(w)}`);
    c.welcome = w;
    return c;
  }

  // protocolChecks: what every connection of the file must have respected.
  protocolChecks() {
    const all = this.clients;
    const count = all.reduce((s, c) => s + c.log.length, 0);
    const bad = all.filter((c) => c.violations.length > 0);
    this.ok(bad.length === 0,
      `every message from the worker (${count} on ${all.length} connections) was a JSON object with a type, in a text frame, and answers came in request order`,
      () => bad.map((c) => `${c.label}: ${c.violations.slice(0, 5).join('\n  ')}`).join('\n'));
  }

  _finish(code) {
    if (this.finished) return;
    this.finished = true;
    for (const c of this.clients) c.terminate();
    for (const fn of this.cleanups.reverse()) {
      try {
        fn();
      } catch (e) {
        this.ok(false, `cleanup: ${e.message.split('\n')[0]}`, e.message);
      }
    }
    this._out(`1..${this.n}`);
    if (this.failed > 0) this.diag(`${this.name}: ${this.failed} of ${this.n} checks failed`);
    process.exit(this.failed > 0 || code ? 1 : 0);
  }
}

function dropRole(name) {
  if (psql(`SELECT 1 FROM pg_roles WHERE rolname = ${lit(name)}`) === '1') {
    psql(`DROP OWNED BY ${name} CASCADE; DROP ROLE ${name}`);
  }
}

// test: run body(t) with a hard limit of opts.timeout seconds for the file.
function test(name, opts, body) {
  const t = new T(name);
  const seconds = opts.timeout || 60;
  t.diag(`${name} (worker at ${WS_URL}, database ${DB})`);
  const timer = setTimeout(() => {
    t.ok(false, `${name}: finished within ${seconds} s`, `still at: ${t.step}`);
    t._finish(1);
  }, seconds * 1000);
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      t.ok(false, `${name}: not interrupted (${sig})`, `at: ${t.step}`);
      t._finish(1);
    });
  }
  process.on('unhandledRejection', (e) => {
    t.ok(false, `${name}: no unhandled rejection`, `at: ${t.step}\n${e && e.stack ? e.stack : e}`);
  });
  (async () => {
    try {
      await waitForWorker(t, 30000);
      t.step = 'setup';
      await body(t);
      t.step = 'protocol checks';
      t.protocolChecks();
    } catch (e) {
      t.ok(false, `${name}: ran to the end (stopped at: ${t.step})`, e && e.stack ? e.stack : String(e));
    } finally {
      clearTimeout(timer);
      t._finish(0);
    }
  })();
}

module.exports = { ...toolkit, test };
