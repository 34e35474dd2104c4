'use strict';
// Values arrive exactly as written.  A numeric sent as a JSON number is
// stored digit for digit (0.1 is 0.1, not 0.10000000000000001), as through
// ofs.apply_batch in SQL; an integer beyond 2^63 in a numeric column is
// stored exactly, and in a bigint column it is refused for that mutation
// alone, with a clear message, never as invalid JSON for the whole push.
const { test, psql, show, clock } = require('./lib');

const T = 'public.e2e_val_t';

test('values', { timeout: 60 }, async (t) => {
  const role = t.role('e2e_val_dev');
  psql(`CREATE TABLE e2e_val_t (id text PRIMARY KEY, n numeric, big int8, f float8);
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT, INSERT, UPDATE ON e2e_val_t TO ${role};
        SELECT ofs.sync_table('e2e_val_t');`);
  const c = await t.device(t.token(role, 'e2e-val'), 'val');
  const hlc = clock(c.welcome.hlc);
  // Written by hand: JavaScript numbers could not carry these digits.
  const mut = (op, id, fields) => `{"op_id":"${op}","table":"${T}","op":"insert","pk":{"id":"${id}"},` +
    `"data":{"id":"${id}",${fields}},"hlc":${hlc()}}`;
  const text = `{"type":"push","id":"v1","mutations":[` +
    `${mut('v-1', 'tenth', '"n":0.1')},` +
    `${mut('v-2', 'long', '"n":12345678901234567890.123456789012345678901234567890')},` +
    `${mut('v-3', 'tiny', '"n":1e-30')},` +
    `${mut('v-4', 'huge', '"n":92233720368547758070')},` +
    `${mut('v-5', 'toobig', '"big":92233720368547758070')},` +
    `${mut('v-6', 'maxbig', '"big":9223372036854775807')},` +
    `${mut('v-7', 'float', '"f":0.1')}]}`;
  const r = await c.requestRaw(text, 'v1');
  t.answer(r, 'pushed', 'a push holding an integer beyond 2^63 is answered, not refused as invalid JSON');
  const st = (r.results || []).map((x) => x.status);
  t.same(st, ['applied', 'applied', 'applied', 'applied', 'rejected', 'applied', 'applied'], 'every mutation has its own result', show(r));
  const bad = (r.results || [])[4] || {};
  t.is(bad.sqlstate, '22003', 'the bigint out of range is rejected with 22003');
  t.match(bad.message, /out of range|bigint/i, '... and a message that says so');
  const got = (id, col) => psql(`SELECT ${col}::text FROM e2e_val_t WHERE id = '${id}'`);
  t.is(got('tenth', 'n'), '0.1', '0.1 is stored as 0.1');
  t.is(got('long', 'n'), '12345678901234567890.123456789012345678901234567890', 'a 50-digit numeric is stored digit for digit');
  t.is(got('tiny', 'n'), '0.000000000000000000000000000001', '1e-30 is stored exactly');
  t.is(got('huge', 'n'), '92233720368547758070', 'an integer beyond 2^63 in a numeric column is stored exactly');
  t.is(got('maxbig', 'big'), '9223372036854775807', 'the largest bigint is stored exactly');
  t.is(got('float', 'f'), '0.1', 'a float8 keeps its value');
  // Numbers elsewhere in the message: a numeric id is answered as sent,
  // even when another number of the message is beyond 64 bits.
  const r2 = await c.requestRaw(`{"type":"push","id":7,"mutations":[${mut('v-8', 'big-id', '"n":18446744073709551616')}]}`, 7);
  t.answer(r2, 'pushed', 'a numeric id with a number beyond 64 bits in the same push: answered');
  t.ok(r2.id === 7, 'the id comes back as the number 7', show(r2.id));
  t.is(got('big-id', 'n'), '18446744073709551616', '... and the value is stored exactly');
  const r3 = await c.requestRaw(`{"type":"push","id":1.5,"mutations":[]}`, 1.5);
  t.answer(r3, 'pushed', 'a fractional id is an id too');
  const hl = (op, id, h) => `{"op_id":"${op}","table":"${T}","op":"insert","pk":{"id":"${id}"},"data":{"id":"${id}"},"hlc":${h}}`;
  const r4 = await c.requestRaw(`{"type":"push","id":"h","mutations":[${hl('h-1', 'h1', '1.5')},${hl('h-2', 'h2', '-1')},${hl('h-3', 'h3', hlc())}]}`, 'h');
  t.same((r4.results || []).map((x) => x.status), ['rejected', 'rejected', 'applied'], 'an hlc that is not a non-negative integer rejects its mutation', show(r4));
  // A mutation whose data gives its key another value than its pk names one
  // row and writes another: refused, and nothing is written.
  const km = (op, kind, pk, id) => `{"op_id":"${op}","table":"${T}","op":"${kind}","pk":{"id":"${pk}"},` +
    `"data":{"id":"${id}","n":1},"hlc":${hlc()}}`;
  const r5 = await c.requestRaw(`{"type":"push","id":"k","mutations":[${km('k-1', 'insert', 'k1', 'k2')},` +
    `${km('k-2', 'update', 'tenth', 'moved')},${km('k-3', 'insert', 'k3', 'k3')}]}`, 'k');
  t.same((r5.results || []).map((x) => x.status), ['rejected', 'rejected', 'applied'],
    'an insert or update whose data disagrees with its pk is rejected; one that agrees is applied', show(r5));
  t.is(((r5.results || [])[0] || {}).sqlstate, '22023', '... with 22023');
  t.match(((r5.results || [])[0] || {}).message, /key column "id" is not its pk's/, '... and a message naming the column');
  t.is(psql(`SELECT count(*) FROM e2e_val_t WHERE id IN ('k1', 'k2', 'moved')`), '0', '... and nothing of them is written');
  t.is(got('tenth', 'n'), '0.1', '... the row the update named is unchanged');
  // More mutations than welcome.limits.max_batch: the push is refused whole.
  const max = c.welcome.limits.max_batch;
  const many = Array.from({ length: max + 1 }, (_, i) => km(`over-${i}`, 'insert', `over-${i}`, `over-${i}`)).join(',');
  const r6 = await c.requestRaw(`{"type":"push","id":"b","mutations":[${many}]}`, 'b');
  t.error(r6, 'invalid_message', `a push of ${max + 1} mutations is refused`, { message: new RegExp(`at most ${max} mutations`) });
  t.is(psql(`SELECT count(*) FROM e2e_val_t WHERE id LIKE 'over-%'`), '0', '... and nothing of it is applied');

  // A float beyond 2^63 reaches devices as a string (a JSON integer that
  // large is beyond what 64-bit clients read), and does not stop live rounds.
  const live = await t.device(t.token(role, 'e2e-val-live'), 'val-live');
  await live.request({ type: 'subscribe', table: T });
  await live.pullAll(1000, { cursor: null });
  live.autoAck = true;
  await live.request({ type: 'live', cursor: live.cursor });
  await c.requestRaw(`{"type":"push","id":"hf","mutations":[${mut('v-9', 'hugefloat', '"f":1e20')}]}`, 'hf');
  psql(`INSERT INTO e2e_val_t (id, f) VALUES ('after-float', 1)`);
  t.ok(await live.until(() => live.replica.has(`${T} {"id":"after-float"}`), 8000), 'a live device keeps receiving changes after a float of 1e20');
  const hf = live.replica.get(`${T} {"id":"hugefloat"}`);
  t.ok(hf && hf.row.f === '1e+20', 'the float arrives as the string "1e+20"', show(hf));

  // The same mutation through SQL gives the same value.
  psql(`SELECT * FROM ofs.apply_batch('e2e-val', '[{"op_id":"s-1","table":"${T}","op":"insert","pk":{"id":"sql"},"data":{"id":"sql","n":0.1},"hlc":${hlc()}}]')`);
  t.is(got('sql', 'n'), got('tenth', 'n'), 'the worker stores what ofs.apply_batch stores');
  // The pull brings the values back as exact text.
  await c.request({ type: 'subscribe', table: T });
  await c.pullAll(1000, { cursor: null });
  const row = c.replica.get(`${T} {"id":"long"}`);
  t.is(row && String(row.row.n), '12345678901234567890.123456789012345678901234567890', 'the pull brings the numeric back exactly', show(row));
});
