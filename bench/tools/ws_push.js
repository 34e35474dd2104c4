'use strict';
// ws_push.js TOKEN TABLE N BATCH: pushes N insert mutations over one
// WebSocket connection, in push messages of BATCH mutations sent one after
// the other (each waits for its pushed answer), and prints the seconds from
// opening the connection to the last answer, and "deflate" or "no deflate"
// (whether permessage-deflate was negotiated; when it was, ws compresses
// the pushes).  The messages are built before the clock starts.  Exits
// non-zero unless every mutation was applied.
//
// The mutations are those bench/rows/50_ws_push.sh applies in SQL: op_id
// op-G, pk {id: todo-G}, data {text: md5(G) || 'abcdefgh', done: G % 2}.

const crypto = require('node:crypto');
const { connect, expect, deflateMode, nowMs, fail } = require('./ws_lib');

const ANSWER_TIMEOUT_MS = 20000;

async function main() {
  const [token, table, nText, batchText] = process.argv.slice(2);
  const n = Number(nText || 10000);
  const batch = Number(batchText || 1000);

  // The hybrid logical clock to stamp the mutations with: the origin's,
  // from a welcome (an integer beyond 2^53, so read from the text).
  const probe = await connect('hlc');
  const w = await probe.requestMeta({ type: 'hello', token });
  expect(w, 'welcome', 'hello');
  const hlc = /"hlc":\s*([0-9]+)/.exec(w.raw)[1];
  probe.terminate();

  const messages = [];
  for (let first = 1, id = 1; first <= n; first += batch, id++) {
    const muts = [];
    for (let g = first; g < first + batch && g <= n; g++) {
      const md5 = crypto.createHash('md5').update(String(g)).digest('hex');
      muts.push(`{"op_id":"op-${g}","table":${JSON.stringify(table)},"op":"insert",` +
        `"pk":{"id":"todo-${g}"},"data":{"text":"${md5}abcdefgh","done":${g % 2}},"hlc":${hlc}}`);
    }
    messages.push({ id, text: `{"type":"push","id":${id},"mutations":[${muts.join(',')}]}` });
  }

  const start = nowMs();
  const c = await connect('push');
  expect(await c.requestMeta({ type: 'hello', token }), 'welcome', 'hello');
  const counts = {};
  for (const m of messages) {
    let a;
    try {
      a = expect(await c.requestRaw(m.text, m.id, ANSWER_TIMEOUT_MS, undefined, true), 'pushed', `push ${m.id}`);
    } catch (e) {
      if (!/no answer/.test(e.message)) fail(e.message);
      const applied = counts.applied || 0;
      fail(`no answer within ${ANSWER_TIMEOUT_MS / 1000} s to push ${m.id} of ${messages.length} ` +
        `(${m.text.length} bytes, permessage-deflate ${c.deflate ? 'negotiated' : 'off'}); ` +
        `${applied} of ${n} acknowledged before${c.closed ? `; closed ${c.closed.code}` : ''}`);
    }
    for (const r of a.results) counts[r.status] = (counts[r.status] || 0) + 1;
  }
  const secs = (nowMs() - start) / 1000;
  c.terminate();
  if (counts.applied !== n) fail(`pushed answers: ${JSON.stringify(counts)}, expected ${n} applied`);
  process.stdout.write(`${secs} ${deflateMode([c])}\n`);
  process.exit(0);
}

main().catch((e) => fail(e.message));
