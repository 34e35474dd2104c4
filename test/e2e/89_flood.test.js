'use strict';
// Connections are capped.  2,400 half-open connections (TCP only, never a
// WebSocket handshake) from one address, reopened as the worker drops
// them, cannot starve a real device from another address: its connection,
// hello and three requests take under a second throughout.  The worker
// holds at most ofs.max_connections_per_address of them each, and drops
// those that do not finish their handshake within ofs.handshake_timeout.
const net = require('node:net');
const { performance } = require('node:perf_hooks');
const { test, psql, show, sleep, connect, WS_URL } = require('./lib');

const FLOOD = 2400;

test('flood', { timeout: 90 }, async (t) => {
  const role = t.role('e2e_flood_dev');
  psql(`CREATE TABLE e2e_flood_t (id int PRIMARY KEY, v text);
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT ON e2e_flood_t TO ${role};
        SELECT ofs.sync_table('e2e_flood_t');
        INSERT INTO e2e_flood_t SELECT g, 'v' || g FROM generate_series(1, 20) g;`);
  const token = t.token(role, 'e2e-flood');
  const url = new URL(WS_URL);
  const port = Number(url.port);
  let stop = false;
  let open = 0;
  let opened = 0;
  let droppedByServer = 0;
  const sockets = new Set();
  const one = () => {
    if (stop) return;
    const s = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.2' });
    sockets.add(s);
    let up = false;
    s.on('connect', () => { up = true; open++; opened++; });
    s.on('error', () => {});
    s.on('close', () => {
      sockets.delete(s);
      if (up) { open--; if (!stop) droppedByServer++; }
      setTimeout(one, 20);
    });
  };
  for (let i = 0; i < FLOOD; i++) one();
  await sleep(1500);
  t.diag(`flood: ${open} half-open connections held now, ${opened} opened so far`);

  const times = [];
  for (let round = 0; round < 6; round++) {
    const t0 = performance.now();
    let c;
    try {
      c = await connect(WS_URL, { label: `device${round}` });
      const w = await c.hello(token);
      if (w.type !== 'welcome') throw new Error(show(w));
      await c.request({ type: 'schema' });
      await c.request({ type: 'subscribe', table: 'public.e2e_flood_t' });
      const p = await c.request({ type: 'pull', cursor: null });
      if (p.type !== 'changes') throw new Error(show(p));
      times.push(performance.now() - t0);
    } catch (e) {
      times.push(Infinity);
      t.diag(`round ${round}: ${e.message}`);
    }
    if (c) c.close();
    await sleep(1000);
  }
  t.diag(`a device's connect, hello and three requests during the flood: ${times.map((x) => x.toFixed(0)).join(', ')} ms`);
  t.ok(times.every((x) => x < 1000), 'hello and three requests take under a second during the flood', show(times));
  t.ok(droppedByServer > 0, `the worker drops half-open connections (${droppedByServer} dropped, ${opened} opened)`);
  stop = true;
  for (const s of sockets) s.destroy();
  // A connection that never finishes its handshake is dropped after
  // ofs.handshake_timeout (5 s), checked every second.
  const silentAt = performance.now();
  const silent = await new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.5' });
    s.on('error', () => {});
    s.on('close', () => resolve(performance.now() - silentAt));
    setTimeout(() => { s.destroy(); resolve(null); }, 12000);
  });
  t.ok(silent !== null && silent >= 4900 && silent < 7500, `a connection that says nothing is dropped after the 5 s handshake deadline (${silent && silent.toFixed(0)} ms)`);
  const held = Number(psql(`SELECT connected_devices FROM ofs.stats`));
  t.ok(held >= 0, 'the origin answers ofs.stats after the flood');
});
