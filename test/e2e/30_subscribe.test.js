'use strict';
// Shape subscriptions.  Each filter of the grammar (comparisons both ways
// round, IN and NOT IN, IS [NOT] NULL, AND, OR, parentheses, string, number
// and boolean literals, quoted names) is accepted, normalized idempotently,
// and selects exactly the rows PostgreSQL selects with the same WHERE clause.
// Filters outside the grammar (function calls, subqueries, unknown columns,
// injections, casts, operators, literals invalid for the column) are refused
// with invalid_filter and leave the subscriptions as they were.
const { test, psql, psqlJSON, show } = require('./lib');

const TABLE = 'public.e2e_sub_t';

const VALID = [
  "region = 'north'",
  'qty > 5',
  'qty >= 5',
  'qty < 3',
  'qty <= 3',
  'qty <> 4',
  'qty != 4',
  'qty = 99999999999',
  '5 < qty',
  "'south' = region",
  "region IN ('north', 'east')",
  "region NOT IN ('north', 'south')",
  'qty IN (1, 2, 3)',
  'note IS NULL',
  'note IS NOT NULL',
  "region = 'north' AND qty > 2",
  "region = 'south' OR active = TRUE",
  'active = FALSE',
  "(region = 'north' OR region = 'east') AND (qty >= 2 OR note IS NULL)",
  "region = 'north' AND (qty > 6 OR (qty < 2 AND note IS NOT NULL))",
  'price >= 10.5',
  "price = '12.50'",
  '"Mixed Case" = \'x\'',
  "name = 'O''Brien'",
  "region = 'a'' OR ''1''=''1'",
  'REGION = \'west\'',
  "seen_at > '2026-01-20'",
  "seen_at <= '2026-01-10 12:00:00+00'",
];

// Refused filters: [filter, the SQLSTATEs PROTOCOL.md allows for it, what
// the message must name (a regexp) or null].
const GRAMMAR = ['42601'];
const COLUMN = ['42703'];
const LITERAL = ['22P02', '22003', '22007', '42883'];
const LIMIT = ['54000'];
const REFUSED = [
  ["lower(region) = 'north'", GRAMMAR, /lower|function/i],
  ['id IN (SELECT id FROM e2e_sub_t)', GRAMMAR, /select|subquer|sublink/i],
  ['EXISTS (SELECT 1)', GRAMMAR, null],
  ['(SELECT 1) = qty', GRAMMAR, null],
  ['pg_sleep(5) IS NULL', GRAMMAR, /pg_sleep|function/i],
  ['nosuch = 1', COLUMN, /nosuch/],
  ['"nosuch" IS NULL', COLUMN, /nosuch/],
  ['"QTY" = 1', COLUMN, /QTY/],
  ['qty = 1; DROP TABLE e2e_sub_canary', GRAMMAR, null],
  ["qty = 1); DROP TABLE e2e_sub_canary; --", GRAMMAR, null],
  ["region = 'x'; SELECT pg_sleep(5)", GRAMMAR, null],
  ['qty = 1 UNION SELECT 1', GRAMMAR, null],
  ["region = 'x' OR 1 = 1", GRAMMAR, null],
  ['qty = qty', GRAMMAR, null],
  ['qty + 1 = 2', GRAMMAR, null],
  ["qty::text = '1'", GRAMMAR, /cast|::|type/i],
  ["CAST(qty AS text) = '1'", GRAMMAR, /cast|type/i],
  ["region = 'north'::text", GRAMMAR, /cast|::|type/i],
  ["qty = 'abc'", LITERAL, /abc|integer|invalid/i],
  ["price = 'twelve'", LITERAL, /twelve|numeric|invalid/i],
  ["active = 'maybe'", LITERAL, /maybe|boolean|invalid/i],
  ["seen_at > 'yesterdayish'", LITERAL, /yesterdayish|timestamp|invalid/i],
  ["region LIKE 'n%'", GRAMMAR, null],
  ['qty BETWEEN 1 AND 3', GRAMMAR, null],
  ['NOT (qty = 1)', GRAMMAR, null],
  ["region = 'a' COLLATE \"C\"", GRAMMAR, null],
  ['qty = $1', GRAMMAR, null],
  ['qty IS TRUE', GRAMMAR, null],
  ['qty IN (SELECT 1)', GRAMMAR, null],
  ['e2e_sub_t', [...GRAMMAR, ...COLUMN], null],
  ['TRUE', GRAMMAR, null],
  ["region = ANY (ARRAY['north'])", GRAMMAR, null],
  ['qty > ALL (SELECT 1)', GRAMMAR, null],
  ['current_user = region', GRAMMAR, null],
  ['ROW(qty, id) = ROW(1, 2)', GRAMMAR, null],
  // Over the limits: 300 comparisons in 3,900 bytes (more than 256 terms),
  // and a literal that makes the filter longer than 4096 bytes.
  [`${Array.from({ length: 300 }, (_, i) => `qty = ${i}`).join(' OR ')}`, LIMIT, null],
  [`region = '${'z'.repeat(5000)}'`, LIMIT, null],
];

