'use strict';
// soak.js: hundreds of devices against one origin for minutes, through
// faults.  Each device connects, says hello, pulls what is new, pushes a
// batch of its own writes (inserts and updates of its own rows, increments
// of shared counters), sometimes stays live for a while, and disconnects,
// at random.  A batch whose answer was lost is sent again, as a device
// must.  soak.sh kills a sync worker and restarts PostgreSQL while this
// runs; at the end every device sends what it has left, pulls to the end,
// and the checks are made: each device equals the origin, every operation
// was applied exactly once, every increment counted once.
//
// Environment: OFS_WS_URL, OFS_E2E_DB (psql via PG* variables),
// SOAK_DEVICES, SOAK_SECONDS, SOAK_TOKENS (a file: one token per line).
const fs = require('node:fs');
const path = require('node:path');
const lib = require(path.join(__dirname, '../toolkit/client.js'));
const { connect, psql, psqlAsync, sleep, canon, show, WS_URL } = lib;

const DEVICES = Number(process.env.SOAK_DEVICES || 300);
const SECONDS = Number(process.env.SOAK_SECONDS || 180);
const tokens = fs.readFileSync(process.env.SOAK_TOKENS, 'utf8').trim().split('\n');
const T = 'public.soak_items';
const SHARED = 20;

let n = 0;
let failed = 0;
const ok = (cond, name, diag) => {
  n++;
  console.log(`${cond ? 'ok' : 'not ok'} ${n} - ${name}`);
  if (!cond) { failed++; if (diag) console.log(`# ${String(diag).split('\n').join('\n# ')}`); }
};
const note = (s) => console.log(`# ${s}`);

const stats = { connects: 0, refused: 0, pushes: 0, resent: 0, mutations: 0, pulls: 0, live: 0, dropped: 0 };
const incs = new Map(); // op_id -> shared row id (an increment of 1)
const ownValue = new Map(); // "dev:k" -> last n written
const reasons = new Map(); // why sessions ended early, and how often
const slowest = {}; // request type -> longest wait for its answer (ms)
// ask: a request with a device's patience (a minute), timed.
async function ask(c, msg) {
  const t0 = Date.now();
  const a = await c.request(msg, 60000);
  const ms = Date.now() - t0;
  if (!(slowest[msg.type] >= ms)) slowest[msg.type] = ms;
  return a;
}

class Device {
  constructor(i) {
    this.i = i;
    this.name = `soak-${i}`;
    this.token = tokens[i];
    this.cursor = null;
    this.replica = new Map();
    this.pending = []; // batches not yet answered
    this.seq = 0;
    this.own = 0;
    this.hlc = 0n;
  }

  clock() {
    const wall = BigInt(Date.now()) << 16n;
    this.hlc = wall > this.hlc ? wall : this.hlc + 1n;
    return this.hlc;
  }

  makeBatch() {
    const muts = [];
    const k = 1 + Math.floor(Math.random() * 12);
    for (let j = 0; j < k; j++) {
      const r = Math.random();
      const op = `${this.name}-${this.seq++}`;
      if (r < 0.35 || this.own === 0) {
        const id = `${this.name}-r${this.own++}`;
        const v = Math.floor(Math.random() * 1e6);
        muts.push({ op_id: op, table: T, op: 'insert', pk: { id }, data: { id, owner: this.name, n: v, hits: 0 }, hlc: this.clock() });
        ownValue.set(id, v);
      } else if (r < 0.7) {
        const id = `${this.name}-r${Math.floor(Math.random() * this.own)}`;
        const v = Math.floor(Math.random() * 1e6);
        muts.push({ op_id: op, table: T, op: 'update', pk: { id }, data: { n: v }, hlc: this.clock() });
        ownValue.set(id, v);
      } else {
        const id = `shared-${1 + Math.floor(Math.random() * SHARED)}`;
        muts.push({ op_id: op, table: T, op: 'update', pk: { id }, data: { hits: 1 }, base: { hits: 0 }, hlc: this.clock() });
        incs.set(op, id);
      }
    }
    stats.mutations += muts.length;
    return muts;
  }

  apply(msg) {
    for (const c of msg.changes || []) {
      const key = canon(c.pk);
      if (c.op === 'upsert') this.replica.set(key, c.row);
      else this.replica.delete(key);
    }
    if (typeof msg.cursor === 'string') this.cursor = msg.cursor;
  }

