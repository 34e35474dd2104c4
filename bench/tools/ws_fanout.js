'use strict';
// ws_fanout.js TOKENS_FILE TABLE TRIALS WARMUP: live fan-out of one change.
//
// Every token of TOKENS_FILE (one a line) becomes a device on a connection
// of its own: hello with a subscription to TABLE, a pull from no cursor
// until `more` is false, then `live` with the pull's cursor.  Then, WARMUP
// + TRIALS times, one row is inserted into TABLE by psql (a transaction of
// its own) and the time of its commit is read by the same session right
// after, with clock_timestamp() (the machine's clock, which is also the one
// this process reads); the next change waits until every device has
// received the row.  Devices ack every live changes message, as a device
// that stored it would.
//
// Prints one line: "COMPLETE_P50 COMPLETE_P99 COMPLETE_MAX DEVICE_P50
// DEVICE_P99 MODE" in ms over the TRIALS changes after the warm-up ones:
// COMPLETE_* is, per change, the time from its commit until the last
// device received it; DEVICE_* is over every device's receipt of every
// change; MODE is "deflate" or "no deflate" (permessage-deflate
// negotiated or not).  Exits non-zero if a device misses a change, is
// closed, or gets an error.
//
// OFS_BENCH_FAN_ADDRESSES=N spreads the connections over the source
// addresses 127.0.0.2 .. 127.0.0.(N+1), as devices come from many
// addresses (the worker takes at most ofs.max_connections_per_address
// from one).  OFS_BENCH_FAN_PIDS="pid ..." (the workers) adds their memory
// once every device is live: "PSS_KB" at the end of the line, the sum of
// Pss over /proc/PID/smaps_rollup.

const fs = require('node:fs');
const { openDevices, pullThenLive, deflateMode, psql, nowMs, sleep, percentile, fail } = require('./ws_lib');

const WAIT_MS = 15000;

async function main() {
  const [tokensFile, table, trialsText, warmupText] = process.argv.slice(2);
  const trials = Number(trialsText || 20);
  const warmup = Number(warmupText || 2);
  const tokens = fs.readFileSync(tokensFile, 'utf8').split('\n').filter((l) => l !== '');
  const n = tokens.length;
  const [schema, name] = table.split('.');

  // arrivals.get(key)[device] = time the device received the row.
  const arrivals = new Map();
  let waiting = null; // {key, resolve}
  const problems = [];
  const t0 = nowMs();
  const nAddr = Number(process.env.OFS_BENCH_FAN_ADDRESSES || 0);
  const localAddresses = nAddr > 0 ? Array.from({ length: nAddr }, (_, k) => `127.0.0.${k + 2}`) : undefined;
  const conns = await openDevices(tokens, {
    concurrency: 50,
    localAddresses,
    hello: () => ({ subscriptions: [{ table }] }),
    after: async (c, i) => {
      await pullThenLive(c);
      c.onPush = (msg, at) => {
        if (msg.type !== 'changes') {
          problems.push(`device ${i + 1} got ${JSON.stringify(msg).slice(0, 300)}`);
          return;
        }
        for (const ch of msg.changes) {
          const key = ch.pk && ch.pk.id;
          const got = arrivals.get(key);
          if (got && got[i] === undefined) {
            got[i] = at;
            got.count++;
            if (waiting && waiting.key === key && got.count === n) waiting.resolve();
          }
        }
        if (typeof msg.cursor === 'string') c.send({ type: 'ack', cursor: msg.cursor });
      };
    },
  });
  const setupSecs = (nowMs() - t0) / 1000;
  const mode = deflateMode(conns);
  process.stderr.write(`${n} devices connected (${mode}), subscribed and live in ${setupSecs.toFixed(1)} s\n`);
  let pssKb = '';
  if (process.env.OFS_BENCH_FAN_PIDS) {
    let sum = 0;
    for (const pid of process.env.OFS_BENCH_FAN_PIDS.split(/\s+/).filter((p) => p !== '')) {
      const m = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
      sum += m ? Number(m[1]) : 0;
    }
    pssKb = ` ${sum}`;
  }

  const complete = [];
  const perDevice = [];
  for (let k = 1; k <= warmup + trials; k++) {
    const got = { count: 0 };
    arrivals.set(k, got);
    const all = new Promise((resolve) => { waiting = { key: k, resolve }; });
    const commitText = await psql(
      `INSERT INTO ${schema}.${name} (id, note) VALUES (${k}, 'change ${k}');\n` +
      'SELECT extract(epoch FROM clock_timestamp()) * 1000;');
    const commitMs = Number(commitText);
    const done = await Promise.race([all.then(() => true), sleep(WAIT_MS).then(() => false)]);
    waiting = null;
    const closed = conns.filter((c) => c.closed);
    if (closed.length > 0) {
      fail(`${closed.length} of ${n} devices were closed (first: code ${closed[0].closed.code} ${closed[0].closed.reason})`);
    }
    if (problems.length > 0) fail(`unexpected messages: ${problems.slice(0, 3).join('; ')}`);
    if (!done) fail(`change ${k}: only ${got.count} of ${n} live devices received it within ${WAIT_MS / 1000} s`);
    if (k > warmup) {
      let last = 0;
      let first = Infinity;
      for (let i = 0; i < n; i++) {
        perDevice.push(got[i] - commitMs);
        last = Math.max(last, got[i] - commitMs);
        first = Math.min(first, got[i] - commitMs);
      }
      complete.push(last);
      process.stderr.write(`change ${k}: first device after ${first.toFixed(1)} ms, all ${n} after ${last.toFixed(1)} ms\n`);
    }
    await sleep(100);
  }
  for (const c of conns) c.terminate();
  complete.sort((a, b) => a - b);
  perDevice.sort((a, b) => a - b);
  const f = (x) => x.toFixed(1);
  process.stdout.write(`${f(percentile(complete, 50))} ${f(percentile(complete, 99))} ${f(complete[complete.length - 1])} ` +
    `${f(percentile(perDevice, 50))} ${f(percentile(perDevice, 99))} ${mode}${pssKb}\n`);
  process.exit(0);
}

main().catch((e) => fail(e.message));
