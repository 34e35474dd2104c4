'use strict';
// The schema message: exactly the subscribed tables, their columns with
// PostgreSQL's type names and nullability, the primary key in key order,
// the merge policy of every column, the transition constraints (edges,
// role guards, initial states), and the roles the device's role belongs to.
const { test, psql, psqlJSON, show } = require('./lib');

test('schema', { timeout: 60 }, async (t) => {
  const rep = t.role('e2e_schema_rep');
  const grp = t.role('e2e_schema_grp');
  const mgr = t.role('e2e_schema_mgr');
  psql(`GRANT ${grp} TO ${rep};
    CREATE TABLE e2e_schema_inv (id text PRIMARY KEY, status text NOT NULL DEFAULT 'draft',
      total numeric(12,2), qty integer NOT NULL DEFAULT 0, notes text, gone int,
      due timestamptz, flags boolean, tags text[]);
    ALTER TABLE e2e_schema_inv DROP COLUMN gone;
    CREATE TABLE e2e_schema_pair (b int, a text, v double precision, PRIMARY KEY (a, b));
    CREATE TABLE e2e_schema_other (id int PRIMARY KEY);
    CREATE TABLE e2e_schema_hidden (id int PRIMARY KEY);
    GRANT USAGE ON SCHEMA public TO ${rep};
    GRANT SELECT, INSERT, UPDATE, DELETE ON e2e_schema_inv, e2e_schema_pair, e2e_schema_other TO ${rep};
    SELECT ofs.sync_table('e2e_schema_inv', '{"qty": "counter", "notes": "manual"}');
    SELECT ofs.sync_table('e2e_schema_pair');
    SELECT ofs.sync_table('e2e_schema_other');
    SELECT ofs.sync_table('e2e_schema_hidden');
    SELECT ofs.add_transition_constraint('e2e_schema_inv', 'inv_flow', 'status', $$
      'draft' -> 'submitted', 'submitted' -> 'approved' BY ROLE ${mgr},
      'submitted' -> 'draft', 'approved' -> 'archived' BY ROLE ${grp}$$, ARRAY['draft']);`);
  const token = t.token(rep, 'e2e-schema-a');
  const token2 = t.token(rep, 'e2e-schema-b');

  const columnsOf = (tbl) => psqlJSON(`SELECT json_agg(json_build_object('name', attname,
      'type', format_type(atttypid, atttypmod), 'nullable', NOT attnotnull) ORDER BY attname)
      FROM pg_attribute WHERE attrelid = '${tbl}'::regclass AND attnum > 0 AND NOT attisdropped`);
  const pkOf = (tbl) => psqlJSON(`SELECT json_agg(a.attname ORDER BY k.ord)
      FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
      JOIN pg_attribute a ON a.attrelid = '${tbl}'::regclass AND a.attnum = k.attnum
      WHERE i.indrelid = '${tbl}'::regclass AND i.indisprimary`);
  const rolesOf = (r) => psqlJSON(`SELECT json_agg(rolname ORDER BY rolname) FROM pg_roles
      WHERE pg_has_role('${r}', oid, 'MEMBER')`);
  const projectColumns = (cols) => (Array.isArray(cols) ? cols : [])
    .map((c) => ({ name: c.name, type: c.type, nullable: c.nullable }))
    .sort((x, y) => (x.name < y.name ? -1 : 1));

  t.step = 'subscribe';
  const a = await t.device(token, 'a');
  const s1 = await a.request({ type: 'subscribe', table: 'e2e_schema_inv' });
  t.answer(s1, 'subscribed', 'subscribe to a table found on the search path', (m) => m.table === 'public.e2e_schema_inv');
  const s2 = await a.request({ type: 'subscribe', table: 'public.e2e_schema_pair' });
  t.answer(s2, 'subscribed', 'subscribe to a schema-qualified table', (m) => m.table === 'public.e2e_schema_pair');
  const s3 = await a.request({ type: 'subscribe', table: 'e2e_schema_hidden' });
  t.error(s3, 'not_found', 'subscribe to a synced table the role may not read: not_found');
  const s4 = await a.request({ type: 'subscribe', table: 'e2e_schema_nosuch' });
  t.error(s4, 'not_found', 'subscribe to a table that does not exist: not_found');
  psql('CREATE TABLE e2e_schema_unsynced (id int PRIMARY KEY); GRANT SELECT ON e2e_schema_unsynced TO e2e_schema_rep;');
  const s5 = await a.request({ type: 'subscribe', table: 'e2e_schema_unsynced' });
  t.error(s5, 'not_found', 'subscribe to a readable table that is not synced: not_found');

  t.step = 'schema';
  const sc = await a.request({ type: 'schema', id: 42 });
  t.answer(sc, 'schema', 'schema is answered with schema', (m) => m.id === 42);
  const tables = Array.isArray(sc.tables) ? sc.tables : [];
  t.same(tables.map((x) => x.name).sort(), ['public.e2e_schema_inv', 'public.e2e_schema_pair'],
    'schema lists exactly the subscribed tables, schema-qualified');
  const inv = tables.find((x) => x.name === 'public.e2e_schema_inv') || {};
  const pair = tables.find((x) => x.name === 'public.e2e_schema_pair') || {};

  t.same(projectColumns(inv.columns), columnsOf('e2e_schema_inv'),
    'columns of a table: every live column, format_type names (numeric(12,2), timestamp with time zone, text[]), nullability');
  t.ok(!(inv.columns || []).some((c) => c.name === 'gone' || /pg\.dropped/.test(c.name)), 'a dropped column is not listed', show(inv.columns));
  t.same(projectColumns(pair.columns), columnsOf('e2e_schema_pair'), 'columns of a table with a composite key');
  t.same(inv.primary_key, pkOf('e2e_schema_inv'), 'primary_key of a one-column key');
  t.same(pair.primary_key, ['a', 'b'], 'primary_key of a composite key in key order, not column order');

  const merge = inv.merge || {};
  const expectedMerge = { id: 'lww', status: 'lww', total: 'lww', qty: 'counter', notes: 'manual', due: 'lww', flags: 'lww', tags: 'lww' };
  const gotMerge = {};
  for (const c of Object.keys(expectedMerge)) gotMerge[c] = merge[c] === undefined ? 'lww' : merge[c];
  t.same(gotMerge, expectedMerge, 'merge: counter and manual columns named, the others lww');
  t.ok(Object.keys(merge).every((c) => c in expectedMerge), 'merge names only columns of the table', show(merge));
  t.ok(pair.merge === undefined || Object.values(pair.merge).every((p) => p === 'lww'), 'merge of a table with the default policy is all lww', show(pair.merge));

  const tr = Array.isArray(inv.transitions) ? inv.transitions : [];
  t.is(tr.length, 1, 'one transition constraint on the table');
  const flow = tr[0] || {};
  t.is(flow.name, 'inv_flow', 'transition name');
  t.is(flow.column, 'status', 'transition column');
  t.same(flow.initial, ['draft'], 'transition initial states');
  const edges = (Array.isArray(flow.edges) ? flow.edges : [])
    .map((e) => ({ from: e.from, to: e.to, role: e.role === undefined ? null : e.role }))
    .sort((x, y) => (`${x.from}>${x.to}` < `${y.from}>${y.to}` ? -1 : 1));
  t.same(edges, [
    { from: 'approved', to: 'archived', role: grp },
    { from: 'draft', to: 'submitted', role: null },
    { from: 'submitted', to: 'approved', role: mgr },
    { from: 'submitted', to: 'draft', role: null },
  ], 'transition edges with their role guards (null when unguarded)');
  t.ok(pair.transitions === undefined || (Array.isArray(pair.transitions) && pair.transitions.length === 0),
    'a table without rules has no transitions', show(pair.transitions));

  t.same([...(sc.roles || [])].sort(), rolesOf(rep), 'roles: the device role and the roles it is a member of');
  t.ok(Array.isArray(sc.roles) && sc.roles.includes(rep) && sc.roles.includes(grp) && !sc.roles.includes(mgr),
    'roles include the device role and its group, not a role it is not a member of', show(sc.roles));

  t.step = 'schema after unsubscribe';
  const u = await a.request({ type: 'unsubscribe', table: 'public.e2e_schema_pair' });
  t.answer(u, 'unsubscribed', 'unsubscribe is answered with unsubscribed', (m) => m.table === 'public.e2e_schema_pair');
  const sc2 = await a.request({ type: 'schema' });
  t.same((sc2.tables || []).map((x) => x.name), ['public.e2e_schema_inv'], 'after unsubscribe the table leaves the schema');

  t.step = 'schema after a rule changes';
  psql(`SELECT ofs.drop_transition_constraint('e2e_schema_inv', 'inv_flow')`);
  const sc3 = await a.request({ type: 'schema' });
  const inv3 = (sc3.tables || []).find((x) => x.name === 'public.e2e_schema_inv') || {};
  t.ok(inv3.transitions === undefined || (Array.isArray(inv3.transitions) && inv3.transitions.length === 0),
    'a dropped transition constraint leaves the schema', show(inv3.transitions));
  psql('ALTER TABLE e2e_schema_inv ADD COLUMN added_later date');
  const sc4 = await a.request({ type: 'schema' });
  const inv4 = (sc4.tables || []).find((x) => x.name === 'public.e2e_schema_inv') || {};
  t.same(projectColumns(inv4.columns), columnsOf('e2e_schema_inv'), 'a column added later is in the next schema');

  t.step = 'a device without subscriptions';
  const b = await t.device(token2, 'b');
  const sb = await b.request({ type: 'schema' });
  t.answer(sb, 'schema', 'schema of a device without subscriptions', (m) => Array.isArray(m.tables) && m.tables.length === 0);
  t.same([...(sb.roles || [])].sort(), rolesOf(rep), 'roles are sent without subscriptions too');
  a.close();
  b.close();
});
