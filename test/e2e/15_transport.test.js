'use strict';
// Transport: messages of every size travel both ways, with and without
// permessage-deflate.  Pushes from 2 kB to 160 kB are answered in full, and
// a pull answer of several hundred kB arrives intact (checked against an
// MD5 computed by PostgreSQL).
const crypto = require('node:crypto');
const { test, psql, show, clock, toJSON, workerPids, sleep } = require('./lib');

const TABLE = 'public.e2e_tr_t';

test('transport', { timeout: 90 }, async (t) => {
  const role = t.role('e2e_tr_dev');
  psql(`CREATE TABLE e2e_tr_t (id int PRIMARY KEY, payload text);
        INSERT INTO e2e_tr_t SELECT g, (SELECT string_agg(md5(g::text || '/' || k), '') FROM generate_series(1, 32) k)
          FROM generate_series(1, 400) g;
        CREATE TABLE e2e_tr_m (id text PRIMARY KEY, v int NOT NULL, note text);
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT, INSERT, UPDATE, DELETE ON e2e_tr_t, e2e_tr_m TO ${role};
        SELECT ofs.sync_table('e2e_tr_t');
        SELECT ofs.sync_table('e2e_tr_m');`);
  const token = t.token(role, 'e2e-tr-a');
  const md5 = psql(`SELECT md5(string_agg(id || ':' || payload, ',' ORDER BY id)) FROM e2e_tr_t`);
  const pids = await workerPids();

  for (const deflate of [false, true]) {
    const mode = deflate ? 'offering permessage-deflate' : 'without compression';
    t.step = `pushes ${mode}`;
    const c = await t.connect({ label: deflate ? 'deflate' : 'plain', deflate });
    const w = await c.hello(token);
    t.answer(w, 'welcome', `hello ${mode}`);
    t.is(/permessage-deflate/.test(c.ws.extensions || ''), false,
      `permessage-deflate is not in use ${deflate ? 'though the client offers it ' : ''}(ofs.permessage_deflate is off)`);
    const hlc = clock(w.hlc);
    for (const n of [10, 30, 100, 800]) {
      const tag = `${deflate ? 'd' : 'p'}${n}`;
      const mutations = Array.from({ length: n }, (_, k) => ({
        op_id: `${tag}-${k}`, table: 'public.e2e_tr_m', op: 'insert', pk: { id: `${tag}-${k}` },
        data: { id: `${tag}-${k}`, v: k, note: `note ${k} of ${tag}` }, hlc: hlc() }));
      const bytes = toJSON({ type: 'push', mutations }).length;
      const a = await c.request({ type: 'push', mutations }).catch((e) => ({ lost: e.message.slice(0, 200) }));
      t.ok(a.type === 'pushed' && Array.isArray(a.results) && a.results.length === n && a.results.every((r) => r.status === 'applied'),
        `a push of ${n} mutations (${bytes} bytes) ${mode} is answered, all applied`, show(a, 400));
      t.is(psql(`SELECT count(*) FROM e2e_tr_m WHERE id LIKE '${tag}-%'`), String(n), `the ${n} rows pushed ${mode} are in the table`);
      if (c.closed) break;
    }

    t.step = `a large pull answer ${mode}`;
    if (!c.closed) {
      const s = await c.request({ type: 'subscribe', table: 'e2e_tr_t' });
      t.answer(s, 'subscribed', `subscribe ${mode}`);
      const p = await c.request({ type: 'pull', cursor: null, max_rows: 400 }).catch((e) => ({ lost: e.message.slice(0, 200) }));
      const size = c.log.length ? c.log[c.log.length - 1].raw.length : 0;
      t.ok(p.type === 'changes', `a pull answer of ${size} bytes arrives ${mode}`, show(p, 300));
      if (p.type === 'changes' && p.more === true) await c.pullAll(400, { cursor: p.cursor });
      const rows = c.rows(TABLE).map((r) => r.row).sort((x, y) => x.id - y.id);
      const got = crypto.createHash('md5').update(rows.map((r) => `${r.id}:${r.payload}`).join(',')).digest('hex');
      t.is(got, md5, `the 400 rows arrive intact ${mode} (MD5 of the table)`);
    }
    c.close();
  }
  await sleep(300);
  t.same(await workerPids().catch((e) => [e.message]), pids, 'the sync workers never crashed or restarted');
});
