'use strict';
// PROTOCOL.md "push": the documented example, every mutation field's rules
// (op_id 1-256 chars, op, pk agreeing with data, data absent for delete,
// numbers taken digit for digit, hlc a non-negative integer), every status
// (applied, duplicate carrying the first answer, rejected with sqlstate,
// message and hint of the documented kinds, conflict), dependent
// rejections (OF020) and row_missing, scope (23505 with row null, 42501),
// max_batch (a longer push refused whole), a number beyond a double
// (invalid_json).
const {
  test, psql, psqlJSON, show, lit, statuses, hlcClock, expectKept, sendAndNext, DOC_LIMITS, isStr, isObj,
} = require('./common');

const INV = 'public.cf_push_inv';

test('conformance: push', { timeout: 90 }, async (t) => {
  const role = t.role('e2e_cf_push_dev');
  const mgr = t.role('e2e_cf_push_mgr');
  psql(`CREATE TABLE cf_push_inv (id text PRIMARY KEY, status text NOT NULL DEFAULT 'draft', total numeric,
          notes text, qty int NOT NULL DEFAULT 0 CHECK (qty >= 0));
        CREATE TABLE cf_push_line (id text PRIMARY KEY, inv text REFERENCES cf_push_inv (id));
        CREATE TABLE cf_push_num (id int PRIMARY KEY, v int, big numeric);
        CREATE TABLE cf_push_ro (id int PRIMARY KEY);
        CREATE TABLE cf_push_rls (id text PRIMARY KEY, owner text NOT NULL);
        ALTER TABLE cf_push_rls ENABLE ROW LEVEL SECURITY;
        CREATE POLICY mine ON cf_push_rls USING (owner = current_user) WITH CHECK (owner = current_user);
        INSERT INTO cf_push_rls VALUES ('taken', 'somebody_else');
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT, INSERT, UPDATE, DELETE ON cf_push_inv, cf_push_line, cf_push_num, cf_push_rls TO ${role};
        GRANT SELECT ON cf_push_ro TO ${role};
        SELECT ofs.sync_table('cf_push_inv', '{"notes": "manual", "qty": "counter"}');
        SELECT ofs.sync_table('cf_push_line'); SELECT ofs.sync_table('cf_push_num');
        SELECT ofs.sync_table('cf_push_ro'); SELECT ofs.sync_table('cf_push_rls');
        SELECT ofs.add_transition_constraint('cf_push_inv', 'invoice_flow', 'status', $$
          'draft' -> 'submitted', 'submitted' -> 'approved' BY ROLE ${mgr}, 'submitted' -> 'draft'$$, ARRAY['draft']);`);
  const A = await t.device(t.token(role, 'cf-push'), 'a');
  const hlc = hlcClock(A.welcome.hlc);
  const row = (id) => psqlJSON(`SELECT row_to_json(r) FROM (SELECT id, status, total::text AS total, notes, qty FROM cf_push_inv WHERE id = ${lit(id)}) r`);
  const push1 = async (m) => {
    const r = await A.request({ type: 'push', mutations: [m] });
    return (r.results || [])[0] || r;
  };
  let opn = 0;
  const op = () => `op-${++opn}`;
  const ins = (table, id, data) => ({ op_id: op(), table, op: 'insert', pk: { id }, data: { id, ...data }, hlc: hlc() });
  const upd = (table, id, data, base) => ({ op_id: op(), table, op: 'update', pk: { id }, data, ...(base ? { base } : {}), hlc: hlc() });

  t.step = 'the documented example';
  const ex = await A.request({ type: 'push', id: 7, mutations: [
    { op_id: '01JD3-a', table: INV, op: 'insert', pk: { id: 'inv-1' }, data: { id: 'inv-1', status: 'draft', total: '12.50' }, hlc: hlc() },
    { op_id: '01JD4-a', table: INV, op: 'update', pk: { id: 'inv-1' }, data: { status: 'submitted' }, base: { status: 'draft' }, hlc: hlc() },
  ] });
  t.answer(ex, 'pushed', 'push is answered with pushed');
  t.ok(ex.id === 7, 'pushed carries the id', show(ex.id));
  t.same(statuses(ex), ['applied', 'applied'], 'one result per mutation, in order: applied, applied');
  t.same((ex.results || []).map((r) => r.operation_id), ['01JD3-a', '01JD4-a'], 'each result names its operation_id');
  t.same(row('inv-1'), { id: 'inv-1', status: 'submitted', total: '12.50', notes: null, qty: 0 }, 'the origin holds the pushed row');

  t.step = 'rejected: the documented example\'s hint';
  const rj = await A.request({ type: 'push', id: 8, mutations: [
    { op_id: '01JD5-a', table: INV, op: 'update', pk: { id: 'inv-1' }, data: { status: 'approved' }, base: { status: 'submitted' }, hlc: hlc() }] });
  const r0 = (rj.results || [])[0] || {};
  t.is(r0.status, 'rejected', 'a transition needing a role the device lacks: rejected');
  t.is(r0.sqlstate, 'OF002', '... sqlstate OF002');
  t.ok(isStr(r0.message) && r0.message.includes(mgr), '... a message naming the required role', show(r0));
  const h = r0.hint || {};
  t.is(h.kind, 'role_required', 'hint.kind role_required');
  t.is(h.constraint, 'invoice_flow', 'hint.constraint');
  t.is(h.column, 'status', 'hint.column');
  t.ok(isObj(h.row) && h.row.id === 'inv-1' && h.row.status === 'submitted' && h.row.total === '12.50', 'hint.row: the origin\'s row as the role sees it', show(h.row));
  t.is(h.from, 'submitted', 'hint.from');
  t.is(h.to, 'approved', 'hint.to');
  t.same(Array.isArray(h.allowed_next) ? h.allowed_next.map((e) => `${e.to}/${e.role}`).sort() : h.allowed_next,
    [`approved/${mgr}`, 'draft/null'], 'hint.allowed_next: [{to, role}] of the edges from submitted');
  t.is(h.required_role, mgr, 'hint.required_role');
  t.same(psqlJSON(`SELECT json_agg(status) FROM ofs.dead_letters WHERE device = 'cf-push' AND operation_id = '01JD5-a'`), ['open'],
    'the rejected mutation is kept as a dead letter');

  t.step = 'duplicate';
  const dup = await A.request({ type: 'push', mutations: [
    { op_id: '01JD3-a', table: INV, op: 'insert', pk: { id: 'inv-1' }, data: { id: 'inv-1', status: 'draft', total: '99.00' }, hlc: hlc() },
    { op_id: '01JD5-a', table: INV, op: 'update', pk: { id: 'inv-1' }, data: { status: 'approved' }, hlc: hlc() }] });
  t.same(statuses(dup), ['duplicate', 'duplicate'], 'already-seen op_ids answer duplicate');
  const d1 = (dup.results || [])[1] || {};
  t.ok(d1.sqlstate === r0.sqlstate && d1.message === r0.message && JSON.stringify(d1.hint) === JSON.stringify(r0.hint),
    'a duplicate of a rejection carries the first answer\'s sqlstate, message and hint', show([d1, r0]));
  t.is((row('inv-1') || {}).total, '12.50', 'nothing is written again for a duplicate');

  t.step = 'dependent rejections';
  const dep = await push1(upd(INV, 'inv-1', { notes: 'x' }));
  t.ok(dep.status === 'rejected' && dep.sqlstate === 'OF020' && (dep.hint || {}).kind === 'dependent',
    'a later mutation of a row with an open dead letter: rejected, OF020, kind dependent', show(dep));
  psql(`SELECT ofs.discard_dead_letter(id) FROM ofs.dead_letters WHERE device = 'cf-push' AND status = 'open'`);
  const free = await push1(upd(INV, 'inv-1', { notes: 'y' }));
  t.is(free.status, 'applied', 'once the dead letters are discarded, the row takes mutations again');

  t.step = 'rejection kinds';
  const kinds = [
    ['transition_not_allowed', 'OF001', ins(INV, 'k1', { status: 'draft' }), upd(INV, 'k1', { status: 'approved' })],
    ['initial_state_not_allowed', 'OF004', null, ins(INV, 'k2', { status: 'submitted' })],
    ['unique_violation', '23505', null, ins(INV, 'inv-1', { status: 'draft' })],
    ['not_null_violation', '23502', null, ins(INV, 'k3', { status: null })],
    ['check_violation', '23514', null, ins(INV, 'k4', { qty: -1 })],
    ['foreign_key_violation', '23503', null, ins('public.cf_push_line', 'l1', { inv: 'nosuch' })],
    ['permission_denied', '42501', null, { op_id: op(), table: 'public.cf_push_ro', op: 'insert', pk: { id: 1 }, data: { id: 1 }, hlc: hlc() }],
    ['row_missing', 'P0002', null, upd(INV, 'never-there', { notes: 'z' })],
    ['invalid_value', '22P02', null, ins(INV, 'k5', { qty: 'abc' })],
    ['invalid_value', '22003', null, ins(INV, 'k6', { qty: 99999999999 })],
  ];
  for (const [kind, state, setup, m] of kinds) {
    if (setup) await push1(setup);
    const r = await push1(m);
    t.ok(r.status === 'rejected' && r.sqlstate === state && isStr(r.message) && isObj(r.hint) && r.hint.kind === kind && 'row' in r.hint,
      `rejected with sqlstate ${state}, hint.kind ${kind}, a message and hint.row`, show(r));
  }
  t.is(psql(`SELECT count(*) FROM cf_push_inv WHERE id IN ('k2', 'k3', 'k4', 'k5', 'k6')`), '0', 'rejected inserts wrote nothing');
  await push1(ins(INV, 'gone', { status: 'draft' }));
  psql(`DELETE FROM cf_push_inv WHERE id = 'gone'`);
  const gone = await push1(upd(INV, 'gone', { notes: 'late' }));
  t.ok(gone.status === 'rejected' && gone.sqlstate === 'P0002' && (gone.hint || {}).kind === 'row_missing' && gone.hint.row === null,
    'an update of a row a delete removed: rejected, P0002, kind row_missing, row null', show(gone));
  const back = await push1(ins(INV, 'gone', { status: 'draft' }));
  t.ok(back.status === 'applied', 'after row_missing (a delete won) the device\'s re-insert of that key is judged on its own: applied', show(back));
  const again = await push1(ins(INV, 'never-there', { status: 'draft' }));
  t.ok(again.status === 'applied', 'after row_missing the device\'s next mutation of that key (a re-insert) is judged on its own: applied', show(again));

  t.step = 'pk and data';
  const mism = await push1({ op_id: op(), table: INV, op: 'insert', pk: { id: 'pk-a' }, data: { id: 'pk-b', status: 'draft' }, hlc: hlc() });
  t.ok(mism.status === 'rejected' && mism.sqlstate === '22023', 'a key column in data with another value than pk: rejected, 22023', show(mism));
  t.is(psql(`SELECT count(*) FROM cf_push_inv WHERE id IN ('pk-a', 'pk-b')`), '0', '... nothing written');
  const numRaw = `{"type":"push","id":"num-eq","mutations":[{"op_id":"${op()}","table":"public.cf_push_num","op":"insert","pk":{"id":1},"data":{"id":1.0,"v":1},"hlc":${hlc()}},` +
    `{"op_id":"${op()}","table":"public.cf_push_num","op":"insert","pk":{"id":2},"data":{"id":"2","v":2},"hlc":${hlc()}},` +
    `{"op_id":"${op()}","table":"public.cf_push_num","op":"update","pk":{"id":1},"data":{"id":1,"v":10},"hlc":${hlc()}}]}`;
  const ne = await A.requestRaw(numRaw, 'num-eq');
  t.same(statuses(ne), ['applied', 'applied', 'applied'], 'key values equal as numbers (1 and 1.0) or as text (2 and "2") agree: applied');
  t.is(psql('SELECT string_agg(id || \':\' || v, \',\' ORDER BY id) FROM cf_push_num'), '1:10,2:2', 'the rows are written under their keys');

  t.step = 'numbers digit for digit';
  const bigText = `{"type":"push","id":"digits","mutations":[{"op_id":"${op()}","table":"public.cf_push_num","op":"insert","pk":{"id":3},"data":{"id":3,"big":0.1},"hlc":${hlc()}},` +
    `{"op_id":"${op()}","table":"public.cf_push_num","op":"insert","pk":{"id":4},"data":{"id":4,"big":123456789012345678901234567890},"hlc":${hlc()}}]}`;
  const dg = await A.requestRaw(bigText, 'digits');
  t.same(statuses(dg), ['applied', 'applied'], 'numbers for a numeric column: applied');
  t.is(psql('SELECT big::text FROM cf_push_num WHERE id = 3'), '0.1', '0.1 reaches a numeric column exactly');
  t.is(psql('SELECT big::text FROM cf_push_num WHERE id = 4'), '123456789012345678901234567890', 'an integer beyond 2^63 reaches a numeric column exactly');
  const huge = `{"type":"push","id":"huge","mutations":[{"op_id":"${op()}","table":"public.cf_push_num","op":"insert","pk":{"id":5},"data":{"id":5,"big":1e400},"hlc":${hlc()}}]}`;
  const hu = await sendAndNext(A, huge, 'huge');
  t.error(hu, 'invalid_json', 'a number beyond the range of a double makes the whole message invalid_json');
  t.is(psql('SELECT count(*) FROM cf_push_num WHERE id = 5'), '0', '... and nothing of it is written');
  await expectKept(t, A, 'invalid_json of a push');

  t.step = 'hlc';
  const badHlc = [['-1', -1], ['1.5', 1.5], ['a string', 'abc'], ['absent', undefined]];
  for (const [label, v] of badHlc) {
    const m = ins('public.cf_push_num', 100 + badHlc.findIndex((x) => x[0] === label), { v: 0 });
    if (v === undefined) delete m.hlc; else m.hlc = v;
    const r = await push1(m);
    t.is(r.status, 'rejected', `hlc ${label}: the mutation is rejected`);
  }
  t.is(psql('SELECT count(*) FROM cf_push_num WHERE id >= 100'), '0', 'mutations with a bad hlc wrote nothing');
  const zero = await push1({ ...ins('public.cf_push_num', 110, { v: 0 }), hlc: 0 });
  t.is(zero.status, 'applied', 'hlc 0 (a non-negative integer) is accepted');

  t.step = 'op_id';
  const r256 = await push1({ ...ins('public.cf_push_num', 120, {}), op_id: 'o'.repeat(256) });
  t.is(r256.status, 'applied', 'an op_id of 256 characters is accepted');
  for (const [label, id, key] of [['empty', '', 121], ['of 257 characters', 'o'.repeat(257), 122]]) {
    const r = await A.request({ type: 'push', mutations: [{ ...ins('public.cf_push_num', key, {}), op_id: id }] });
    const applied = r.type === 'pushed' && ((r.results || [])[0] || {}).status === 'applied';
    t.ok(!applied && psql(`SELECT count(*) FROM cf_push_num WHERE id = ${key}`) === '0', `an op_id ${label} is not accepted (nothing written)`, show(r));
  }
  const up = await push1({ ...ins('public.cf_push_num', 123, {}), op: 'upsert' });
  t.ok(up.status === 'rejected' && psql('SELECT count(*) FROM cf_push_num WHERE id = 123') === '0', 'op "upsert" (not insert, update or delete) is not applied', show(up));

  t.step = 'delete';
  const del = await push1({ op_id: op(), table: 'public.cf_push_num', op: 'delete', pk: { id: 2 }, hlc: hlc() });
  t.is(del.status, 'applied', 'a delete without data: applied');
  t.is(psql('SELECT count(*) FROM cf_push_num WHERE id = 2'), '0', 'the row is gone');

  t.step = 'conflict and lost columns';
  psql(`INSERT INTO cf_push_inv (id, notes, total) VALUES ('c1', 'origin', 1); UPDATE cf_push_inv SET notes = 'origin 2' WHERE id = 'c1';`);
  hlc.see(BigInt(psql('SELECT ofs.hlc_now()')));
  const cf = await push1(upd(INV, 'c1', { notes: 'device' }, { notes: 'origin' }));
  t.is(cf.status, 'conflict', 'a manual column changed concurrently: conflict');
  t.is((row('c1') || {}).notes, 'origin 2', 'the origin kept its value');
  t.is(psql(`SELECT count(*) FROM ofs.conflicts WHERE table_name = '${INV}' AND pk = '{"id": "c1"}' AND status = 'open'`), '1', 'a conflict is recorded for a person');
  const lost = await push1({ ...upd(INV, 'c1', { total: '5' }), hlc: 1 });
  t.ok(lost.status === 'applied' && lost.hint && Array.isArray(lost.hint.lost_columns) && lost.hint.lost_columns.includes('total'),
    'an update older than the column\'s version: applied, with hint.lost_columns naming the column', show(lost));
  t.is((row('c1') || {}).total, '1', 'the newer value stays');

  t.step = 'scope';
  const sc1 = await push1({ op_id: op(), table: 'public.cf_push_rls', op: 'insert', pk: { id: 'taken' }, data: { id: 'taken', owner: role }, hlc: hlc() });
  t.ok(sc1.status === 'rejected' && sc1.sqlstate === '23505' && sc1.hint && sc1.hint.row === null,
    'an insert of a key that belongs to a row outside the scope: rejected 23505, hint.row null', show(sc1));
  t.ok(!JSON.stringify(sc1).includes('somebody_else'), 'no value of the other row is sent', show(sc1));
  const sc2 = await push1({ op_id: op(), table: 'public.cf_push_rls', op: 'insert', pk: { id: 'free' }, data: { id: 'free', owner: 'nobody' }, hlc: hlc() });
  t.ok(sc2.status === 'rejected' && sc2.sqlstate === '42501', 'a free key the policies refuse: rejected 42501', show(sc2));
  const sc3 = await push1({ op_id: op(), table: 'public.cf_push_rls', op: 'insert', pk: { id: 'mine' }, data: { id: 'mine', owner: role }, hlc: hlc() });
  t.is(sc3.status, 'applied', 'a row the policies admit: applied');

  t.step = 'max_batch';
  const batch = (n, from) => Array.from({ length: n }, (_, k) => ({ op_id: `mb-${from + k}`, table: 'public.cf_push_num', op: 'insert',
    pk: { id: 1000 + from + k }, data: { id: 1000 + from + k }, hlc: hlc() }));
  const over = await A.request({ type: 'push', mutations: batch(DOC_LIMITS.max_batch + 1, 0) }, 30000);
  t.error(over, 'invalid_message', `a push of ${DOC_LIMITS.max_batch + 1} mutations is refused whole: invalid_message`);
  t.is(psql('SELECT count(*) FROM cf_push_num WHERE id >= 1000'), '0', '... and nothing of it is applied');
  const full = await A.request({ type: 'push', mutations: batch(DOC_LIMITS.max_batch, 2000) }, 60000);
  t.ok(full.type === 'pushed' && Array.isArray(full.results) && full.results.length === DOC_LIMITS.max_batch && full.results.every((r) => r.status === 'applied'),
    `a push of exactly ${DOC_LIMITS.max_batch} mutations: ${DOC_LIMITS.max_batch} results, all applied`, show(full.type === 'pushed' ? statuses(full).slice(0, 3) : full));
  A.close();
});
