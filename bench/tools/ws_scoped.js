'use strict';
// ws_scoped.js TOKENS_FILE TABLE ROLE_PREFIX ROWS RATES SECONDS: scoped
// live fan-out under a steady write rate.
//
// Line i of TOKENS_FILE is the token of device i, whose role ROLE_PREFIX<i>
// owns the rows of TABLE with (id - 1) % DEVICES + 1 = i (the column owner),
// ROWS rows in all; row-level security lets each role see its own rows
// only.  Every device says hello subscribed to TABLE, pulls until `more` is
// false (it must receive exactly its own rows) and goes live; one change,
// not counted, warms the live stream up.
//
// Then for each rate of RATES (comma separated, changes per second),
// pgbench runs SECONDS seconds at that rate (--rate: Poisson arrivals) a
// transaction that updates one random row, setting sent_us to
// clock_timestamp() in microseconds and v to v + 1, and logs (step, id, v,
// owner, sent_us) into TABLE_log in the same transaction.  After the
// writer stops, the devices get up to 5 seconds to receive what is
// outstanding; then every logged update is matched with the owner's
// receipt of that row at version v or later (a later version of the row
// carries the earlier change too): latency = receipt - sent_us, on the
// machine's one clock.  A logged update its owner never receives is
// missed.  A change of a row the device does not own is a leak.  A step
// passes when no update was missed, nothing leaked, pgbench reached 80% of
// the rate (arrivals are random), and p95 <= 250 ms; the stepping stops at the first step that
// does not pass.
//
// Prints "BEST_RATE BEST_P95 FAILED_RATE FAILED_P95 FAILED_MISSED
// FAILED_ACHIEVED_RATE MODE" (BEST_* are "-" when no step passed, FAILED_*
// when none failed; MODE is "deflate" or "no deflate", whether
// permessage-deflate was negotiated); the steps go to stderr.
// Exits non-zero on a leak, a closed device or an error message.

const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { openDevices, pullThenLive, deflateMode, psql, spawnAsync, nowMs, sleep, percentile, fail } = require('./ws_lib');

const P95_TARGET_MS = 250;
const DRAIN_MS = 5000;

