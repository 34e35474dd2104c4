'use strict';
// PROTOCOL.md "Session" and "hello": the first message must be hello (else
// unauthenticated, 4001); no hello within 10 s, or a third error before
// it, closes with 4001; welcome's fields and types, limits against the
// Limits table; hello's subscriptions (exactly that list; refused ones change
// nothing; a refused first hello leaves the connection unauthenticated); a
// second hello; unknown, expired and revoked tokens (unauthorized, 28000,
// the request's id, 4001, nothing else sent); roles that may not act as a
// device; the session's authority ending (revoked, 4003).
const {
  test, psql, psqlAsync, show, sleep, DOC_LIMITS, CLOSE, isStr, isObj, setting, closeAfter, expectKept,
} = require('./common');

test('conformance: session and hello', { timeout: 90 }, async (t) => {
  const role = t.role('e2e_cf_ses_dev');
  const other = t.role('e2e_cf_ses_other');
  const owner = t.role('e2e_cf_ses_owner');
  const su = t.role('e2e_cf_ses_su', 'SUPERUSER');
  const byp = t.role('e2e_cf_ses_byp', 'BYPASSRLS');
  psql(`CREATE TABLE cf_ses (id text PRIMARY KEY, region text, v int);
        INSERT INTO cf_ses VALUES ('secret', 'north', 1);
        CREATE TABLE cf_ses_owned (id int PRIMARY KEY);
        SELECT ofs.sync_table('cf_ses_owned');
        ALTER TABLE cf_ses_owned OWNER TO ${owner};
        CREATE TABLE cf_ses_later (id int PRIMARY KEY);
        SELECT ofs.sync_table('cf_ses_later');
        GRANT USAGE ON SCHEMA public TO ${role}, ${other};
        GRANT SELECT, INSERT, UPDATE, DELETE ON cf_ses, cf_ses_later TO ${role}, ${other};
        SELECT ofs.sync_table('cf_ses');`);
  const token = t.token(role, 'cf-ses');
  const version = psql(`SELECT extversion FROM pg_extension WHERE extname = 'ofs'`);

  t.step = 'a silent connection (runs beside the rest)';
  const silent = await t.connect({ label: 'silent' });
  const silentClosed = silent.waitClose(20000);

  t.step = 'welcome';
  const A = await t.connect({ label: 'a' });
  const w = await A.request({ type: 'hello', id: 9, token });
  t.answer(w, 'welcome', 'hello with a valid token is answered with welcome');
  t.ok(w.id === 9, 'welcome carries the hello\'s id', show(w.id));
  t.is(w.device, 'cf-ses', 'welcome.device: the device name (string)');
  t.is(w.role, role, 'welcome.role: the role the device acts as (string)');
  t.ok(w.protocol === 1, 'welcome.protocol: the number 1', show(w.protocol));
  t.is(w.server_version, version, 'welcome.server_version: the extension version (string)');
  t.same(w.subscriptions, [], 'welcome.subscriptions: an array, empty for a new device');
  t.ok(isObj(w.limits), 'welcome.limits is an object', show(w.limits));
  const lim = w.limits || {};
  for (const k of Object.keys(DOC_LIMITS)) {
    t.ok(Number.isInteger(lim[k]) && lim[k] > 0, `welcome.limits.${k} is a positive integer`, show(lim));
  }
  const mmb = setting('ofs.max_message_bytes');
  t.is(lim.max_message_bytes, mmb.value, 'limits.max_message_bytes is ofs.max_message_bytes');
  if (mmb.isDefault) t.is(lim.max_message_bytes, DOC_LIMITS.max_message_bytes, 'limits.max_message_bytes: the documented default 1 MiB');
  const mps = setting('ofs.max_messages_per_second');
  t.is(lim.max_messages_per_second, mps.value, 'limits.max_messages_per_second is ofs.max_messages_per_second');
  if (mps.isDefault) t.is(lim.max_messages_per_second, DOC_LIMITS.max_messages_per_second, 'limits.max_messages_per_second: the documented default 200');
  t.is(lim.max_batch, DOC_LIMITS.max_batch, 'limits.max_batch: the documented 1000 mutations per push');
  t.is(lim.max_rows, DOC_LIMITS.max_rows, 'limits.max_rows: the documented 1000 rows per pull');
  t.is(lim.max_shapes, DOC_LIMITS.max_shapes, 'limits.max_shapes: the documented 64 shapes per device');

  t.step = 'hello with subscriptions';
  const subs = [{ table: 'cf_ses', filter: "region = 'north'" }, { table: 'public.cf_ses_later' }];
  const B = await t.connect({ label: 'b' });
  const wb = await B.hello(t.token(role, 'cf-ses-b'), { subscriptions: subs });
  t.answer(wb, 'welcome', 'hello with subscriptions is answered with welcome');
  const norm = await A.request({ type: 'subscribe', table: 'cf_ses', filter: "region = 'north'" });
  await A.request({ type: 'unsubscribe', table: 'cf_ses', filter: "region = 'north'" });
  const tablesOf = (l) => (Array.isArray(l) ? l.map((s) => `${s.table} ${s.filter === undefined || s.filter === null ? '' : s.filter}`).sort() : show(l));
  t.same(tablesOf(wb.subscriptions), [`public.cf_ses ${norm.filter}`, 'public.cf_ses_later '].sort(),
    'welcome.subscriptions: the list sent, schema-qualified, filters normalized as subscribe normalizes them');
  t.is(psql(`SELECT count(*) FROM ofs.subscriptions WHERE device = 'cf-ses-b'`), '2', 'the origin keeps exactly the two shapes');
  const B2 = await t.connect({ label: 'b2' });
  const tokB = psql(`SELECT ofs.create_device_token('${role}', 'cf-ses-b')`);
  const wb3 = await B2.hello(tokB);
  t.same(tablesOf(wb3.subscriptions), tablesOf(wb.subscriptions), 'a hello without subscriptions keeps the device\'s subscriptions');
  const wb4 = await B2.hello(tokB, { subscriptions: [{ table: 'cf_ses_later' }] });
  t.same(tablesOf(wb4.subscriptions), ['public.cf_ses_later '], 'a hello with subscriptions makes them exactly that list (the other shape is dropped)');
  t.is(psql(`SELECT string_agg(table_name::text, ',') FROM ofs.subscriptions WHERE device = 'cf-ses-b'`), 'cf_ses_later',
    'the origin drops the shape that is not in the list');

  t.step = 'a refused hello on an authenticated connection';
  const bad1 = await B2.request({ type: 'hello', token: tokB, subscriptions: [{ table: 'cf_ses', filter: 'lower(region) = 1' }] });
  t.error(bad1, 'invalid_filter', 'a second hello with a filter outside the grammar: error invalid_filter');
  const bad2 = await B2.request({ type: 'hello', token: tokB, subscriptions: [{ table: 'cf_ses_nosuch' }] });
  t.error(bad2, 'not_found', 'a second hello with a table that is not synced: error not_found');
  t.is(psql(`SELECT string_agg(table_name::text, ',') FROM ofs.subscriptions WHERE device = 'cf-ses-b'`), 'cf_ses_later',
    'a hello whose subscriptions are refused changes nothing');
  await expectKept(t, B2, 'a refused second hello (the session stays authenticated)');

  t.step = 'a refused first hello';
  const C = await t.connect({ label: 'c' });
  const cTok = t.token(role, 'cf-ses-c');
  const cr = await C.request({ type: 'hello', token: cTok, subscriptions: [{ table: 'cf_ses', filter: 'nosuchcol = 1' }] });
  t.error(cr, 'invalid_filter', 'a first hello with an unknown filter column: error invalid_filter');
  t.ok(C.open, 'the connection is kept after a first hello with refused subscriptions');
  t.is(psql(`SELECT count(*) FROM ofs.subscriptions WHERE device = 'cf-ses-c'`), '0', 'the refused first hello set no subscription');
  C.send({ type: 'schema', id: 'c-after' });
  const cc = await closeAfter(C);
  t.error(cc.err, 'unauthenticated', 'a request after a refused first hello: error unauthenticated (the connection stayed unauthenticated)');
  t.is(cc.closed && cc.closed.code, CLOSE.unauthenticated, '... and close 4001');
  t.ok(!cc.msgs.some((m) => m && m.type === 'schema'), 'no schema is sent on an unauthenticated connection');

  t.step = 'requests before hello';
  for (const [label, msg] of [['schema', { type: 'schema', id: 'e1' }], ['push', { type: 'push', id: 'e2', mutations: [] }], ['pull', { type: 'pull', id: 'e3' }], ['ack', { type: 'ack', cursor: 'x' }]]) {
    const E = await t.connect({ label: `early-${label}` });
    E.send(msg);
    const r = await closeAfter(E);
    t.error(r.err, 'unauthenticated', `${label} before hello: error unauthenticated`);
    t.is(r.closed && r.closed.code, CLOSE.unauthenticated, `${label} before hello: close 4001`);
    t.is(r.msgs.length, 1, `${label} before hello: nothing but the error is sent`, show(r.msgs));
  }

  t.step = 'three errors before hello';
  const F = await t.connect({ label: 'three' });
  F.sendRaw('not json');
  const f1 = await F.next('error', 5000);
  F.sendRaw('{"type":');
  const f2 = await F.next('error', 5000);
  t.ok(f1 && f2 && f1.code === 'invalid_json' && f2.code === 'invalid_json', 'two invalid JSON messages before hello: two errors invalid_json', show([f1, f2]));
  await sleep(200);
  t.ok(F.open, 'the connection is kept after two errors before hello');
  F.sendRaw('[]');
  const fr = await closeAfter(F);
  t.is(fr.closed && fr.closed.code, CLOSE.unauthenticated, 'the third error before hello closes with 4001');
  t.is(fr.errs.length, 3, 'three errors were sent in all', show(fr.msgs));
  t.is(fr.err && fr.err.code, 'invalid_json', 'the third error is sent with its own code ("that error is sent with its own code, then the connection closes")');
  const G = await t.connect({ label: 'then-hello' });
  G.sendRaw('nope');
  await G.next('error', 5000);
  t.answer(await G.hello(token), 'welcome', 'one error before hello does not prevent a later hello');
  G.close();

  t.step = 'refused tokens';
  const expTok = t.token(role, 'cf-ses-exp', '1 second');
  const revTok = t.token(role, 'cf-ses-rev');
  psql(`SELECT ofs.revoke_device('cf-ses-rev')`);
  await sleep(1300);
  const refused = async (label, tok, re) => {
    const R = await t.connect({ label });
    R.send({ type: 'hello', id: `h-${label}`, token: tok });
    const r = await closeAfter(R);
    t.error(r.msgs[0], 'unauthorized', `${label} token: error unauthorized, sqlstate 28000`, { sqlstate: '28000' });
    t.match(r.msgs[0] && r.msgs[0].message, re, `${label} token: the message says which (${re})`);
    t.is(r.msgs[0] && r.msgs[0].id, `h-${label}`, `${label} token: the error carries the request's id`);
    t.is(r.closed && r.closed.code, CLOSE.unauthenticated, `${label} token: close 4001`);
    t.is(r.msgs.length, 1, `${label} token: no data is sent`, show(r.msgs));
  };
  await refused('unknown', `ofs_${'ab'.repeat(32)}`, /unknown|not found|invalid|no such|does not exist/i);
  await refused('expired', expTok, /expir/i);
  await refused('revoked', revTok, /revok/i);
  const H = await t.connect({ label: 'no-token' });
  const ht = await H.request({ type: 'hello', id: 'nt' }).catch((e) => ({ lost: e.message }));
  t.ok(ht.type === 'error' && ['invalid_message', 'unauthorized'].includes(ht.code), 'a hello without a token is refused (an error, no welcome)', show(ht));

  t.step = 'roles that may not act as a device';
  for (const [label, r] of [['a superuser', su], ['a BYPASSRLS role', byp], ['the owner of a synced table without FORCE ROW LEVEL SECURITY', owner]]) {
    let tok = null;
    try {
      tok = psql(`SELECT ofs.create_device_token('${r}', 'cf-ses-${r}')`);
    } catch (e) {
      tok = null;
    }
    if (tok === null) {
      t.pass(`${label}: no token is made for it`);
      continue;
    }
    const R = await t.connect({ label: r });
    R.send({ type: 'hello', id: 'x', token: tok });
    const res = await closeAfter(R);
    t.ok(!res.msgs.some((m) => m && m.type === 'welcome') && res.closed && res.closed.code === CLOSE.unauthenticated,
      `${label}: its token is refused (no welcome, close 4001)`, show(res));
  }

  t.step = 'a second hello: the authority of the last token';
  const tokX = t.token(role, 'cf-ses-x');
  const tokY = t.token(other, 'cf-ses-y');
  const X = await t.device(tokX, 'x');
  const wy = await X.hello(tokY);
  t.is(wy.device, 'cf-ses-y', 'a second hello with another device\'s token authenticates as that device');
  t.is(wy.role, other, '... with that device\'s role');
  await psqlAsync(`SELECT ofs.revoke_device('cf-ses-x')`);
  await sleep(2000);
  t.ok(X.open, 'revoking the device of the first hello does not end a session that said hello again with another token');
  await expectKept(t, X, 'after revoking the first token\'s device');

  t.step = 'the session\'s authority ends';
  const ending = async (label, tok, dev, sql) => {
    const S = await t.device(tok, label);
    await psqlAsync(sql);
    const r = await closeAfter(S, 10000);
    t.error(r.err, 'revoked', `${label}: error revoked`);
    t.ok(r.err && (r.err.id === undefined || r.err.id === null), `${label}: the revoked error has no id (sent on the worker's own)`, show(r.err));
    t.is(r.closed && r.closed.code, CLOSE.revoked, `${label}: close 4003`);
  };
  await ending('revoked device', t.token(role, 'cf-ses-r1'), 'cf-ses-r1', `SELECT ofs.revoke_device('cf-ses-r1')`);
  await ending('new token', t.token(role, 'cf-ses-r2'), 'cf-ses-r2', `SELECT ofs.create_device_token('${role}', 'cf-ses-r2')`);
  await ending('new role', t.token(role, 'cf-ses-r3'), 'cf-ses-r3', `SELECT ofs.create_device_token('${other}', 'cf-ses-r3')`);
  await ending('expired token', t.token(role, 'cf-ses-r4', '2 seconds'), 'cf-ses-r4', 'SELECT 1');
  await ending('X after its last token\'s device is revoked', tokY, 'cf-ses-y', `SELECT ofs.revoke_device('cf-ses-y')`);

  t.step = 'a role that comes to own a synced table';
  const O = await t.device(t.token(role, 'cf-ses-own'), 'own');
  await psqlAsync(`ALTER TABLE cf_ses_later OWNER TO ${role}`);
  O.send({ type: 'schema', id: 'own-1' });
  const ro = await closeAfter(O, 12000);
  t.error(ro.err, 'revoked', 'a device whose role came to own a synced table: error revoked');
  t.is(ro.closed && ro.closed.code, CLOSE.revoked, '... close 4003');
  t.ok(!ro.msgs.some((m) => m && m.type === 'schema'), '... and its request is not answered with data', show(ro.msgs));
  psql(`ALTER TABLE cf_ses_later OWNER TO CURRENT_USER`);

  t.step = 'no hello within 10 s';
  const sc = await silentClosed;
  t.is(sc && sc.code, CLOSE.unauthenticated, 'a connection that sends no hello within 10 s is closed with 4001');
  t.ok(!silent.log.some((e) => e.msg && e.msg.type !== 'error'), 'it receives nothing but an error', show(silent.log.map((e) => e.raw)));
  t.ok(!silent.log.some((e) => e.raw && e.raw.includes('secret')) && !A.log.some((e) => e.raw && e.raw.includes('secret')),
    'no row data reaches connections that did not ask for it');
  A.close();
});
