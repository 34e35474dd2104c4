'use strict';
// PROTOCOL.md "push", atomic groups (being implemented): the mutations of one
// push with the same `group` apply all or nothing; when one is rejected it
// keeps its own sqlstate, message and hint and every other one of the
// group is rejected with OF021 and hint {kind: group_rolled_back, group,
// failed, row}; each is a dead letter and retry_dead_letter retries the
// group's open dead letters together; a conflict does not fail a group; a
// group all duplicates answers duplicate for each; a group's mutations must
// be consecutive (else the push is refused, invalid_message).
const { test, psql, psqlJSON, show, statuses, hlcClock, isObj } = require('./common');

const INV = 'public.cf_grp_inv';
const LINE = 'public.cf_grp_line';

test('conformance: atomic groups', { timeout: 60 }, async (t) => {
  const role = t.role('e2e_cf_grp_dev');
  psql(`CREATE TABLE cf_grp_inv (id text PRIMARY KEY, total numeric, note text);
        CREATE TABLE cf_grp_line (id text PRIMARY KEY, inv text NOT NULL REFERENCES cf_grp_inv (id), qty int);
        INSERT INTO cf_grp_inv VALUES ('base', 10, 'n0');
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT, INSERT, UPDATE, DELETE ON cf_grp_inv, cf_grp_line TO ${role};
        SELECT ofs.sync_table('cf_grp_inv', '{"note": "manual"}');
        SELECT ofs.sync_table('cf_grp_line');`);
  const A = await t.device(t.token(role, 'cf-grp'), 'a');
  const hlc = hlcClock(A.welcome.hlc);
  const m = (op_id, table, op, id, data, group, extra = {}) => ({ op_id, table, op, pk: { id }, ...(data ? { data: op === 'insert' ? { id, ...data } : data } : {}), hlc: hlc(), ...(group ? { group } : {}), ...extra });
  const count = (tb, where) => psql(`SELECT count(*) FROM ${tb} WHERE ${where}`);

  t.step = 'a group that applies';
  const g1 = [m('g1-a', INV, 'insert', 'i1', { total: '5' }, 'g1'), m('g1-b', LINE, 'insert', 'l1', { inv: 'i1', qty: 1 }, 'g1')];
  const r1 = await A.request({ type: 'push', mutations: g1 });
  t.same(statuses(r1), ['applied', 'applied'], 'a group whose mutations all succeed: applied, applied');
  t.is(count('cf_grp_line', "id = 'l1'"), '1', 'its rows are written');

  t.step = 'a group that fails';
  const r2 = await A.request({ type: 'push', mutations: [
    m('solo-1', INV, 'insert', 'solo', { total: '1' }),
    m('g2-a', INV, 'update', 'base', { total: '99' }, 'g2'),
    m('g2-b', LINE, 'insert', 'l2', { inv: 'nosuch', qty: 1 }, 'g2'),
    m('g2-c', LINE, 'insert', 'l3', { inv: 'base', qty: 1 }, 'g2'),
    m('solo-2', INV, 'insert', 'solo2', { total: '2' }),
  ] });
  t.same(statuses(r2), ['applied', 'rejected', 'rejected', 'rejected', 'applied'], 'mutations outside the group apply; every mutation of the failed group is rejected');
  const [, ga, gb, gc] = r2.results || [];
  t.ok(gb && gb.sqlstate === '23503' && gb.hint && gb.hint.kind === 'foreign_key_violation', 'the failing mutation keeps its own sqlstate and hint', show(gb));
  for (const [label, r] of [['before', ga], ['after', gc]]) {
    t.ok(r && r.sqlstate === 'OF021', `the mutation ${label} the failing one: sqlstate OF021`, show(r));
    const h = (r && r.hint) || {};
    t.ok(h.kind === 'group_rolled_back' && h.group === 'g2' && h.failed === 'g2-b', `... hint {kind: group_rolled_back, group: "g2", failed: "g2-b"}`, show(h));
  }
  t.ok(isObj((ga && ga.hint || {}).row) && ga.hint.row.id === 'base' && ga.hint.row.total === '10', 'hint.row of the update: the origin\'s row as the role sees it (roll back to it)', show(ga && ga.hint));
  t.ok(gc && gc.hint && 'row' in gc.hint && gc.hint.row === null, 'hint.row of an insert whose row does not exist: null', show(gc && gc.hint));
  t.is(psql(`SELECT total::text FROM cf_grp_inv WHERE id = 'base'`), '10', 'the group\'s applied update was rolled back');
  t.is(count('cf_grp_line', "id IN ('l2', 'l3')"), '0', 'nothing of the group is written');
  t.same(psqlJSON(`SELECT json_agg(operation_id ORDER BY operation_id) FROM ofs.dead_letters WHERE device = 'cf-grp' AND status = 'open'`),
    ['g2-a', 'g2-b', 'g2-c'], 'every mutation of the group is kept as a dead letter');

  t.step = 'retrying a group';
  psql(`INSERT INTO cf_grp_inv VALUES ('nosuch', 0, NULL)`);
  psql(`SELECT ofs.retry_dead_letter(id) FROM ofs.dead_letters WHERE device = 'cf-grp' AND operation_id = 'g2-c'`);
  t.is(psql(`SELECT total::text FROM cf_grp_inv WHERE id = 'base'`), '99', 'retry_dead_letter on one of them retries the whole group: the update applies');
  t.is(count('cf_grp_line', "id IN ('l2', 'l3')"), '2', '... and both inserts');
  t.is(count('ofs.dead_letters', "device = 'cf-grp' AND status = 'open'"), '0', 'no dead letter of the group stays open');

  t.step = 'duplicates';
  const r3 = await A.request({ type: 'push', mutations: g1 });
  t.same(statuses(r3), ['duplicate', 'duplicate'], 'a group that is all duplicates answers duplicate for each');

  t.step = 'a conflict does not fail a group';
  psql(`UPDATE cf_grp_inv SET note = 'origin changed' WHERE id = 'i1'`);
  hlc.see(BigInt(psql('SELECT ofs.hlc_now()')));
  const r4 = await A.request({ type: 'push', mutations: [
    m('g4-a', INV, 'update', 'i1', { note: 'device' }, 'g4', { base: { note: null } }),
    m('g4-b', LINE, 'insert', 'l4', { inv: 'i1', qty: 4 }, 'g4')] });
  t.same(statuses(r4), ['conflict', 'applied'], 'a conflict in a group: conflict, and the rest applies');
  t.is(count('cf_grp_line', "id = 'l4'"), '1', 'the group\'s insert is written');

  t.step = 'a group must be consecutive';
  const r5 = await A.request({ type: 'push', mutations: [
    m('g5-a', INV, 'insert', 'i5', { total: '1' }, 'g5'),
    m('g5-x', INV, 'insert', 'i6', { total: '1' }),
    m('g5-b', LINE, 'insert', 'l5', { inv: 'i5', qty: 1 }, 'g5')] });
  t.error(r5, 'invalid_message', 'a group whose mutations are not consecutive: the push is refused, invalid_message');
  t.is(count('cf_grp_inv', "id IN ('i5', 'i6')"), '0', 'nothing of the refused push is written');

  t.step = 'group field';
  const r6 = await A.request({ type: 'push', mutations: [m('g6-a', INV, 'insert', 'i7', { total: '1' }, null, { group: 5 })] });
  t.ok(r6.type === 'error' || ((r6.results || [])[0] || {}).status === 'rejected', 'a group that is not a string is refused', show(r6));
  const r7 = await A.request({ type: 'push', mutations: [m('g7-a', INV, 'insert', 'i8', { total: '1' }, 'g'.repeat(256)), m('g7-b', LINE, 'insert', 'l8', { inv: 'i8', qty: 1 }, 'g'.repeat(256))] });
  t.same(statuses(r7), ['applied', 'applied'], 'a group name of 256 characters is accepted');
  A.close();
});
