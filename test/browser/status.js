'use strict';
// status.js URL TOKEN DEVICE SHOT: opens the sync worker's /status in
// headless Chromium (puppeteer-core): refused without the token, shown
// with it (the device behind, the dead letter), updated by its own refresh
// once the test resolves the dead letter (it waits for the line "resolved"
// on stdin first); saves a screenshot.  Prints one JSON line per check.
const puppeteer = require('puppeteer-core');
const readline = require('readline');

const [url, token, device, shot] = process.argv.slice(2);
const say = (name, ok, detail) => console.log(JSON.stringify({ name, ok: !!ok, detail: detail || '' }));

(async () => {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  try {
    const page = await browser.newPage();
    const external = [];
    page.on('request', (r) => { if (!r.url().startsWith(url)) external.push(r.url()); });

    let res = await page.goto(`${url}/status`, { waitUntil: 'load' });
    say('without a token the page is refused (401)', res.status() === 401, `status ${res.status()}`);
    res = await page.goto(`${url}/status?token=revoked-or-wrong`, { waitUntil: 'load' });
    say('with a wrong token too (401)', res.status() === 401, `status ${res.status()}`);

    res = await page.goto(`${url}/status?token=${encodeURIComponent(token)}`, { waitUntil: 'load' });
    say('with the token the page loads (200)', res.status() === 200, `status ${res.status()}`);
    const rows = await page.$$eval('tr.red', (trs) => trs.map((tr) => tr.innerText));
    const behind = rows.find((r) => r.startsWith(device + '\t'));
    say('the device that is behind is shown in red with its lag', behind && /\t[1-9][0-9]*\t/.test(behind), behind || rows.join(' | '));
    const dead = rows.find((r) => /23514/.test(r));
    say('the dead letter the test caused is shown with its error and the SQL to run',
      dead && /retry_dead_letter\(/.test(dead) && /discard_dead_letter\(/.test(dead), dead || rows.join(' | '));
    const h2 = await page.$$eval('h2', (hs) => hs.map((h) => h.innerText));
    say('workers, rates, devices, dead letters and conflicts have their sections',
      ['Sync workers', 'Recent rates', 'Devices', 'Open dead letters', 'Open conflicts'].every((s) => h2.some((h) => h.startsWith(s))), h2.join(' | '));
    say('the rates are drawn as charts (inline SVG)', (await page.$$('figure.spark svg polyline')).length === 5);
    say('the page refreshes itself', (await page.$('meta[http-equiv="refresh"]')) !== null);
    await page.screenshot({ path: shot, fullPage: true });

    // The test resolves the dead letter; the page's own refresh shows it.
    console.log(JSON.stringify({ ready: true }));
    const rl = readline.createInterface({ input: process.stdin });
    await new Promise((resolve) => rl.on('line', (l) => { if (l.trim() === 'resolved') resolve(); }));
    let gone = false;
    for (let i = 0; i < 30 && !gone; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      try {
        const html = await page.content();
        gone = /Open dead letters: 0/.test(html) && !/23514/.test(html);
      } catch (e) { /* the page is reloading */ }
    }
    say('after the dead letter is discarded, the page (refreshing itself) no longer shows it', gone);
    await page.screenshot({ path: shot.replace(/\.png$/, '-after.png'), fullPage: true });
    say('the page loaded nothing from elsewhere', external.length === 0, external.join(' '));
  } finally {
    await browser.close();
  }
})().catch((e) => { say('the browser ran', false, String(e && e.stack || e)); process.exit(1); });
