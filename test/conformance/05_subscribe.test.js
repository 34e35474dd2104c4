'use strict';
// PROTOCOL.md "subscribe and unsubscribe" and "Filter grammar": table names
// (schema-qualified or found in public), not_found for tables not synced or
// not readable, the normalized filter, unsubscribe by the filter as sent or
// as normalized, several shapes on one table, what the next pull sends after
// a change; every production of the grammar accepted, constructs outside it
// refused with 42601, unknown columns 42703, literals a column's type cannot
// take (22P02, 22007, 22008, 42883), 4096 bytes (54000 beyond); a refused
// filter leaves the subscriptions as they were.
const { test, psql, show, pullPages, changesOf, expectKept } = require('./common');

test('conformance: subscribe and filters', { timeout: 90 }, async (t) => {
  const role = t.role('e2e_cf_sub_dev');
  psql(`CREATE SCHEMA cf_sub_s;
        CREATE TABLE cf_sub (id int PRIMARY KEY, jurisdiction text, rate numeric, qty int, note text,
          active boolean, created_at timestamptz, day date, doc json, "Mixed Col" int);
        INSERT INTO cf_sub VALUES
          (1, 'CA', 5, 10, NULL, true, '2026-03-01', '2026-03-01', '{}', 1),
          (2, 'NV', 7, 20, 'n', false, '2025-03-01', '2025-03-01', '{}', 2),
          (3, 'OR', 1, 30, NULL, true, '2026-06-01', '2026-06-01', '{}', 3);
        CREATE TABLE cf_sub_s.t (id int PRIMARY KEY);
        CREATE TABLE cf_sub_unsynced (id int PRIMARY KEY);
        CREATE TABLE cf_sub_unreadable (id int PRIMARY KEY);
        GRANT USAGE ON SCHEMA public, cf_sub_s TO ${role};
        GRANT SELECT ON cf_sub, cf_sub_s.t, cf_sub_unsynced TO ${role};
        SELECT ofs.sync_table('cf_sub');
        SELECT ofs.sync_table('cf_sub_s.t');
        SELECT ofs.sync_table('cf_sub_unreadable');`);
  const A = await t.device(t.token(role, 'cf-sub'), 'a');
  const shapes = () => psql(`SELECT count(*) FROM ofs.subscriptions WHERE device = 'cf-sub'`);

  t.step = 'table names';
  const s1 = await A.request({ type: 'subscribe', id: 's1', table: 'cf_sub', filter: "jurisdiction = 'CA'" });
  t.answer(s1, 'subscribed', 'subscribe is answered with subscribed');
  t.is(s1.id, 's1', 'subscribed carries the id');
  t.is(s1.table, 'public.cf_sub', 'a table found on the search path public is answered schema-qualified');
  t.ok(typeof s1.filter === 'string' && /jurisdiction/.test(s1.filter) && /'CA'/.test(s1.filter), 'subscribed.filter is the normalized filter (a string naming the column and literal)', show(s1));
  const s2 = await A.request({ type: 'subscribe', table: 'cf_sub_s.t' });
  t.answer(s2, 'subscribed', 'a schema-qualified table of another schema', (m) => m.table === 'cf_sub_s.t');
  const nf = [['t', 'a table of another schema, unqualified (not on the search path public)'],
    ['cf_sub_unsynced', 'a readable table that is not synced'], ['cf_sub_unreadable', 'a synced table the role may not read'],
    ['cf_sub_nosuch', 'a table that does not exist']];
  for (const [tb, label] of nf) {
    const e = await A.request({ type: 'subscribe', table: tb });
    t.error(e, 'not_found', `${label}: error not_found`);
  }
  await expectKept(t, A, 'not_found');
  const u2 = await A.request({ type: 'unsubscribe', id: 'u2', table: 'cf_sub_s.t' });
  t.answer(u2, 'unsubscribed', 'unsubscribe is answered with unsubscribed', (m) => m.id === 'u2');

  t.step = 'unsubscribe by the filter as sent, or as normalized';
  const u1 = await A.request({ type: 'unsubscribe', table: 'cf_sub', filter: "jurisdiction = 'CA'" });
  t.answer(u1, 'unsubscribed', 'unsubscribe with the filter as sent');
  t.is(shapes(), '0', 'the shape is gone');
  const s3 = await A.request({ type: 'subscribe', table: 'public.cf_sub', filter: "jurisdiction = 'CA'" });
  const u3 = await A.request({ type: 'unsubscribe', table: 'public.cf_sub', filter: s3.filter });
  t.answer(u3, 'unsubscribed', 'unsubscribe with the filter as normalized');
  t.is(shapes(), '0', 'that shape is gone too');
  const s4 = await A.request({ type: 'subscribe', table: 'cf_sub', filter: s3.filter });
  t.is(s4.filter, s3.filter, 'a normalized filter normalizes to itself');
  await A.request({ type: 'unsubscribe', table: 'cf_sub', filter: s3.filter });

  t.step = 'the grammar: accepted';
  const accepted = [
    "jurisdiction = 'CA'", 'rate <> 5', 'rate != 5', 'rate < 5', 'rate <= 5', 'rate > 5', 'rate >= 5',
    '5 < rate', "'CA' = jurisdiction", "jurisdiction IN ('CA', 'NV')", "jurisdiction NOT IN ('CA')", 'qty IN (10)',
    'note IS NULL', 'note IS NOT NULL', "(jurisdiction = 'CA')", "jurisdiction = 'CA' AND rate > 1",
    "jurisdiction = 'CA' OR rate > 1", "(jurisdiction = 'CA' OR jurisdiction = 'NV') AND (qty > 1 OR note IS NULL)",
    'active = TRUE', 'active = FALSE', '"Mixed Col" = 1', 'rate = 1.5', 'qty = 99999999999', "created_at > '2026-01-01'",
    "day = '2026-03-01'", 'JURISDICTION = \'CA\'', "jurisdiction = 'it''s'",
  ];
  for (const f of accepted) {
    const r = await A.request({ type: 'subscribe', table: 'cf_sub', filter: f });
    if (t.answer(r, 'subscribed', `accepted: ${f}`)) await A.request({ type: 'unsubscribe', table: 'cf_sub', filter: r.filter });
  }
  t.is(shapes(), '0', 'every accepted filter was unsubscribed again');

  t.step = 'the grammar: refused';
  const refused = [
    ['42601', "lower(jurisdiction) = 'ca'", 'a function call'],
    ['42601', "jurisdiction LIKE 'C%'", 'LIKE'],
    ['42601', 'rate = qty', 'a column compared with a column'],
    ['42601', '1 = 1', 'a literal compared with a literal'],
    ['42601', 'rate + 1 > 2', 'arithmetic'],
    ['42601', "jurisdiction = 'CA'::text", 'a cast'],
    ['42601', 'CAST(rate AS int) = 1', 'CAST'],
    ['42601', 'NOT (rate > 1)', 'NOT'],
    ['42601', 'rate BETWEEN 1 AND 2', 'BETWEEN'],
    ['42601', "jurisdiction = (SELECT 'CA')", 'a subquery'],
    ['42601', 'qty IN (SELECT 1)', 'IN a subquery'],
    ['42601', 'rate = NULL', 'NULL as a literal'],
    ['42601', 'active IS TRUE', 'IS TRUE'],
    ['42601', "jurisdiction IN (note)", 'a column in an IN list'],
    ['42601', "jurisdiction = 'CA'; DELETE FROM cf_sub", 'two statements'],
    ['42601', 'qty = ANY(\'{1}\')', 'ANY'],
    ['42601', 'qty = $1', 'a parameter'],
    ['42601', 'qty', 'a bare column'],
    ['42601', "jurisdiction = 'CA' AND", 'a syntax error'],
    ['42703', 'nosuch = 1', 'an unknown column'],
    ['42703', '"mixed col" = 1', 'a quoted name in the wrong case'],
    ['22P02', "qty = 'abc'", "a text literal for an integer column"],
    ['22P02', "rate = 'x'", "a text literal for a numeric column"],
    ['22007', "day = 'notadate'", 'a malformed date'],
    ['22008', "day = '2026-02-30'", 'a date out of range'],
    ['42883', "doc = '{}'", 'a type without the operator (json has no =)'],
  ];
  for (const [state, f, label] of refused) {
    const e = await A.request({ type: 'subscribe', table: 'cf_sub', filter: f });
    t.error(e, 'invalid_filter', `refused (${label}): ${f} -> invalid_filter, sqlstate ${state}`, { sqlstate: state });
  }
  t.is(shapes(), '0', 'a refused filter changes no subscription');

  t.step = 'a refused filter leaves the subscription as it was';
  await A.request({ type: 'subscribe', table: 'cf_sub', filter: "jurisdiction = 'NV'" });
  const before = psql(`SELECT string_agg(filter, ';') FROM ofs.subscriptions WHERE device = 'cf-sub'`);
  await A.request({ type: 'subscribe', table: 'cf_sub', filter: 'lower(note) = 1' });
  t.is(psql(`SELECT string_agg(filter, ';') FROM ofs.subscriptions WHERE device = 'cf-sub'`), before, 'the existing shape is unchanged after a refused filter');
  await A.request({ type: 'unsubscribe', table: 'cf_sub', filter: "jurisdiction = 'NV'" });

  t.step = '4096 bytes';
  const pad = (n) => `note = '${'x'.repeat(n - "note = ''".length)}'`;
  const f4096 = pad(4096);
  const f4097 = pad(4097);
  t.ok(Buffer.byteLength(f4096) === 4096 && Buffer.byteLength(f4097) === 4097, 'the test filters have 4096 and 4097 bytes');
  const r4096 = await A.request({ type: 'subscribe', table: 'cf_sub', filter: f4096 });
  t.answer(r4096, 'subscribed', 'a filter of exactly 4096 bytes is accepted');
  if (r4096.type === 'subscribed') await A.request({ type: 'unsubscribe', table: 'cf_sub', filter: r4096.filter });
  const r4097 = await A.request({ type: 'subscribe', table: 'cf_sub', filter: f4097 });
  t.error(r4097, 'invalid_filter', 'a filter of 4097 bytes: invalid_filter, sqlstate 54000', { sqlstate: '54000' });
  const multi = `note = '${'é'.repeat(2044)}'`; // 9 + 4088 = 4097 bytes in 2053 characters
  t.is(Buffer.byteLength(multi), 4097, 'a filter of 2053 characters and 4097 bytes');
  const rm = await A.request({ type: 'subscribe', table: 'cf_sub', filter: multi });
  t.error(rm, 'invalid_filter', 'the limit counts bytes, not characters: 4097 bytes refused (54000)', { sqlstate: '54000' });

  t.step = 'what the filters select';
  const sel = async (f) => {
    const r = await A.request({ type: 'subscribe', table: 'cf_sub', filter: f });
    const pages = await pullPages(A, null);
    await A.request({ type: 'unsubscribe', table: 'cf_sub', filter: r.filter });
    return changesOf(pages).filter((c) => c.op === 'upsert').map((c) => c.pk.id).sort();
  };
  // Another device each time would cost a connection; the pull with no
  // cursor starts afresh, so each pull shows exactly the current scope.
  t.same(await sel("jurisdiction IN ('CA', 'NV')"), [1, 2], "jurisdiction IN ('CA', 'NV') selects rows 1 and 2");
  t.same(await sel('note IS NULL'), [1, 3], 'note IS NULL selects rows 1 and 3');
  t.same(await sel('qty = 99999999999'), [], 'qty = 99999999999 on an integer column matches nothing');
  t.same(await sel("created_at > '2026-01-01'"), [1, 3], "created_at > '2026-01-01' compares as timestamptz");
  t.same(await sel("5 <= rate AND (jurisdiction = 'CA' OR active = FALSE)"), [1, 2], 'AND, OR and parentheses combine as in SQL');
  t.same(await sel("jurisdiction NOT IN ('CA', 'OR')"), [2], 'NOT IN');

  t.step = 'several shapes on one table; the next pull after a change';
  const B = await t.device(t.token(role, 'cf-sub-b'), 'b');
  await B.request({ type: 'subscribe', table: 'cf_sub', filter: "jurisdiction = 'CA'" });
  let pages = await pullPages(B, null);
  t.same(changesOf(pages).map((c) => `${c.op} ${c.pk.id}`), ['upsert 1'], 'one shape: its rows');
  let cur = pages[pages.length - 1].cursor;
  await B.request({ type: 'subscribe', table: 'cf_sub', filter: "jurisdiction = 'NV'" });
  pages = await pullPages(B, cur);
  t.same(changesOf(pages).filter((c) => c.op === 'upsert').map((c) => c.pk.id).sort(), [1, 2],
    'a second shape on the table: the next pull sends that table\'s rows in the new scope (the union of the shapes)');
  t.ok(!changesOf(pages).some((c) => c.op === 'delete'), 'and removes nothing that is still in scope', show(changesOf(pages)));
  cur = pages[pages.length - 1].cursor;
  await B.request({ type: 'unsubscribe', table: 'cf_sub', filter: "jurisdiction = 'CA'" });
  pages = await pullPages(B, cur);
  t.same(changesOf(pages).filter((c) => c.op === 'delete').map((c) => c.pk.id), [1], 'a dropped shape: the next pull removes the rows that left the scope, and only those');
  t.same(changesOf(pages).filter((c) => c.op === 'upsert').map((c) => c.pk.id), [2], '... and sends the table\'s rows in the new scope');
  A.close();
  B.close();
});
