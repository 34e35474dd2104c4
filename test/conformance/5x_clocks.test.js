'use strict';
// PROTOCOL.md "Clocks" (being implemented): hlc in welcome, pushed and every
// changes message, at least the version of every value the message carries;
// ofs.max_clock_skew defaults to 1 s; a mutation stamped further ahead is
// stamped with the origin's clock instead and the device recorded in
// ofs.devices (clock_ahead, clock_ahead_at); a device that stamps
// max(wall, clock + 1) after seeing a value wins over it.
const { test, psql, psqlAsync, show, big, isInt, setting, statuses, pullPages } = require('./common');

const TWO53 = 2n ** 53n;

test('conformance: clocks', { timeout: 60 }, async (t) => {
  const role = t.role('e2e_cf_clk_dev');
  psql(`CREATE TABLE cf_clk (id text PRIMARY KEY, v text);
        INSERT INTO cf_clk VALUES ('o1', 'origin');
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT, INSERT, UPDATE, DELETE ON cf_clk TO ${role};
        SELECT ofs.sync_table('cf_clk');`);
  const version = (id) => big(psql(`SELECT hlc FROM ofs.changes(NULL, 100000) WHERE table_name = 'public.cf_clk' AND pk = '{"id": "${id}"}' ORDER BY cursor DESC LIMIT 1`));

  t.step = 'ofs.max_clock_skew';
  const sk = setting('ofs.max_clock_skew');
  t.ok(sk !== null && sk.value === 1000, 'ofs.max_clock_skew defaults to 1 s', show(sk));

  t.step = 'welcome.hlc';
  const before = big(psql('SELECT ofs.hlc_now()'));
  const A = await t.device(t.token(role, 'cf-clk'), 'a');
  const w = A.welcome;
  t.ok(isInt(w.hlc), 'welcome.hlc is an integer number', show(w.hlc));
  t.ok(isInt(w.hlc) && big(w.hlc) > TWO53, 'welcome.hlc is a 64-bit integer above 2^53', show(w.hlc));
  t.ok(isInt(w.hlc) && big(w.hlc) >= before, 'welcome.hlc is not behind a clock value the origin issued before the hello', `${before} vs ${show(w.hlc)}`);
  const ms = isInt(w.hlc) ? Number(big(w.hlc) >> 16n) : 0;
  t.ok(Math.abs(ms - Date.now()) < 3600 * 1000, 'welcome.hlc >> 16 is Unix time in milliseconds', `${ms} vs ${Date.now()}`);

  t.step = 'changes.hlc';
  await A.request({ type: 'subscribe', table: 'cf_clk' });
  const p = await A.request({ type: 'pull', cursor: null });
  t.ok(isInt(p.hlc), 'a changes answer carries hlc, an integer', show(p.hlc));
  t.ok(isInt(p.hlc) && big(p.hlc) >= version('o1'), 'changes.hlc is at least the version of the values it carries', `${show(p.hlc)} vs ${version('o1')}`);
  let cur = p.cursor;

  t.step = 'pushed.hlc; a clock within the bound is kept';
  const hNear = (BigInt(Date.now() + 500) << 16n);
  const r1 = await A.request({ type: 'push', mutations: [{ op_id: 'n1', table: 'public.cf_clk', op: 'insert', pk: { id: 'd1' }, data: { id: 'd1', v: 'near' }, hlc: hNear }] });
  t.same(statuses(r1), ['applied'], 'a mutation 0.5 s ahead is applied');
  t.ok(isInt(r1.hlc), 'pushed carries hlc, an integer', show(r1.hlc));
  t.is(version('d1'), hNear, 'a clock ahead by less than ofs.max_clock_skew is kept as stamped');
  t.ok(isInt(r1.hlc) && big(r1.hlc) >= hNear, 'pushed.hlc (the origin\'s clock after the batch) is at least the version it wrote', `${show(r1.hlc)} vs ${hNear}`);

  t.step = 'a clock far ahead';
  const hFar = (BigInt(Date.now() + 3600 * 1000) << 16n);
  const r2 = await A.request({ type: 'push', mutations: [{ op_id: 'f1', table: 'public.cf_clk', op: 'insert', pk: { id: 'd2' }, data: { id: 'd2', v: 'far' }, hlc: hFar }] });
  t.same(statuses(r2), ['applied'], 'a mutation stamped an hour ahead is applied');
  const v2 = version('d2');
  t.ok(v2 < hFar, 'it is stamped with the origin\'s clock instead of its own', `${v2} vs ${hFar}`);
  t.ok(isInt(r2.hlc) && big(r2.hlc) < hFar - (1000n << 16n), 'the origin\'s clock did not move to the device\'s (pushed.hlc)', show(r2.hlc));
  t.ok(v2 > hNear, 'the stamped version still orders after what the origin had seen', `${v2} vs ${hNear}`);
  const dev = psql(`SELECT (clock_ahead IS NOT NULL)::text || ' ' || (clock_ahead_at IS NOT NULL)::text FROM ofs.devices WHERE device = 'cf-clk'`);
  t.is(dev, 'true true', 'the device is recorded in ofs.devices (clock_ahead, clock_ahead_at)');
  const other = psql(`SELECT count(*) FROM ofs.devices WHERE device <> 'cf-clk' AND device LIKE 'cf-clk%' AND clock_ahead IS NOT NULL`);
  t.is(other, '0', 'no other device is recorded');

  t.step = 'an edit made after seeing a value wins';
  await psqlAsync(`UPDATE cf_clk SET v = 'origin later' WHERE id = 'o1'`);
  const pages = await pullPages(A, cur);
  const last = pages[pages.length - 1];
  t.ok(pages.every((x) => isInt(x.hlc)), 'every changes page carries hlc', show(pages.map((x) => x.hlc)));
  const seen = isInt(last.hlc) ? big(last.hlc) : version('o1');
  t.ok(seen >= version('o1'), 'changes.hlc is at least the version of the origin\'s new value');
  // A device whose wall clock is far behind stamps max(wall, clock + 1).
  const stamp = seen + 1n;
  const r3 = await A.request({ type: 'push', mutations: [{ op_id: 'w1', table: 'public.cf_clk', op: 'update', pk: { id: 'o1' }, data: { v: 'device after seeing' }, hlc: stamp }] });
  t.same(statuses(r3), ['applied'], 'the update stamped clock + 1 is applied');
  t.is(psql(`SELECT v FROM cf_clk WHERE id = 'o1'`), 'device after seeing', 'and wins over the value it had seen');
  cur = last.cursor;

  t.step = 'live changes carry hlc';
  await A.request({ type: 'live', cursor: cur });
  await psqlAsync(`UPDATE cf_clk SET v = 'live' WHERE id = 'd1'`);
  const m = await A.next('changes', 10000);
  t.ok(m && isInt(m.hlc) && big(m.hlc) >= version('d1'), 'a live changes message carries hlc, at least the version of its values', show(m));
  A.close();
});
