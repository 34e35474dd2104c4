'use strict';
// PROTOCOL.md "push", Deletes (being implemented): a delete of a row that is
// gone is applied; a delete of a row that exists but that the role may not
// see or may not delete is rejected (42501, kind permission_denied, row
// null) and nothing is deleted.
const { test, psql, show, same, hlcClock } = require('./common');

test('conformance: deletes', { timeout: 60 }, async (t) => {
  const role = t.role('e2e_cf_del_dev');
  psql(`CREATE TABLE cf_del (id text PRIMARY KEY, owner text NOT NULL);
        ALTER TABLE cf_del ENABLE ROW LEVEL SECURITY;
        CREATE POLICY see ON cf_del FOR SELECT USING (owner IN (current_user, 'shared'));
        CREATE POLICY ins ON cf_del FOR INSERT WITH CHECK (owner = current_user);
        CREATE POLICY del ON cf_del FOR DELETE USING (owner = current_user);
        INSERT INTO cf_del VALUES ('mine', '${role}'), ('mine2', '${role}'), ('hidden', 'someone'), ('shared', 'shared');
        CREATE TABLE cf_del_nogrant (id text PRIMARY KEY);
        INSERT INTO cf_del_nogrant VALUES ('x');
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT, INSERT, DELETE ON cf_del TO ${role};
        GRANT SELECT, INSERT ON cf_del_nogrant TO ${role};
        SELECT ofs.sync_table('cf_del'); SELECT ofs.sync_table('cf_del_nogrant');`);
  const A = await t.device(t.token(role, 'cf-del'), 'a');
  const hlc = hlcClock(A.welcome.hlc);
  const del = async (op_id, table, id) => {
    const r = await A.request({ type: 'push', mutations: [{ op_id, table, op: 'delete', pk: { id }, hlc: hlc() }] });
    return (r.results || [])[0] || r;
  };
  const exists = (tb, id) => psql(`SELECT count(*) FROM ${tb} WHERE id = '${id}'`);

  const r1 = await del('d1', 'public.cf_del', 'mine');
  t.is(r1.status, 'applied', 'a delete of a row the role may delete: applied');
  t.is(exists('cf_del', 'mine'), '0', 'the row is gone');
  // "When the device's role sees no row of that key ... the answer is
  // applied, with hint {"kind":"nothing_deleted"}".
  const nothing = (r) => r.status === 'applied' && same(r.hint, { kind: 'nothing_deleted' });
  const r2 = await del('d2', 'public.cf_del', 'mine');
  t.ok(nothing(r2), 'a delete of a row that is gone (deleted before): applied, nothing_deleted', show(r2));
  const r3 = await del('d3', 'public.cf_del', 'never');
  t.ok(nothing(r3), 'a delete of a row that never existed: applied, nothing_deleted', show(r3));
  const r4 = await del('d4', 'public.cf_del', 'hidden');
  t.ok(nothing(r4), 'a delete of a row the role may not see (RLS): the same answer as for a row that is gone', show(r4));
  t.is(exists('cf_del', 'hidden'), '1', 'a row the role may not see: nothing was deleted');
  // "When the role sees the row but may not delete it ... rejected (42501,
  // kind permission_denied), with the row as the role sees it in hint.row".
  for (const [label, tb, id, row] of [
    ['a row the role sees but whose policy forbids deleting it', 'cf_del', 'shared', { id: 'shared', owner: 'shared' }],
    ['a row of a table without DELETE granted', 'cf_del_nogrant', 'x', { id: 'x' }]]) {
    const r = await del(`d-${id}`, `public.${tb}`, id);
    t.ok(r.status === 'rejected' && r.sqlstate === '42501' && r.hint && r.hint.kind === 'permission_denied' && same(r.hint.row, row),
      `${label}: rejected, 42501, kind permission_denied, row ${show(row)}`, show(r));
    t.is(exists(tb, id), '1', `${label}: nothing was deleted`);
  }
  A.close();
});
