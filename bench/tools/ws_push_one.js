'use strict';
// ws_push_one.js TOKEN TABLE TRIALS: one device, one connection, pushes
// one single-row insert at a time and times each from sending the push to
// its "pushed" answer (the origin's apply and durable commit included),
// after 20 pushes not counted, 10 ms apart.  Prints p50, p99 and max in
// milliseconds.  Exits non-zero unless every mutation was applied.

const { connect, expect, nowMs, percentile, sleep, fail } = require('./ws_lib');

const WARMUP = 20;

async function main() {
  const [token, table, trialsText] = process.argv.slice(2);
  const trials = Number(trialsText || 200);
  const c = await connect('push-one');
  const w = await c.requestMeta({ type: 'hello', token });
  expect(w, 'welcome', 'hello');
  const hlc = /"hlc":\s*([0-9]+)/.exec(w.raw)[1];
  const lat = [];
  for (let i = 0; i < WARMUP + trials; i++) {
    const id = i + 1;
    const text = `{"type":"push","id":${id},"mutations":[{"op_id":"one-${id}","table":${JSON.stringify(table)},` +
      `"op":"insert","pk":{"id":"one-${id}"},"data":{"text":"row ${id}","done":0},"hlc":${hlc}}]}`;
    const t0 = nowMs();
    const a = expect(await c.requestRaw(text, id, 10000, undefined, true), 'pushed', `push ${id}`);
    const t1 = nowMs();
    if (!a.results || a.results.length !== 1 || a.results[0].status !== 'applied') {
      fail(`push ${id} was not applied: ${JSON.stringify(a).slice(0, 300)}`);
    }
    if (i >= WARMUP) lat.push(t1 - t0);
    await sleep(10);
  }
  c.terminate();
  lat.sort((x, y) => x - y);
  process.stdout.write(`${percentile(lat, 50).toFixed(3)} ${percentile(lat, 99).toFixed(3)} ${lat[lat.length - 1].toFixed(3)}\n`);
}

main().catch((e) => fail(e.stack || e.message));
