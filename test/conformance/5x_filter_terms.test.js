'use strict';
// PROTOCOL.md "Filter grammar" (the term-counting sentence, being
// implemented): at most 256 terms, each comparison and each IS [NOT] NULL
// one, an IN list one plus one per element, a run of ANDs (or ORs) at one
// level of parentheses one ("a = 1 AND b = 2 AND c = 3" is four terms).
// Each boundary is tested at exactly 256 (accepted) and 257 (54000).
const { test, psql, show } = require('./common');

test('conformance: filter terms', { timeout: 60 }, async (t) => {
  const role = t.role('e2e_cf_terms_dev');
  psql(`CREATE TABLE cf_terms (id int PRIMARY KEY, a int, b int, c int, d text);
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT ON cf_terms TO ${role};
        SELECT ofs.sync_table('cf_terms');`);
  const A = await t.device(t.token(role, 'cf-terms'), 'a');
  const range = (n) => Array.from({ length: n }, (_, k) => k);
  const check = async (terms, f, label) => {
    t.ok(Buffer.byteLength(f) <= 4096, `${label}: the filter is within 4096 bytes (${Buffer.byteLength(f)})`);
    const r = await A.request({ type: 'subscribe', table: 'cf_terms', filter: f });
    if (terms <= 256) {
      t.answer(r, 'subscribed', `${label}: ${terms} terms are accepted`);
      if (r.type === 'subscribed') await A.request({ type: 'unsubscribe', table: 'cf_terms', filter: r.filter });
    } else {
      t.error(r, 'invalid_filter', `${label}: ${terms} terms are refused, sqlstate 54000`, { sqlstate: '54000' });
    }
  };
  // n comparisons in one OR run: n + 1 terms.
  const orRun = (n) => range(n).map((k) => `a = ${k}`).join(' OR ');
  await check(256, orRun(255), '255 comparisons joined by OR (255 + one run)');
  await check(257, orRun(256), '256 comparisons joined by OR (256 + one run)');
  // An IN list: one plus one per element.
  const inList = (n) => `a IN (${range(n).join(',')})`;
  await check(256, inList(255), 'an IN list of 255 elements (1 + 255)');
  await check(257, inList(256), 'an IN list of 256 elements (1 + 256)');
  await check(256, `a NOT IN (${range(255).join(',')})`, 'a NOT IN list of 255 elements (1 + 255)');
  // A single comparison: one term; a single IN of one element: two.
  await check(1, 'a = 1', 'one comparison');
  // Groups of "a = k AND b = k AND c = k" (four terms each, as the document's
  // example), ORed: 4g + 1, plus top-level comparisons in the OR run.
  const groups = (g, extra) => [...range(g).map((k) => `(a = ${k} AND b = ${k} AND c = ${k})`), ...range(extra).map((k) => `d IS NULL`)].join(' OR ');
  await check(256, groups(63, 3), '63 groups of three ANDed comparisons (4 terms each) and 3 IS NULL, ORed (252 + 3 + 1)');
  await check(257, groups(63, 4), '63 groups of three ANDed comparisons and 4 IS NULL, ORed (252 + 4 + 1)');
  // Pairs: 3 terms each.
  const pairs = (g, extra) => [...range(g).map((k) => `(a = ${k} AND d IS NOT NULL)`), ...range(extra).map((k) => `b = ${k}`)].join(' OR ');
  await check(256, pairs(85, 0), '85 pairs "a = k AND d IS NOT NULL", ORed (85 x 3 + 1)');
  await check(257, pairs(85, 1), '85 pairs and one more comparison, ORed (85 x 3 + 1 + 1)');
  // A run of ANDs of IN lists: (1 + n) each, plus the run.
  await check(256, `a IN (${range(127).join(',')}) AND b IN (${range(126).join(',')})`, 'two IN lists of 127 and 126 ANDed (128 + 127 + 1)');
  await check(257, `a IN (${range(127).join(',')}) AND b IN (${range(127).join(',')})`, 'two IN lists of 127 ANDed (128 + 128 + 1)');
  t.is(psql(`SELECT count(*) FROM ofs.subscriptions WHERE device = 'cf-terms'`), '0', 'refused filters added no shape');
  A.close();
  void show;
});
