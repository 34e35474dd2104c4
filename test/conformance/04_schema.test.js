'use strict';
// PROTOCOL.md "schema": the answer's tables (every subscribed table, its
// columns with format_type names and nullability, primary key, merge
// policy, transition constraints with initial states and edges) and roles,
// against the documented example's shape.
const { test, psql, show, isStr, isObj } = require('./common');

test('conformance: schema', { timeout: 60 }, async (t) => {
  const role = t.role('e2e_cf_sch_dev');
  const grp = t.role('e2e_cf_sch_grp');
  const mgr = t.role('e2e_cf_sch_mgr');
  psql(`GRANT ${grp} TO ${role};
        CREATE TABLE cf_sch_inv (id text PRIMARY KEY, status text NOT NULL DEFAULT 'draft', total numeric(10,2),
          notes text, qty int NOT NULL DEFAULT 0, label varchar(20), at timestamptz);
        CREATE TABLE cf_sch_lines (inv text, n int, amount numeric, PRIMARY KEY (n, inv));
        CREATE TABLE cf_sch_other (id int PRIMARY KEY);
        CREATE TABLE cf_sch_hidden (id int PRIMARY KEY);
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT, INSERT, UPDATE, DELETE ON cf_sch_inv, cf_sch_lines, cf_sch_other TO ${role};
        SELECT ofs.sync_table('cf_sch_inv', '{"notes": "manual", "qty": "counter"}');
        SELECT ofs.sync_table('cf_sch_lines');
        SELECT ofs.sync_table('cf_sch_other');
        SELECT ofs.sync_table('cf_sch_hidden');
        SELECT ofs.add_transition_constraint('cf_sch_inv', 'invoice_flow', 'status', $$
          'draft' -> 'submitted', 'submitted' -> 'approved' BY ROLE ${mgr}, 'submitted' -> 'draft'$$, ARRAY['draft']);`);
  const A = await t.device(t.token(role, 'cf-sch'), 'a');

  t.step = 'before any subscription';
  const s0 = await A.request({ type: 'schema', id: 1 });
  t.answer(s0, 'schema', 'schema is answered with schema');
  t.ok(s0.id === 1, 'the answer carries the id', show(s0.id));
  t.same(s0.tables, [], 'a device with no subscription: tables is empty');

  t.step = 'subscribed tables';
  await A.request({ type: 'subscribe', table: 'cf_sch_inv' });
  await A.request({ type: 'subscribe', table: 'cf_sch_lines', filter: 'n > 0' });
  const s = await A.request({ type: 'schema' });
  const names = (s.tables || []).map((x) => x.name).sort();
  t.same(names, ['public.cf_sch_inv', 'public.cf_sch_lines'], 'tables: every table the device subscribes to (schema-qualified), no other');
  const inv = (s.tables || []).find((x) => x.name === 'public.cf_sch_inv') || {};
  const lines = (s.tables || []).find((x) => x.name === 'public.cf_sch_lines') || {};
  const cols = (tb) => (Array.isArray(tb.columns) ? [...tb.columns].sort((a, b) => (a.name < b.name ? -1 : 1)) : show(tb));
  t.same(cols(inv), [
    { name: 'at', type: 'timestamp with time zone', nullable: true },
    { name: 'id', type: 'text', nullable: false },
    { name: 'label', type: 'character varying(20)', nullable: true },
    { name: 'notes', type: 'text', nullable: true },
    { name: 'qty', type: 'integer', nullable: false },
    { name: 'status', type: 'text', nullable: false },
    { name: 'total', type: 'numeric(10,2)', nullable: true },
  ], 'columns: name, type as format_type names it, nullable (exactly these keys)');
  t.same(inv.primary_key, ['id'], 'primary_key: the key columns');
  t.same(lines.primary_key, ['n', 'inv'], 'primary_key of a composite key: its columns in key order');
  const merge = inv.merge || {};
  t.ok(isObj(inv.merge), 'merge is an object', show(inv));
  t.is(merge.notes, 'manual', 'merge names the manual column');
  t.is(merge.qty, 'counter', 'merge names the counter column');
  t.ok(Object.keys(merge).every((k) => k === 'notes' || k === 'qty' || merge[k] === 'lww'),
    'merge: every other column named is lww', show(merge));
  t.ok(isObj(lines.merge) && Object.values(lines.merge).every((v) => v === 'lww'), 'a table synced without a merge policy: every column lww (or none named)', show(lines.merge));
  const tr = Array.isArray(inv.transitions) ? inv.transitions : [];
  t.is(tr.length, 1, 'transitions: the table\'s one constraint', show(inv.transitions));
  const c = tr[0] || {};
  t.is(c.name, 'invoice_flow', 'transition name');
  t.is(c.column, 'status', 'transition column');
  t.same(c.initial, ['draft'], 'transition initial states');
  const edges = Array.isArray(c.edges) ? c.edges.map((e) => `${e.from}>${e.to}>${e.role}`).sort() : show(c.edges);
  t.same(edges, ['draft>submitted>null', `submitted>approved>${mgr}`, 'submitted>draft>null'].sort(),
    'edges: from, to, and role (null when unguarded)');
  t.ok(Array.isArray(c.edges) && c.edges.every((e) => Object.keys(e).sort().join() === 'from,role,to'), 'each edge has exactly from, to, role', show(c.edges));
  t.same(lines.transitions, [], 'a table without constraints: transitions is empty');
  t.same(Array.isArray(s.roles) ? [...s.roles].sort() : s.roles, [role, grp].sort(),
    'roles: the roles the device\'s role is a member of, itself included (not others)');

  t.step = 'the example\'s shape';
  t.ok(Array.isArray(s.tables) && s.tables.every((x) => isStr(x.name) && Array.isArray(x.columns) && Array.isArray(x.primary_key) &&
    isObj(x.merge) && Array.isArray(x.transitions)) && Array.isArray(s.roles) && s.roles.every(isStr),
  'the answer has the documented example\'s shape: tables[{name, columns, primary_key, merge, transitions}], roles[]', show(s));

  t.step = 'a table the role may no longer read';
  psql(`REVOKE SELECT ON cf_sch_lines FROM ${role}`);
  const s2 = await A.request({ type: 'schema' });
  t.same((s2.tables || []).map((x) => x.name).sort(), ['public.cf_sch_inv'], 'a subscribed table the role may not read is not listed');
  A.close();
});
