'use strict';
// kill -9 of the sync worker while a batch is being pushed.  PostgreSQL
// restarts the whole cluster; the device reconnects once the worker is back
// and resends the batch: nothing is lost, nothing is duplicated, and the
// results say which happened (applied if the crash came first, duplicate if
// the batch had committed).  The connections do not compress: this file is
// about the worker's life cycle (15_transport covers compression).
const { test, psqlRetry, workerPids, connect, show, sleep, WS_URL } = require('./lib');

const TABLE = 'public.e2e_kill_t';
const N = 800;
const PLAIN = { deflate: false };

test('kill -9', { timeout: 150 }, async (t) => {
  const role = t.role('e2e_kill_dev');
  await psqlRetry(`CREATE TABLE e2e_kill_t (id text PRIMARY KEY, v int NOT NULL);
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT, INSERT, UPDATE, DELETE ON e2e_kill_t TO ${role};
        SELECT ofs.sync_table('e2e_kill_t');`);
  const token = t.token(role, 'e2e-kill-a');
  const A = await t.device(token, 'a', {}, PLAIN);
  const hlc0 = BigInt(A.welcome.hlc);
  const mutations = Array.from({ length: N }, (_, k) => ({
    op_id: `k-${k}`, table: TABLE, op: 'insert', pk: { id: `k-${k}` }, data: { id: `k-${k}`, v: k }, hlc: hlc0 + BigInt(k + 1),
  }));
  const pids = await workerPids();
  t.ok(pids.length > 0, `the sync worker runs (pids ${pids.join(', ')})`);
  const postmasterStart = await psqlRetry('SELECT pg_postmaster_start_time()');

  t.step = 'kill -9 mid-push';
  const answer = A.request({ type: 'push', mutations }, 30000).catch((e) => ({ lost: e.message }));
  await new Promise((resolve) => A.ws.ping(() => resolve()));
  await sleep(5);
  process.kill(pids[0], 'SIGKILL');
  const ans = await answer;
  const closed = await A.waitClose(20000);
  t.ok(closed !== null, 'the device\'s connection drops', show(ans, 300));
  t.diag(`answer before the crash: ${show(ans, 300)}; close ${show(closed)}`);

  t.step = 'the cluster restarts';
  const up = await psqlRetry('SELECT 1', 90000).catch((e) => e.message);
  t.is(up, '1', 'PostgreSQL accepts connections again after the crash');
  t.is(await psqlRetry('SELECT pg_postmaster_start_time()'), postmasterStart, 'the postmaster survived; it restarted its processes');
  const before = Number(await psqlRetry(`SELECT count(*) FROM e2e_kill_t`));
  t.ok(before === 0 || before === N, `the batch was written whole or not at all (${before} of ${N} rows)`);
  if (ans.type === 'pushed') t.is(before, N, 'a batch answered before the crash survived it');

  t.step = 'reconnect';
  const until = Date.now() + 90000;
  let B = null;
  let last;
  let wait = 250;
  for (let attempt = 1; !B; attempt++) {
    try {
      const c = await connect(WS_URL, { ...PLAIN, label: `a-${attempt}` });
      t.clients.push(c);
      const w = await c.hello(token);
      if (w.type === 'welcome') {
        B = c;
        t.diag(`reconnected after ${attempt} attempt(s)`);
        break;
      }
      last = show(w);
      c.close();
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > until) break;
    await sleep(wait);
    wait = Math.min(wait * 2, 3000);
  }
  t.ok(B !== null, 'the device reconnects after the crash', `last attempt: ${last}`);
  if (!B) return;
  const back = await workerPids().catch(() => []);
  t.ok(back.length > 0 && !back.includes(pids[0]), 'a new worker process serves it', `pids before ${pids.join(', ')}, after ${back.join(', ')}`);

  t.step = 'resend';
  const r = await B.request({ type: 'push', mutations }, 60000);
  const st = r.type === 'pushed' && Array.isArray(r.results) ? r.results.map((x) => x.status) : [];
  const want = before === N ? 'duplicate' : 'applied';
  t.ok(st.length === N && st.every((s) => s === want), `the resent batch: every result ${want}`, show(r, 600));
  t.is(await psqlRetry(`SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || sum(v) FROM e2e_kill_t`),
    `${N} ${N} ${(N * (N - 1)) / 2}`, 'every row of the batch is in the table exactly once, with its value');
  t.is(await psqlRetry(`SELECT count(*) FROM ofs.applied_op WHERE device = 'e2e-kill-a'`), String(N),
    'each operation id is recorded once');
  B.close();
});
