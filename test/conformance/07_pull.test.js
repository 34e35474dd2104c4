'use strict';
// PROTOCOL.md "pull": the documented example's shape, the sealed cursor
// (c1. prefix; a changed or foreign cursor is no cursor: a fresh start),
// max_rows and its ceiling, more, snapshot progress, upsert/delete in
// order, scoping by GRANT, row-level security and shape (leaving rows
// arrive as delete, nothing of rows outside), no echo of a device's own
// writes unless the origin made them differ, and resending a pull.
const {
  test, psql, psqlAsync, show, statuses, hlcClock, pullPages, changesOf, isStr, isObj, DOC_LIMITS,
} = require('./common');

test('conformance: pull', { timeout: 90 }, async (t) => {
  const role = t.role('e2e_cf_pull_dev');
  psql(`CREATE TABLE cf_pull (id int PRIMARY KEY, region text, amount numeric(10,2), secret text);
        INSERT INTO cf_pull SELECT g, CASE WHEN g % 2 = 0 THEN 'north' ELSE 'south' END, g, 'visible' FROM generate_series(1, 1100) g;
        CREATE TABLE cf_pull_rls (id text PRIMARY KEY, owner text NOT NULL, v int);
        ALTER TABLE cf_pull_rls ENABLE ROW LEVEL SECURITY;
        CREATE POLICY mine ON cf_pull_rls USING (owner = current_user) WITH CHECK (owner = current_user);
        INSERT INTO cf_pull_rls VALUES ('mine-1', '${role}', 1), ('theirs-1', 'someone', 2);
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT, INSERT, UPDATE, DELETE ON cf_pull, cf_pull_rls TO ${role};
        SELECT ofs.sync_table('cf_pull');
        SELECT ofs.sync_table('cf_pull_rls');`);
  const A = await t.device(t.token(role, 'cf-pull'), 'a');
  const hlc = hlcClock(A.welcome.hlc);

  t.step = 'a first pull';
  await A.request({ type: 'subscribe', table: 'cf_pull' });
  const p1 = await A.request({ type: 'pull', id: 3, cursor: null, max_rows: 500 });
  t.answer(p1, 'changes', 'pull is answered with changes');
  t.ok(p1.id === 3, 'changes carries the id', show(p1.id));
  t.ok(isStr(p1.cursor) && p1.cursor.startsWith('c1.'), 'cursor: a string with the prefix c1.', show(p1.cursor));
  t.ok(/^c1\.[A-Za-z0-9+/=_-]+\.[A-Za-z0-9+/=_-]+$/.test(p1.cursor || ''), 'the cursor is c1., the position in base64, a dot and the seal in base64', show(p1.cursor));
  t.is(p1.more, true, 'more is true while there is more to read');
  t.is((p1.changes || []).length, 500, 'a page holds at most max_rows rows (500 of 1100)');
  const c0 = (p1.changes || [])[0] || {};
  t.same(Object.keys(c0).sort(), ['op', 'pk', 'row', 'table'], 'an upsert has table, op, pk, row');
  t.ok(c0.table === 'public.cf_pull' && c0.op === 'upsert' && isObj(c0.pk) && Number.isInteger(c0.pk.id) && isObj(c0.row) &&
    c0.row.id === c0.pk.id && c0.row.amount === `${c0.pk.id}.00`, 'the upsert carries the row as it is on the origin, all its columns', show(c0));
  t.ok(isObj(p1.snapshot) && p1.snapshot.table === 'public.cf_pull' && p1.snapshot.rows_done === 500 && p1.snapshot.rows_total === 1100,
    'snapshot: {table, rows_done 500, rows_total 1100} while the table is read in bulk', show(p1.snapshot));
  const p2 = await A.request({ type: 'pull', cursor: p1.cursor, max_rows: 5000 });
  t.is((p2.changes || []).length, 600, 'a max_rows above the limit is lowered: the remaining 600 rows (under 1000) in one page');
  t.is(p2.more, false, 'more is false at the end');
  t.ok(p2.snapshot === undefined || (p2.snapshot.rows_done === 1100 && p2.snapshot.rows_total === 1100), 'snapshot progress at the end: 1100 of 1100, or absent', show(p2.snapshot));
  const ids = new Set([...(p1.changes || []), ...(p2.changes || [])].map((c) => c.pk.id));
  t.is(ids.size, 1100, 'the two pages hold the 1100 rows, each once');

  t.step = 'the max_rows ceiling';
  const B = await t.device(t.token(role, 'cf-pull-b'), 'b');
  await B.request({ type: 'subscribe', table: 'cf_pull' });
  const pb = await B.request({ type: 'pull', cursor: null, max_rows: 5000 });
  t.is((pb.changes || []).length, DOC_LIMITS.max_rows, `a max_rows of 5000 is lowered to ${DOC_LIMITS.max_rows}`);
  t.is(pb.more, true, 'more is true after a lowered page');

  t.step = 'changes in order, deletes';
  let cur = p2.cursor;
  psql(`UPDATE cf_pull SET amount = 7 WHERE id = 1; DELETE FROM cf_pull WHERE id = 2; INSERT INTO cf_pull VALUES (2000, 'north', 1, 'visible'); UPDATE cf_pull SET amount = 8 WHERE id = 1;`);
  let pages = await pullPages(A, cur);
  let ch = changesOf(pages);
  t.same(ch.map((c) => `${c.op} ${c.pk.id}`).filter((x) => / (1|2|2000)$/.test(x)).slice(-3).sort(), ['delete 2', 'upsert 1', 'upsert 2000'].sort(),
    'an update, a delete and an insert arrive as upsert, delete, upsert');
  const d = ch.find((c) => c.op === 'delete') || {};
  t.ok(d.table === 'public.cf_pull' && d.pk && d.pk.id === 2 && d.row === undefined, 'a delete carries table and pk, no row', show(d));
  const last1 = ch.filter((c) => c.pk.id === 1).pop() || {};
  t.is((last1.row || {}).amount, '8.00', 'applying the changes in order leaves the row as it is now');
  cur = pages[pages.length - 1].cursor;

  t.step = 'a changed or foreign cursor is no cursor';
  const forged = `${cur.slice(0, -3)}${cur.slice(-3) === 'AAA' ? 'BBB' : 'AAA'}`;
  const pf = await pullPages(A, forged, 1000);
  t.ok(pf.every((p) => p.type === 'changes'), 'a pull with a changed cursor is answered with changes (not an error)', show(pf[pf.length - 1]));
  t.is(new Set(changesOf(pf).filter((c) => c.op === 'upsert').map((c) => c.pk.id)).size, 1100, 'a changed cursor is treated as no cursor: every row in scope is sent again');
  const mc = await pullPages(A, 'c1.made-up', 1000);
  t.ok(mc.every((p) => p.type === 'changes') && new Set(changesOf(mc).filter((c) => c.op === 'upsert').map((c) => c.pk.id)).size === 1100,
    'a made-up cursor: changes, every row in scope again', show(mc[mc.length - 1]));
  const cb = (await pullPages(B, null, 1000)).pop().cursor;
  const pa = await pullPages(A, cb, 1000);
  t.is(new Set(changesOf(pa).filter((c) => c.op === 'upsert').map((c) => c.pk.id)).size, 1100, 'another device\'s cursor: treated as no cursor (a fresh start)');
  cur = pa[pa.length - 1].cursor;

  t.step = 'resending a pull';
  psql(`UPDATE cf_pull SET amount = 9 WHERE id IN (3, 4); DELETE FROM cf_pull WHERE id = 5;`);
  const r1 = await pullPages(A, cur);
  const r2 = await pullPages(A, cur);
  const sig = (ps) => changesOf(ps).map((c) => `${c.op} ${c.pk.id} ${c.row ? c.row.amount : ''}`).sort();
  t.ok(sig(r1).length >= 3, 'the pull after changes brings them', show(sig(r1)));
  t.same(sig(r2), sig(r1), 'resending a pull with the same stored cursor sends the same changes again, removals included');
  cur = r2[r2.length - 1].cursor;

  t.step = 'scope: shapes and leaving rows';
  const S = await t.device(t.token(role, 'cf-pull-s'), 's');
  await S.request({ type: 'subscribe', table: 'cf_pull', filter: "region = 'north'" });
  let sp = await pullPages(S, null);
  t.ok(changesOf(sp).every((c) => c.row.region === 'north') && changesOf(sp).length === 550, 'only rows matching the shape are sent (550 north rows)', show(changesOf(sp).length));
  let sc = sp[sp.length - 1].cursor;
  psql(`UPDATE cf_pull SET region = 'south' WHERE id = 6; UPDATE cf_pull SET amount = 1 WHERE id = 7;`);
  sp = await pullPages(S, sc);
  t.same(changesOf(sp).map((c) => `${c.op} ${c.pk.id}`), ['delete 6'], 'a row that leaves the shape arrives as delete; a change outside the shape sends nothing');
  sc = sp[sp.length - 1].cursor;

  t.step = 'scope: row-level security and GRANTs';
  await S.request({ type: 'subscribe', table: 'cf_pull_rls' });
  sp = await pullPages(S, sc);
  const rls = changesOf(sp).filter((c) => c.table === 'public.cf_pull_rls');
  t.same(rls.map((c) => `${c.op} ${c.pk.id}`), ['upsert mine-1'], 'only rows the role may SELECT under row-level security');
  t.ok(!S.log.some((e) => e.raw && e.raw.includes('theirs-1')), 'nothing about rows outside the scope is sent, not even their keys');
  sc = sp[sp.length - 1].cursor;
  psql(`UPDATE cf_pull_rls SET owner = 'someone' WHERE id = 'mine-1'; UPDATE cf_pull_rls SET v = 3 WHERE id = 'theirs-1';`);
  sp = await pullPages(S, sc);
  t.same(changesOf(sp).map((c) => `${c.op} ${c.pk.id}`), ['delete mine-1'], 'a row the policy no longer admits arrives as delete');
  sc = sp[sp.length - 1].cursor;
  psql(`REVOKE SELECT ON cf_pull FROM ${role}; SELECT ofs.resnapshot_device('cf-pull-s');`);
  sp = await pullPages(S, sc);
  const gone = changesOf(sp).filter((c) => c.table === 'public.cf_pull');
  t.ok(gone.length === 549 && gone.every((c) => c.op === 'delete'), 'after the role lost SELECT (and a resnapshot), its rows of the table arrive as delete', show(gone.slice(0, 3)));
  psql(`GRANT SELECT ON cf_pull TO ${role}`);

  t.step = 'no echo of the device\'s own writes';
  psql(`CREATE TABLE cf_pull_echo (id text PRIMARY KEY, amount numeric(10,2), note text);
        GRANT SELECT, INSERT, UPDATE, DELETE ON cf_pull_echo TO ${role};
        SELECT ofs.sync_table('cf_pull_echo');`);
  const E = await t.device(t.token(role, 'cf-pull-e'), 'e');
  await E.request({ type: 'subscribe', table: 'cf_pull_echo' });
  let ec = (await pullPages(E, null)).pop().cursor;
  const pe = await E.request({ type: 'push', mutations: [
    { op_id: 'e1', table: 'public.cf_pull_echo', op: 'insert', pk: { id: 'same' }, data: { id: 'same', amount: '1.50', note: 'n' }, hlc: hlc() },
    { op_id: 'e2', table: 'public.cf_pull_echo', op: 'insert', pk: { id: 'norm' }, data: { id: 'norm', amount: '20.5', note: 'n' }, hlc: hlc() }] });
  t.same(statuses(pe), ['applied', 'applied'], 'two inserts applied');
  const ep = await pullPages(E, ec);
  const echo = changesOf(ep);
  t.ok(!echo.some((c) => c.pk.id === 'same'), 'a row left exactly as the device sent it is not sent back', show(echo));
  t.ok(echo.some((c) => c.pk.id === 'norm' && c.op === 'upsert' && c.row.amount === '20.50'), 'a row the origin normalised ("20.5" stored as "20.50") comes back', show(echo));
  ec = ep[ep.length - 1].cursor;
  psql(`UPDATE cf_pull_echo SET note = 'by origin' WHERE id = 'same'`);
  const ep2 = changesOf(await pullPages(E, ec));
  t.ok(ep2.some((c) => c.pk.id === 'same' && c.row.note === 'by origin'), 'a later change by anyone else brings the row', show(ep2));
  A.close(); B.close(); S.close(); E.close();
});
