'use strict';
// Worker memory is bounded whatever clients send.  A connection that has
// not said hello is closed (4001) after a few errors.  Then 40 connections
// that never authenticate send invalid messages at the rate limit for 60
// seconds (reconnecting when closed), and one authenticated device sends
// invalid requests too: afterwards each sync worker's resident memory is
// within 2 MB of where it was once the flood was under way.
const fs = require('node:fs');
const { test, connect, show, sleep, workerPids, WS_URL } = require('./lib');

const SECONDS = Number(process.env.OFS_MEMORY_SECONDS || 60);
const rss = (pid) => {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number((s.match(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm')) || [0, 0])[1]);
  return { rss: kb('VmRSS'), anon: kb('RssAnon') };
};

test('memory', { timeout: SECONDS + 90 }, async (t) => {
  await t.section('an unauthenticated connection gets a few errors', async () => {
    const c = await t.connect({ label: 'noauth' });
    for (let i = 0; i < 5; i++) c.sendRaw('this is not json');
    const closed = await c.waitClose(5000);
    const errors = c.log.filter((e) => e.msg && e.msg.type === 'error').length;
    t.ok(closed && closed.code === 4001, 'it is closed with 4001', show(closed));
    t.is(errors, 3, 'after three errors');
  });

  await t.section('connections without hello cannot make the worker hold much', async () => {
    const net = require('node:net');
    const crypto = require('node:crypto');
    const url = new URL(WS_URL);
    // A raw WebSocket: the upgrade, then a text frame announced as 250 KB
    // of which 240 KB are sent, and nothing more (the worker must buffer it).
    const partial = () => new Promise((resolve) => {
      const sock = net.connect({ port: Number(url.port), host: '127.0.0.1', localAddress: '127.0.0.4' });
      const out = { code: null, sock };
      let buf = Buffer.alloc(0);
      let upgraded = false;
      sock.on('error', () => {});
      sock.on('close', () => resolve(out));
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        if (!upgraded) {
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          upgraded = true;
          buf = buf.slice(end + 4);
          const len = 250 * 1024;
          const head = Buffer.alloc(14);
          head[0] = 0x81; head[1] = 0x80 | 127;
          head.writeBigUInt64BE(BigInt(len), 2);
          crypto.randomFillSync(head, 10, 4);
          sock.write(head);
          sock.write(Buffer.alloc(240 * 1024, 0x20));
          out.sent = true;
          setTimeout(() => resolve(out), 1500);
        }
        // A close frame: 0x88, length, then the code.
        if (buf.length >= 4 && buf[0] === 0x88) out.code = buf.readUInt16BE(2);
      });
      sock.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n` +
        `Sec-WebSocket-Protocol: ofs.v1\r\n\r\n`);
    });
    const before = (await workerPids()).map(rss);
    const results = await Promise.all(Array.from({ length: 400 }, partial));
    const during = (await workerPids()).map(rss);
    const refused = results.filter((r) => r.code === 1013).length;
    const grew = during.reduce((a, x, i) => a + x.anon - before[i].anon, 0);
    t.diag(`400 connections each holding 240 KB of a message before hello: ${refused} closed with 1013; the workers' private memory grew ${grew} kB`);
    t.ok(refused > 0, 'past the workers\' budget for bytes before hello, connections are closed with 1013');
    t.ok(grew < 2 * 40 * 1024, `the workers hold less than 40 MB each for them (${grew} kB in all)`);
    for (const r of results) r.sock.destroy();
    const big = await t.connect({ label: 'big-before-hello' });
    big.sendRaw('x'.repeat(300 * 1024));
    const closed = await big.waitClose(5000);
    t.ok(closed && closed.code === 1009, 'a message over 256 KB before hello is refused (1009)', show(closed));
  });

  const role = t.role('e2e_mem_dev');
  const token = t.token(role, 'e2e-mem');
  const pids = await workerPids();
  let stop = false;
  let sent = 0;
  let conns = 0;
  const flooder = async (k) => {
    while (!stop) {
      let c;
      try {
        c = await connect(WS_URL, { label: `flood${k}`, deflate: false });
      } catch (e) {
        await sleep(50);
        continue;
      }
      conns++;
      // At most the rate limit: 150 messages a second.
      while (!stop && c.open) {
        const kind = sent % 3;
        c.sendRaw(kind === 0 ? '{"type":"schema","id":' + sent + '}' : kind === 1 ? '[1,2,3' : '{"type":"nope"}');
        sent++;
        await sleep(7);
      }
      c.terminate();
    }
  };
  const authed = async () => {
    const c = await t.device(token, 'authed-flood');
    while (!stop && c.open) {
      c.sendRaw('{"type":"unknown-' + sent + '","id":' + sent + '}');
      sent++;
      await sleep(7);
    }
  };
  const runs = [];
  for (let k = 0; k < 40; k++) runs.push(flooder(k));
  runs.push(authed());
  await sleep(5000);
  const before = pids.map(rss);
  t.diag(`after 5 s of flood: ${pids.map((p, i) => `worker ${p}: RSS ${before[i].rss} kB, anonymous ${before[i].anon} kB`).join('; ')}`);
  await sleep(SECONDS * 1000);
  stop = true;
  await Promise.all(runs);
  await sleep(1000);
  const after = pids.map(rss);
  t.diag(`after ${SECONDS} s more (${sent} messages on ${conns} connections): ${pids.map((p, i) => `worker ${p}: RSS ${after[i].rss} kB, anonymous ${after[i].anon} kB`).join('; ')}`);
  t.ok(sent > SECONDS * 1000, `the flood sent messages (${sent})`);
  pids.forEach((p, i) => {
    t.ok(after[i].rss - before[i].rss < 2048, `worker ${i}: resident memory within 2 MB of where it was (${after[i].rss - before[i].rss} kB more)`);
  });
  const c = await t.device(token, 'after');
  t.answer(await c.request({ type: 'schema' }), 'schema', 'a device is served after the flood');
});
