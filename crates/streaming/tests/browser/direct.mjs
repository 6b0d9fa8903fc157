// Plays a video URL directly in a <video> element in Debian's Chromium
// (headless, offline), seeks to the middle, and reports what happened as
// one JSON line on stdout.
// Usage: node direct.mjs VIDEO_URL SCREENSHOT_DIR
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
  await page.setContent(`<body style="margin:0;background:#000">
    <video id="v" src="${url}" muted autoplay playsinline style="width:640px;height:360px"></video></body>`);
  const t = (ms) => ({ timeout: ms });
  const video = () => document.getElementById('v');
  await page.waitForFunction(() => document.getElementById('v').currentTime > 1.0, null, t(60000));
  result.first = await page.evaluate(() => document.getElementById('v').currentTime);
  await page.screenshot({ path: `${shots}/direct-playing.png` });
  result.duration = await page.evaluate(() => document.getElementById('v').duration);
  result.target = result.duration / 2;
  const seekStart = Date.now();
  await page.evaluate((x) => { document.getElementById('v').currentTime = x; }, result.target);
  await page.waitForFunction((x) => document.getElementById('v').currentTime > x + 0.5, result.target, t(60000));
  result.seek_ms = Date.now() - seekStart;
  result.after = await page.evaluate(() => document.getElementById('v').currentTime);
  result.media_error = await page.evaluate(() => { const e = document.getElementById('v').error; return e ? e.code : null; });
  await page.screenshot({ path: `${shots}/direct-after-seek.png` });
  void video;
} catch (e) {
  result.errors.push(String(e));
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
