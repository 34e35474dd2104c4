'use strict';
// A session never outlives the authority it was opened with.  A connection
// authenticated with a token is closed (error revoked, code 4003) within a
// second of the commit that gives its device a new token, that revokes it
// and recreates it with another role in one transaction, or when its token
// expires; and no request it makes meanwhile runs with the new role: a
// stream of pulls sent across the change never returns a row only the new
// role may see.  A role that owns a synced table (or has its owner's
// privileges) is exempt from its row-level security: it may not act as a
// device, neither at token creation nor at any later request, unless the
// table forces row-level security.  ofs.worker_stats() is for pg_monitor,
// not every role.  push resolves table names as subscribe does.
const { test, psql, psqlAsync, show, clock, sleep } = require('./lib');
const { performance } = require('node:perf_hooks');

const T = 'public.e2e_auth_notes';

test('authority', { timeout: 120 }, async (t) => {
  const low = t.role('e2e_auth_low');
  const high = t.role('e2e_auth_high');
  const owner = t.role('e2e_auth_owner');
  const plain = t.role('e2e_auth_plain');
  psql(`CREATE TABLE e2e_auth_notes (id text PRIMARY KEY, tenant text NOT NULL, body text);
        ALTER TABLE e2e_auth_notes ENABLE ROW LEVEL SECURITY;
        CREATE POLICY low_sees_a ON e2e_auth_notes FOR ALL TO ${low} USING (tenant = 'A') WITH CHECK (tenant = 'A');
        CREATE POLICY high_sees_all ON e2e_auth_notes FOR ALL TO ${high} USING (true);
        GRANT USAGE ON SCHEMA public TO ${low}, ${high}, ${owner};
        GRANT SELECT, INSERT, UPDATE, DELETE ON e2e_auth_notes TO ${low}, ${high};
        SELECT ofs.sync_table('e2e_auth_notes');
        INSERT INTO e2e_auth_notes VALUES ('a1', 'A', 'tenant A'), ('b1', 'B', 'SECRET-B');`);
  const secret = (c) => c.log.some((e) => e.raw && e.raw.includes('SECRET-B'));
  const closedRevoked = (c) => c.closed && c.closed.code === 4003 &&
    c.log.some((e) => e.msg && e.msg.type === 'error' && e.msg.code === 'revoked');

  await t.section('rotation', async () => {
    const old = t.token(low, 'e2e-auth-rot');
    const c = await t.device(old, 'rot');
    await c.request({ type: 'subscribe', table: T });
    await c.pullAll(1000, { cursor: null });
    t.ok(c.replica.size === 1 && !secret(c), 'the low role sees its one row', show([...c.replica.keys()]));
    const t0 = performance.now();
    await psqlAsync(`SELECT ofs.create_device_token('${low}', 'e2e-auth-rot')`);
    const closed = await c.waitClose(5000);
    t.ok(closed !== null && closedRevoked(c), 'a new token for the device closes the older session with revoked, 4003', show(c.closed));
    if (closed) t.ok(closed.at - t0 < 1500, `... within a second of the commit (${(closed.at - t0).toFixed(0)} ms after the statement was sent)`);
    const again = await t.connect({ label: 'rot-again' });
    const w = await again.hello(old).catch((e) => ({ lost: e.message }));
    t.error(w && w.type === 'error' ? w : again.log.map((e) => e.msg).find((m) => m && m.type === 'error'),
      'unauthorized', 'the replaced token is refused at hello');
  });

  await t.section('revoke and recreate with another role, requests in flight', async () => {
    const old = t.token(low, 'e2e-auth-swap');
    const c = await t.device(old, 'swap');
    await c.request({ type: 'subscribe', table: T });
    await c.pullAll(1000, { cursor: null });
    // Pull all along while the device is revoked and recreated for the
    // high role in one transaction: as fast as the worker's message limit
    // allows (ofs.max_messages_per_second, 200 by default), not faster.
    let stop = false;
    let answered = 0;
    const pulls = (async () => {
      while (!stop && !c.closed) {
        const a = await c.request({ type: 'pull', cursor: null }).catch(() => null);
        if (a && a.type === 'changes') answered++;
        await sleep(6);
      }
    })();
    await sleep(200);
    const t0 = performance.now();
    await psqlAsync(`BEGIN; SELECT ofs.revoke_device('e2e-auth-swap');
                     SELECT ofs.create_device_token('${high}', 'e2e-auth-swap'); COMMIT;`);
    const closed = await c.waitClose(5000);
    stop = true;
    await pulls;
    t.ok(answered > 0, `pulls were answered before the change (${answered})`);
    t.ok(closedRevoked(c), 'the session is closed with revoked, 4003', show(c.closed));
    if (closed) t.ok(closed.at - t0 < 1500, `... within a second of the commit (${(closed.at - t0).toFixed(0)} ms)`);
    t.ok(!secret(c), 'no answer of that session carries a row only the new role may see');
  });

  await t.section('a push racing a change of role', async () => {
    const c = await t.device(t.token(low, 'e2e-auth-push'), 'push');
    const hlc = clock(c.welcome.hlc);
    await psqlAsync(`BEGIN; SELECT ofs.revoke_device('e2e-auth-push');
                     SELECT ofs.create_device_token('${high}', 'e2e-auth-push'); COMMIT;`);
    // The worker may not have closed it yet: whatever it answers, the push
    // does not run as the new role (which could write tenant B).
    const a = await c.request({ type: 'push', mutations: [{ op_id: 'p1', table: T, op: 'insert', pk: { id: 'b-by-low' },
      data: { id: 'b-by-low', tenant: 'B', body: 'written with a role the token never had' }, hlc: hlc() }] }).catch(() => null);
    await c.waitClose(5000);
    t.is(psql(`SELECT count(*) FROM e2e_auth_notes WHERE id = 'b-by-low'`), '0', 'nothing is written with the new role', show(a));
    t.ok(closedRevoked(c), 'the session is closed with revoked, 4003', show(c.closed));
  });

  await t.section('expiry', async () => {
    const c = await t.device(t.token(low, 'e2e-auth-exp', '2 seconds'), 'exp');
    const t0 = performance.now();
    const closed = await c.waitClose(6000);
    t.ok(closedRevoked(c), 'a session whose token expires is closed with revoked, 4003', show(c.closed));
    if (closed) t.ok(closed.at - t0 < 3200, `... within a second of the expiry (${(closed.at - t0).toFixed(0)} ms after a 2 s token's hello)`);
  });

  await t.section('owners', async () => {
    psql(`CREATE TABLE e2e_auth_owned (id text PRIMARY KEY, tenant text, body text);
          ALTER TABLE e2e_auth_owned ENABLE ROW LEVEL SECURITY;
          CREATE POLICY only_a ON e2e_auth_owned USING (tenant = 'A');
          INSERT INTO e2e_auth_owned VALUES ('x1', 'A', 'a'), ('x2', 'B', 'SECRET-B');
          ALTER TABLE e2e_auth_owned OWNER TO ${owner};
          SELECT ofs.sync_table('e2e_auth_owned');`);
    t.cleanup(() => psql('DROP TABLE IF EXISTS e2e_auth_owned'));
    let refused = '';
    try {
      t.token(owner, 'e2e-auth-owner');
    } catch (e) {
      refused = e.message;
    }
    t.match(refused, /may not act as role "e2e_auth_owner", which owns synced table public.e2e_auth_owned/,
      'a token for the owner of a synced table is refused');
    t.match(refused, /FORCE ROW LEVEL SECURITY/, '... with a hint');
    // A role with the owner's privileges is refused too.
    psql(`GRANT ${owner} TO ${plain}`);
    let refused2 = '';
    try {
      t.token(plain, 'e2e-auth-member');
    } catch (e) {
      refused2 = e.message;
    }
    t.match(refused2, /which owns synced table/, 'a member that inherits the owner\'s privileges is refused');
    psql(`REVOKE ${owner} FROM ${plain}`);

    // A device whose role becomes an owner later is cut off at its next request.
    const c = await t.device(t.token(plain, 'e2e-auth-later'), 'later');
    psql(`GRANT SELECT ON e2e_auth_owned TO ${plain}`);
    const before = await c.request({ type: 'schema' });
    t.answer(before, 'schema', 'before, the device is served');
    psql(`ALTER TABLE e2e_auth_owned OWNER TO ${plain}`);
    const after = await c.request({ type: 'subscribe', table: 'public.e2e_auth_owned' }).catch(() => null);
    await c.waitClose(5000);
    t.ok(!after || after.type !== 'subscribed', 'after its role came to own a synced table, its request is refused', show(after));
    t.ok(closedRevoked(c), '... and the session is closed with revoked, 4003', show(c.closed));
    t.ok(!secret(c), 'it never received the other tenant\'s row');

    // With FORCE ROW LEVEL SECURITY the owner is scoped like anyone.
    psql('ALTER TABLE e2e_auth_owned FORCE ROW LEVEL SECURITY');
    const d = await t.device(t.token(plain, 'e2e-auth-forced'), 'forced');
    await d.request({ type: 'subscribe', table: 'public.e2e_auth_owned' });
    await d.pullAll(1000, { cursor: null });
    t.same(d.rows('public.e2e_auth_owned').map((r) => r.pk.id), ['x1'], 'with FORCE ROW LEVEL SECURITY an owner device is served, scoped by the policies');
    psql(`ALTER TABLE e2e_auth_owned OWNER TO ${owner}`);
    d.close();
  });

  await t.section('what a push can learn of rows outside the scope', async () => {
    const c = await t.device(t.token(low, 'e2e-auth-keys'), 'keys');
    const hlc = clock(c.welcome.hlc);
    const ins = (op, id) => ({ op_id: op, table: T, op: 'insert', pk: { id }, data: { id, tenant: 'A', body: 'mine' }, hlc: hlc() });
    const p = await c.request({ type: 'push', mutations: [ins('k1', 'b1'), ins('k2', 'a-new-key')] });
    const [taken, free] = p.results || [];
    t.is(taken && taken.sqlstate, '23505', 'an insert of a key held by a row outside the scope: unique_violation (documented)', show(p));
    t.ok(taken && taken.hint && taken.hint.row === null, '... whose hint carries no row', show(taken));
    t.ok(!p.log && !show(p, Infinity).includes('SECRET-B') && !show(p, Infinity).includes('"B"'),
      '... and no value of that row', show(p));
    t.is(free && free.status, 'applied', 'a free key of the own tenant is applied');
    c.close();
  });

  await t.section('shapes are limited', async () => {
    const c = await t.device(t.token(low, 'e2e-auth-shapes'), 'shapes');
    const max = c.welcome.limits.max_shapes;
    t.is(max, 64, 'welcome.limits.max_shapes is 64');
    let last;
    for (let i = 0; i < max; i++) last = await c.request({ type: 'subscribe', table: T, filter: `body = 'x${i}'` });
    t.answer(last, 'subscribed', `${max} shapes are accepted`);
    const over = await c.request({ type: 'subscribe', table: T, filter: "body = 'one too many'" });
    t.error(over, 'invalid_message', 'one more is refused', { message: /at most 64 shapes/ });
    const h = await t.connect({ label: 'shapes-hello' });
    const subs = Array.from({ length: 65 }, (_, i) => ({ table: T, filter: `body = 'h${i}'` }));
    const w = await h.request({ type: 'hello', token: t.token(low, 'e2e-auth-shapes2'), subscriptions: subs });
    t.error(w, 'invalid_message', 'a hello with 65 subscriptions is refused', { message: /at most 64 shapes/ });
    c.close();
  });

  await t.section('a role renamed and made anew', async () => {
    const r = t.role('e2e_auth_renamed');
    psql(`GRANT USAGE ON SCHEMA public TO ${r}; GRANT SELECT ON e2e_auth_notes TO ${r};
          CREATE POLICY renamed_sees_a ON e2e_auth_notes FOR SELECT TO ${r} USING (tenant = 'A');`);
    const c = await t.device(t.token(r, 'e2e-auth-renamed'), 'renamed');
    await c.request({ type: 'subscribe', table: T });
    await c.pullAll(1000, { cursor: null });
    psql(`BEGIN; ALTER ROLE ${r} RENAME TO e2e_auth_renamed_old; CREATE ROLE ${r}; GRANT ${high} TO ${r}; COMMIT;`);
    t.cleanup(() => psql(`DROP OWNED BY e2e_auth_renamed_old CASCADE; DROP ROLE IF EXISTS e2e_auth_renamed_old`));
    const a = await c.request({ type: 'pull', cursor: null }).catch(() => null);
    await c.waitClose(5000);
    t.ok(!secret(c), 'the open session never reads with the role now bearing the name', show(a));
    t.ok(closedRevoked(c), 'its next request closes it with revoked, 4003', show(c.closed));
  });

  await t.section('monitoring privileges', async () => {
    let err = '';
    try {
      psql(`SET ROLE ${plain}; SELECT * FROM ofs.worker_stats()`);
    } catch (e) {
      err = e.message;
    }
    t.match(err, /permission denied for function worker_stats/, 'an ordinary role may not call ofs.worker_stats()');
    psql(`GRANT pg_monitor TO ${plain}`);
    t.ok(/^\d+$/.test(psql(`SET ROLE ${plain}; SELECT connected_devices FROM ofs.stats`)), 'a member of pg_monitor reads ofs.stats');
    psql(`REVOKE pg_monitor FROM ${plain}`);
  });

  await t.section('push resolves names as subscribe does', async () => {
    const c = await t.device(t.token(low, 'e2e-auth-names'), 'names');
    const hlc = clock(c.welcome.hlc);
    const s = await c.request({ type: 'subscribe', table: 'e2e_auth_notes' });
    t.answer(s, 'subscribed', 'subscribe accepts an unqualified name');
    const p = await c.request({ type: 'push', mutations: [{ op_id: 'n1', table: 'e2e_auth_notes', op: 'insert',
      pk: { id: 'a-unqualified' }, data: { id: 'a-unqualified', tenant: 'A', body: 'x' }, hlc: hlc() }] });
    t.same((p.results || []).map((r) => r.status), ['applied'], 'push accepts the same unqualified name', show(p));
    t.is(psql(`SELECT count(*) FROM ofs.dead_letters WHERE device = 'e2e-auth-names'`), '0', 'and keeps no dead letter');
    c.close();
  });

});
