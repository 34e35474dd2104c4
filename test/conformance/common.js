'use strict';
// common.js: what the conformance tests of docs/PROTOCOL.md share, on top of
// test/e2e/lib.js (TAP, psql, the toolkit's client).  Expected values are
// the document's, written here once: the Limits table's defaults, the
// close codes, the error codes.
const lib = require('../e2e/lib');

const { psql, show, big, lit } = lib;

// The Limits table of docs/PROTOCOL.md (defaults).
const DOC_LIMITS = {
  max_message_bytes: 1024 * 1024,
  max_batch: 1000,
  max_rows: 1000,
  max_messages_per_second: 200,
  max_shapes: 64,
};

// The "Close codes" table.
const CLOSE = {
  normal: 1000, going_away: 1001, too_big: 1009, try_later: 1013,
  unauthenticated: 4001, revoked: 4003, rate_limited: 4008, slow_reader: 4009,
};

const isInt = (v) => typeof v === 'bigint' || (typeof v === 'number' && Number.isInteger(v));
const isNum = (v) => typeof v === 'bigint' || typeof v === 'number';
const isStr = (v) => typeof v === 'string';
const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

// setting: a GUC's value in its base unit (bytes for memory, ms for time),
// and whether it is at its default.
function setting(name) {
  const out = psql(`SELECT setting || '|' || coalesce(unit, '') || '|' || source FROM pg_settings WHERE name = ${lit(name)}`);
  if (out === '') return null;
  const [num, unit, source] = out.split('|');
  const mult = { '': 1, B: 1, kB: 1024, '8kB': 8192, MB: 1024 * 1024, GB: 1024 * 1024 * 1024, ms: 1, s: 1000, min: 60000 }[unit];
  return { value: mult === undefined || !/^-?[0-9.]+$/.test(num) ? num : Number(num) * mult, unit, source, isDefault: source === 'default' };
}

// expectKept: after an error, the connection is still served.
async function expectKept(t, c, name) {
  const a = await c.request({ type: 'schema' }).catch((e) => ({ lost: e.message }));
  return t.answer(a, 'schema', `${name}: the connection is kept (a schema request is answered after it)`);
}

// sendAndNext: send raw text, and the next message that is an error or
// carries id; null if none comes within ms.
async function sendAndNext(c, raw, id, ms = 10000) {
  c.sendRaw(raw);
  return c.next((m) => m.type === 'error' || (id !== undefined && m.id === id), ms);
}

// closeAfter: the last error before a close, and the close.
async function closeAfter(c, ms = 10000) {
  const closed = await c.waitClose(ms);
  const errs = c.log.map((e) => e.msg).filter((m) => m && m.type === 'error');
  return { closed, err: errs[errs.length - 1], errs, msgs: c.log.map((e) => e.msg) };
}

// results: statuses of a pushed answer.
const statuses = (p) => (p && Array.isArray(p.results) ? p.results.map((r) => r.status) : show(p));

// device clock: HLC per docs/PROTOCOL.md "Clocks", never behind what was seen.
function hlcClock(seen = 0n) {
  let last = big(seen);
  const f = () => {
    const wall = BigInt(Date.now()) << 16n;
    last = wall > last ? wall : last + 1n;
    return last;
  };
  f.see = (v) => { if (v !== undefined && v !== null && big(v) > last) last = big(v); };
  return f;
}

// errorShape: the documented shape of an `error` message
// ({"type":"error","id":7,"code":"invalid_message","message":"...","sqlstate":"22023","retry":false}).
function errorShape(t, msg, name, opts = {}) {
  t.ok(isObj(msg) && msg.type === 'error' && isStr(msg.code) && isStr(msg.message) && msg.message.length > 0 &&
    (msg.sqlstate === undefined || msg.sqlstate === null || (isStr(msg.sqlstate) && /^[0-9A-Z]{5}$/.test(msg.sqlstate))) &&
    (opts.retry === undefined || msg.retry === opts.retry),
  `${name}: an error message of the documented shape (code, message${opts.retry !== undefined ? `, retry ${opts.retry}` : ''}, sqlstate of 5 characters when present)`,
  () => show(msg));
}

// pullAll: pages of a pull until more is false (the toolkit's, tolerant of
// an error answer, which it returns as the last element).
async function pullPages(c, cursor, maxRows, maxPages = 200) {
  const pages = [];
  for (let k = 0; k < maxPages; k++) {
    const m = { type: 'pull', cursor };
    if (maxRows !== undefined) m.max_rows = maxRows;
    const a = await c.request(m);
    pages.push(a);
    if (a.type !== 'changes' || a.more !== true) return pages;
    cursor = a.cursor;
  }
  return pages;
}

const changesOf = (pages) => pages.flatMap((p) => (p && Array.isArray(p.changes) ? p.changes : []));

module.exports = {
  ...lib, DOC_LIMITS, CLOSE, isInt, isNum, isStr, isObj, setting, expectKept, sendAndNext, closeAfter,
  statuses, hlcClock, errorShape, pullPages, changesOf,
};
