'use strict';
// Hostile and broken input.  Malformed JSON, JSON that is not an object,
// unknown types, missing and wrongly typed fields get an error and the
// connection stays; a binary message is refused; a message over
// ofs.max_message_bytes closes the connection with 1009 (also when it
// compresses well); a flood of messages closes with 4008 while another
// device stays served; a client that never reads does not hold up others.
const crypto = require('node:crypto');
const { test, psql, show, sleep, clock, workerPids } = require('./lib');
const { performance } = require('node:perf_hooks');

test('bad input', { timeout: 120 }, async (t) => {
  const role = t.role('e2e_bad_dev');
  psql(`CREATE TABLE e2e_bad_t (id text PRIMARY KEY, v int);
        CREATE TABLE e2e_bad_big (id int PRIMARY KEY, payload text);
        INSERT INTO e2e_bad_big SELECT g, (SELECT string_agg(md5(g::text || ':' || k), '') FROM generate_series(1, 30) k)
          FROM generate_series(1, 1000) g;
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT, INSERT, UPDATE, DELETE ON e2e_bad_t, e2e_bad_big TO ${role};
        SELECT ofs.sync_table('e2e_bad_t');
        SELECT ofs.sync_table('e2e_bad_big');`);
  const token = t.token(role, 'e2e-bad-a');
  const pids = await workerPids();
  const A = await t.device(token, 'a');
  const maxBytes = (A.welcome.limits || {}).max_message_bytes;
  const maxRate = (A.welcome.limits || {}).max_messages_per_second || 200;

  // Each bad message alone, its answer awaited before the next.
  const expectError = async (raw, code, name, id) => {
    t.step = name;
    const before = A.log.length;
    A.sendRaw(raw);
    const got = await A.next((m) => m.type === 'error', 10000);
    t.error(got, code, `${name}: error ${code}`);
    if (id !== undefined) t.ok(got && got.id === id, `${name}: the error carries the id`, show(got));
    t.is(A.log.length - before, 1, `${name}: exactly one answer`);
    const ping = await A.request({ type: 'schema' }).catch((e) => ({ lost: e.message }));
    t.answer(ping, 'schema', `${name}: the connection is kept`);
  };
  await expectError('{"type": "schema",', 'invalid_json', 'truncated JSON');
  await expectError('{type: schema}', 'invalid_json', 'JSON with bare words');
  await expectError('\u00ff\u00fe garbage', 'invalid_json', 'not JSON at all');
  await expectError('[{"type": "schema"}]', 'invalid_json', 'a JSON array');
  await expectError('"schema"', 'invalid_json', 'a JSON string');
  await expectError('42', 'invalid_json', 'a JSON number');
  await expectError('null', 'invalid_json', 'JSON null');
  await expectError('', 'invalid_json', 'an empty message');
  await expectError('{"type": "schema"} {"type": "schema"}', 'invalid_json', 'two JSON objects in one message');
  await expectError('{"type": "frobnicate", "id": "u1"}', 'invalid_message', 'an unknown type', 'u1');
  await expectError('{"id": "m1"}', 'invalid_message', 'a message without a type', 'm1');
  await expectError('{"type": 5, "id": "m2"}', 'invalid_message', 'a type that is not a string', 'm2');
  await expectError('{"type": "push", "id": "w1", "mutations": "nope"}', 'invalid_message', 'push with mutations not an array', 'w1');
  await expectError('{"type": "push", "id": "w2"}', 'invalid_message', 'push without mutations', 'w2');
  await expectError('{"type": "pull", "id": "w3", "max_rows": "ten"}', 'invalid_message', 'pull with max_rows a string', 'w3');
  await expectError('{"type": "pull", "id": "w4", "cursor": 17}', 'invalid_message', 'pull with a numeric cursor', 'w4');
  await expectError('{"type": "subscribe", "id": "w5", "table": ["e2e_bad_t"]}', 'invalid_message', 'subscribe with a table that is an array', 'w5');
  await expectError('{"type": "live", "id": "w6", "cursor": {"a": 1}}', 'invalid_message', 'live with a cursor that is an object', 'w6');
  await expectError('{"type": "schema", "id": {"x": 1}}', 'invalid_message', 'an id that is an object');
  await expectError(`{"type": "schema", "id": "${'i'.repeat(65)}"}`, 'invalid_message', 'an id longer than 64 characters');

  t.step = 'after the bad messages';
  t.is(psql(`SELECT count(*) FROM e2e_bad_t`), '0', 'nothing was written by bad messages');

  t.step = 'a binary message';
  const Bin = await t.device(token, 'binary');
  Bin.sendRaw(Buffer.from('{"type": "schema", "id": "bin"}'), { binary: true });
  const binAnswer = await Bin.next((m) => m.type === 'error' || m.id === 'bin', 5000);
  await sleep(200);
  const binClosed = Bin.closed;
  t.ok((binAnswer && binAnswer.type === 'error') || (binClosed && binClosed.code === 1003),
    'a binary message is refused (an error, or close 1003)', `answer: ${show(binAnswer)}, close: ${show(binClosed)}`);
  t.ok(!binAnswer || binAnswer.type !== 'schema', 'a binary message is not served as a request', show(binAnswer));
  if (binAnswer && binAnswer.type === 'error') t.diag(`binary message refused with: ${show(binAnswer)}${binClosed ? `, close ${binClosed.code}` : ', connection kept'}`);

  t.step = 'oversized messages';
  t.ok(Number.isInteger(maxBytes) && maxBytes > 0, 'welcome announces max_message_bytes', show(A.welcome.limits));
  const oversized = async (label, filler) => {
    const O = await t.device(token, label);
    const text = JSON.stringify({ type: 'push', id: 'big', mutations: [{ op_id: 'o-1', table: 'public.e2e_bad_t', op: 'insert',
      pk: { id: label }, data: { id: label, v: 1, junk: filler } }] });
    O.sendRaw(text);
    const closed = await O.waitClose(15000);
    t.is(closed && closed.code, 1009, `${label}: a ${text.length}-byte message (limit ${maxBytes}) closes the connection with 1009`);
    const err = O.log.map((e) => e.msg).find((m) => m && m.type === 'error');
    if (err) t.error(err, 'too_big', `${label}: the error before the close is too_big`);
    t.ok(!O.log.some((e) => e.msg && e.msg.type === 'pushed'), `${label}: the oversized push is not applied`);
    t.is(psql(`SELECT count(*) FROM e2e_bad_t WHERE id = '${label}'`), '0', `${label}: nothing is written`);
  };
  await oversized('random', crypto.randomBytes(Math.ceil((maxBytes || 1048576) * 0.6)).toString('hex'));
  const fits = await A.request({ type: 'push', mutations: [{ op_id: 'fit-1', table: 'public.e2e_bad_t', op: 'insert',
    pk: { id: 'fits' }, data: { id: 'fits', v: 1 }, hlc: clock()() }] });
  t.ok(fits.type === 'pushed', 'a message under the limit is still served', show(fits));

  t.step = 'a flood';
  const F = await t.device(t.token(role, 'e2e-bad-flood'), 'flood');
  const G = await t.device(t.token(role, 'e2e-bad-calm'), 'calm');
  const count = Math.max(1000, maxRate * 5);
  const t0 = performance.now();
  for (let k = 0; k < count && F.open; k++) F.send({ type: 'schema', id: k });
  const calm = [];
  const calmRun = (async () => {
    for (let k = 0; k < 5; k++) {
      const s = performance.now();
      const a = await G.request({ type: 'pull', cursor: null, max_rows: 1 }).catch((e) => ({ lost: e.message }));
      calm.push({ type: a.type, ms: performance.now() - s });
      await sleep(100);
    }
  })();
  const fclosed = await F.waitClose(15000);
  await calmRun;
  t.is(fclosed && fclosed.code, 4008, `a flood of ${count} messages closes the connection with 4008`);
  if (fclosed) t.diag(`flood closed after ${(fclosed.at - t0).toFixed(0)} ms; ${F.log.length} answers received before`);
  const ferr = F.log.map((e) => e.msg).filter((m) => m && m.type === 'error').pop();
  if (ferr) t.ok(ferr.code === 'rate_limited' || ferr.code === 'too_many_requests' || /rate|many/i.test(ferr.message || ''),
    'the flood\'s error says it was rate limited', show(ferr));
  t.ok(calm.length === 5 && calm.every((c) => c.type === 'changes'), 'another device is served during the flood', show(calm));
  t.diag(`calm device answer times during the flood: ${calm.map((c) => c.ms.toFixed(0)).join(', ')} ms`);
  const F2 = await t.device(t.token(role, 'e2e-bad-flood'), 'flood-again');
  t.answer(await F2.request({ type: 'schema' }), 'schema', 'the flooding device may reconnect afterwards');
  F2.close();

  t.step = 'a client that never reads';
  const S = await t.connect({ label: 'slow', deflate: false });
  const sw = await S.hello(token);
  t.answer(sw, 'welcome', 'the slow reader says hello');
  await S.request({ type: 'subscribe', table: 'e2e_bad_big' });
  S.ws.pause();
  const asked = 40;
  for (let k = 0; k < asked; k++) S.send({ type: 'pull', id: `slow-${k}`, cursor: null, max_rows: 1000 });
  const H = await t.device(t.token(role, 'e2e-bad-other'), 'other');
  const times = [];
  for (let k = 0; k < 6; k++) {
    const s = performance.now();
    const a = await H.request({ type: 'schema' }).catch((e) => ({ lost: e.message }));
    times.push({ type: a.type, ms: performance.now() - s });
    await sleep(500);
  }
  const hp = await H.request({ type: 'push', mutations: [{ op_id: 'h-1', table: 'public.e2e_bad_t', op: 'insert', pk: { id: 'during-slow' }, data: { id: 'during-slow', v: 2 }, hlc: clock()() }] })
    .catch((e) => ({ lost: e.message }));
  t.ok(times.every((x) => x.type === 'schema'), 'another device is served while a client does not read', show(times));
  t.ok(hp.type === 'pushed' && hp.results[0].status === 'applied', 'another device\'s push applies while a client does not read', show(hp));
  t.diag(`other device answer times: ${times.map((x) => x.ms.toFixed(0)).join(', ')} ms`);
  S.ws.resume();
  const sclosed = await S.waitClose(20000);
  const answered = S.log.filter((e) => e.msg && typeof e.msg.id === 'string' && e.msg.id.startsWith('slow-')).length;
  t.diag(`slow reader: ${answered} of ${asked} answers read after resuming; closed: ${show(sclosed)}`);
  t.ok(sclosed !== null, `a client that never reads ${asked} answers of about 1 MB is disconnected (documented: 4009)`, `answers read: ${answered}`);
  if (sclosed && sclosed.code !== 1006) t.is(sclosed.code, 4009, 'the slow reader\'s close code is 4009');
  const still = await A.request({ type: 'schema' });
  t.answer(still, 'schema', 'the first device is still served after the flood and the slow reader');

  // Last, since a worker that fails here may take the cluster down.
  t.step = 'compressed messages that inflate beyond the limits';
  await oversized('compressible', 'x'.repeat((maxBytes || 1048576) + 4096));
  const E = await t.connect({ label: 'early-compressed' });
  E.sendRaw(JSON.stringify({ type: 'schema', pad: 'x'.repeat(20000) }));
  const eclosed = await E.waitClose(10000);
  t.error(E.log[0] && E.log[0].msg, 'unauthenticated', 'a 20 kB compressed message before hello is answered with unauthenticated');
  t.is(eclosed && eclosed.code, 4001, 'a 20 kB compressed message before hello closes the connection with 4001');
  await sleep(500);
  const after = await workerPids().catch((e) => [e.message]);
  t.same(after, pids, 'no input of this file crashed or restarted the sync workers');
  A.close();
  H.close();
  G.close();
});
