'use strict';
// Nothing a device sends as a cursor can hurt another device.  Cursors are
// sealed by the origin for one device ("c1." ...).  A forged cursor (a page
// number near the bigint limit), a tampered sealed one, or another
// device's, is treated as no cursor: that device alone starts afresh (a
// snapshot of its scope) and keeps syncing; the live devices batched with
// it keep receiving changes.
const { test, psql, psqlAsync, show, lit } = require('./lib');

const T = 'public.e2e_cur_t';

test('cursor', { timeout: 90 }, async (t) => {
  const role = t.role('e2e_cur_dev');
  psql(`CREATE TABLE e2e_cur_t (id int PRIMARY KEY, v text);
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT ON e2e_cur_t TO ${role};
        SELECT ofs.sync_table('e2e_cur_t');
        INSERT INTO e2e_cur_t SELECT g, 'v' || g FROM generate_series(1, 30) g;`);
  // Several live devices: the workers batch the live devices they serve.
  const peers = [];
  for (let i = 0; i < 6; i++) {
    const c = await t.device(t.token(role, `e2e-cur-peer-${i}`), `peer${i}`);
    await c.request({ type: 'subscribe', table: T });
    await c.pullAll(1000, { cursor: null });
    c.autoAck = true;
    await c.request({ type: 'live', cursor: c.cursor });
    peers.push(c);
  }
  const a = await t.device(t.token(role, 'e2e-cur-attacker'), 'attacker');
  await a.request({ type: 'subscribe', table: T });
  const first = await a.pullAll(1000, { cursor: null });
  const good = a.cursor;
  t.match(good, /^c1\.[A-Za-z0-9+/=]+\.[A-Za-z0-9+/=]+$/, 'cursors are sealed by the origin');
  t.same(first.reduce((n, p) => n + p.changes.length, 0), 30, 'the first sync brings the 30 rows');

  const plain = (p) => JSON.stringify({ f: 'ofs1/0/0:0:', v: 0, p, s: [] });
  const tampered = good.slice(0, 10) + (good[10] === 'A' ? 'B' : 'A') + good.slice(11);
  const other = peers[0].cursor;
  const cases = [
    ['a forged cursor with a page number near the bigint limit', plain('9223372036854775000')],
    ['a forged cursor with a huge page number', plain(9007199254740991)],
    ['a sealed cursor with one character changed', tampered],
    ['another device\'s cursor', other],
    ['garbage', 'not a cursor at all'],
  ];
  let n = 0;
  for (const [what, cursor] of cases) {
    await t.section(what, async () => {
      const r = await a.request({ type: 'pull', cursor });
      t.answer(r, 'changes', `${what}: answered with changes, not an error`);
      const rows = (await a.pullAll(1000, { cursor: r.cursor, maxPages: 100 })).reduce((k, p) => k + p.changes.length, r.changes.length);
      t.ok(rows >= 30, `... the device starts afresh: a snapshot of its rows (${rows})`);
      await psqlAsync(`INSERT INTO e2e_cur_t VALUES (${1000 + n}, ${lit(`after ${what}`)})`);
      const key = `${T} {"id":${1000 + n}}`;
      const all = await Promise.all(peers.map((p) => p.until(() => p.replica.has(key), 8000)));
      t.ok(all.every(Boolean), '... the live devices keep receiving changes', show(all));
      const next = await a.request({ type: 'pull', cursor: a.cursor });
      t.ok(next.type === 'changes' && next.changes.some((c) => c.pk.id === 1000 + n), '... and the device itself keeps syncing from its new cursor', show(next));
      n++;
    });
  }
  await t.section('a cursor taken while many transactions were in progress', async () => {
    // The feed position lists the transactions in progress: with 60 of
    // them the cursor is long, and must still be honoured.
    const { spawn } = require('node:child_process');
    const holders = [];
    for (let i = 0; i < 60; i++) {
      const p = spawn('psql', ['-X', '-q', '-At', '-d', process.env.OFS_E2E_DB || 'ofs_e2e'], { stdio: ['pipe', 'pipe', 'ignore'] });
      p.stdin.write('BEGIN; SELECT txid_current();\n');
      holders.push(p);
    }
    await Promise.all(holders.map((p) => new Promise((r) => p.stdout.once('data', r))));
    await psqlAsync(`INSERT INTO e2e_cur_t VALUES (3000, 'while busy')`);
    const c = await t.device(t.token(role, 'e2e-cur-busy'), 'busy');
    await c.request({ type: 'subscribe', table: T });
    await c.pullAll(1000, { cursor: null });
    const long = c.cursor;
    for (const p of holders) p.stdin.end('COMMIT;\n');
    await Promise.all(holders.map((p) => new Promise((r) => p.once('close', r))));
    await psqlAsync(`INSERT INTO e2e_cur_t VALUES (3001, 'after')`);
    const next = await c.request({ type: 'pull', cursor: long });
    t.ok(long.length > 400, `the cursor is long (${long.length} characters)`);
    t.same(next.changes.map((x) => x.pk.id), [3001], 'and it is honoured: the next pull brings only the new row', show(next.changes.length));
    c.close();
  });

  await t.section('a live round with a forged cursor', async () => {
    const l = await t.device(t.token(role, 'e2e-cur-live'), 'live-attacker');
    await l.request({ type: 'subscribe', table: T });
    const r = await l.request({ type: 'live', cursor: plain('9223372036854775806') });
    t.answer(r, 'changes', 'live with a forged cursor is answered with changes (a snapshot)');
    await psqlAsync(`INSERT INTO e2e_cur_t VALUES (2000, 'live round')`);
    const key = `${T} {"id":2000}`;
    const all = await Promise.all(peers.map((p) => p.until(() => p.replica.has(key), 8000)));
    t.ok(all.every(Boolean), 'the live devices of the round receive the change');
    t.ok(peers.every((p) => p.open), 'and stay connected');
  });
  for (const p of peers) p.close();
});
