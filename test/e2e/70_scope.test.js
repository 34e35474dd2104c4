'use strict';
// Scoping by role and row-level security: two devices acting as two roles,
// a policy on an owner column.  Neither device ever receives a row or a key
// of the other's, in any message (checked on every message at the end);
// pushes outside the policy are rejected without leaking the row; a row
// whose owner changes from alice to bob is deleted at alice's device and
// appears at bob's; narrowing a device's shape removes the rows that left it.
const { test, psql, show, clock, sleep } = require('./lib');

const TABLE = 'public.e2e_scope_notes';

test('scope', { timeout: 60 }, async (t) => {
  const alice = t.role('e2e_scope_alice');
  const bob = t.role('e2e_scope_bob');
  psql(`CREATE TABLE e2e_scope_notes (id text PRIMARY KEY, owner name NOT NULL, kind text NOT NULL, body text);
        ALTER TABLE e2e_scope_notes ENABLE ROW LEVEL SECURITY;
        CREATE POLICY own ON e2e_scope_notes TO ${alice}, ${bob}
          USING (owner = current_user) WITH CHECK (owner = current_user);
        GRANT USAGE ON SCHEMA public TO ${alice}, ${bob};
        GRANT SELECT, INSERT, UPDATE, DELETE ON e2e_scope_notes TO ${alice}, ${bob};
        INSERT INTO e2e_scope_notes VALUES
          ('alice-secret-1', '${alice}', 'x', 'alice body 1'),
          ('alice-secret-2', '${alice}', 'y', 'alice body 2'),
          ('alice-secret-3', '${alice}', 'z', 'alice body 3'),
          ('move-1', '${alice}', 'x', 'moving body'),
          ('bob-secret-1', '${bob}', 'x', 'bob body 1'),
          ('bob-secret-2', '${bob}', 'y', 'bob body 2');
        SELECT ofs.sync_table('e2e_scope_notes');`);
  const A = await t.device(t.token(alice, 'e2e-scope-alice'), 'alice');
  const B = await t.device(t.token(bob, 'e2e-scope-bob'), 'bob');
  A.autoAck = true;
  B.autoAck = true;
  const ids = (c) => c.rows(TABLE).map((r) => r.pk.id).sort();
  const has = (c, id) => c.replica.has(`${TABLE} {"id":${JSON.stringify(id)}}`);
  const hlc = clock(A.welcome.hlc);

  t.step = 'initial sync';
  for (const c of [A, B]) {
    const s = await c.request({ type: 'subscribe', table: 'e2e_scope_notes' });
    t.answer(s, 'subscribed', `${c.label} subscribes to the whole table`);
    await c.pullAll(1000, { cursor: null });
    const l = await c.request({ type: 'live', cursor: c.cursor });
    t.answer(l, 'changes', `${c.label} goes live`);
  }
  t.same(ids(A), ['alice-secret-1', 'alice-secret-2', 'alice-secret-3', 'move-1'], 'alice\'s device receives exactly alice\'s rows');
  t.same(ids(B), ['bob-secret-1', 'bob-secret-2'], 'bob\'s device receives exactly bob\'s rows');

  t.step = 'origin writes for both';
  psql(`INSERT INTO e2e_scope_notes VALUES ('alice-secret-4', '${alice}', 'x', 'alice body 4');
        INSERT INTO e2e_scope_notes VALUES ('bob-secret-3', '${bob}', 'x', 'bob body 3');`);
  psql(`BEGIN; INSERT INTO e2e_scope_notes VALUES ('alice-secret-5', '${alice}', 'y', 'alice body 5'),
                                                   ('bob-secret-4', '${bob}', 'y', 'bob body 4'); COMMIT;`);
  t.ok(await A.until(() => has(A, 'alice-secret-4') && has(A, 'alice-secret-5'), 10000), 'alice\'s new rows arrive live at alice\'s device');
  t.ok(await B.until(() => has(B, 'bob-secret-3') && has(B, 'bob-secret-4'), 10000), 'bob\'s new rows arrive live at bob\'s device');

  t.step = 'pushes outside the policy';
  const forged = await A.request({ type: 'push', mutations: [
    { op_id: 's-1', table: TABLE, op: 'insert', pk: { id: 'forged-1' }, data: { id: 'forged-1', owner: bob, kind: 'x', body: 'forged body' }, hlc: hlc() }] });
  const f0 = (forged.results || [])[0] || {};
  t.ok(f0.status === 'rejected' && f0.sqlstate === '42501', 'an insert of a row for another owner is rejected with 42501', show(forged));
  t.ok(f0.hint && f0.hint.row === null, 'its hint shows no row', show(f0.hint));
  t.is(psql(`SELECT count(*) FROM e2e_scope_notes WHERE id = 'forged-1'`), '0', 'the forged row is not written');
  const hack = await A.request({ type: 'push', mutations: [
    { op_id: 's-2', table: TABLE, op: 'update', pk: { id: 'bob-secret-1' }, data: { body: 'hacked' }, hlc: hlc() }] });
  const h0 = (hack.results || [])[0] || {};
  t.ok(h0.status === 'rejected' && h0.sqlstate === 'P0002', 'an update of a row outside the policy is rejected as a missing row (P0002)', show(hack));
  t.ok(h0.hint && h0.hint.row === null, 'its hint shows no row', show(h0.hint));
  t.ok(!show(hack, Infinity).includes('bob body'), 'the rejection carries nothing of the hidden row', show(hack));
  const del = await A.request({ type: 'push', mutations: [
    { op_id: 's-3', table: TABLE, op: 'delete', pk: { id: 'bob-secret-2' }, hlc: hlc() }] });
  t.diag(`alice deleting bob's row: ${show((del.results || [])[0])}`);
  const d0 = (del.results || [])[0] || {};
  t.ok(d0.status === 'applied' && d0.hint && d0.hint.kind === 'nothing_deleted' && !('row' in d0.hint),
    'a delete of a row outside the policy says nothing was deleted, as for a row that is gone', show(del));
  t.ok(!show(del, Infinity).includes('bob body'), 'a delete outside the policy carries nothing of the hidden row', show(del));
  t.is(psql(`SELECT body FROM e2e_scope_notes WHERE id = 'bob-secret-1'`), 'bob body 1', 'bob\'s row is unchanged');
  t.is(psql(`SELECT count(*) FROM e2e_scope_notes WHERE id = 'bob-secret-2'`), '1', 'bob\'s row is not deleted by alice');
  const own = await A.request({ type: 'push', mutations: [
    { op_id: 's-4', table: TABLE, op: 'update', pk: { id: 'alice-secret-1' }, data: { body: 'alice edit' }, hlc: hlc() }] });
  t.same((own.results || []).map((r) => r.status), ['applied'], 'alice updates her own row');
  t.is(psql(`SELECT body FROM e2e_scope_notes WHERE id = 'alice-secret-1'`), 'alice edit', 'the origin holds alice\'s edit');
  t.ok(!(await A.until(() => ((A.replica.get(`${TABLE} {"id":"alice-secret-1"}`) || {}).row || {}).body === 'alice edit', 1500)),
    'her own change, left as she sent it, is not sent back to her live stream (she holds it)');

  t.step = 'owner change';
  const bBeforeMove = B.log.length;
  psql(`UPDATE e2e_scope_notes SET owner = '${bob}' WHERE id = 'move-1'`);
  const aGone = await A.until(() => !has(A, 'move-1'), 10000);
  t.ok(aGone, 'a row whose owner changes from alice to bob is deleted at alice\'s device');
  const delMsg = A.log.filter((e) => e.msg && e.msg.type === 'changes' && Array.isArray(e.msg.changes))
    .flatMap((e) => e.msg.changes).filter((c) => c.pk && c.pk.id === 'move-1' && c.op === 'delete').pop();
  t.ok(delMsg && (delMsg.row === undefined || delMsg.row === null), 'the delete carries the key only, not the row as bob owns it', show(delMsg));
  t.ok(await B.until(() => has(B, 'move-1'), 10000), 'the same row appears at bob\'s device');
  t.same((B.replica.get(`${TABLE} {"id":"move-1"}`) || {}).row, { id: 'move-1', owner: bob, kind: 'x', body: 'moving body' },
    'bob receives the whole row');
  t.ok(!B.log.slice(0, bBeforeMove).some((e) => e.raw && e.raw.includes('move-1')), 'bob heard nothing of the row before it became his');

  t.step = 'narrowing a shape';
  const sx = await A.request({ type: 'subscribe', table: 'e2e_scope_notes', filter: "kind = 'x'" });
  t.answer(sx, 'subscribed', 'alice adds the shape kind = x');
  const un = await A.request({ type: 'unsubscribe', table: 'e2e_scope_notes' });
  t.answer(un, 'unsubscribed', 'alice drops the whole-table shape');
  const wantX = ['alice-secret-1', 'alice-secret-4'];
  let narrowed = await A.until(() => same(ids(A), wantX), 5000);
  if (!narrowed) {
    t.diag(`the live stream had not narrowed after 5 s (holding ${show(ids(A))}); pulling`);
    await A.pullAll(1000);
    narrowed = same(ids(A), wantX);
  }
  t.ok(narrowed, 'after the shape narrows, the rows that left it are removed', `holding ${show(ids(A))}, want ${show(wantX)}`);
  psql(`INSERT INTO e2e_scope_notes VALUES ('alice-secret-6', '${alice}', 'y', 'alice body 6'), ('alice-secret-7', '${alice}', 'x', 'alice body 7')`);
  t.ok(await A.until(() => has(A, 'alice-secret-7'), 10000), 'a new row in the narrowed shape arrives');
  await sleep(500);
  t.ok(!has(A, 'alice-secret-6'), 'a new row outside the narrowed shape does not arrive');

  t.step = 'a policy change and ofs.resnapshot_device';
  psql(`ALTER POLICY own ON e2e_scope_notes USING (owner = current_user AND kind <> 'y')
          WITH CHECK (owner = current_user);
        SELECT ofs.resnapshot_device('e2e-scope-bob');`);
  const rp = await B.pullAll(1000);
  t.ok(rp.every((p) => p.type === 'changes'), 'after ofs.resnapshot_device the device pulls as usual');
  t.same(ids(B), ['bob-secret-1', 'bob-secret-3', 'move-1'], 'rows the changed policy no longer admits are removed from the device');

  t.step = 'the role loses SELECT';
  psql(`REVOKE SELECT ON e2e_scope_notes FROM ${bob};
        SELECT ofs.resnapshot_device('e2e-scope-bob');`);
  const rs = await B.pullAll(1000).catch((e) => [{ lost: e.message }]);
  t.ok(rs.every((p) => p.type === 'changes'), 'a device whose role lost SELECT still pulls', show(rs, 500));
  t.same(ids(B), [], 'a role that lost SELECT: every row of the table is removed from the device');

  t.step = 'every message';
  await sleep(300);
  const leaks = (c, words, skip) => c.log.filter((e) => e.raw && !(skip && skip(e.msg)) && words.some((w) => e.raw.includes(w))).map((e) => e.raw);
  const aLeaks = leaks(A, ['bob-secret', 'bob body', 'forged body'], (m) => m && m.type === 'pushed');
  const aPushedLeaks = leaks(A, ['bob body']);
  const bLeaks = leaks(B, ['alice-secret', 'alice body', 'forged', 'alice edit', alice]);
  t.ok(aLeaks.length === 0 && aPushedLeaks.length === 0, `no message to alice's device (${A.log.length}) holds a row or key of bob's`, show(aLeaks.concat(aPushedLeaks).slice(0, 3)));
  t.ok(bLeaks.length === 0, `no message to bob's device (${B.log.length}) holds a row or key of alice's`, show(bLeaks.slice(0, 3)));
  A.close();
  B.close();
});

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}
