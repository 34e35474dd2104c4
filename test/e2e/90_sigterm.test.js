'use strict';
// SIGTERM of the sync worker: connected clients get close 1001 (after an
// optional error shutting_down), the worker comes back (a new process), the
// device reconnects and resends its batch: every result is duplicate and
// each row is in the table once.  Then a batch in flight when SIGTERM
// arrives: after reconnecting and resending, each row is there exactly once.
// The connections do not compress: this file is about the worker's life
// cycle (15_transport covers compression).
const { test, psql, psqlRetry, workerPids, connect, show, sleep, WS_URL } = require('./lib');

const TABLE = 'public.e2e_term_t';
const PLAIN = { deflate: false };

test('sigterm', { timeout: 150 }, async (t) => {
  const role = t.role('e2e_term_dev');
  psql(`CREATE TABLE e2e_term_t (id text PRIMARY KEY, v int NOT NULL);
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT, INSERT, UPDATE, DELETE ON e2e_term_t TO ${role};
        SELECT ofs.sync_table('e2e_term_t');`);
  const tokenA = t.token(role, 'e2e-term-a');
  const tokenB = t.token(role, 'e2e-term-b');
  const batch = (prefix, n, hlc0) => Array.from({ length: n }, (_, k) => ({
    op_id: `${prefix}-${k}`, table: TABLE, op: 'insert', pk: { id: `${prefix}-${k}` },
    data: { id: `${prefix}-${k}`, v: k }, hlc: hlc0 + BigInt(k + 1),
  }));
  // reconnect: hello with backoff until the worker welcomes the device.
  const reconnect = async (token, label, ms) => {
    const until = Date.now() + ms;
    let wait = 200;
    let last;
    for (let attempt = 1; ; attempt++) {
      try {
        const c = await connect(WS_URL, { ...PLAIN, label: `${label}-${attempt}` });
        t.clients.push(c);
        const w = await c.hello(token);
        if (w.type === 'welcome') {
          c.welcome = w;
          t.diag(`${label} reconnected after ${attempt} attempt(s)`);
          return c;
        }
        last = show(w);
        c.close();
      } catch (e) {
        last = e.message;
      }
      if (Date.now() > until) throw new Error(`${label} could not reconnect within ${ms / 1000} s: ${last}`);
      await sleep(wait);
      wait = Math.min(wait * 2, 2000);
    }
  };
  const newWorker = async (old, ms) => {
    const until = Date.now() + ms;
    for (;;) {
      const pids = await workerPids().catch(() => []);
      if (pids.length > 0 && !pids.some((p) => old.includes(p))) return pids;
      if (Date.now() > until) return null;
      await sleep(300);
    }
  };

  t.step = 'before SIGTERM';
  const A = await t.device(tokenA, 'a', {}, PLAIN);
  const B = await t.device(tokenB, 'b', {}, PLAIN);
  await B.request({ type: 'subscribe', table: 'e2e_term_t' });
  await B.pullAll(1000, { cursor: null });
  await B.request({ type: 'live', cursor: B.cursor });
  const hlc0 = BigInt(A.welcome.hlc);
  const b1 = batch('t1', 50, hlc0);
  const p1 = await A.request({ type: 'push', mutations: b1 });
  t.ok(p1.type === 'pushed' && p1.results.every((r) => r.status === 'applied'), 'a batch of 50 is applied', show(p1));
  const pids = await workerPids();
  t.ok(pids.length > 0, `the sync worker runs (pids ${pids.join(', ')})`);

  t.step = 'SIGTERM';
  for (const pid of pids) process.kill(pid, 'SIGTERM');
  const [ca, cb] = await Promise.all([A.waitClose(15000), B.waitClose(15000)]);
  t.is(ca && ca.code, 1001, 'SIGTERM: an idle connection is closed with 1001');
  t.is(cb && cb.code, 1001, 'SIGTERM: a live connection is closed with 1001');
  for (const c of [A, B]) {
    const errs = c.log.map((e) => e.msg).filter((m) => m && m.type === 'error');
    if (errs.length > 0) t.ok(errs.every((e) => e.code === 'shutting_down'), `${c.label}: the error before the close is shutting_down`, show(errs));
  }

  t.step = 'the worker comes back';
  const back = await newWorker(pids, 60000);
  t.ok(back !== null, 'a new sync worker process starts after SIGTERM', `old pids ${pids.join(', ')}`);
  if (back) t.diag(`worker pids: ${pids.join(', ')} -> ${back.join(', ')}`);

  t.step = 'resend after reconnecting';
  const A2 = await reconnect(tokenA, 'a', 60000);
  const r1 = await A2.request({ type: 'push', mutations: b1 });
  t.ok(r1.type === 'pushed' && r1.results.length === 50 && r1.results.every((r) => r.status === 'duplicate'),
    'the resent batch: every result duplicate', show(r1));
  t.is(psql(`SELECT count(*) || ' ' || count(DISTINCT id) FROM e2e_term_t WHERE id LIKE 't1-%'`), '50 50', 'each row of the batch is in the table once');

  t.step = 'SIGTERM with a batch in flight';
  const b2 = batch('t2', 500, BigInt(A2.welcome.hlc));
  const pids2 = await workerPids();
  const firstAnswer = A2.request({ type: 'push', mutations: b2 }, 30000).catch((e) => ({ lost: e.message }));
  await new Promise((resolve) => A2.ws.ping(() => resolve()));
  for (const pid of pids2) process.kill(pid, 'SIGTERM');
  const ans = await firstAnswer;
  const c2 = await A2.waitClose(20000);
  t.diag(`in-flight batch: first answer ${show(ans, 300)}; close ${show(c2)}`);
  t.ok(ans.lost !== undefined || ans.type === 'pushed' || (ans.type === 'error' && ans.retry === true),
    'the batch in flight is answered with pushed, an error with retry true, or not at all', show(ans, 500));
  t.is(c2 && c2.code, 1001, 'the connection with a batch in flight is closed with 1001');
  const mid = Number(await psqlRetry(`SELECT count(*) FROM e2e_term_t WHERE id LIKE 't2-%'`));
  t.ok(mid === 0 || mid === 500, `the batch in flight was written whole or not at all (${mid} of 500 rows)`);
  if (ans.type === 'error') t.is(mid, 0, 'an error answer means nothing of the batch was written');
  if (ans.type === 'pushed') t.is(mid, 500, 'a pushed answer means the batch was written');
  const back2 = await newWorker(pids2, 60000);
  t.ok(back2 !== null, 'the worker comes back again');
  const A3 = await reconnect(tokenA, 'a-again', 60000);
  const r2 = await A3.request({ type: 'push', mutations: b2 }, 30000);
  const st = r2.type === 'pushed' ? r2.results.map((r) => r.status) : [];
  t.ok(st.length === 500 && st.every((s) => s === (mid === 500 ? 'duplicate' : 'applied')),
    `the resent batch: every result ${mid === 500 ? 'duplicate' : 'applied'}`, show(r2, 600));
  t.is(psql(`SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || sum(v) FROM e2e_term_t WHERE id LIKE 't2-%'`),
    `500 500 ${(499 * 500) / 2}`, 'each row of the batch is in the table exactly once, with its value');
  A3.close();
});
