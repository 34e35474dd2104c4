'use strict';
// PROTOCOL.md "Transport": WebSocket on ws://HOST:PORT/ (the request path is
// ignored), the subprotocol ofs.v1 (accepted when offered, and when none is
// offered), no permessage-deflate unless ofs.permessage_deflate is on,
// every message one JSON object in a text message (UTF-8), binary
// messages refused, WebSocket pings answered.
const { test, psql, show, WS_URL, expectKept, setting } = require('./common');

test('conformance: transport', { timeout: 60 }, async (t) => {
  const role = t.role('e2e_cf_tr_dev');
  psql(`CREATE TABLE cf_tr (id text PRIMARY KEY, v text);
        INSERT INTO cf_tr VALUES ('u1', 'héllo ✓ 😀 ü');
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT, INSERT, UPDATE, DELETE ON cf_tr TO ${role};
        SELECT ofs.sync_table('cf_tr');`);
  const token = t.token(role, 'cf-tr');

  t.step = 'subprotocol ofs.v1';
  const a = await t.connect({ label: 'v1' });
  t.is(a.ws.protocol, 'ofs.v1', 'a client offering ofs.v1 gets the subprotocol ofs.v1');
  t.answer(await a.hello(token), 'welcome', 'a connection with ofs.v1 is served');

  t.step = 'ofs.v1 among other subprotocols';
  const m = await t.connect({ label: 'several', protocols: ['x-other', 'ofs.v1'] });
  t.is(m.ws.protocol, 'ofs.v1', 'a client offering ofs.v1 among others gets ofs.v1');
  m.close();

  t.step = 'no subprotocol';
  const n = await t.connect({ label: 'none', protocols: [] });
  t.is(n.ws.protocol, '', 'a client offering no subprotocol is accepted without one');
  t.answer(await n.hello(token), 'welcome', 'a connection offering no subprotocol is served');
  n.close();

  t.step = 'only another subprotocol';
  {
    // "A client that offers subprotocols, none of them ofs.v1, is refused
    // during the handshake: the worker closes the connection without an
    // HTTP answer."
    const WebSocket = require('../toolkit/node_modules/ws');
    const seen = await new Promise((resolve) => {
      const ev = [];
      const ws = new WebSocket(WS_URL, ['x-other']);
      const done = () => resolve(ev);
      ws.on('open', () => { ev.push('open'); ws.terminate(); });
      ws.on('upgrade', () => ev.push('upgrade'));
      ws.on('unexpected-response', (req, res) => { ev.push(`http ${res.statusCode}`); req.destroy(); done(); });
      ws.on('error', () => { ev.push('error'); });
      ws.on('close', done);
      setTimeout(done, 10000);
    });
    t.ok(!seen.includes('open') && !seen.includes('upgrade'), 'a client offering only another subprotocol is not served', show(seen));
    t.ok(!seen.some((e) => e.startsWith('http ')), '... and gets no HTTP answer: the connection is closed', show(seen));
  }

  t.step = 'the request path is ignored';
  const p = await t.connect({ label: 'path', url: `${WS_URL.replace(/\/$/, '')}/some/path/x?y=1` });
  t.answer(await p.hello(token), 'welcome', 'a connection to another request path is served as to /');
  p.close();

  t.step = 'permessage-deflate';
  const pd = setting('ofs.permessage_deflate');
  t.is(pd && pd.value, 'off', 'ofs.permessage_deflate defaults to off (the test cluster keeps the default)');
  t.ok(!a.deflate, 'permessage-deflate offered by the client is not negotiated while ofs.permessage_deflate is off',
    show(a.ws.extensions));

  t.step = 'UTF-8 text messages';
  await a.request({ type: 'subscribe', table: 'cf_tr' });
  const ch = await a.requestMeta({ type: 'pull', cursor: null });
  const row = ((ch.msg.changes || []).find((c) => c.pk && c.pk.id === 'u1') || {}).row;
  t.same(row, { id: 'u1', v: 'héllo ✓ 😀 ü' }, 'text outside ASCII arrives as the same UTF-8 string');

  t.step = 'binary messages are refused';
  const before = a.log.length;
  a.sendRaw(Buffer.from('{"type":"schema","id":"bin"}'), { binary: true });
  const got = await a.next((x) => x.type === 'error' || x.id === 'bin', 10000);
  t.error(got, 'invalid_message', 'a binary message is answered with error invalid_message');
  t.ok(!a.log.slice(before).some((e) => e.msg && e.msg.type === 'schema'), 'a binary message is not served as a request');
  await expectKept(t, a, 'a binary message');

  t.step = 'pings';
  const pong = await new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), 10000);
    a.ws.once('pong', (data) => { clearTimeout(timer); resolve(data.toString()); });
    a.ws.ping('cf-ping');
  });
  t.is(pong, 'cf-ping', 'a WebSocket ping is answered with a pong carrying its data');

  t.step = 'every message from the worker';
  t.ok(a.log.every((e) => e.raw !== null), 'every message from the worker is a text message', show(a.log.length));
  a.close();
});
