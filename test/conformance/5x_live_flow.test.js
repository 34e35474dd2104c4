'use strict';
// PROTOCOL.md "live and ack" (being implemented): live messages carry
// up_to_date (false only while more is true) and hlc; flow control: a
// device that does not read is paused, not closed (live changes do not
// count against the 8 MiB of unsent answers), and once it reads again
// every change arrives, from its last cursor.
const { test, psql, psqlAsync, show, sleep, isInt } = require('./common');

test('conformance: live up_to_date and flow control', { timeout: 120 }, async (t) => {
  const role = t.role('e2e_cf_lf_dev');
  psql(`CREATE TABLE cf_lf (id int PRIMARY KEY, payload text);
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT ON cf_lf TO ${role};
        SELECT ofs.sync_table('cf_lf');`);
  const A = await t.device(t.token(role, 'cf-lf'), 'a', {}, { deflate: false });
  await A.request({ type: 'subscribe', table: 'cf_lf' });
  const l = await A.request({ type: 'live', cursor: null });
  t.ok(l.type === 'changes' && l.up_to_date === true && isInt(l.hlc), 'the answer to live carries up_to_date (true: nothing more) and hlc', show(l));

  t.step = 'live messages';
  await psqlAsync(`INSERT INTO cf_lf VALUES (0, 'small')`);
  const m = await A.next('changes', 10000);
  t.ok(m && m.up_to_date === (m.more !== true) && typeof m.up_to_date === 'boolean', 'a live changes message carries up_to_date, false only while more is true', show(m));
  t.ok(m && isInt(m.hlc), 'a live changes message carries hlc', show(m));
  A.send({ type: 'ack', cursor: m && m.cursor });

  t.step = 'a device that does not read';
  A.ws._socket.pause();
  const rows = 120; // 120 commits of about 100 kB each: 12 MB of live changes, past the 8 MiB of unsent answers
  const sql = Array.from({ length: rows }, (_, k) => `INSERT INTO cf_lf VALUES (${k + 1}, repeat(md5('${k}'), 3125));`).join('\n');
  await psqlAsync(sql);
  await sleep(3000);
  t.ok(A.closed === null, 'a device that falls behind on live changes is not closed (paused, not 4009)', show(A.closed));
  A.ws._socket.resume();
  const all = await A.until(() => A.replica.size >= rows + 1, 60000);
  t.ok(all, `once it reads again, every change arrives live (${rows + 1} rows)`, `rows held: ${A.replica.size}`);
  t.ok(A.closed === null, 'the connection is still open', show(A.closed));
  const lives = A.log.map((e) => e.msg).filter((x) => x && x.type === 'changes' && (x.id === undefined || x.id === null));
  t.ok(lives.every((x) => typeof x.up_to_date === 'boolean' && x.up_to_date === (x.more !== true)), 'every live message: up_to_date false only while more is true', show(lives.map((x) => [x.more, x.up_to_date])));
  const s = await A.request({ type: 'schema' });
  t.answer(s, 'schema', 'the device is served after catching up');
  A.close();
});
