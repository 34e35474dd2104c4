'use strict';
// PROTOCOL.md "Messages in general": the id rules (an integer, or a string
// of at most 64 bytes, copied into the answer; a fraction refused with
// invalid_message), answers in request order, one each, `ack` unanswered;
// invalid JSON and JSON that is not an object (invalid_json, kept); binary,
// unknown type, missing and wrongly typed fields (invalid_message, kept);
// the documented shape of `error`; and the table of column values as JSON.
const {
  test, psql, show, expectKept, sendAndNext, errorShape, isStr,
} = require('./common');

test('conformance: messages in general', { timeout: 60 }, async (t) => {
  const role = t.role('e2e_cf_msg_dev');
  psql(`CREATE TYPE cf_color AS ENUM ('red', 'green');
        CREATE TABLE cf_msg (id text PRIMARY KEY, v int);
        CREATE TABLE cf_types (k int PRIMARY KEY, b boolean, s smallint, i integer, bi bigint, o oid,
          r real, d double precision, n numeric, dt date, ts timestamp, tstz timestamptz, tm time,
          by bytea, u uuid, j json, jb jsonb, arr int[], e cf_color, tx text, nul text);
        SET TimeZone = 'Europe/Paris';
        INSERT INTO cf_types VALUES
          (1, true, 1, 2, 9007199254740993, 12345, 1.5, 2.25, 12.50, '2026-12-02', '2026-12-02 10:00:00',
           '2026-12-02 12:00:00+02', '10:30:00', '\\xdeadbeef', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
           '{"a": 1}', '{"b": 2}', '{1,2,3}', 'red', 'plain', NULL),
          (2, false, -1, -2, -9007199254740993, 0, 'NaN', 'Infinity', 0.1, '0044-03-15 BC', 'infinity',
           '0044-03-15 12:00:00+00 BC', '00:00:00', '\\x', NULL, NULL, NULL, '{}', 'green', '', NULL),
          (3, NULL, NULL, NULL, NULL, NULL, '-Infinity', '-Infinity', -3, 'infinity', '-infinity',
           '-infinity', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
          (4, NULL, NULL, NULL, NULL, NULL, '-0', '-0', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
          (5, NULL, NULL, NULL, NULL, NULL, 1e20, 1e20, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
          (6, NULL, NULL, NULL, NULL, NULL, -1e20, -1e300, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
          (7, NULL, NULL, NULL, NULL, NULL, 1e15, 1e18, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        RESET TimeZone;
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT, INSERT, UPDATE, DELETE ON cf_msg, cf_types TO ${role};
        SELECT ofs.sync_table('cf_msg');
        SELECT ofs.sync_table('cf_types');`);
  const A = await t.device(t.token(role, 'cf-msg'), 'a');

  t.step = 'ids';
  const r1 = await A.request({ type: 'schema', id: 42 });
  t.ok(r1.id === 42, 'an integer id is copied into the answer as that integer', show(r1.id));
  const r0 = await A.request({ type: 'schema', id: 0 });
  t.ok(r0.id === 0, 'the integer id 0 is copied', show(r0.id));
  const id64 = 's'.repeat(64);
  const r2 = await A.request({ type: 'schema', id: id64 });
  t.is(r2.id, id64, 'a string id of 64 bytes is copied into the answer');
  const idUtf = 'é'.repeat(32); // 64 bytes in UTF-8
  const r3 = await A.request({ type: 'schema', id: idUtf });
  t.is(r3.id, idUtf, 'a string id of 32 two-byte characters (64 bytes) is copied');
  // rawAnswer: send text, return the raw text of the next message.
  const rawAnswer = async (raw) => {
    const n0 = A.log.length;
    A.sendRaw(raw);
    await A.until(() => A.log.length > n0, 10000);
    return A.log[n0] ? A.log[n0].raw : null;
  };
  const idOf = (raw) => { const m = /"id":\s*([^,}]+)/.exec(raw || ''); return m ? m[1] : null; };
  const r64 = await rawAnswer('{"type":"schema","id":9223372036854775807}');
  t.is(idOf(r64), '9223372036854775807', 'an integer id of 64 bits comes back exactly');
  const rneg = await rawAnswer('{"type":"schema","id":-9223372036854775808}');
  t.is(idOf(rneg), '-9223372036854775808', 'the smallest 64-bit integer id comes back exactly');
  const rfrac = await rawAnswer('{"type":"schema","id":1.5}');
  t.ok(/"type":\s*"schema"/.test(rfrac || '') && idOf(rfrac) === '1.5', 'an id 1.5 is served and comes back as 1.5 (its nearest double in shortest form)', rfrac);
  const rexp = await rawAnswer('{"type":"schema","id":1e3}');
  t.ok(/"type":\s*"schema"/.test(rexp || '') && idOf(rexp) === '1000', 'an id 1e3 comes back as the integer 1000, as the document says', rexp);
  const badIds = [
    ['a string of 65 bytes', `"${'s'.repeat(65)}"`],
    ['a string of 33 characters but 65 bytes', JSON.stringify(`${'é'.repeat(32)}x`)],
    ['an object', '{"x":1}'], ['an array', '[1]'], ['true', 'true'], ['null', 'null'],
  ];
  for (const [label, raw] of badIds) {
    const e = await sendAndNext(A, `{"type":"schema","id":${raw}}`);
    t.error(e, 'invalid_message', `an id that is ${label} is refused with invalid_message`);
    t.ok(e && e.id === undefined, `... and the error has no id`, show(e));
  }
  await expectKept(t, A, 'ids of other types');

  t.step = 'answers in request order, one each';
  const ids = ['o1', 'o2', 'o3', 'o4', 'o5', 'o6'];
  const before = A.log.length;
  const answers = await Promise.all([
    A.request({ type: 'schema', id: 'o1' }),
    A.request({ type: 'subscribe', id: 'o2', table: 'cf_msg' }),
    A.request({ type: 'pull', id: 'o3', cursor: null }),
    A.request({ type: 'frobnicate', id: 'o4' }),
    A.request({ type: 'unsubscribe', id: 'o5', table: 'cf_msg' }),
    A.request({ type: 'schema', id: 'o6' }),
  ]);
  const order = A.log.slice(before).map((e) => e.msg && e.msg.id);
  t.same(order, ids, 'six requests sent at once: six answers, in the order of the requests');
  t.same(answers.map((a) => a.type), ['schema', 'subscribed', 'changes', 'error', 'unsubscribed', 'schema'],
    'each request is answered with its documented answer type (error for the unknown type)');
  const cursor = answers[2].cursor;

  t.step = 'ack has no answer';
  const beforeAck = A.log.length;
  A.send({ type: 'ack', cursor });
  const afterAck = await A.request({ type: 'schema', id: 'after-ack' });
  t.answer(afterAck, 'schema', 'a request after an ack is answered');
  t.same(A.log.slice(beforeAck).map((e) => e.msg && e.msg.id), ['after-ack'],
    'the ack itself is answered with nothing: the next message is the answer to the next request');

  t.step = 'invalid JSON';
  const notJson = [
    ['truncated JSON', '{"type":"schema",'],
    ['bare words', '{type: schema}'],
    ['not JSON at all', 'hello'],
    ['an empty message', ''],
    ['two objects', '{"type":"schema"} {"type":"schema"}'],
    ['a JSON array', '[{"type":"schema"}]'],
    ['a JSON string', '"schema"'],
    ['a JSON number', '42'],
    ['JSON null', 'null'],
  ];
  for (const [label, raw] of notJson) {
    const n0 = A.log.length;
    const e = await sendAndNext(A, raw);
    t.error(e, 'invalid_json', `${label}: error invalid_json`);
    t.is(A.log.length - n0, 1, `${label}: exactly one answer`);
  }
  await expectKept(t, A, 'invalid JSON');

  t.step = 'binary';
  A.sendRaw(Buffer.from('{"type":"schema","id":"b"}'), { binary: true });
  const binErr = await A.next((m) => m.type === 'error' || m.id === 'b', 10000);
  t.error(binErr, 'invalid_message', 'a binary message: error invalid_message');
  await expectKept(t, A, 'a binary message');

  t.step = 'unknown type, missing and wrongly typed fields';
  const bad = [
    ['an unknown type', '{"type":"frobnicate","id":"w1"}', 'w1'],
    ['a message without a type', '{"id":"w2"}', 'w2'],
    ['a type that is not a string', '{"type":5,"id":"w3"}', 'w3'],
    ['subscribe without table', '{"type":"subscribe","id":"w4"}', 'w4'],
    ['subscribe with a numeric table', '{"type":"subscribe","id":"w5","table":5}', 'w5'],
    ['subscribe with a numeric filter', '{"type":"subscribe","id":"w6","table":"cf_msg","filter":5}', 'w6'],
    ['unsubscribe with an array table', '{"type":"unsubscribe","id":"w7","table":["cf_msg"]}', 'w7'],
    ['push without mutations', '{"type":"push","id":"w8"}', 'w8'],
    ['push with mutations not an array', '{"type":"push","id":"w9","mutations":"x"}', 'w9'],
    ['pull with a string max_rows', '{"type":"pull","id":"w10","max_rows":"ten"}', 'w10'],
    ['pull with a numeric cursor', '{"type":"pull","id":"w11","cursor":17}', 'w11'],
    ['live with an object cursor', '{"type":"live","id":"w12","cursor":{"a":1}}', 'w12'],
    ['hello with a numeric token', '{"type":"hello","id":"w14","token":5}', 'w14'],
  ];
  for (const [label, raw, id] of bad) {
    const e = await sendAndNext(A, raw, id);
    t.error(e, 'invalid_message', `${label}: error invalid_message`);
    t.is(e && e.id, id, `${label}: the error carries the request's id`);
  }
  await expectKept(t, A, 'wrongly typed fields');

  t.step = 'the error message';
  const ex = await sendAndNext(A, '{"type":"frobnicate","id":7}', 7);
  errorShape(t, ex, 'the answer to an unknown type', { retry: false });
  t.ok(ex && ex.id === 7 && ex.code === 'invalid_message' && isStr(ex.message) && ex.retry === false,
    'the documented example {"type":"error","id":7,"code":"invalid_message","message":"...","sqlstate":"22023","retry":false}: id, code, message and retry as shown',
    show(ex));
  t.ok(ex && (ex.sqlstate === undefined || ex.sqlstate === '22023'),
    'the example\'s invalid_message carries sqlstate 22023 (when it carries one)', show(ex));

  t.step = 'column values as JSON';
  await A.request({ type: 'subscribe', table: 'cf_types' });
  const page = await A.requestMeta({ type: 'pull', cursor: null });
  const rows = {};
  for (const c of page.msg.changes || []) if (c.table === 'public.cf_types') rows[c.pk.k] = c.row;
  const r = (k) => rows[k] || {};
  t.same(r(1), {
    k: 1, b: true, s: 1, i: 2, bi: 9007199254740993n, o: 12345, r: 1.5, d: 2.25, n: '12.50',
    dt: '2026-12-02', ts: '2026-12-02T10:00:00', tstz: '2026-12-02T10:00:00+00:00', tm: '10:30:00',
    by: '\\xdeadbeef', u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', j: '{"a": 1}', jb: '{"b": 2}', arr: '{1,2,3}',
    e: 'red', tx: 'plain', nul: null,
  }, 'row 1: boolean, integers (a bigint beyond 2^53 exact), oid, floats as numbers, numeric as exact text, ISO 8601 dates (timestamptz in UTC), bytea as \\x hex, uuid/json/jsonb/array/enum/text as text, NULL as null');
  const typesOk = (k, col, type) => typeof r(k)[col] === type || (type === 'number' && typeof r(k)[col] === 'bigint');
  t.ok(typesOk(1, 'bi', 'number') && typesOk(1, 'o', 'number') && typesOk(1, 's', 'number'),
    'smallint, bigint and oid travel as JSON numbers', show(r(1)));
  t.same(r(2), {
    k: 2, b: false, s: -1, i: -2, bi: -9007199254740993n, o: 0, r: 'NaN', d: 'Infinity', n: '0.1',
    dt: '0044-03-15 BC', ts: 'infinity', tstz: '0044-03-15T12:00:00+00:00 BC', tm: '00:00:00', by: '\\x',
    u: null, j: null, jb: null, arr: '{}', e: 'green', tx: '', nul: null,
  }, 'row 2: "NaN" and "Infinity" as strings, dates before 1 AD end in " BC", "infinity" stands for itself');
  t.ok(r(3).r === '-Infinity' && r(3).d === '-Infinity' && r(3).n === '-3' && r(3).dt === 'infinity' && r(3).ts === '-infinity' && r(3).tstz === '-infinity',
    'row 3: "-Infinity" for floats, "infinity" and "-infinity" for dates and timestamps, numeric "-3"', show(r(3)));
  const raw4 = page.raw.match(/\{[^{}]*"k":\s*4[^{}]*\}/);
  t.ok(r(4).r === 0 && r(4).d === 0 && raw4 && !/-0/.test(raw4[0]),
    'row 4: -0 arrives as 0 (the sign of zero is not kept)', raw4 ? raw4[0] : show(r(4)));
  t.ok(r(5).r === '1e+20' && r(5).d === '1e+20',
    'row 5: a real and a double of 1e20 (at least 2^63) arrive as the string "1e+20"', show(r(5)));
  t.ok(r(6).r === '-1e+20' && r(6).d === '-1e+300',
    'row 6: negative values of magnitude 2^63 or more arrive as strings in shortest text ("-1e+20", "-1e+300")', show(r(6)));
  t.ok(r(7).r === 1e15 && (r(7).d === 1e18 || r(7).d === 1000000000000000000n),
    'row 7: values below 2^63 (1e15, 1e18) stay JSON numbers', show(r(7)));
  A.close();
});
