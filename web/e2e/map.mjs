// Drive the live map in Debian's headless Chromium (playwright-core; no browser download).
// Run by tests/integration/test_map.py. argv[2] is a JSON plan:
//   {url, token, justification, start, cells: {h3: count}, extras: {h3: count} (two cells),
//    screenshot, synthetic?: week start}
// The page's stream is refused until its first period is drawn. Protocol on stdout, one JSON
// object a line, each answered by the test with "go" on stdin after it has stored one extra cell:
//   {"step": "loaded", ...} the first period is drawn and the stream has never opened (the first
//     extra can show only through the first `hello`);
//   {"step": "live"} that cell is drawn and the stream is open (the second: by an `update`);
//   {"step": "offline"} that is drawn and the stream is lost (the third: by the reconnect's
//     `hello`); then {"step": "done", ...}.
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const plan = JSON.parse(process.argv[2]);
const say = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once('line', resolve));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  // playwright-core gives every launch a fresh, empty profile directory.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    // WebGL2 on the CPU: deck.gl needs it and there is no GPU here.
    '--use-angle=swiftshader', '--enable-unsafe-swiftshader'],
});
const errors = [];
const external = [];
let offline = false; // while the test refuses the stream, its failed loads are expected
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on('pageerror', (err) => errors.push(String(err)));
  page.on('console', (msg) => {
    if (msg.type() !== 'error' || (offline && msg.text().includes('net::ERR_FAILED'))) return;
    errors.push(msg.text());
  });
  page.on('request', (req) => { if (!req.url().startsWith(plan.url)) external.push(req.url()); });

  // Streams of 3 s, so that the test can cut one short between two flushes.
  offline = true;
  await page.route('**/v1/stream*', (route) => route.abort());
  await page.goto(`${plan.url}/?stream_seconds=3`, { waitUntil: 'load' });
  // Signed out, the data routes refuse and the page asks for a token and a justification.
  // page.request shares the browser's cookies without being a page load (no console noise).
  const periods = `${plan.url}/v1/periods`;
  const auth = { before: (await page.request.get(periods)).status() };
  await page.waitForSelector('#login', { state: 'visible' });
  await page.fill('#login-token', plan.token);
  await page.fill('#login-justification', plan.justification);
  await page.click('#login-submit');
  await page.waitForFunction(() => document.getElementById('start').value !== '');
  auth.after = (await page.request.get(periods)).status();
  auth.cookieVisible = await page.evaluate(() => document.cookie.includes('hotspots_session'));
  auth.signedIn = await page.textContent('#whoami-name');
  const defaultStart = await page.inputValue('#start');
  const expected = Object.keys(plan.cells).length;
  await page.fill('#start', plan.start); // fires input and change: the page loads that week
  await page.waitForFunction(
    (n) => document.getElementById('hexcount').dataset.count === String(n), expected,
    { timeout: 30_000 });
  const canvas = await page.$('#map canvas');
  const drawn = canvas ? await canvas.boundingBox() : null;
  await page.evaluate(() => { window.__notReloaded = true; });
  say({ step: 'loaded', defaultStart, hexcount: expected, canvas: drawn, auth });

  const hexcount = (n) => page.waitForFunction(
    (m) => document.getElementById('hexcount').dataset.count === String(m), n, { timeout: 120_000 });
  const go = async () => {
    if ((await nextLine()) !== 'go') throw new Error('the test did not say go');
  };
  const live = (on) => page.waitForFunction(
    (o) => document.getElementById('live').classList.contains('on') === o, on, { timeout: 30_000 });
  await go();
  await page.unroute('**/v1/stream*');
  await hexcount(expected + 1); // stored after the first load, before the first `hello`
  offline = false;
  await live(true);
  say({ step: 'live' });
  await go();
  await hexcount(expected + 2); // told by an `update` on the open stream
  // Refuse the stream and wait until the open one has ended: a flush now is never announced
  // by an `update`, only by the batch count of the `hello` after the page reconnects.
  offline = true;
  await page.route('**/v1/stream*', (route) => route.abort());
  await live(false);
  say({ step: 'offline' });
  await go();
  await page.unroute('**/v1/stream*');
  await hexcount(expected + 3);
  offline = false;
  const notReloaded = await page.evaluate(() => window.__notReloaded === true);
  const updates = Number(await page.textContent('#updates'));

  const panel = {};
  for (const [cell, count] of Object.entries({ ...plan.cells, ...plan.extras })) {
    await page.evaluate((c) => window.__hotspots.selectCell(c), cell);
    await page.waitForFunction((c) => document.getElementById('cell').dataset.loaded === c, cell);
    panel[cell] = {
      shown: Number(await page.getAttribute('#cell-count', 'data-count')),
      kinds: await page.$$eval('#cell-kinds tr', (rows) => rows.map((r) => r.textContent)),
      events: await page.$$eval('#cell-events li', (items) => items.length),
      expected: count,
    };
  }
  // deck.gl drew each hexagon where it belongs: picking at its centre finds it.
  const picked = {};
  for (const cell of Object.keys(panel)) {
    picked[cell] = await page.evaluate((c) => window.__hotspots.pick(c), cell);
  }
  // A real mouse click on the busiest hexagon selects it (left selected for the screenshot).
  const busiest = Object.entries(plan.cells).sort((a, b) => b[1] - a[1])[0][0];
  await page.evaluate(() => window.__hotspots.selectCell(null));
  const [x, y] = await page.evaluate((c) => window.__hotspots.screenPos(c), busiest);
  const box = await page.locator('#map').boundingBox();
  await page.mouse.click(box.x + x, box.y + y);
  await page.waitForFunction((c) => document.getElementById('cell').dataset.loaded === c, busiest,
    { timeout: 10_000 });
  const clicked = {
    cell: await page.textContent('#cell-id'),
    shown: Number(await page.getAttribute('#cell-count', 'data-count')),
    trend: await page.textContent('#cell-trend'),
  };
  const top = await page.$$eval('#top li', (items) => items.map((li) => li.dataset.cell));
  await page.screenshot({ path: plan.screenshot });
  // The Gi* layer: every cell of the study area with its bin, a diverging legend.
  const before = await page.evaluate(() => document.body.dataset.loaded);
  await page.selectOption('#mode', 'gistar');
  await page.waitForFunction((b) => document.body.dataset.loaded !== b, before);
  const gistar = {
    hexcount: Number(await page.getAttribute('#hexcount', 'data-count')),
    legend: await page.textContent('#legend'),
    bins: await page.evaluate(() => [...new Set(window.__hotspots.state.rows.map((r) => r.bin))]),
    error: await page.textContent('#error'),
  };
  await page.screenshot({ path: plan.screenshot.replace(/\.png$/, '-gistar.png') });
  // The harm and gap layers (recorded crime this week may be none: then a message, no hexagons).
  const layers = {};
  for (const mode of ['harm', 'gap']) {
    const mark = await page.evaluate(() => document.body.dataset.loaded);
    await page.selectOption('#mode', mode);
    await page.waitForFunction((b) => document.body.dataset.loaded !== b, mark);
    layers[mode] = {
      hexcount: Number(await page.getAttribute('#hexcount', 'data-count')),
      legend: await page.textContent('#legend'),
      message: await page.textContent('#message'),
      error: await page.textContent('#error'),
      trend: await page.textContent('#cell-trend'),
    };
    await page.screenshot({ path: plan.screenshot.replace(/\.png$/, `-${mode}.png`) });
  }
  // The calibrated synthetic year over Essex: arrests per resolution-8 cell in one busy week.
  let synthetic = null;
  if (plan.synthetic) {
    let mark = await page.evaluate(() => document.body.dataset.loaded);
    await page.selectOption('#mode', 'counts');
    await page.waitForFunction((b) => document.body.dataset.loaded !== b, mark);
    mark = await page.evaluate(() => document.body.dataset.loaded);
    await page.evaluate(() => window.__hotspots.selectCell(null));
    await page.fill('#start', plan.synthetic);
    await page.waitForFunction((b) => document.body.dataset.loaded !== b, mark);
    synthetic = { hexcount: Number(await page.getAttribute('#hexcount', 'data-count')) };
    await page.screenshot({ path: plan.screenshot.replace(/\.png$/, '-synthetic.png') });
  }
  say({ step: 'done', notReloaded, updates, panel, picked, clicked, top, gistar, layers, synthetic,
    errors, external });
} catch (err) {
  const page = browser.contexts()[0]?.pages()[0];
  const seen = page ? await page.evaluate(() => ({
    hexcount: document.getElementById('hexcount').dataset.count,
    updates: document.getElementById('updates').textContent,
    error: document.getElementById('error').textContent,
    batches: window.__hotspots.state.batches,
    live: document.getElementById('live').classList.contains('on'),
  })).catch((e) => String(e)) : null;
  say({ step: 'error', message: String(err?.stack ?? err), seen, errors, external });
  process.exitCode = 1;
} finally {
  lines.close();
  await browser.close();
}