  async session(final) {
    let c;
    try {
      c = await connect(WS_URL, { label: this.name, deflate: false });
    } catch (e) {
      stats.refused++;
      return false;
    }
    stats.connects++;
    try {
      const w = await ask(c, { type: 'hello', token: this.token, subscriptions: [{ table: T }] });
      if (w.type !== 'welcome') throw new Error(`hello: ${show(w)}`);
      for (;;) {
        const p = await ask(c, { type: 'pull', cursor: this.cursor });
        if (p.type !== 'changes') throw new Error(`pull: ${show(p)}`);
        stats.pulls++;
        this.apply(p);
        if (!p.more) break;
      }
      if (!final) this.pending.push(this.makeBatch());
      while (this.pending.length > 0) {
        const batch = this.pending[0];
        const a = await ask(c, { type: 'push', mutations: batch });
        if (a.type !== 'pushed') throw new Error(`push: ${show(a)}`);
        stats.pushes++;
        const bad = a.results.filter((r) => r.status !== 'applied' && r.status !== 'duplicate');
        if (bad.length) throw new Error(`push results: ${show(bad)}`);
        this.pending.shift();
      }
      if (!final && Math.random() < 0.3) {
        // Live for a while: changes arrive as they commit.
        stats.live++;
        c.autoAck = false;
        const l = await ask(c, { type: 'live', cursor: this.cursor });
        this.apply(l);
        const until = Date.now() + 500 + Math.random() * 3000;
        while (Date.now() < until && c.open) {
          const m = await c.next('changes', Math.max(1, until - Date.now()));
          if (m) { this.apply(m); c.send({ type: 'ack', cursor: m.cursor }); }
        }
      }
      if (final) {
        // The last word: pull to the end after everything was pushed.
        for (;;) {
          const p = await ask(c, { type: 'pull', cursor: this.cursor });
          this.apply(p);
          if (!p.more) break;
        }
      }
      c.close();
      return true;
    } catch (e) {
      stats.dropped++;
      const why = String(e.message).replace(/soak-\d+/g, 'D').replace(/\{.*$/, '').slice(0, 90);
      reasons.set(why, (reasons.get(why) || 0) + 1);
      c.terminate();
      return false;
    }
  }
}

async function main() {
  const devices = Array.from({ length: DEVICES }, (_, i) => new Device(i));
  const end = Date.now() + SECONDS * 1000;
  note(`${DEVICES} devices for ${SECONDS} s`);
  await Promise.all(devices.map(async (d) => {
    await sleep(Math.random() * 2000);
    while (Date.now() < end) {
      await d.session(false);
      await sleep(200 + Math.random() * 2000);
    }
  }));
  note(`traffic over: ${show(stats)}`);
  if (process.env.SOAK_MARK) fs.writeFileSync(process.env.SOAK_MARK, 'traffic over\n');
  // Every device sends what it has left and pulls to the end.
  const settle = Date.now() + 120000;
  await Promise.all(devices.map(async (d) => {
    while (Date.now() < settle && !(await d.session(true))) await sleep(500);
  }));
  const leftover = devices.reduce((s, d) => s + d.pending.length, 0);
  ok(leftover === 0, 'every device pushed all its batches', `${leftover} batches left`);
  // Once nobody writes any more, each device reads to the end once more.
  await Promise.all(devices.map(async (d) => {
    while (Date.now() < settle + 60000 && !(await d.session(true))) await sleep(500);
  }));

  const origin = new Map(JSON.parse(psql(`SELECT coalesce(json_agg(json_build_array(json_build_object('id', id), row_to_json(t))), '[]') FROM soak_items t`))
    .map(([pk, row]) => [canon(pk), row]));
  let differ = 0;
  let example = '';
  for (const d of devices) {
    const same = d.replica.size === origin.size && [...origin].every(([k, v]) => canon(d.replica.get(k)) === canon(v));
    if (!same) { differ++; if (!example) example = `${d.name}: ${d.replica.size} rows, origin ${origin.size}`; }
  }
  ok(differ === 0, `every device equals the origin (${origin.size} rows)`, `${differ} devices differ; ${example}`);
  const applied = Number(psql(`SELECT count(*) FROM ofs.applied_op WHERE device LIKE 'soak-%'`));
  const sent = devices.reduce((s, d) => s + d.seq, 0);
  ok(applied === sent, `every operation was applied exactly once (${sent} sent, ${applied} recorded)`);
  const dups = Number(psql(`SELECT count(*) FROM (SELECT device, operation_id FROM ofs.applied_op GROUP BY 1, 2 HAVING count(*) > 1) x`));
  ok(dups === 0, 'no operation is recorded twice');
  const want = new Map();
  for (const id of incs.values()) want.set(id, (want.get(id) || 0) + 1);
  let wrong = 0;
  for (let s = 1; s <= SHARED; s++) {
    const id = `shared-${s}`;
    const got = Number(psql(`SELECT hits FROM soak_items WHERE id = '${id}'`));
    if (got !== (want.get(id) || 0)) wrong++;
  }
  ok(wrong === 0, `every increment counted once (${incs.size} increments over ${SHARED} counters)`, `${wrong} counters are off`);
  let lost = 0;
  for (const [id, v] of ownValue) {
    const row = origin.get(canon({ id }));
    if (!row || row.n !== v) lost++;
  }
  ok(lost === 0, `every device's last write of its own rows stands (${ownValue.size} rows)`, `${lost} rows differ`);
  note(`figures: ${show(stats)}`);
  note(`longest wait for an answer, ms: ${show(slowest)}`);
  note(`sessions that ended early: ${show([...reasons].sort((a, b) => b[1] - a[1]).slice(0, 6))}`);
  console.log(`1..${n}`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => { console.log(`not ok - soak: ${e.stack}`); process.exit(1); });
