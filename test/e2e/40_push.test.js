'use strict';
// Push: one result per mutation, in order, of every kind.  applied (insert,
// update, delete, counter increments adding up; upsert refused), duplicate when a
// batch is resent, rejected with SQLSTATE, message and compensation hint (a
// transition that needs a role the device lacks, an initial state, a unique
// key), dependent rejections (OF020) until the dead letter is discarded,
// conflict on a manual column.  The table is checked from psql each time.
const { test, psql, psqlJSON, show, clock, lit, big } = require('./lib');

const TABLE = 'public.e2e_push_inv';

test('push', { timeout: 60 }, async (t) => {
  const rep = t.role('e2e_push_rep');
  const mgr = t.role('e2e_push_mgr');
  psql(`CREATE TABLE e2e_push_inv (id text PRIMARY KEY, status text NOT NULL DEFAULT 'draft',
          amount numeric(10,2), notes text, qty int NOT NULL DEFAULT 0);
        GRANT USAGE ON SCHEMA public TO ${rep};
        GRANT SELECT, INSERT, UPDATE, DELETE ON e2e_push_inv TO ${rep};
        SELECT ofs.sync_table('e2e_push_inv', '{"notes": "manual", "qty": "counter"}');
        SELECT ofs.add_transition_constraint('e2e_push_inv', 'push_flow', 'status', $$
          'draft' -> 'submitted', 'submitted' -> 'approved' BY ROLE ${mgr}, 'submitted' -> 'draft'$$,
          ARRAY['draft']);`);
  const a = await t.device(t.token(rep, 'e2e-push-a'), 'a');
  const b = await t.device(t.token(rep, 'e2e-push-b'), 'b');
  const hlc = clock(a.welcome.hlc);
  const row = (id) => psqlJSON(`SELECT row_to_json(r) FROM (SELECT id, status, amount::text AS amount, notes, qty
                                  FROM e2e_push_inv WHERE id = ${lit(id)}) r`);
  const ins = (op_id, id, data) => ({ op_id, table: TABLE, op: 'insert', pk: { id }, data: { id, ...data }, hlc: hlc() });
  const upd = (op_id, id, data, base) => ({ op_id, table: TABLE, op: 'update', pk: { id }, data, ...(base ? { base } : {}), hlc: hlc() });
  const statuses = (p) => (Array.isArray(p.results) ? p.results.map((r) => r.status) : p);
  const opIds = (p) => (Array.isArray(p.results) ? p.results.map((r) => r.operation_id) : p);
  const feedCount = (id) => psql(`SELECT count(*) FROM ofs.changes(NULL, 100000) WHERE table_name = '${TABLE}' AND pk = jsonb_build_object('id', ${lit(id)})`);

  t.step = 'applied';
  const batch1 = [
    ins('a-1', 'p1', { status: 'draft', amount: '12.50', notes: 'first' }),
    upd('a-2', 'p1', { status: 'submitted' }, { status: 'draft' }),
  ];
  const r1 = await a.request({ type: 'push', id: 'push-1', mutations: batch1 });
  t.answer(r1, 'pushed', 'push is answered with pushed, carrying the id', (m) => m.id === 'push-1');
  t.same(statuses(r1), ['applied', 'applied'], 'insert and update: applied, one result per mutation');
  t.same(opIds(r1), ['a-1', 'a-2'], 'results name their operation ids, in order');
  t.same(row('p1'), { id: 'p1', status: 'submitted', amount: '12.50', notes: 'first', qty: 0 }, 'the table holds the pushed row, numeric exact');
  t.same(psqlJSON(`SELECT json_agg(json_build_array(device, operation_id) ORDER BY id) FROM ofs.transition_log
                     WHERE table_name = '${TABLE}' AND pk = '{"id": "p1"}'`),
    [['e2e-push-a', 'a-1'], ['e2e-push-a', 'a-2']], 'state changes are audited with the device and operation id');

  t.step = 'duplicate';
  const feedBefore = feedCount('p1');
  const r2 = await a.request({ type: 'push', mutations: batch1 });
  t.same(statuses(r2), ['duplicate', 'duplicate'], 'the same batch resent: every result duplicate');
  t.is(psql(`SELECT count(*) FROM e2e_push_inv WHERE id = 'p1'`), '1', 'a resent batch leaves one row');
  t.is(feedCount('p1'), feedBefore, 'a resent batch adds nothing to the changes feed');

  t.step = 'rejected';
  const r3 = await a.request({ type: 'push', mutations: [
    upd('a-3', 'p1', { status: 'approved' }, { status: 'submitted' }),
    upd('a-4', 'p1', { amount: '99.00' }),
  ] });
  const rej = (r3.results || [])[0] || {};
  t.same(statuses(r3), ['rejected', 'rejected'], 'a forbidden transition and a later mutation of the row: both rejected');
  t.is(rej.sqlstate, 'OF002', 'a transition that needs a role the device lacks: sqlstate OF002');
  t.match(rej.message, new RegExp(mgr), 'the rejection message names the required role');
  const hint = rej.hint || {};
  t.ok(typeof hint.kind === 'string' && hint.kind.length > 0, 'the hint has a kind', show(rej));
  t.is(hint.required_role, mgr, 'hint.required_role is the role the edge needs');
  t.ok(hint.row && hint.row.id === 'p1' && hint.row.status === 'submitted' && hint.row.amount === '12.50',
    'hint.row is the origin\'s row to roll back to', show(hint));
  const allowed = hint.allowed !== undefined ? hint.allowed : hint.allowed_next;
  const allowedStates = Array.isArray(allowed) ? allowed.map((x) => (typeof x === 'string' ? x : x && x.to)).sort() : allowed;
  t.same(allowedStates, ['approved', 'draft'], 'the hint lists the allowed next states from submitted');
  const dep = (r3.results || [])[1] || {};
  t.is(dep.sqlstate, 'OF020', 'a later mutation of a row with an open dead letter: OF020');
  t.same(row('p1'), { id: 'p1', status: 'submitted', amount: '12.50', notes: 'first', qty: 0 }, 'rejected mutations change nothing');
  t.same(psqlJSON(`SELECT json_agg(json_build_array(operation_id, sqlstate, status) ORDER BY id) FROM ofs.dead_letters
                     WHERE device = 'e2e-push-a'`),
    [['a-3', 'OF002', 'open'], ['a-4', 'OF020', 'open']], 'both rejections are open dead letters on the origin');
  const r3b = await a.request({ type: 'push', mutations: [upd('a-3', 'p1', { status: 'approved' }, { status: 'submitted' })] });
  t.same(statuses(r3b), ['duplicate'], 'a rejected operation resent: duplicate');
  const r3c = await a.request({ type: 'push', mutations: [upd('a-5', 'p1', { notes: 'still blocked' })] });
  t.ok(((r3c.results || [])[0] || {}).sqlstate === 'OF020', 'a later batch touching the row: OF020 too', show(r3c));

  t.step = 'after discarding the dead letters';
  psql(`SELECT ofs.discard_dead_letter(id) FROM ofs.dead_letters WHERE device = 'e2e-push-a' AND status = 'open'`);
  const r4 = await a.request({ type: 'push', mutations: [upd('a-6', 'p1', { amount: '13.00' })] });
  t.same(statuses(r4), ['applied'], 'once its dead letters are discarded, the row takes mutations again');
  t.is((row('p1') || {}).amount, '13.00', 'the table holds the new value');

  t.step = 'conflict';
  psql(`INSERT INTO e2e_push_inv (id, amount, notes) VALUES ('p2', 1, 'origin note');
        UPDATE e2e_push_inv SET notes = 'changed on the origin' WHERE id = 'p2';`);
  // The device's clock is past the origin's (as after a sync): its amount is
  // the later write.  (An earlier device with a clock ahead may have moved
  // the origin's clock ahead of the wall clock, within ofs.max_clock_skew.)
  const after = big(psql('SELECT ofs.hlc_now()')) + 1n;
  const r5 = await a.request({ type: 'push', mutations: [{ ...upd('a-7', 'p2', { notes: 'device note', amount: '5.00' }, { notes: 'origin note' }), hlc: after }] });
  t.same(statuses(r5), ['conflict'], 'a manual column changed concurrently: conflict');
  t.same(row('p2'), { id: 'p2', status: 'draft', amount: '5.00', notes: 'changed on the origin', qty: 0 },
    'the origin keeps its manual value; the other column applies');
  t.same(psqlJSON(`SELECT json_agg(json_build_array(column_name, origin_value, device_value, device, status)) FROM ofs.conflicts
                     WHERE table_name = '${TABLE}' AND pk = '{"id": "p2"}'`),
    [['notes', 'changed on the origin', 'device note', 'e2e-push-a', 'open']], 'the conflict is recorded for a person to resolve');

  t.step = 'counter';
  const ca = await a.request({ type: 'push', mutations: [upd('a-8', 'p2', { qty: 3 }, { qty: 0 })] });
  const cb = await b.request({ type: 'push', mutations: [upd('b-1', 'p2', { qty: 5 }, { qty: 0 })] });
  t.same([...statuses(ca), ...statuses(cb)], ['applied', 'applied'], 'two devices increment a counter from the same base');
  t.is((row('p2') || {}).qty, 8, 'concurrent increments add up');

  t.step = 'a mixed batch';
  const r6 = await a.request({ type: 'push', mutations: [
    ins('a-9', 'p3', { amount: '3.00' }),
    ins('a-10', 'p4', { status: 'approved', amount: '4.00' }),
    ins('a-11', 'p5', { amount: '5.00' }),
    { op_id: 'a-12', table: TABLE, op: 'delete', pk: { id: 'p3' }, hlc: hlc() },
    ins('a-13', 'p1', { amount: '1.00' }),
    { op_id: 'a-14', table: 'public.e2e_push_nosuch', op: 'insert', pk: { id: 'x' }, data: { id: 'x' }, hlc: hlc() },
  ] });
  t.same(statuses(r6), ['applied', 'rejected', 'applied', 'applied', 'rejected', 'rejected'],
    'a mixed batch: each mutation has its own result, in order');
  const rs = r6.results || [];
  t.is((rs[1] || {}).sqlstate, 'OF004', 'an insert in a state that is not initial: OF004');
  t.is((rs[4] || {}).sqlstate, '23505', 'an insert of an existing key: 23505');
  t.ok(typeof (rs[5] || {}).sqlstate === 'string' && (rs[5] || {}).sqlstate.length === 5, 'a mutation of an unknown table is rejected with a SQLSTATE', show(rs[5]));
  t.ok(rs.filter((x) => x.status === 'rejected').every((x) => typeof x.message === 'string' && x.message.length > 0 && x.hint && typeof x.hint === 'object'),
    'every rejection carries a message and a hint', show(rs));
  t.is(psql(`SELECT string_agg(id, ',' ORDER BY id) FROM e2e_push_inv WHERE id IN ('p3', 'p4', 'p5')`), 'p5',
    'after the mixed batch: the applied insert stays, the deleted and the rejected rows are absent');

  t.step = 'upsert';
  const r7 = await a.request({ type: 'push', mutations: [
    { op_id: 'a-15', table: TABLE, op: 'upsert', pk: { id: 'p6' }, data: { id: 'p6', amount: '1.00' }, hlc: hlc() },
    { op_id: 'a-16', table: TABLE, op: 'upsert', pk: { id: 'p6' }, data: { id: 'p6', amount: '2.00' }, hlc: hlc() },
  ] });
  t.same(statuses(r7), ['rejected', 'rejected'], 'op "upsert" is not part of the protocol: rejected');
  t.ok((r7.results || []).every((x) => x.sqlstate === '22023' && x.hint && x.hint.kind === 'invalid_mutation'),
    '... as an invalid mutation (22023)', show(r7));
  t.is(row('p6'), null, 'nothing was written for it');

  t.step = 'operation ids are per device';
  const r8 = await b.request({ type: 'push', mutations: [ins('a-1', 'p7', { amount: '7.00' })] });
  t.same(statuses(r8), ['applied'], 'another device may use the same operation id');
  t.is((row('p7') || {}).amount, '7.00', 'its mutation is written');

  t.step = 'numeric exactness';
  const r9 = await a.request({ type: 'push', mutations: [ins('a-17', 'p8', { amount: '12345678.91' })] });
  t.same(statuses(r9), ['applied'], 'insert with a numeric that a double cannot hold exactly');
  t.is((row('p8') || {}).amount, '12345678.91', 'the numeric arrives exactly');

  t.step = 'a mutation without hlc';
  const r10 = await a.request({ type: 'push', mutations: [{ op_id: 'a-18', table: TABLE, op: 'insert', pk: { id: 'p9' }, data: { id: 'p9', amount: '9.00' } }] });
  const r10r = (r10.results || [])[0] || {};
  t.ok(r10.type === 'pushed' && r10r.status === 'rejected' && typeof r10r.sqlstate === 'string' && r10r.message,
    'a mutation without hlc (required) is rejected with a SQLSTATE and a message', show(r10));
  t.is(psql(`SELECT count(*) FROM e2e_push_inv WHERE id = 'p9'`), '0', 'the mutation without hlc is not written');

  t.step = 'pipelined pushes';
  const piped = await Promise.all([1, 2, 3].map((k) => a.request({ type: 'push', mutations: [ins(`a-p${k}`, `q${k}`, { amount: `${k}.00` })] })));
  t.same(piped.map(statuses), [['applied'], ['applied'], ['applied']], 'three pushes sent at once: each answered');
  t.is(psql(`SELECT count(*) FROM e2e_push_inv WHERE id IN ('q1', 'q2', 'q3')`), '3', 'three pipelined pushes wrote three rows');

  t.step = 'a push with a wrongly typed field';
  const bad = await a.request({ type: 'push', mutations: { op_id: 'x' } });
  t.error(bad, 'invalid_message', 'mutations that is not an array: invalid_message');
  const still = await a.request({ type: 'push', mutations: [] });
  t.ok(still.type === 'pushed' && Array.isArray(still.results) && still.results.length === 0,
    'an empty batch is answered with no results', show(still));
  a.close();
  b.close();
});
