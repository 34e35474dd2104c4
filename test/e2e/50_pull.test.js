'use strict';
// Pull: the first sync of 1,200 rows in pages of max_rows, following the
// cursor while `more` is true, ends with exactly the table; later changes
// (updates, deletes, inserts) arrive as upserts and key-only deletes;
// a lost page is sent again from the stored cursor; a max_rows above the
// limit is lowered;
// values are encoded as PROTOCOL.md says (numeric and NaN as strings,
// bigint exact, timestamptz in UTC, bytea as \x hex); after the feed is
// rebuilt, an old cursor still converges (resnapshot).
const { test, psql, psqlJSON, show, canon } = require('./lib');

const TABLE = 'public.e2e_pull_t';
const TYPES = 'public.e2e_pull_types';

test('pull', { timeout: 90 }, async (t) => {
  const role = t.role('e2e_pull_dev');
  psql(`CREATE TABLE e2e_pull_t (id int PRIMARY KEY, label text, amount numeric(12,2));
        INSERT INTO e2e_pull_t SELECT g, 'row ' || g, g * 1.01 FROM generate_series(1, 1200) g;
        CREATE TABLE e2e_pull_types (id int PRIMARY KEY, n numeric, i8 bigint, f8 double precision,
          f8nan double precision, f8inf double precision, b boolean, ts timestamptz, tsl timestamp,
          d date, tm time, "by" bytea, j jsonb, arr text[], u uuid, nul text, i2 smallint, r4 real);
        INSERT INTO e2e_pull_types VALUES (1, 12.50, 9007199254740993, 1.5, 'NaN', '-Infinity', true,
          '2026-12-02 11:00:00+01', '2026-12-02 10:00:00', '2026-12-02', '10:30:00', '\\x0102ff',
          '{"a": 1}', '{a,"b c"}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', NULL, -3, 0.5);
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT ON e2e_pull_t, e2e_pull_types TO ${role};
        SELECT ofs.sync_table('e2e_pull_t');
        SELECT ofs.sync_table('e2e_pull_types');`);
  const expected = () => psqlJSON(`SELECT coalesce(json_agg(json_build_object('id', id, 'label', label, 'amount', amount::text) ORDER BY id), '[]')
                                     FROM e2e_pull_t`);
  const state = (c) => c.rows(TABLE).map((r) => r.row).sort((x, y) => x.id - y.id);
  const diff = (got, want) => {
    const g = new Map(got.map((r) => [r && r.id, canon(r)]));
    const w = new Map(want.map((r) => [r.id, canon(r)]));
    const missing = [...w.keys()].filter((k) => !g.has(k));
    const extra = [...g.keys()].filter((k) => !w.has(k));
    const differ = [...w.keys()].filter((k) => g.has(k) && g.get(k) !== w.get(k));
    return `rows: ${got.length} (want ${want.length}); missing ${show(missing.slice(0, 20))}; extra ${show(extra.slice(0, 20))}; different ${show(differ.slice(0, 5).map((k) => [g.get(k), w.get(k)]))}`;
  };

  t.step = 'first sync in pages';
  const a = await t.device(t.token(role, 'e2e-pull-a'), 'a');
  await a.request({ type: 'subscribe', table: 'e2e_pull_t' });
  const pages = [];
  let cursor = null;
  for (let k = 0; k < 200; k++) {
    const p = await a.request({ type: 'pull', cursor, max_rows: 50 });
    pages.push(p);
    if (p.type !== 'changes') break;
    cursor = p.cursor;
    if (p.more !== true) break;
  }
  const last = pages[pages.length - 1];
  t.ok(pages.every((p) => p.type === 'changes'), 'every pull is answered with changes', show(pages.find((p) => p.type !== 'changes')));
  t.ok(pages.every((p) => Array.isArray(p.changes) && p.changes.length <= 50), 'no page holds more than max_rows changes',
    show(pages.map((p) => (p.changes || []).length)));
  t.ok(pages.every((p) => typeof p.cursor === 'string' && p.cursor.length > 0), 'every page carries a cursor string');
  t.ok(pages.slice(0, -1).every((p) => p.more === true) && last.more === false, 'more is true on every page but the last, false on the last',
    show(pages.map((p) => p.more)));
  t.ok(pages.length >= 24, `1,200 rows at 50 per page take at least 24 pages (took ${pages.length})`);
  const upserts = pages.reduce((s, p) => s + (p.changes || []).filter((c) => c.op === 'upsert').length, 0);
  t.diag(`first sync: ${pages.length} pages, ${upserts} upserts for 1200 rows`);
  t.ok(pages.flatMap((p) => p.changes || []).every((c) => c.table === TABLE && c.pk && typeof c.pk.id === 'number'),
    'every change names the table (schema-qualified) and the key as an object');
  const snaps = pages.filter((p) => p.snapshot);
  t.ok(snaps.length > 0 && snaps.every((p) => p.snapshot.table === TABLE && Number.isInteger(p.snapshot.rows_done) &&
      Number.isInteger(p.snapshot.rows_total) && p.snapshot.rows_done <= p.snapshot.rows_total),
    'the first sync reports snapshot progress (table, rows_done <= rows_total)', show(pages.slice(0, 3).map((p) => p.snapshot)));
  t.ok(snaps.every((p, k) => k === 0 || p.snapshot.rows_done >= snaps[k - 1].snapshot.rows_done), 'snapshot progress never goes back',
    show(snaps.map((p) => p.snapshot.rows_done)));
  let want = expected();
  t.ok(canon(state(a)) === canon(want), 'after the first sync the device holds exactly the table', () => diff(state(a), want));

  t.step = 'nothing new';
  const empty = await a.request({ type: 'pull', cursor, max_rows: 50 });
  t.ok(empty.type === 'changes' && Array.isArray(empty.changes) && empty.changes.length === 0 && empty.more === false && typeof empty.cursor === 'string',
    'a pull with nothing new: no changes, more false, a cursor', show(empty));
  cursor = empty.cursor;
  // Each part below goes on even when an earlier one failed.

  await t.section('later changes', async () => {
    psql(`UPDATE e2e_pull_t SET label = 'changed ' || id WHERE id IN (3, 600, 1200);
          DELETE FROM e2e_pull_t WHERE id IN (5, 700);
          INSERT INTO e2e_pull_t SELECT g, 'new ' || g, g FROM generate_series(1201, 1204) g;`);
    psql(`BEGIN; INSERT INTO e2e_pull_t VALUES (9999, 'rolled back', 1); ROLLBACK;`);
    psql(`UPDATE e2e_pull_t SET amount = 0.10 WHERE id = 3`);
    const later = await a.pullAll(2, { cursor });
    const changes = later.flatMap((p) => p.changes || []);
    want = expected();
    t.ok(canon(state(a)) === canon(want), 'after updates, deletes and inserts the device holds exactly the table', () => diff(state(a), want));
    const deletes = changes.filter((c) => c.op === 'delete');
    t.same(deletes.map((c) => c.pk.id).sort((x, y) => x - y), [5, 700], 'deleted rows arrive as deletes of their keys');
    t.ok(deletes.every((c) => c.row === undefined || c.row === null), 'a delete carries the key only', show(deletes));
    t.ok(later.every((p) => (p.changes || []).length <= 2), 'max_rows 2 is respected', show(later.map((p) => (p.changes || []).length)));
    t.ok(!changes.some((c) => c.pk && c.pk.id === 9999), 'a rolled-back insert never arrives');
    const row3 = changes.filter((c) => c.pk && c.pk.id === 3 && c.op === 'upsert').pop();
    t.same(row3 && row3.row, { id: 3, label: 'changed 3', amount: '0.10' }, 'an upsert carries the whole row as it is now');
    cursor = a.cursor;
  });
  await t.section('a lost page is sent again', async () => {
    // The device stores a cursor with the page it applies; a crash before
    // storing loses the page, and the device pulls again from its stored cursor.
    psql(`UPDATE e2e_pull_t SET label = 'again ' || id WHERE id IN (3, 1201);
          DELETE FROM e2e_pull_t WHERE id IN (6, 701);
          INSERT INTO e2e_pull_t VALUES (1205, 'new 1205', 1205);`);
    const stored = a.cursor;
    const lost = await a.request({ type: 'pull', cursor: stored, max_rows: 1000 });
    const lostKeys = (lost.changes || []).map((c) => c.pk && c.pk.id).sort((x, y) => x - y);
    t.same(lostKeys, [3, 6, 701, 1201, 1205], 'the page the device loses holds the changes', show(lost, 400));
    const again = await a.pullAll(1000, { cursor: stored });
    const changes = again.flatMap((p) => p.changes || []);
    const missed = [3, 6, 701, 1201, 1205].filter((k) => !changes.some((c) => c.pk && c.pk.id === k));
    t.ok(missed.length === 0, 'pulling again from the stored cursor sends them again (updates, deletes, inserts)',
      `not sent again: ${show(missed)}`);
    t.same(changes.filter((c) => c.op === 'delete').map((c) => c.pk.id).sort((x, y) => x - y), [6, 701],
      'the removals are among them');
    want = expected();
    t.ok(canon(state(a)) === canon(want), 'the device equals the table', () => diff(state(a), want));
  });
  await t.section('max_rows above the limit', async () => {
    const b = await t.device(t.token(role, 'e2e-pull-b'), 'b');
    await b.request({ type: 'subscribe', table: 'e2e_pull_t' });
    const limit = (b.welcome.limits || {}).max_rows;
    want = expected();
    const big = await b.request({ type: 'pull', cursor: null, max_rows: 100000 });
    t.ok(big.type === 'changes' && Number.isInteger(limit) && big.changes.length <= limit, `a max_rows of 100000 is lowered to the limit (${limit})`,
      `changes: ${(big.changes || []).length}`);
    if (Number.isInteger(limit) && limit < want.length) t.is(big.more, true, 'a lowered page says there is more');
    await b.pullAll(undefined, { cursor: big.cursor });
    t.ok(canon(state(b)) === canon(want), 'a device pulling without max_rows converges too', () => diff(state(b), want));
  });
  await t.section('value encoding', async () => {
    const c = await t.device(t.token(role, 'e2e-pull-c'), 'c');
    await c.request({ type: 'subscribe', table: 'e2e_pull_types' });
    await c.pullAll(100, { cursor: null });
    const r = (c.rows(TYPES)[0] || {}).row || {};
    const enc = [
      ['n', '12.50', 'numeric as exact decimal text'],
      ['i8', 9007199254740993n, 'bigint beyond 2^53 as an exact JSON number'],
      ['f8', 1.5, 'double precision as a number'],
      ['f8nan', 'NaN', 'double NaN as the string "NaN"'],
      ['f8inf', '-Infinity', 'double -Infinity as the string "-Infinity"'],
      ['b', true, 'boolean as true/false'],
      ['ts', '2026-12-02T10:00:00+00:00', 'timestamptz as ISO 8601 in UTC'],
      ['tsl', '2026-12-02T10:00:00', 'timestamp as ISO 8601'],
      ['d', '2026-12-02', 'date as ISO 8601'],
      ['tm', '10:30:00', 'time as ISO 8601'],
      ['by', '\\x0102ff', 'bytea as \\x and hex digits'],
      ['j', '{"a": 1}', 'jsonb as its text'],
      ['arr', '{a,"b c"}', 'an array as its text'],
      ['u', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'uuid as its text'],
      ['nul', null, 'NULL as null'],
      ['i2', -3, 'smallint as a number'],
      ['r4', 0.5, 'real as a number'],
    ];
    for (const [col, v, name] of enc) {
      t.ok(col in r && canon(r[col]) === canon(v) && typeof r[col] === typeof v, `encoding: ${name}`, `expected ${show(v)}, got ${show(r[col])} in ${show(r)}`);
    }
  });
  await t.section('resnapshot after the feed is rebuilt', async () => {
    const old = a.cursor;
    psql(`SELECT ofs.rebuild_feed()`);
    psql(`DELETE FROM e2e_pull_t WHERE id IN (10, 11);
          UPDATE e2e_pull_t SET label = 'after rebuild' WHERE id = 12;`);
    const resnap = await a.pullAll(500, { cursor: old });
    want = expected();
    t.ok(resnap.every((p) => p.type === 'changes'), 'a cursor of another feed is still answered with changes');
    t.ok(canon(state(a)) === canon(want), 'after a resnapshot the device holds exactly the table, rows deleted meanwhile removed',
      () => diff(state(a), want));
  });

  a.close();
});
