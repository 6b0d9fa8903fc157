// Plays an HLS page in Debian's Chromium (headless, offline) and reports
// what the <video> did, as one JSON line on stdout.
// Usage: node play.mjs PAGE_URL SCREENSHOT_DIR
import { chromium } from 'playwright-core';

const [url, shots] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--no-first-run',
         '--autoplay-policy=no-user-gesture-required'],
});
const result = { errors: [] };
try {
  const page = await browser.newPage({ viewport: { width: 640, height: 400 } });
  page.on('console', (m) => { if (m.type() === 'error') result.errors.push('console: ' + m.text()); });
  await page.goto(url);
  const t = (ms) => ({ timeout: ms });
  await page.waitForFunction(() => document.querySelector('video').currentTime > 1.0, null, t(30000));
  result.first = await page.evaluate(() => document.querySelector('video').currentTime);
  await page.screenshot({ path: `${shots}/playing.png` });
  result.duration = await page.evaluate(() => document.querySelector('video').duration);
  result.target = result.duration / 2;
  const seekStart = Date.now();
  await page.evaluate((x) => { document.querySelector('video').currentTime = x; }, result.target);
  await page.waitForFunction((x) => document.querySelector('video').currentTime > x + 0.5, result.target, t(30000));
  result.seek_ms = Date.now() - seekStart;
  result.after = await page.evaluate(() => document.querySelector('video').currentTime);
  await page.screenshot({ path: `${shots}/after-seek.png` });
  result.hls_errors = await page.evaluate(() => window.hlsErrors || []);
} catch (e) {
  result.errors.push(String(e));
  try { result.hls_errors = await browser.contexts()[0].pages()[0].evaluate(() => window.hlsErrors); } catch {}
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
