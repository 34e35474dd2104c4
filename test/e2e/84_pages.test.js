'use strict';
// Any row that fits in PostgreSQL can reach a device.  Pages are bounded by
// bytes as well as rows: 1,200 rows of about 9 KB arrive in pages of at
// most 4 MiB (the unsent-bytes limit of 8 MiB is never hit); a row larger
// than a page, and than that limit, arrives alone in a message of its own.
// A row is held by a device only once its cursor confirms the page that
// sent it: after a page is lost, the device is not told to remove a row it
// never had.
const { test, psql, show } = require('./lib');

const T = 'public.e2e_pg_t';
const MiB = 1024 * 1024;

test('pages', { timeout: 120 }, async (t) => {
  const role = t.role('e2e_pg_dev');
  psql(`CREATE TABLE e2e_pg_t (id int PRIMARY KEY, body text);
        CREATE TABLE e2e_pg_small (id int PRIMARY KEY, v text);
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT ON e2e_pg_t, e2e_pg_small TO ${role};
        SELECT ofs.sync_table('e2e_pg_t');
        SELECT ofs.sync_table('e2e_pg_small');
        INSERT INTO e2e_pg_t SELECT g, repeat(md5(g::text), 280) FROM generate_series(1, 1200) g;
        INSERT INTO e2e_pg_small SELECT g, 'v' || g FROM generate_series(1, 4) g;`);

  await t.section('1,200 rows of 9 KB', async () => {
    const c = await t.device(t.token(role, 'e2e-pg-a'), 'a');
    await c.request({ type: 'subscribe', table: T });
    const pages = await c.pullAll(undefined, { cursor: null });
    const sizes = c.log.filter((e) => e.msg && e.msg.type === 'changes').map((e) => e.raw.length);
    t.diag(`${pages.length} pages of ${sizes.map((x) => (x / MiB).toFixed(2)).join(', ')} MiB`);
    t.is(c.rows(T).length, 1200, 'every row arrives');
    t.ok(sizes.every((x) => x <= 4 * MiB + 16 * 1024), 'no page is over 4 MiB (and a row)');
    t.ok(c.open, 'the connection stays open (never 4009)', show(c.closed));
    c.close();
  });

  await t.section('a row larger than a page and than the unsent-bytes limit', async () => {
    psql(`INSERT INTO e2e_pg_t VALUES (5000, repeat('y', 12 * 1024 * 1024))`);
    const c = await t.device(t.token(role, 'e2e-pg-b'), 'b');
    await c.request({ type: 'subscribe', table: T });
    await c.pullAll(undefined, { cursor: null });
    const big = c.replica.get(`${T} {"id":5000}`);
    t.ok(big && big.row.body.length === 12 * MiB, 'a 12 MiB row arrives whole', show(big && big.row.body.length));
    t.is(c.rows(T).length, 1201, 'with every other row');
    const largest = Math.max(...c.log.filter((e) => e.msg && e.msg.type === 'changes').map((e) => e.raw.length));
    t.ok(largest > 8 * MiB && largest < 13 * MiB, `alone in its message (${(largest / MiB).toFixed(2)} MiB)`);
    psql(`DELETE FROM e2e_pg_t WHERE id = 5000`);
    c.close();
  });

  await t.section('rows of a lost page are not held', async () => {
    const c = await t.device(t.token(role, 'e2e-pg-c'), 'c');
    await c.request({ type: 'subscribe', table: 'public.e2e_pg_small' });
    const p1 = await c.request({ type: 'pull', cursor: null, max_rows: 2 });
    t.same(p1.changes.map((x) => x.pk.id), [1, 2], 'page 1: rows 1 and 2');
    const p2 = await c.request({ type: 'pull', cursor: p1.cursor, max_rows: 2 });
    t.same(p2.changes.map((x) => x.pk.id), [3, 4], 'page 2: rows 3 and 4 (the device loses it)');
    psql('DELETE FROM e2e_pg_small WHERE id = 4');
    // The device resumes from page 1's cursor: page 2 never reached it.
    const again = await c.pullAll(1000, { cursor: p1.cursor });
    const changes = again.flatMap((p) => p.changes);
    t.ok(changes.some((x) => x.pk.id === 3 && x.op === 'upsert'), 'row 3 is sent again', show(changes));
    t.ok(!changes.some((x) => x.pk.id === 4), 'row 4, deleted meanwhile, is not removed from a device that never had it', show(changes));
    t.is(psql(`SELECT string_agg(pk->>'id', ',' ORDER BY (pk->>'id')::int) FROM ofs.device_row
                WHERE device = 'e2e-pg-c' AND gone_page IS NULL`), '1,2,3', 'the origin holds the device to rows 1, 2 and 3');
    c.close();
  });
});
