'use strict';
// Revoking a connected device from psql: the worker tells it (error
// revoked) and closes the connection with 4003, whether it is live or idle;
// another device of the same role keeps being served; the revoked token is
// refused afterwards (4001) and its pushes write nothing.
const { test, psql, psqlAsync, show, clock } = require('./lib');
const { performance } = require('node:perf_hooks');

test('revoke', { timeout: 60 }, async (t) => {
  const role = t.role('e2e_revoke_dev');
  psql(`CREATE TABLE e2e_revoke_t (id text PRIMARY KEY, v int);
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT, INSERT, UPDATE, DELETE ON e2e_revoke_t TO ${role};
        SELECT ofs.sync_table('e2e_revoke_t');`);
  const liveToken = t.token(role, 'e2e-revoke-live');
  const idleToken = t.token(role, 'e2e-revoke-idle');
  const L = await t.device(liveToken, 'live');
  const I = await t.device(idleToken, 'idle');
  const K = await t.device(t.token(role, 'e2e-revoke-kept'), 'kept');
  for (const c of [L, K]) {
    await c.request({ type: 'subscribe', table: 'e2e_revoke_t' });
    await c.pullAll(1000, { cursor: null });
    await c.request({ type: 'live', cursor: c.cursor });
  }

  t.step = 'revoking the live device';
  const t0 = performance.now();
  await psqlAsync(`SELECT ofs.revoke_device('e2e-revoke-live')`);
  const closed = await L.waitClose(10000);
  t.ok(closed !== null, 'the revoked live device\'s connection is closed');
  t.is(closed && closed.code, 4003, 'the close code is 4003');
  if (closed) t.diag(`closed ${(closed.at - t0).toFixed(0)} ms after revoke_device was started`);
  const err = L.log.map((e) => e.msg).filter((m) => m && m.type === 'error').pop();
  t.error(err, 'revoked', 'the device is told why: error revoked');
  t.ok(err && (err.id === undefined || err.id === null), 'the revoked error is unsolicited (no id)', show(err));

  t.step = 'the other devices';
  const ks = await K.request({ type: 'schema' });
  t.answer(ks, 'schema', 'another device of the same role is still served');
  await psqlAsync(`INSERT INTO e2e_revoke_t VALUES ('after-revoke', 1)`);
  t.ok(await K.until(() => K.replica.has('public.e2e_revoke_t {"id":"after-revoke"}'), 10000), 'another live device still receives changes');
  t.ok(I.open, 'an idle device of another name is not closed');

  t.step = 'revoking an idle device';
  await psqlAsync(`SELECT ofs.revoke_device('e2e-revoke-idle')`);
  const iclosed = await I.waitClose(10000);
  t.is(iclosed && iclosed.code, 4003, 'a revoked idle device is closed with 4003 too');

  t.step = 'reconnecting with a revoked token';
  const R = await t.connect({ label: 'revoked-again' });
  const w = await R.request({ type: 'hello', token: liveToken }).catch((e) => ({ lost: e.message }));
  const rclosed = await R.waitClose(10000);
  const rerr = R.log.map((e) => e.msg).find((m) => m && m.type === 'error');
  t.error(rerr, 'unauthorized', 'a revoked token is refused with unauthorized', { sqlstate: '28000', message: /revok/i });
  t.is(rclosed && rclosed.code, 4001, 'and closed with 4001');
  t.ok(!w || w.type !== 'welcome', 'no welcome for a revoked token', show(w));

  t.step = 'a device revoked between its messages';
  const P = await t.device(t.token(role, 'e2e-revoke-push'), 'push');
  await psqlAsync(`SELECT ofs.revoke_device('e2e-revoke-push')`);
  P.send({ type: 'push', id: 'late', mutations: [{ op_id: 'r-1', table: 'public.e2e_revoke_t', op: 'insert', pk: { id: 'late-push' }, data: { id: 'late-push', v: 1 }, hlc: clock()() }] });
  await P.waitClose(10000);
  const answer = P.log.map((e) => e.msg).find((m) => m && m.id === 'late');
  t.ok(!answer || answer.type === 'error' || (answer.type === 'pushed' && answer.results.every((r) => r.status === 'rejected')),
    'a push racing the revocation is never applied', show(answer));
  t.is(psql(`SELECT count(*) FROM e2e_revoke_t WHERE id = 'late-push'`), '0', 'nothing of it is written');
  t.ok(P.closed && P.closed.code === 4003, 'that device is closed with 4003', show(P.closed));
  K.close();
});
