'use strict';
// PROTOCOL.md "schema" (being implemented): {"all": true} lists every synced
// table the device's role may read, subscribed or not; `subscribed` says
// which; without `all`, only subscribed tables (subscribed true).
const { test, psql, show, expectKept } = require('./common');

test('conformance: schema all and subscribed', { timeout: 60 }, async (t) => {
  const role = t.role('e2e_cf_sall_dev');
  psql(`CREATE TABLE cf_sall_sub (id int PRIMARY KEY, v text);
        CREATE TABLE cf_sall_free (id int PRIMARY KEY);
        CREATE TABLE cf_sall_hidden (id int PRIMARY KEY);
        CREATE TABLE cf_sall_unsynced (id int PRIMARY KEY);
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT ON cf_sall_sub, cf_sall_free, cf_sall_unsynced TO ${role};
        SELECT ofs.sync_table('cf_sall_sub'); SELECT ofs.sync_table('cf_sall_free'); SELECT ofs.sync_table('cf_sall_hidden');`);
  const A = await t.device(t.token(role, 'cf-sall'), 'a');
  await A.request({ type: 'subscribe', table: 'cf_sall_sub' });
  const flags = (s) => (Array.isArray(s.tables) ? s.tables.map((x) => `${x.name} ${x.subscribed}`).sort() : show(s));

  const s0 = await A.request({ type: 'schema' });
  t.same(flags(s0), ['public.cf_sall_sub true'], 'schema without all: the subscribed table, with "subscribed": true');
  const s1 = await A.request({ type: 'schema', id: 'all', all: true });
  t.answer(s1, 'schema', 'schema with "all": true is answered with schema', (m) => m.id === 'all');
  t.same(flags(s1), ['public.cf_sall_free false', 'public.cf_sall_sub true'],
    'with "all": true: every synced table the role may read, subscribed or not (not the unreadable one, not the unsynced one)');
  const free = (s1.tables || []).find((x) => x.name === 'public.cf_sall_free') || {};
  t.ok(Array.isArray(free.columns) && free.columns.length === 1 && free.columns[0].name === 'id' && free.columns[0].type === 'integer' &&
    JSON.stringify(free.primary_key) === '["id"]' && Array.isArray(free.transitions), 'an unsubscribed table is described like a subscribed one', show(free));
  t.ok(Array.isArray(s1.roles) && s1.roles.includes(role), 'roles is present with "all"', show(s1.roles));
  const s2 = await A.request({ type: 'schema', all: false });
  t.same(flags(s2), ['public.cf_sall_sub true'], '"all": false is as without all');
  const bad = await A.request({ type: 'schema', all: 'yes' });
  t.error(bad, 'invalid_message', '"all" that is not a boolean: invalid_message (a wrongly typed field)');
  await expectKept(t, A, 'a wrongly typed all');
  A.close();
});