async function main() {
  const [tokensFile, table, rolePrefix, rowsText, ratesText, secondsText] = process.argv.slice(2);
  const tokens = fs.readFileSync(tokensFile, 'utf8').split('\n').filter((l) => l !== '');
  const n = tokens.length;
  const rows = Number(rowsText);
  const rates = ratesText.split(',').map(Number);
  const seconds = Number(secondsText || 5);
  const ownerOf = (id) => ((id - 1) % n) + 1;

  // received[i].get(id) = [[v, at], ...] in arrival order, for device i + 1.
  const received = Array.from({ length: n }, () => new Map());
  const leaks = [];
  const problems = [];
  const t0 = nowMs();
  const conns = await openDevices(tokens, {
    concurrency: 50,
    hello: () => ({ subscriptions: [{ table }] }),
    after: async (c, i) => {
      const initial = await pullThenLive(c);
      const ids = initial.filter((ch) => ch.op === 'upsert').map((ch) => ch.pk.id).sort((a, b) => a - b);
      const mine = [];
      for (let id = i + 1; id <= rows; id += n) mine.push(id);
      const foreign = ids.filter((id) => ownerOf(id) !== i + 1);
      if (foreign.length > 0) leaks.push(`device ${i + 1} pulled rows ${foreign.slice(0, 5).join(', ')} of other roles`);
      if (ids.filter((id) => ownerOf(id) === i + 1).length !== mine.length) {
        problems.push(`device ${i + 1} pulled its rows ${ids.join(', ')} instead of ${mine.join(', ')}`);
      }
      c.onPush = (msg, at) => {
        if (msg.type !== 'changes') {
          problems.push(`device ${i + 1} got ${JSON.stringify(msg).slice(0, 300)}`);
          return;
        }
        for (const ch of msg.changes) {
          const id = ch.pk && ch.pk.id;
          if (ownerOf(id) !== i + 1 || (ch.row && ch.row.owner !== `${rolePrefix}${i + 1}`)) {
            leaks.push(`device ${i + 1} received ${JSON.stringify(ch).slice(0, 200)}`);
            continue;
          }
          if (ch.op !== 'upsert') {
            problems.push(`device ${i + 1} was told to remove its own row ${id}`);
            continue;
          }
          let list = received[i].get(id);
          if (!list) received[i].set(id, (list = []));
          list.push([ch.row.v, at]);
        }
        if (typeof msg.cursor === 'string') c.send({ type: 'ack', cursor: msg.cursor });
      };
    },
  });
  const mode = deflateMode(conns);
  if (leaks.length > 0) fail(`leak in the first pull: ${leaks.length} devices; ${leaks.slice(0, 3).join('; ')}`);
  if (problems.length > 0) fail(`first pull: ${problems.slice(0, 3).join('; ')}`);
  process.stderr.write(`${n} devices connected (${mode}), pulled their own rows and live in ${((nowMs() - t0) / 1000).toFixed(1)} s\n`);

  const script = path.join(process.env.OFS_TMP || '/tmp', 'ws_scoped.pgbench');
  fs.writeFileSync(script, `\\set id random(1, ${rows})
WITH u AS (UPDATE ${table} SET v = v + 1, sent_us = (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
            WHERE id = :id RETURNING id, v, owner, sent_us)
INSERT INTO ${table}_log SELECT :step, id, v, owner, sent_us FROM u;
`);
  const pgbench = path.join(execFileSync('pg_config', ['--bindir']).toString().trim(), 'pgbench');

  // Warm-up, not counted: one change, until its owner has it.  Devices that
  // went live one after the other hold cursors of different moments; the
  // first live round brings them to one.
  const warm = Number(await psql(`UPDATE ${table} SET v = v + 1 WHERE id = 1 RETURNING v`));
  const warmStart = nowMs();
  const warmDone = () => (received[0].get(1) || []).some(([v]) => v >= warm);
  while (!warmDone() && nowMs() - warmStart < 30000) await sleep(20);
  if (!warmDone()) fail('the warm-up change did not reach its device within 30 s');
  process.stderr.write(`warm-up change received after ${(nowMs() - warmStart).toFixed(0)} ms\n`);
  await sleep(1000);

  let best = null;
  let failed = null;
  for (let step = 0; step < rates.length; step++) {
    const rate = rates[step];
    await spawnAsync(pgbench, ['-n', '-f', script, '-D', `step=${step}`, `--rate=${rate}`, '-T', String(seconds),
      '-c', '8', '-j', '2', process.env.OFS_WS_DB || 'ofs_bench_ws']);
    const log = (await psql(`SELECT id, v, sent_us FROM ${table}_log WHERE step = ${step}`))
      .split('\n').filter((l) => l !== '').map((l) => l.split('|').map(Number));
    const pending = () => log.filter(([id, v]) => {
      const list = received[ownerOf(id) - 1].get(id);
      return !list || list[list.length - 1][0] < v;
    }).length;
    const until = nowMs() + DRAIN_MS;
    while (pending() > 0 && nowMs() < until) await sleep(100);
    const lat = [];
    let missed = 0;
    for (const [id, v, sentUs] of log) {
      const list = received[ownerOf(id) - 1].get(id) || [];
      const hit = list.find(([rv]) => rv >= v);
      if (hit) lat.push(hit[1] - sentUs / 1000);
      else missed++;
    }
    lat.sort((a, b) => a - b);
    const achieved = log.length / seconds;
    const p95 = lat.length ? percentile(lat, 95) : Infinity;
    const closed = conns.filter((c) => c.closed);
    process.stderr.write(`rate ${rate}/s: ${log.length} changes (${achieved.toFixed(0)}/s), latency p50 ${percentile(lat, 50).toFixed(1)} ms, ` +
      `p95 ${p95.toFixed(1)} ms, max ${lat.length ? lat[lat.length - 1].toFixed(1) : '-'} ms, ${missed} missed, ${leaks.length} leaks\n`);
    if (leaks.length > 0) fail(`leak at ${rate} changes/s: ${leaks.length} changes; ${leaks.slice(0, 3).join('; ')}`);
    if (closed.length > 0) fail(`${closed.length} devices were closed (first: code ${closed[0].closed.code} ${closed[0].closed.reason})`);
    if (problems.length > 0) fail(`unexpected messages: ${problems.slice(0, 3).join('; ')}`);
    if (missed === 0 && achieved >= 0.8 * rate && p95 <= P95_TARGET_MS) {
      best = { rate, p95 };
    } else {
      failed = { rate, p95, missed, achieved };
      break;
    }
    await sleep(500);
  }
  for (const c of conns) c.terminate();
  const f = (x) => (Number.isFinite(x) ? x.toFixed(1) : 'inf');
  process.stdout.write(`${best ? best.rate : '-'} ${best ? f(best.p95) : '-'} ${failed ? failed.rate : '-'} ${failed ? f(failed.p95) : '-'} ` +
    `${failed ? failed.missed : '-'} ${failed ? failed.achieved.toFixed(0) : '-'} ${mode}\n`);
  process.exit(0);
}

main().catch((e) => fail(e.message));
