'use strict';
// ws_memory.js TOKENS_FILE WARMUP: the sync workers' resident memory per
// idle connection.
//
// The first WARMUP tokens open connections that stay open (hello done), so
// that what the first connections set up once (caches, compiled functions,
// buffers) is not counted.  Then the workers' memory is read (sum over the
// pids of pg_stat_activity's 'ofs sync worker' backends, from
// /proc/PID/smaps_rollup: Pss, where pages shared with other processes count
// in proportion, and Anonymous, the private heap), the other tokens open a
// connection each (permessage-deflate offered, hello done, nothing else),
// and after two seconds of idleness the memory is read again.
//
// Prints "N PSS_DELTA_KB ANON_DELTA_KB RSS_DELTA_KB MODE" (MODE: "deflate"
// or "no deflate", whether permessage-deflate was negotiated); the readings
// go to stderr.  Exits non-zero if a hello fails or a connection was
// closed.

const fs = require('node:fs');
const { openDevices, deflateMode, psql, sleep, fail } = require('./ws_lib');

async function workerMemory() {
  const pids = (await psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'ofs sync worker' ORDER BY pid", 'postgres'))
    .split('\n').filter((l) => l !== '');
  const sum = { pss: 0, anon: 0, rss: 0, pids };
  for (const pid of pids) {
    const text = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = (field) => Number((new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text) || [0, 0])[1]);
    sum.pss += kb('Pss');
    sum.anon += kb('Anonymous');
    sum.rss += kb('Rss');
  }
  return sum;
}

async function main() {
  const [tokensFile, warmupText] = process.argv.slice(2);
  const tokens = fs.readFileSync(tokensFile, 'utf8').split('\n').filter((l) => l !== '');
  const warmup = Number(warmupText || 20);

  const early = await openDevices(tokens.slice(0, warmup), { concurrency: 10 });
  await sleep(2000);
  const before = await workerMemory();
  const conns = await openDevices(tokens.slice(warmup), { concurrency: 50 });
  await sleep(2000);
  const after = await workerMemory();
  const n = conns.length;
  const all = early.concat(conns);
  const mode = deflateMode(all);
  const closed = all.filter((c) => c.closed);
  if (closed.length > 0) fail(`${closed.length} connections were closed (first: code ${closed[0].closed.code} ${closed[0].closed.reason})`);
  if (before.pids.join() !== after.pids.join()) fail(`the workers changed while measuring: pids ${before.pids} then ${after.pids}`);
  const stats = await psql('SELECT connected_devices FROM ofs.stats');
  process.stderr.write(`workers ${after.pids.join(', ')}; ${warmup} + ${n} connections open, ${mode} (ofs.stats connected_devices ${stats})\n` +
    `before: Pss ${before.pss} kB, Anonymous ${before.anon} kB, Rss ${before.rss} kB\n` +
    `after:  Pss ${after.pss} kB, Anonymous ${after.anon} kB, Rss ${after.rss} kB\n`);
  for (const c of all) c.terminate();
  process.stdout.write(`${n} ${after.pss - before.pss} ${after.anon - before.anon} ${after.rss - before.rss} ${mode}\n`);
  process.exit(0);
}

main().catch((e) => fail(e.message));