test('subscribe', { timeout: 90 }, async (t) => {
  const role = t.role('e2e_sub_dev');
  psql(`CREATE TABLE e2e_sub_t (id int PRIMARY KEY, name text, region text, qty int,
          price numeric(10,2), active boolean, note text, "Mixed Case" text, seen_at timestamptz);
        INSERT INTO e2e_sub_t
          SELECT g, CASE WHEN g = 7 THEN 'O''Brien' ELSE 'n' || g END,
                 (ARRAY['north', 'south', 'east', 'west', NULL])[g % 5 + 1], g % 9,
                 (g * 1.25)::numeric(10,2), g % 3 = 0,
                 CASE WHEN g % 4 = 0 THEN NULL ELSE 'note ' || g END,
                 CASE WHEN g % 6 = 0 THEN 'x' ELSE 'y' END,
                 timestamptz '2026-01-01 00:00:00+00' + g * interval '1 day'
            FROM generate_series(1, 40) g;
        CREATE TABLE e2e_sub_canary (id int PRIMARY KEY);
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT ON e2e_sub_t TO ${role};
        SELECT ofs.sync_table('e2e_sub_t');`);
  const expectIds = (filter) => psqlJSON(`SELECT coalesce(json_agg(id ORDER BY id), '[]') FROM e2e_sub_t WHERE ${filter}`);
  const ids = (c) => c.rows(TABLE).map((r) => r.pk.id).sort((x, y) => x - y);

  // Valid filters, one fresh device each so its rows come from that filter alone.
  for (let i = 0; i < VALID.length; i++) {
    const f = VALID[i];
    t.step = `valid filter ${f}`;
    const d = await t.device(t.token(role, `e2e-sub-v${i}`), `v${i}`);
    const s = await d.request({ type: 'subscribe', table: 'e2e_sub_t', filter: f });
    if (!t.answer(s, 'subscribed', `filter accepted: ${f}`, (m) => m.table === TABLE && typeof m.filter === 'string' && m.filter.length > 0)) {
      d.close();
      continue;
    }
    await d.pullAll(1000, { cursor: null });
    t.same(ids(d), expectIds(f), `filter selects the rows PostgreSQL selects: ${f}`);
    const again = await d.request({ type: 'subscribe', table: 'e2e_sub_t', filter: s.filter });
    t.ok(again.type === 'subscribed' && again.filter === s.filter, `normalized filter is accepted and stays the same: ${s.filter}`,
      () => `first: ${show(s)}\nagain: ${show(again)}`);
    const u = await d.request({ type: 'unsubscribe', table: TABLE, filter: s.filter });
    t.answer(u, 'unsubscribed', `unsubscribe with the normalized filter: ${s.filter}`);
    d.close();
  }

  t.step = 'subscriptions survive a reconnect';
  const ptoken = t.token(role, 'e2e-sub-persist');
  const p1 = await t.device(ptoken, 'persist-1');
  const ps = await p1.request({ type: 'subscribe', table: 'public.e2e_sub_t', filter: "region = 'north'" });
  const ps2 = await p1.request({ type: 'subscribe', table: 'e2e_sub_t', filter: "region = 'east'" });
  p1.close();
  await p1.waitClose(5000);
  const p2 = await t.device(ptoken, 'persist-2');
  const norm = (list) => (Array.isArray(list) ? list : []).map((x) => `${x.table} | ${x.filter}`).sort();
  t.same(norm(p2.welcome.subscriptions), norm([ps, ps2]), 'welcome lists the device\'s subscriptions with their normalized filters');
  await p2.pullAll(1000, { cursor: null });
  t.same(ids(p2), expectIds("region IN ('north', 'east')"), 'two shapes on one table: the device receives the rows of either');
  p2.close();

  t.step = 'hello with subscriptions';
  const htoken = t.token(role, 'e2e-sub-hello');
  const h1 = await t.device(htoken, 'hello-1', { subscriptions: [{ table: 'e2e_sub_t', filter: 'qty > 5' }, { table: 'e2e_sub_t', filter: "region = 'west'" }] });
  const hs = h1.welcome.subscriptions;
  t.ok(Array.isArray(hs) && hs.length === 2 && hs.every((x) => x.table === TABLE && typeof x.filter === 'string'),
    'hello with subscriptions: welcome lists them, schema-qualified and normalized', show(hs));
  await h1.pullAll(1000, { cursor: null });
  t.same(ids(h1), expectIds("qty > 5 OR region = 'west'"), 'hello with subscriptions: the rows of those shapes');
  h1.close();
  await h1.waitClose(5000);
  const h2 = await t.device(htoken, 'hello-2', { subscriptions: [{ table: 'e2e_sub_t', filter: 'qty = 1' }] });
  t.ok(Array.isArray(h2.welcome.subscriptions) && h2.welcome.subscriptions.length === 1,
    'hello with subscriptions replaces the list exactly', show(h2.welcome.subscriptions));
  h2.close();
  await h2.waitClose(5000);
  const h3 = await t.device(htoken, 'hello-3', { subscriptions: [] });
  t.same(h3.welcome.subscriptions, [], 'hello with an empty list drops every subscription');
  h3.close();

  t.step = 'refused filters';
  const rtoken = t.token(role, 'e2e-sub-refused');
  // Uncompressed, so that the long filters test the limits, not compression.
  const r = await t.device(rtoken, 'refused', {}, { deflate: false });
  const base = await r.request({ type: 'subscribe', table: 'e2e_sub_t', filter: "region = 'north'" });
  t.answer(base, 'subscribed', 'the device starts with one shape');
  const countBefore = psql('SELECT count(*) FROM e2e_sub_t');
  for (const [f, states, names] of REFUSED) {
    t.step = `refused filter ${f.slice(0, 80)}`;
    const label = f.length > 80 ? `${f.slice(0, 60)}... (${f.length} chars)` : f;
    const e = await r.request({ type: 'subscribe', table: 'e2e_sub_t', filter: f });
    t.error(e, 'invalid_filter', `filter refused with invalid_filter, sqlstate ${states.join(' or ')}: ${label}`, { sqlstate: states });
    if (names && e.type === 'error') t.match(e.message, names, `the refusal names what is not allowed: ${label}`);
  }
  t.step = 'after the refusals';
  t.is(psql("SELECT to_regclass('e2e_sub_canary') IS NOT NULL AND to_regclass('e2e_sub_t') IS NOT NULL"), 't',
    'no filter text was executed: the tables are still there');
  t.is(psql('SELECT count(*) FROM e2e_sub_t'), countBefore, 'no filter text changed any row');
  const after = await r.request({ type: 'schema' });
  t.answer(after, 'schema', 'the connection is kept after refused filters');
  r.close();
  await r.waitClose(5000);
  const r2 = await t.device(rtoken, 'refused-2');
  t.same(norm(r2.welcome.subscriptions), norm([base]), 'refused filters leave the subscriptions unchanged');
  await r2.pullAll(1000, { cursor: null });
  t.same(ids(r2), expectIds("region = 'north'"), 'refused filters leave the rows the device receives unchanged');

  t.step = 'subscribe with wrong field types';
  const w1 = await r2.request({ type: 'subscribe', table: 'e2e_sub_t', filter: 42 });
  t.error(w1, 'invalid_message', 'a filter that is not a string: invalid_message');
  const w2 = await r2.request({ type: 'subscribe' });
  t.error(w2, 'invalid_message', 'subscribe without a table: invalid_message');
  const w3 = await r2.request({ type: 'subscribe', table: `e2e_sub_t; DROP TABLE e2e_sub_canary` });
  t.ok(w3.type === 'error' && (w3.code === 'not_found' || w3.code === 'invalid_message'),
    'a table name with SQL in it is not found', show(w3));
  t.is(psql("SELECT to_regclass('e2e_sub_canary') IS NOT NULL"), 't', 'a table name is never executed');
  r2.close();
});
