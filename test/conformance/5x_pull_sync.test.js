'use strict';
// PROTOCOL.md "pull" (being implemented): up_to_date (false while more is
// true, true once the device holds everything), hlc, the example's shape,
// and cursor_too_old (OF011, connection kept) for a pull or live with a
// cursor older than one the device confirmed (by pull, live or ack); an
// ack of an older cursor is ignored; resending the last confirmed cursor
// is safe; starting afresh with no cursor works; a pull that asks ahead
// confirms its "confirmed" cursor, not its own.
const { test, psql, psqlAsync, show, isInt, isStr, expectKept } = require('./common');

test('conformance: pull up_to_date, hlc, cursor_too_old', { timeout: 60 }, async (t) => {
  const role = t.role('e2e_cf_ps_dev');
  psql(`CREATE TABLE cf_ps (id int PRIMARY KEY, v int);
        INSERT INTO cf_ps SELECT g, g FROM generate_series(1, 25) g;
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT ON cf_ps TO ${role};
        SELECT ofs.sync_table('cf_ps');`);
  const A = await t.device(t.token(role, 'cf-ps'), 'a');
  await A.request({ type: 'subscribe', table: 'cf_ps' });

  t.step = 'up_to_date and hlc';
  const pages = [];
  let cur = null;
  for (let k = 0; k < 10; k++) {
    const p = await A.request({ type: 'pull', cursor: cur, max_rows: 10 });
    pages.push(p);
    cur = p.cursor;
    if (p.more !== true) break;
  }
  t.same(pages.map((p) => `${p.more}/${p.up_to_date}`), ['true/false', 'true/false', 'false/true'],
    '25 rows by 10: up_to_date is false while more is true, true on the last page');
  t.ok(pages.every((p) => isInt(p.hlc)), 'every page carries hlc', show(pages.map((p) => p.hlc)));
  const ex = pages[0];
  t.ok(ex.type === 'changes' && isStr(ex.cursor) && typeof ex.more === 'boolean' && typeof ex.up_to_date === 'boolean' && isInt(ex.hlc) &&
    Array.isArray(ex.changes) && ex.snapshot && ex.snapshot.table === 'public.cf_ps' && Number.isInteger(ex.snapshot.rows_done) && Number.isInteger(ex.snapshot.rows_total),
  'a snapshot page has the documented example\'s shape: cursor, more, up_to_date, hlc, changes, snapshot{table, rows_done, rows_total}', show(ex));
  const again = await A.request({ type: 'pull', cursor: cur });
  t.ok(again.more === false && again.up_to_date === true && (again.changes || []).length === 0, 'a pull with nothing new: no changes, up_to_date true', show(again));
  const c1 = again.cursor;

  t.step = 'cursor_too_old';
  await psqlAsync('UPDATE cf_ps SET v = 100 WHERE id = 1');
  const p2 = await A.request({ type: 'pull', cursor: c1 });
  const c2 = p2.cursor;
  await psqlAsync('UPDATE cf_ps SET v = 101 WHERE id = 2');
  const p3 = await A.request({ type: 'pull', cursor: c2 });
  t.answer(p3, 'changes', 'a pull confirming c2');
  const again2 = await A.request({ type: 'pull', cursor: c2 });
  t.answer(again2, 'changes', 'resending the last confirmed cursor is safe (changes, not an error)');
  const old = await A.request({ type: 'pull', id: 'old', cursor: c1 });
  t.error(old, 'cursor_too_old', 'a pull with a cursor older than one already confirmed: error cursor_too_old, sqlstate OF011', { sqlstate: 'OF011' });
  t.is(old.id, 'old', 'the error carries the id');
  await expectKept(t, A, 'cursor_too_old');
  const lold = await A.request({ type: 'live', cursor: c1 });
  t.error(lold, 'cursor_too_old', 'a live with such a cursor: error cursor_too_old, OF011', { sqlstate: 'OF011' });
  const fresh = await A.request({ type: 'pull', cursor: null, max_rows: 1000 });
  t.ok(fresh.type === 'changes' && (fresh.changes || []).length === 25, 'starting afresh with no cursor: every row in scope', show(fresh.type === 'changes' ? fresh.changes.length : fresh));

  t.step = 'ack confirms';
  const B = await t.device(t.token(role, 'cf-ps-b'), 'b');
  await B.request({ type: 'subscribe', table: 'cf_ps' });
  const b1 = (await B.request({ type: 'pull', cursor: null, max_rows: 1000 })).cursor;
  await psqlAsync('UPDATE cf_ps SET v = 200 WHERE id = 3');
  const b2 = (await B.request({ type: 'pull', cursor: b1 })).cursor;
  B.send({ type: 'ack', cursor: b2 });
  const bOld = await B.request({ type: 'pull', cursor: b1 });
  t.error(bOld, 'cursor_too_old', 'after an ack of c2, a pull with the older c1: cursor_too_old (the ack confirmed c2)', { sqlstate: 'OF011' });
  const bOk = await B.request({ type: 'pull', cursor: b2 });
  t.answer(bOk, 'changes', 'a pull with the acknowledged cursor is served');

  t.step = 'an ack of an older cursor is ignored';
  const C = await t.device(t.token(role, 'cf-ps-c'), 'c');
  await C.request({ type: 'subscribe', table: 'cf_ps' });
  const k1 = (await C.request({ type: 'pull', cursor: null, max_rows: 1000 })).cursor;
  await psqlAsync('UPDATE cf_ps SET v = 300 WHERE id = 4');
  const k2 = (await C.request({ type: 'pull', cursor: k1 })).cursor;
  const k3 = await C.request({ type: 'pull', cursor: k2 });
  t.answer(k3, 'changes', 'a pull confirming c2');
  C.send({ type: 'ack', cursor: k1 });
  const kOk = await C.request({ type: 'pull', cursor: k2 });
  t.answer(kOk, 'changes', 'after an ack of the older c1, c2 is still served (the ack did not move the confirmation back)');
  const kOld = await C.request({ type: 'pull', cursor: k1 });
  t.error(kOld, 'cursor_too_old', 'and c1 is still too old', { sqlstate: 'OF011' });

  t.step = 'asking ahead';
  const D = await t.device(t.token(role, 'cf-ps-d'), 'd');
  await D.request({ type: 'subscribe', table: 'cf_ps' });
  const d1 = await D.request({ type: 'pull', cursor: null, max_rows: 10, confirmed: null });
  const d2 = await D.request({ type: 'pull', cursor: d1.cursor, max_rows: 10, confirmed: null });
  t.answer(d2, 'changes', 'a pull asking ahead with nothing stored (confirmed null) is served');
  const d3 = await D.request({ type: 'pull', cursor: d2.cursor, max_rows: 10, confirmed: d1.cursor });
  t.answer(d3, 'changes', 'a pull asking ahead that confirms the page before is served');
  const dBack = await D.request({ type: 'pull', cursor: d1.cursor, max_rows: 10, confirmed: d1.cursor });
  t.answer(dBack, 'changes', 'the device, having stored only page 1, goes back to its cursor: not too old (page 2 was never confirmed)');
  t.same((dBack.changes || []).map((c) => c.pk.id), (d2.changes || []).map((c) => c.pk.id),
    '... and page 2 comes again', show(dBack.changes));
  const dNext = await D.request({ type: 'pull', cursor: dBack.cursor, max_rows: 10, confirmed: dBack.cursor });
  t.answer(dNext, 'changes', 'confirming the page again moves on');
  const dOld = await D.request({ type: 'pull', cursor: d1.cursor, max_rows: 10 });
  t.error(dOld, 'cursor_too_old', 'once a later cursor is confirmed, page 1 is too old', { sqlstate: 'OF011' });
  const bad = await D.request({ type: 'pull', cursor: dNext.cursor, confirmed: 42 });
  t.error(bad, 'invalid_message', 'confirmed must be a string or null');
  C.close();
  A.close();
  B.close();
  D.close();
});
