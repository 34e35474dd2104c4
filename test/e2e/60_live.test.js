'use strict';
// Live: a device that went live receives, without asking, the changes that
// commit afterwards, whether made in psql or pushed by another device, and
// only those of its shapes; rolled-back work never arrives; every change of
// a multi-row transaction arrives; ack has no answer; live off stops the
// stream and a pull catches up.  The latency from commit to arrival is
// printed, never asserted.
const { test, psql, psqlAsync, show, clock, sleep } = require('./lib');
const { performance } = require('node:perf_hooks');

const TABLE = 'public.e2e_live_t';

test('live', { timeout: 60 }, async (t) => {
  const role = t.role('e2e_live_dev');
  psql(`CREATE TABLE e2e_live_t (id text PRIMARY KEY, grp text NOT NULL, v int);
        CREATE TABLE e2e_live_other (id text PRIMARY KEY, v int);
        INSERT INTO e2e_live_t VALUES ('seed-1', 'a', 1), ('seed-2', 'b', 2);
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT, INSERT, UPDATE, DELETE ON e2e_live_t, e2e_live_other TO ${role};
        SELECT ofs.sync_table('e2e_live_t');
        SELECT ofs.sync_table('e2e_live_other');`);
  const a = await t.device(t.token(role, 'e2e-live-a'), 'a');
  const b = await t.device(t.token(role, 'e2e-live-b'), 'b');
  await a.request({ type: 'subscribe', table: 'e2e_live_t' });
  const sub = await b.request({ type: 'subscribe', table: 'e2e_live_t', filter: "grp = 'a'" });
  t.answer(sub, 'subscribed', 'device B subscribes to one group');

  t.step = 'going live';
  await b.pullAll(1000, { cursor: null });
  t.same(b.rows(TABLE).map((r) => r.pk.id), ['seed-1'], 'the first pull brings the rows in scope');
  const live = await b.request({ type: 'live', cursor: b.cursor });
  t.answer(live, 'changes', 'live is answered with changes');
  t.ok(live.more !== true && Array.isArray(live.changes) && live.changes.length === 0, 'going live from the latest cursor: nothing more to read', show(live));
  // arrived: the first unsolicited changes message holding key, with its time.
  const arrival = (key) => b.log.find((e) => e.msg && e.msg.type === 'changes' && (e.msg.id === undefined || e.msg.id === null) &&
    Array.isArray(e.msg.changes) && e.msg.changes.some((c) => c.pk && c.pk.id === key));

  // Each part below goes on even when an earlier one failed.
  await t.section('a change committed in psql', async () => {
    const t0 = performance.now();
    await psqlAsync(`INSERT INTO e2e_live_t VALUES ('psql-1', 'a', 10)`);
    const got1 = await b.until(() => arrival('psql-1'), 10000);
    t.ok(got1, 'a row committed in psql arrives unsolicited');
    if (got1) t.diag(`latency psql commit -> live changes: ${(arrival('psql-1').at - t0).toFixed(1)} ms (from the start of psql, connection included)`);
    const m1 = arrival('psql-1');
    t.ok(m1 && (m1.msg.id === undefined || m1.msg.id === null) && typeof m1.msg.cursor === 'string', 'a live changes message has no id and carries a cursor', show(m1 && m1.msg));
    const c1 = m1 && m1.msg.changes.find((c) => c.pk.id === 'psql-1');
    t.same(c1 && { table: c1.table, op: c1.op, row: c1.row }, { table: TABLE, op: 'upsert', row: { id: 'psql-1', grp: 'a', v: 10 } },
      'the live change is an upsert of the whole row');
  });
  await t.section('ack', async () => {
    const before = b.log.length;
    const m1 = arrival('psql-1');
    b.send({ type: 'ack', cursor: m1 ? m1.msg.cursor : b.cursor });
    const sc = await b.request({ type: 'schema' });
    t.answer(sc, 'schema', 'after an ack the connection serves requests');
    const between = b.log.slice(before).map((e) => e.msg).filter((m) => m && m.type !== 'schema' && !(m.type === 'changes' && m.id === undefined));
    t.same(between, [], 'ack has no answer');
  });
  await t.section('a change pushed by another device', async () => {
    const h = clock(a.welcome.hlc)();
    const t0 = performance.now();
    const pushed = await a.request({ type: 'push', mutations: [
      { op_id: 'l-1', table: TABLE, op: 'insert', pk: { id: 'push-1' }, data: { id: 'push-1', grp: 'a', v: 20 }, hlc: h }] });
    const tPushed = performance.now();
    t.ok(pushed.type === 'pushed' && pushed.results[0].status === 'applied', 'device A pushes a row', show(pushed));
    const got2 = await b.until(() => arrival('push-1'), 10000);
    t.ok(got2, 'a row pushed by device A arrives live at device B');
    if (got2) {
      const at = arrival('push-1').at;
      t.diag(`latency A push sent -> B live changes: ${(at - t0).toFixed(1)} ms; after A's pushed answer: ${(at - tPushed).toFixed(1)} ms`);
    }
    t.ok(!a.log.some((e) => e.msg && e.msg.type === 'changes' && (e.msg.id === undefined || e.msg.id === null)),
      'a device that is not live receives nothing unsolicited');
  });
  await t.section('out of shape, other tables, rollbacks', async () => {
    await psqlAsync(`INSERT INTO e2e_live_t VALUES ('grp-b-1', 'b', 1)`);
    await psqlAsync(`INSERT INTO e2e_live_other VALUES ('other-1', 1)`);
    await psqlAsync(`BEGIN; INSERT INTO e2e_live_t VALUES ('rolled-back', 'a', 1); ROLLBACK;`);
    await psqlAsync(`BEGIN; INSERT INTO e2e_live_t VALUES ('tx-1', 'a', 1), ('tx-2', 'a', 2); INSERT INTO e2e_live_t VALUES ('tx-3', 'a', 3); COMMIT;`);
    const got3 = await b.until(() => ['tx-1', 'tx-2', 'tx-3'].every((k) => arrival(k)), 10000);
    t.ok(got3, 'every row of a multi-row transaction arrives', show(b.rows(TABLE).map((r) => r.pk.id)));
    await sleep(300);
    const seen = b.log.filter((e) => e.raw).map((e) => e.raw).join('\n');
    t.ok(!seen.includes('grp-b-1'), 'a row outside the device\'s shape never arrives');
    t.ok(!seen.includes('other-1') && !seen.includes('e2e_live_other'), 'a change of a table the device does not subscribe to never arrives');
    t.ok(!seen.includes('rolled-back'), 'a rolled-back insert never arrives');
    t.same(b.rows(TABLE).map((r) => r.pk.id).sort(), ['psql-1', 'push-1', 'seed-1', 'tx-1', 'tx-2', 'tx-3'], 'the live device holds exactly the rows of its shape');
  });
  await t.section('updates and deletes', async () => {
    await psqlAsync(`UPDATE e2e_live_t SET v = 11 WHERE id = 'psql-1'; DELETE FROM e2e_live_t WHERE id = 'tx-2';`);
    const got4 = await b.until(() => !b.replica.has(`${TABLE} {"id":"tx-2"}`) &&
      (b.replica.get(`${TABLE} {"id":"psql-1"}`) || {}).row && b.replica.get(`${TABLE} {"id":"psql-1"}`).row.v === 11, 10000);
    t.ok(got4, 'an update and a delete arrive live', show(b.rows(TABLE)));
    await psqlAsync(`UPDATE e2e_live_t SET grp = 'b' WHERE id = 'tx-3'`);
    const got5 = await b.until(() => !b.replica.has(`${TABLE} {"id":"tx-3"}`), 10000);
    t.ok(got5, 'a row that leaves the shape arrives as a delete');
  });
  await t.section('live off', async () => {
    const off = await b.request({ type: 'live', on: false });
    t.ok(off.type === 'live' && off.on === false, 'live off is answered with live, on false', show(off));
    const quiet = b.log.length;
    await psqlAsync(`INSERT INTO e2e_live_t VALUES ('while-off', 'a', 1)`);
    await sleep(1500);
    t.ok(!b.log.slice(quiet).some((e) => e.raw && e.raw.includes('while-off')), 'after live off nothing arrives unsolicited');
    const catchup = await b.pullAll(1000);
    t.ok(catchup.flatMap((p) => p.changes || []).some((c) => c.pk && c.pk.id === 'while-off'), 'a pull after live off brings what committed meanwhile');
  });
  await t.section('live again from the pulled cursor', async () => {
    const again = await b.request({ type: 'live', cursor: b.cursor });
    t.answer(again, 'changes', 'live again is answered with changes');
    t.ok(!(again.changes || []).some((c) => c.pk && c.pk.id === 'while-off'), 'going live from the latest cursor resends nothing', show(again));
    await psqlAsync(`INSERT INTO e2e_live_t VALUES ('live-again', 'a', 1)`);
    t.ok(await b.until(() => arrival('live-again'), 10000), 'after going live again changes arrive unsolicited');
  });
  a.close();
  b.close();
});
