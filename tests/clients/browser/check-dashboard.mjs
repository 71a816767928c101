// Loads a runcache dashboard page in Debian's headless Chromium and prints
// one `RESULT {json}` line with what a person would see: console errors,
// requests the page made, and, for every time range (chosen by clicking
// its label), each plot's drawn points, data rows and totals; then the
// same page at a phone's width, and a screenshot.
//
//   node check-dashboard.mjs URL SCREENSHOT.png [NARROW_SCREENSHOT.png]
import { chromium } from 'playwright-core';

const [url, screenshot, narrowShot] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error('usage: node check-dashboard.mjs URL SCREENSHOT.png [NARROW.png]');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const browser = await chromium.launch({
  executablePath,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const result = { consoleErrors: [], pageErrors: [], requests: [], ranges: {}, narrow: {} };
try {
  const token = process.env.DASHBOARD_TOKEN;
  const context = await browser.newContext({
    viewport: { width: 1280, height: 900 },
    extraHTTPHeaders: token ? { Authorization: `Bearer ${token}` } : {},
  });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') result.consoleErrors.push(`${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => result.pageErrors.push(String(e)));
  page.on('request', (r) => { if (r.url() !== page.url() && r.url() !== url) result.requests.push(r.url()); });
  const response = await page.goto(url, { waitUntil: 'load' });
  result.status = response ? response.status() : null;
  result.title = await page.title();
  result.initialRange = await page.evaluate(() => {
    const v = [...document.querySelectorAll('section.view')].find((s) => getComputedStyle(s).display !== 'none');
    return v ? v.dataset.range : null;
  });
  const ids = await page.$$eval('section.view', (vs) => vs.map((v) => v.dataset.range));
  for (const id of ids) {
    await page.click(`nav.ranges label[for="range-${id}"]`);
    result.ranges[id] = await page.evaluate((id) => {
      const view = document.getElementById(`view-${id}`);
      const visible = getComputedStyle(view).display !== 'none';
      const others = [...document.querySelectorAll('section.view')]
        .filter((v) => v !== view && getComputedStyle(v).display !== 'none').length;
      const plots = {};
      for (const f of view.querySelectorAll('figure[data-plot]')) {
        const totals = f.querySelector('.totals');
        const attrs = {};
        for (const span of totals.querySelectorAll('span')) Object.assign(attrs, span.dataset);
        const svg = f.querySelector('.chart svg');
        const box = svg ? svg.getBoundingClientRect() : null;
        plots[f.dataset.plot] = {
          circles: svg ? svg.querySelectorAll('circle').length : 0,
          drawnCircles: svg ? [...svg.querySelectorAll('circle')].filter((c) => {
            const r = c.getBoundingClientRect();
            return r.width > 0 && r.height > 0;
          }).length : 0,
          svgWidth: box ? box.width : 0,
          rows: f.querySelectorAll('details tbody tr').length,
          totals: attrs,
          text: totals.textContent,
          empty: !!f.querySelector('.chart .empty'),
        };
      }
      return { visible, othersVisible: others, plots };
    }, id);
  }
  result.mostAccessed = await page.$$eval('section[data-plot="most-accessed"] tr.entry', (rows) =>
    rows.map((r) => ({ reads: Number(r.cells[0].textContent), key: r.cells[2].textContent })));
  result.deadLetters = await page.$eval('section[data-plot="dead-letters"] .totals span', (s) => Number(s.dataset.total)).catch(() => null);
  await page.screenshot({ path: screenshot, fullPage: true });

  await page.setViewportSize({ width: 360, height: 780 });
  result.narrow = await page.evaluate(() => {
    const width = window.innerWidth;
    const tooWide = [...document.querySelectorAll('figure, section.panel, svg, nav, header')]
      .filter((e) => e.getBoundingClientRect().right > width + 1)
      .map((e) => e.tagName.toLowerCase() + (e.dataset && e.dataset.plot ? `[${e.dataset.plot}]` : ''));
    return { width, scrollWidth: document.documentElement.scrollWidth, tooWide };
  });
  if (narrowShot) await page.screenshot({ path: narrowShot, fullPage: true });
} finally {
  await browser.close();
}
console.log(`RESULT ${JSON.stringify(result)}`);
