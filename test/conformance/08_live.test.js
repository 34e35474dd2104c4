'use strict';
// PROTOCOL.md "live and ack": live is answered by changes (one page), then
// unsolicited changes without id as relevant changes commit, each
// continuing from the previous cursor; nothing for changes outside the
// scope; live on:false answered by live with on:false and stops the
// stream; a pull on a live connection moves the stream; ack has no answer.
const { test, psql, psqlAsync, show, sleep, isStr } = require('./common');

test('conformance: live and ack', { timeout: 60 }, async (t) => {
  const role = t.role('e2e_cf_live_dev');
  psql(`CREATE TABLE cf_live (id int PRIMARY KEY, region text, v int);
        INSERT INTO cf_live SELECT g, 'north', g FROM generate_series(1, 30) g;
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT, INSERT, UPDATE, DELETE ON cf_live TO ${role};
        SELECT ofs.sync_table('cf_live');`);
  const A = await t.device(t.token(role, 'cf-live'), 'a');
  await A.request({ type: 'subscribe', table: 'cf_live', filter: "region = 'north'" });

  t.step = 'live answers with one page';
  const l1 = await A.request({ type: 'live', id: 'l1', cursor: null });
  t.answer(l1, 'changes', 'live is answered by changes', (m) => m.id === 'l1');
  t.ok(Array.isArray(l1.changes) && l1.changes.length === 30 && isStr(l1.cursor) && l1.more === false, 'the answer is a page of changes with cursor and more, as pull', show({ n: (l1.changes || []).length, more: l1.more }));

  t.step = 'unsolicited changes';
  await psqlAsync(`UPDATE cf_live SET v = 100 WHERE id = 1`);
  const m1 = await A.next('changes', 10000);
  t.ok(m1 && (m1.id === undefined || m1.id === null), 'a change that commits is sent as changes without id', show(m1));
  t.same(m1 && m1.changes, [{ table: 'public.cf_live', op: 'upsert', pk: { id: 1 }, row: { id: 1, region: 'north', v: 100 } }], 'it carries the committed change');
  t.ok(m1 && isStr(m1.cursor) && m1.cursor !== l1.cursor, 'it carries a new cursor', show(m1 && m1.cursor));
  A.send({ type: 'ack', cursor: m1 && m1.cursor });
  await psqlAsync(`UPDATE cf_live SET region = 'south' WHERE id = 2`);
  const m2 = await A.next('changes', 10000);
  t.same(m2 && m2.changes && m2.changes.map((c) => `${c.op} ${c.pk.id}`), ['delete 2'], 'a row leaving the shape arrives live as delete');
  const p = await A.request({ type: 'pull', cursor: m1 && m1.cursor });
  t.same((p.changes || []).map((c) => `${c.op} ${c.pk.id}`), ['delete 2'], 'each live message continues from the previous one\'s cursor (pulling from the first gives exactly the second)');
  t.is(A.queue.filter((m) => m.type !== 'changes').length, 0, 'ack has no answer', show(A.queue));

  t.step = 'nothing for changes outside the scope';
  await psqlAsync(`UPDATE cf_live SET v = 5 WHERE id = 2`);
  await psqlAsync(`UPDATE cf_live SET v = 6 WHERE id = 3`);
  const m3 = await A.next('changes', 10000);
  t.same(m3 && m3.changes && m3.changes.map((c) => `${c.op} ${c.pk.id}`), ['upsert 3'], 'a change outside the shape sends nothing; the next relevant one arrives');

  t.step = 'a pull on a live connection';
  const lp = await A.request({ type: 'pull', cursor: m3 && m3.cursor });
  t.answer(lp, 'changes', 'a pull on a live connection is answered normally');
  await psqlAsync(`UPDATE cf_live SET v = 7 WHERE id = 4`);
  const m4 = await A.next('changes', 10000);
  t.same(m4 && m4.changes && m4.changes.map((c) => `${c.op} ${c.pk.id}`), ['upsert 4'], 'the live stream continues from the pull\'s cursor');

  t.step = 'live off';
  const off = await A.request({ type: 'live', id: 'off', on: false });
  t.ok(off.type === 'live' && off.on === false && off.id === 'off', 'live on:false is answered by live with "on": false', show(off));
  await psqlAsync(`UPDATE cf_live SET v = 8 WHERE id = 5`);
  const m5 = await A.next('changes', 2500);
  t.is(m5, null, 'no live changes are sent after live on:false', show(m5));
  const after = await A.request({ type: 'pull', cursor: m4 && m4.cursor });
  t.same((after.changes || []).map((c) => `${c.op} ${c.pk.id}`), ['upsert 5'], 'the change waits for the next pull');
  A.close();
});
