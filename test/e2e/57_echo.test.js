'use strict';
// No echo: a device is not sent back the changes its own pushes made when
// they left the row exactly as it sent them; its cursor moves past them and
// the origin still knows it holds the rows (a later removal reaches it).
// Whatever the origin did to a row (a default, a normalisation, a trigger,
// a merge that kept its value, a later change by anyone) sends it back.
// Other devices receive everything, by pull and live.
const { test, psql, show, clock, sleep } = require('./lib');

const TABLE = 'public.e2e_echo_t';

test('echo', { timeout: 60 }, async (t) => {
  const role = t.role('e2e_echo_dev');
  psql(`CREATE TABLE e2e_echo_t (id text PRIMARY KEY, grp text NOT NULL DEFAULT 'a', v int,
                                 amount numeric(10,2), stamp text);
        CREATE FUNCTION e2e_echo_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.id LIKE 'trig-%' THEN NEW.stamp := 'stamped'; END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER e2e_echo_stamp BEFORE INSERT OR UPDATE ON e2e_echo_t
          FOR EACH ROW EXECUTE FUNCTION e2e_echo_stamp();
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT, INSERT, UPDATE, DELETE ON e2e_echo_t TO ${role};
        SELECT ofs.sync_table('e2e_echo_t');`);
  t.cleanup(() => psql('DROP FUNCTION IF EXISTS e2e_echo_stamp() CASCADE'));
  const a = await t.device(t.token(role, 'e2e-echo-a'), 'a');
  const b = await t.device(t.token(role, 'e2e-echo-b'), 'b');
  await a.request({ type: 'subscribe', table: 'e2e_echo_t' });
  await b.request({ type: 'subscribe', table: "e2e_echo_t", filter: "grp = 'a'" });
  await a.pullAll(1000, { cursor: null });
  await b.pullAll(1000, { cursor: null });
  const hlc = clock(a.welcome.hlc);
  const full = (id, extra = {}) => ({ id, grp: 'a', v: 1, amount: '1.50', stamp: null, ...extra });
  const ins = (op_id, id, data) => ({ op_id, table: TABLE, op: 'insert', pk: { id }, data, hlc: hlc() });
  const upd = (op_id, id, data) => ({ op_id, table: TABLE, op: 'update', pk: { id }, data, hlc: hlc() });
  const del = (op_id, id) => ({ op_id, table: TABLE, op: 'delete', pk: { id }, hlc: hlc() });
  const push = async (mutations) => {
    const r = await a.request({ type: 'push', mutations });
    const st = Array.isArray(r.results) ? r.results.map((x) => x.status) : [];
    t.ok(st.length === mutations.length && st.every((s) => s === 'applied'), `push of ${mutations.map((m) => m.op_id).join(', ')} applied`, show(r));
  };
  const pulled = async (c) => {
    const answers = await c.pullAll(1000);
    return answers.flatMap((x) => x.changes || []);
  };
  const ids = (changes) => changes.map((c) => `${c.op} ${c.pk.id}`).sort();
  const held = (device, id) => psql(`SELECT count(*) FROM ofs.device_row WHERE device = '${device}'
                                       AND tbl = '${TABLE}'::regclass AND pk = jsonb_build_object('id', '${id}') AND gone_page IS NULL`);

  const heldSoon = async (device, id, want) => {
    for (let i = 0; i < 50 && held(device, id) !== want; i++) await sleep(100);
    return held(device, id);
  };

  t.step = 'rows as sent';
  const cursor0 = a.cursor;
  await push([ins('e1', 'same-1', full('same-1')), ins('e2', 'same-2', full('same-2')),
              upd('e3', 'same-2', { v: 2 })]);
  const mine = await pulled(a);
  t.same(ids(mine), [], 'rows the device inserted and updated as it sent them are not sent back', show(mine));
  t.ok(typeof a.cursor === 'string' && a.cursor !== cursor0, 'its cursor moves past them');
  t.is(held('e2e-echo-a', 'same-1'), '1', 'the origin knows the device holds its row');
  t.same(ids(await pulled(b)), ['upsert same-1', 'upsert same-2'], 'another device receives them');

  t.step = 'rows the origin changed';
  await push([
    ins('e4', 'default-1', { id: 'default-1', v: 1, amount: '1.50', stamp: null }),
    ins('e5', 'norm-1', full('norm-1', { amount: '20.5' })),
    ins('e6', 'trig-1', full('trig-1')),
  ]);
  const back = await pulled(a);
  t.same(ids(back), ['upsert default-1', 'upsert norm-1', 'upsert trig-1'],
    'a column the device left to its default, a normalised value and a trigger\'s change come back', show(back));
  const norm = back.find((c) => c.pk.id === 'norm-1');
  t.is(norm && norm.row.amount, '20.50', 'the row comes back as the origin holds it');

  t.step = 'a later change by the origin';
  await push([ins('e7', 'mixed-1', full('mixed-1'))]);
  psql(`UPDATE e2e_echo_t SET v = 7 WHERE id = 'mixed-1'`);
  const mixed = await pulled(a);
  t.same(ids(mixed), ['upsert mixed-1'], 'a row the origin changed after the device\'s write is sent, as it is now');
  t.is(mixed[0] && mixed[0].row.v, 7, '... with the origin\'s value');

  t.step = 'deletes';
  await push([del('e8', 'same-1')]);
  t.same(ids(await pulled(a)), [], 'the device\'s own delete is not sent back');
  t.is(held('e2e-echo-a', 'same-1'), '0', 'and the origin no longer counts the row as held');
  t.same(ids(await pulled(b)).filter((x) => x.endsWith('same-1')), ['delete same-1'], 'another device is told to remove it');

  t.step = 'a held row that leaves the scope';
  psql(`UPDATE e2e_echo_t SET grp = 'z' WHERE id = 'same-2'`);
  t.same(ids(await pulled(b)).filter((x) => x.endsWith('same-2')), ['delete same-2'],
    'a row the device got by pull leaves its scope: removal');
  await push([ins('e9', 'own-2', full('own-2'))]);
  t.same(ids(await pulled(a)), ['upsert same-2'], 'the device that wrote own-2 is not sent it back (same-2 changed on the origin)');
  await pulled(b);
  t.ok(b.rows(TABLE).some((r) => r.pk.id === 'own-2'), 'B has own-2');

  t.step = 'live';
  const live = await a.request({ type: 'live', cursor: a.cursor });
  t.answer(live, 'changes', 'device A goes live');
  const liveB = await b.request({ type: 'live', cursor: b.cursor });
  t.answer(liveB, 'changes', 'device B goes live');
  await push([ins('e10', 'live-1', full('live-1')), ins('e11', 'trig-live', full('trig-live'))]);
  const gotB = await b.until(() => b.rows(TABLE).some((r) => r.pk.id === 'live-1') && b.rows(TABLE).some((r) => r.pk.id === 'trig-live'), 10000);
  t.ok(gotB, 'live device B receives the rows A pushed');
  const gotA = await a.until(() => a.rows(TABLE).some((r) => r.pk.id === 'trig-live'), 10000);
  t.ok(gotA, 'live device A receives the row a trigger changed');
  const liveMine = a.log.filter((e) => e.msg && e.msg.type === 'changes' && (e.msg.id === undefined || e.msg.id === null))
    .flatMap((e) => e.msg.changes || []).map((c) => c.pk.id);
  t.ok(!liveMine.includes('live-1'), 'live device A is not sent its own row back', show(liveMine));
  t.is(await heldSoon('e2e-echo-a', 'live-1', '1'), '1', 'the origin knows A holds live-1');
  await push([del('e12', 'live-1')]);
  const gone = await b.until(() => !b.rows(TABLE).some((r) => r.pk.id === 'live-1'), 10000);
  t.ok(gone, 'B is told live-1 went');
  t.is(await heldSoon('e2e-echo-a', 'live-1', '0'), '0', 'and A, which deleted it, no longer holds it');
});
