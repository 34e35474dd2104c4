'use strict';
// PROTOCOL.md "error", "Close codes" and "Limits": too_big (1009), a
// message over 256 KiB before hello (1009), rate_limited (4008),
// server_error with retry true on a statement timeout (kept, nothing
// written), max_shapes (54000), and shutting_down (1001) when the worker
// stops.  (unauthenticated, unauthorized and revoked: 03_session; the
// kept codes: 02_messages and 05_subscribe.)
const {
  test, psql, psqlAsync, show, sleep, CLOSE, DOC_LIMITS, closeAfter, expectKept, hlcClock, workerPids, waitForWorker, errorShape,
} = require('./common');

test('conformance: errors, close codes, limits', { timeout: 120 }, async (t) => {
  const role = t.role('e2e_cf_err_dev');
  psql(`CREATE TABLE cf_err (id int PRIMARY KEY, v text);
        CREATE TABLE cf_err_slow (id int PRIMARY KEY);
        CREATE FUNCTION cf_err_sleep() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN PERFORM pg_sleep(4); RETURN NEW; END$$;
        CREATE TRIGGER slow BEFORE INSERT ON cf_err_slow FOR EACH ROW EXECUTE FUNCTION cf_err_sleep();
        ${Array.from({ length: DOC_LIMITS.max_shapes + 1 }, (_, k) => `CREATE TABLE cf_err_s${k} (id int PRIMARY KEY); SELECT ofs.sync_table('cf_err_s${k}');`).join('\n')}
        GRANT USAGE ON SCHEMA public TO ${role};
        GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${role};
        GRANT INSERT ON cf_err, cf_err_slow TO ${role};
        SELECT ofs.sync_table('cf_err');
        SELECT ofs.sync_table('cf_err_slow');`);
  const token = t.token(role, 'cf-err');
  const A = await t.device(token, 'a');
  const hlc = hlcClock(A.welcome.hlc);
  const maxBytes = A.welcome.limits.max_message_bytes;
  t.cleanup(() => psql(`ALTER SYSTEM RESET ofs.statement_timeout; SELECT pg_reload_conf();`));

  t.step = 'too_big';
  const O = await t.device(token, 'big');
  const big = JSON.stringify({ type: 'push', id: 'big', mutations: [{ op_id: 'b1', table: 'public.cf_err', op: 'insert', pk: { id: 1 }, data: { id: 1, v: 'x'.repeat(maxBytes) }, hlc: String(hlc()) }] });
  O.sendRaw(big);
  const ob = await closeAfter(O, 15000);
  t.is(ob.closed && ob.closed.code, CLOSE.too_big, `a message of ${big.length} bytes (limit ${maxBytes}) closes the connection with 1009`);
  t.error(ob.err, 'too_big', 'the error before the close is too_big');
  t.is(psql('SELECT count(*) FROM cf_err'), '0', 'nothing of the oversized message is applied');
  const fit = JSON.stringify({ type: 'schema', id: 'fit', pad: 'x'.repeat(maxBytes - 100) });
  const F = await t.device(token, 'fit');
  const ff = await F.requestRaw(fit, 'fit', 15000).catch((e) => ({ lost: e.message }));
  t.answer(ff, 'schema', `a message of ${fit.length} bytes (under the limit) is served`);
  F.close();

  t.step = 'a message over 256 KiB before hello';
  const E = await t.connect({ label: 'early-big', deflate: false });
  E.sendRaw(JSON.stringify({ type: 'hello', token, pad: 'x'.repeat(256 * 1024 + 16) }));
  const eb = await closeAfter(E);
  t.is(eb.closed && eb.closed.code, CLOSE.too_big, 'a message over 256 KiB before hello closes with 1009');
  t.ok(!eb.msgs.some((m) => m && m.type === 'welcome'), 'it is not served', show(eb.msgs));

  t.step = 'rate_limited';
  const R = await t.device(token, 'flood');
  const count = Math.max(1000, A.welcome.limits.max_messages_per_second * 5);
  for (let k = 0; k < count && R.open; k++) R.send({ type: 'ack', cursor: 'c1.x' });
  const rr = await closeAfter(R, 15000);
  t.is(rr.closed && rr.closed.code, CLOSE.rate_limited, `${count} messages at once (limit ${A.welcome.limits.max_messages_per_second} a second) close the connection with 4008`);
  t.error(rr.err, 'rate_limited', 'the error before the close is rate_limited');

  t.step = 'server_error on a statement timeout';
  psql(`ALTER SYSTEM SET ofs.statement_timeout = '1s'; SELECT pg_reload_conf();`);
  await sleep(1500);
  const se = await A.request({ type: 'push', id: 'slow', mutations: [{ op_id: 's1', table: 'public.cf_err_slow', op: 'insert', pk: { id: 1 }, data: { id: 1 }, hlc: hlc() }] }, 20000);
  t.error(se, 'server_error', 'a push whose SQL passes ofs.statement_timeout: error server_error');
  t.ok(se.retry === true, 'retry is true for a timeout', show(se));
  t.ok(se.id === 'slow', 'the error carries the request\'s id', show(se));
  errorShape(t, se, 'server_error');
  psql(`ALTER SYSTEM RESET ofs.statement_timeout; SELECT pg_reload_conf();`);
  await sleep(1000);
  t.is(psql('SELECT count(*) FROM cf_err_slow'), '0', 'nothing of the batch was written');
  t.is(psql(`SELECT count(*) FROM ofs.dead_letters WHERE device = 'cf-err'`), '0', 'and it is not a dead letter');
  await expectKept(t, A, 'server_error');

  t.step = 'max_shapes';
  const S = await t.device(t.token(role, 'cf-err-shapes'), 'shapes');
  let okCount = 0;
  for (let k = 0; k < DOC_LIMITS.max_shapes; k++) {
    const r = await S.request({ type: 'subscribe', table: `cf_err_s${k}` });
    if (r.type === 'subscribed') okCount++;
  }
  t.is(okCount, DOC_LIMITS.max_shapes, `${DOC_LIMITS.max_shapes} shapes are accepted`);
  const over = await S.request({ type: 'subscribe', table: `cf_err_s${DOC_LIMITS.max_shapes}` });
  t.error(over, 'invalid_message', `shape ${DOC_LIMITS.max_shapes + 1}: invalid_message, sqlstate 54000`, { sqlstate: '54000' });
  t.is(psql(`SELECT count(*) FROM ofs.subscriptions WHERE device = 'cf-err-shapes'`), String(DOC_LIMITS.max_shapes), 'the refused shape is not added');
  const H = await t.connect({ label: 'hello-shapes' });
  const subs = Array.from({ length: DOC_LIMITS.max_shapes + 1 }, (_, k) => ({ table: `cf_err_s${k}` }));
  const hs = await H.request({ type: 'hello', token: t.token(role, 'cf-err-h'), subscriptions: subs });
  t.error(hs, 'invalid_message', `a hello with ${DOC_LIMITS.max_shapes + 1} subscriptions: invalid_message, sqlstate 54000`, { sqlstate: '54000' });
  t.is(psql(`SELECT count(*) FROM ofs.subscriptions WHERE device = 'cf-err-h'`), '0', 'no shape of the refused hello is kept');

  t.step = 'shutting_down';
  const D = await t.device(token, 'down');
  const pids = await workerPids();
  t.ok(pids.length > 0, 'the sync workers are found', show(pids));
  await psqlAsync(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'ofs sync worker'`);
  const dd = await closeAfter(D, 15000);
  t.is(dd.closed && dd.closed.code, CLOSE.going_away, 'a worker that stops closes its connections with 1001');
  t.error(dd.err, 'shutting_down', 'the error before the close is shutting_down');
  await waitForWorker(t, 30000);
  const again = await t.device(token, 'again');
  t.answer(await again.request({ type: 'schema' }), 'schema', 'the worker serves again once restarted');
  again.close();
});
