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
