'use strict';
// PROTOCOL.md "rejections" (being implemented): welcome.rejections, the
// rejections request and its example's shape (dead_letters and conflicts
// with every documented field), statuses (open, retried with retry_result,
// discarded; conflict open or resolved with resolution), the version
// changing whenever one is made, closed or cleared (and carried by
// changes), clear (closed entries go, open dead letters are discarded,
// open conflicts stay, other devices' ids are ignored).
const { test, psql, show, isInt, isStr, isObj, hlcClock, statuses } = require('./common');

const T = 'public.cf_rej';
// big: a version as BigInt (-1 when absent, so comparisons fail instead of throwing).
const big = (v) => (isInt(v) ? BigInt(v) : -1n);

test('conformance: rejections', { timeout: 60 }, async (t) => {
  const role = t.role('e2e_cf_rej_dev');
  psql(`CREATE TABLE cf_rej (id text PRIMARY KEY, qty int CHECK (qty >= 0), note text);
        INSERT INTO cf_rej VALUES ('r1', 1, 'origin');
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT, INSERT, UPDATE, DELETE ON cf_rej TO ${role};
        SELECT ofs.sync_table('cf_rej', '{"note": "manual"}');`);
  const A = await t.device(t.token(role, 'cf-rej'), 'a');
  const O = await t.device(t.token(role, 'cf-rej-other'), 'other');
  const hlc = hlcClock(A.welcome.hlc);
  const v0 = A.welcome.rejections;
  t.ok(isInt(v0), 'welcome.rejections is a number', show(A.welcome));
  const ask = (extra = {}) => A.request({ type: 'rejections', ...extra });

  t.step = 'nothing yet';
  const e0 = await ask({ id: 4 });
  t.ok(e0.type === 'rejections' && e0.id === 4 && isInt(e0.version) && Array.isArray(e0.dead_letters) && e0.dead_letters.length === 0 &&
    Array.isArray(e0.conflicts) && e0.conflicts.length === 0, 'a device without rejections: version, empty dead_letters and conflicts', show(e0));
  t.ok(isInt(e0.version) && big(e0.version) === big(v0), 'the version is the one in welcome', show([e0.version, v0]));

  t.step = 'a dead letter and a conflict';
  await A.request({ type: 'subscribe', table: 'cf_rej' });
  psql(`UPDATE cf_rej SET note = 'origin 2' WHERE id = 'r1'`);
  hlc.see(BigInt(psql('SELECT ofs.hlc_now()')));
  const pr = await A.request({ type: 'push', mutations: [
    { op_id: 'bad-1', table: T, op: 'insert', pk: { id: 'r2' }, data: { id: 'r2', qty: -1 }, hlc: hlc() },
    { op_id: 'bad-2', table: T, op: 'insert', pk: { id: 'r3' }, data: { id: 'r3', qty: -1 }, hlc: hlc() },
    { op_id: 'cf-1', table: T, op: 'update', pk: { id: 'r1' }, data: { note: 'device' }, base: { note: 'origin' }, hlc: hlc() }] });
  t.same(statuses(pr), ['rejected', 'rejected', 'conflict'], 'two rejections and a conflict');
  const e1 = await ask();
  t.ok(isInt(e1.version) && big(e1.version) !== big(e0.version), 'the version changed when they were made', show([e0.version, e1.version]));
  const dl = (e1.dead_letters || []).find((d) => d.operation_id === 'bad-1') || {};
  t.same(Object.keys(dl).sort(), ['closed_at', 'created_at', 'group', 'hint', 'id', 'message', 'op', 'operation_id', 'pk', 'retry_result', 'sqlstate', 'status', 'table'].sort(),
    'a dead letter has the example\'s fields');
  t.ok(isInt(dl.id) && dl.table === T && JSON.stringify(dl.pk) === '{"id":"r2"}' && dl.op === 'insert' && dl.group === null && dl.sqlstate === '23514' &&
    isStr(dl.message) && isObj(dl.hint) && dl.hint.kind === 'check_violation' && dl.status === 'open' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$/.test(dl.created_at) &&
    dl.closed_at === null && dl.retry_result === null, 'its values: id, table, pk, op, group null, sqlstate, message, hint, status open, created_at in UTC, closed_at and retry_result null', show(dl));
  const cf = (e1.conflicts || [])[0] || {};
  t.same(Object.keys(cf).sort(), ['base_value', 'column', 'created_at', 'device_value', 'id', 'operation_id', 'origin_value', 'pk', 'resolution', 'resolved_at', 'status', 'table'].sort(),
    'a conflict has the example\'s fields');
  t.ok(isInt(cf.id) && cf.operation_id === 'cf-1' && cf.table === T && JSON.stringify(cf.pk) === '{"id":"r1"}' && cf.column === 'note' &&
    cf.origin_value === 'origin 2' && cf.device_value === 'device' && cf.base_value === 'origin' && cf.status === 'open',
  'its values: operation_id, table, pk, column, origin_value, device_value, base_value, status open', show(cf));
  const pull = await A.request({ type: 'pull', cursor: null });
  t.ok(isInt(pull.rejections) && big(pull.rejections) === big(e1.version), 'changes carries rejections, the current version', show(pull.rejections));
  const e0b = await O.request({ type: 'rejections' });
  t.ok((e0b.dead_letters || []).length === 0 && (e0b.conflicts || []).length === 0, 'another device does not see them', show(e0b));

  t.step = 'retried, discarded, resolved';
  psql(`ALTER TABLE cf_rej DROP CONSTRAINT cf_rej_qty_check`);
  psql(`SELECT ofs.retry_dead_letter(id) FROM ofs.dead_letters WHERE device = 'cf-rej' AND operation_id = 'bad-1'`);
  psql(`SELECT ofs.resolve_conflict(id, 'device') FROM ofs.conflicts WHERE operation_id = 'cf-1'`);
  const e2 = await ask();
  t.ok(big(e2.version) !== big(e1.version), 'the version changed when they were closed');
  const dl2 = (e2.dead_letters || []).find((d) => d.operation_id === 'bad-1') || {};
  t.ok(dl2.status === 'retried' && isObj(dl2.retry_result) && dl2.retry_result.status === 'applied' && isStr(dl2.closed_at), 'a retried dead letter: status retried, retry_result {status applied}, closed_at', show(dl2));
  const cf2 = (e2.conflicts || [])[0] || {};
  t.ok(cf2.status === 'resolved' && cf2.resolution === 'device' && isStr(cf2.resolved_at), 'a resolved conflict: status resolved, resolution device, resolved_at', show(cf2));

  t.step = 'clear';
  psql(`INSERT INTO cf_rej VALUES ('o1', 1, 'x')`);
  const po = await O.request({ type: 'push', mutations: [{ op_id: 'o-bad', table: T, op: 'insert', pk: { id: 'o1' }, data: { id: 'o1' }, hlc: hlc() }] });
  t.same(statuses(po), ['rejected'], 'another device gets a dead letter');
  const otherId = psql(`SELECT id FROM ofs.dead_letters WHERE device = 'cf-rej-other'`);
  const openId = ((e2.dead_letters || []).find((d) => d.operation_id === 'bad-2') || {}).id;
  psql(`UPDATE cf_rej SET note = 'origin 3' WHERE id = 'r1'`);
  hlc.see(BigInt(psql('SELECT ofs.hlc_now()')));
  await A.request({ type: 'push', mutations: [{ op_id: 'cf-2', table: T, op: 'update', pk: { id: 'r1' }, data: { note: 'device 2' }, base: { note: 'device' }, hlc: hlc() }] });
  const e3 = await ask();
  const openCf = (e3.conflicts || []).find((c) => c.operation_id === 'cf-2') || {};
  t.is(openCf.status, 'open', 'a second conflict is open');
  const cleared = await ask({ clear: { dead_letters: [dl2.id, openId, Number(otherId)], conflicts: [cf2.id, openCf.id] } });
  t.answer(cleared, 'rejections', 'clear is answered with rejections');
  t.same((cleared.dead_letters || []).map((d) => d.operation_id), [], 'the cleared dead letters are no longer listed (closed, and open ones discarded)');
  t.same((cleared.conflicts || []).map((c) => c.operation_id), ['cf-2'], 'the open conflict stays; the resolved one is no longer listed');
  t.is(psql(`SELECT status FROM ofs.dead_letters WHERE device = 'cf-rej' AND operation_id = 'bad-2'`), 'discarded', 'an open dead letter cleared by the device is discarded');
  t.is(psql(`SELECT status FROM ofs.dead_letters WHERE id = ${otherId}`), 'open', 'another device\'s id is ignored');
  t.ok(big(cleared.version) !== big(e3.version), 'the version changed when they were cleared', show([e3.version, cleared.version]));
  const A2 = await t.connect({ label: 'a2' });
  const w2 = await A2.hello(psql(`SELECT ofs.create_device_token('${role}', 'cf-rej')`));
  t.ok(isInt(w2.rejections) && big(w2.rejections) === big(cleared.version), 'welcome.rejections is the current version', show([w2.rejections, cleared.version]));
  A2.close();
});
