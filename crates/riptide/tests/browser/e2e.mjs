// A new user's first evening with Riptide, in Debian's Chromium (headless,
// offline): set up the admin, log in, add a magnet, watch it download, find
// the film, play it, pause and remove the torrent. Screenshots of every
// page at desktop size and at 375 px go to SHOT_DIR.
// Usage: node e2e.mjs BASE_URL MAGNET SHOT_DIR BAD_TORRENT_FILE
// Prints one JSON line with what happened.
import { chromium } from 'playwright-core';

const [base, magnet, shots, badTorrent] = process.argv.slice(2);
const result = { steps: [], errors: [], overflow: [] };
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--no-first-run',
         '--autoplay-policy=no-user-gesture-required'],
});
const T = (ms) => ({ timeout: ms });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const step = (s) => { result.steps.push(s); console.error(`e2e: ${s}`); };

try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(20000);
  // The bad-input steps get 400/401 pages on purpose; Chromium logs each
  // as a failed resource. Anything else in the console is a bug.
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    if (/Failed to load resource: the server responded with a status of 40[01]/.test(m.text())) return;
    result.errors.push('console: ' + m.text());
  });
  page.on('pageerror', (e) => result.errors.push('pageerror: ' + e.message));

  const shoot = async (name) => {
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.screenshot({ path: `${shots}/${name}-desktop.png`, fullPage: true });
    await page.setViewportSize({ width: 375, height: 812 });
    await sleep(100);
    await page.screenshot({ path: `${shots}/${name}-375.png`, fullPage: true });
    const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (wide > 1) result.overflow.push(`${name}: ${wide} px wider than the 375 px screen`);
    await page.setViewportSize({ width: 1280, height: 800 });
  };

  // First start: the login page offers the setup page.
  await page.goto(base + '/');
  await page.waitForURL(/\/login/);
  await shoot('login-first-start');
  await page.click('text=set up this server');
  await page.waitForURL(/\/setup$/);
  await shoot('setup');
  await page.fill('input[name=username]', 'admin');
  await page.fill('input[name=password]', 'correct horse battery');
  await page.fill('input[name=confirm]', 'correct horse battery');
  await page.click('button[type=submit]');
  await page.waitForURL(base + '/');
  await shoot('library-empty');
  step('admin set up');

  // Log out, a wrong password, then in.
  await page.click('form.logout button');
  await page.waitForURL(/\/login/);
  await page.fill('input[name=username]', 'admin');
  await page.fill('input[name=password]', 'not the password');
  await page.click('button[type=submit]');
  await page.waitForSelector('.error');
  result.wrong_password = (await page.textContent('.error')).trim();
  await shoot('login-wrong-password');
  await page.fill('input[name=password]', 'correct horse battery');
  await page.click('button[type=submit]');
  await page.waitForURL(base + '/');
  step('logged in');

  // Bad input: a clear message, the typed text kept.
  await page.goto(base + '/downloads');
  await page.click('form.add button[type=submit]');
  result.empty_error = (await page.textContent('#add-error')).trim();
  await page.fill('textarea[name=magnet]', 'magnet:?xt=urn:btih:nothex');
  await page.click('form.add button[type=submit]');
  result.bad_magnet_error = (await page.textContent('#add-error')).trim();
  result.bad_magnet_kept = await page.inputValue('textarea[name=magnet]');
  await shoot('downloads-bad-magnet');
  await page.fill('textarea[name=magnet]', 'https://example.invalid/film.torrent');
  await page.click('form.add button[type=submit]');
  result.not_magnet_error = (await page.textContent('#add-error')).trim();
  await page.fill('textarea[name=magnet]', '');
  await page.setInputFiles('input[name=torrent]', badTorrent);
  await page.click('form.add button[type=submit]');
  result.bad_torrent_error = (await page.textContent('#add-error')).trim();
  await shoot('downloads-bad-torrent');
  step('bad input refused');

  // Add the magnet and watch the live progress.
  await page.fill('textarea[name=magnet]', magnet);
  await page.click('form.add button[type=submit]');
  await page.waitForSelector('li.torrent');
  await page.evaluate(() => { window.__noReload = true; });
  result.notice = (await page.textContent('.notice')).trim();
  try {
    await page.waitForFunction(() => {
      const v = parseFloat(document.querySelector('li.torrent .pct').textContent);
      return v > 0 && v < 100;
    }, null, T(60000));
    result.mid = await page.evaluate(() => {
      const li = document.querySelector('li.torrent');
      const q = (s) => li.querySelector(s).textContent;
      return { pct: q('.pct'), down: q('.down'), peers: q('.peers'), eta: q('.eta'), state: q('.state') };
    });
    await shoot('downloads-progress');
  } catch (e) {
    result.steps.push('no intermediate progress seen: ' + e);
  }
  await page.waitForFunction(
    () => document.querySelector('li.torrent .pct').textContent.startsWith('100'), null, T(180000));
  result.live_without_reload = await page.evaluate(() => window.__noReload === true);
  step('progress reached 100%');

  // The film appears in the library once imported.
  const t0 = Date.now();
  for (;;) {
    await page.goto(base + '/?q=riptide');
    if (await page.$('a.card')) break;
    if (Date.now() - t0 > 120000) throw new Error('the film never appeared in the library');
    await sleep(1000);
  }
  result.card = (await page.textContent('a.card .title')).trim();
  await shoot('library');
  await page.goto(base + '/?q=zzznothing');
  await shoot('library-no-match');
  await page.goto(base + '/?q=riptide');
  await page.click('a.card');
  await page.waitForURL(/\/film\/\d+$/);
  await shoot('film');
  step('found the film');

  // Play.
  await page.click('#play');
  await page.waitForURL(/\/play\/\d+/);
  await page.evaluate(() => { const v = document.getElementById('video'); v.muted = true; return v.play(); });
  await page.waitForFunction(() => document.getElementById('video').currentTime > 2, null, T(60000));
  result.current_time = await page.evaluate(() => document.getElementById('video').currentTime);
  result.player_errors = await page.evaluate(() => window.playerErrors || []);
  await shoot('player');
  step('played');

  // Settings (a token) and status.
  await page.goto(base + '/settings');
  await page.fill('input[name=name]', 'laptop');
  await page.click('form[action="/settings/tokens"] button');
  result.token_shown = (await page.textContent('#new-token')).startsWith('rt_');
  await shoot('settings');
  await page.goto(base + '/status');
  await shoot('status');

  // Pause, then remove with its files.
  await page.goto(base + '/downloads');
  await shoot('downloads-done');
  await page.click('li.torrent button.toggle');
  await page.waitForFunction(() => document.querySelector('li.torrent .state').textContent === 'paused');
  await shoot('downloads-paused');
  step('paused');
  await page.check('li.torrent input[name=delete_data]');
  await page.click('li.torrent button.danger');
  await page.waitForURL(/removed=1/);
  result.remaining = await page.$$eval('li.torrent', (l) => l.length);
  await shoot('downloads-empty');
  await page.goto(base + '/?q=riptide');
  result.library_after_remove = await page.$$eval('a.card', (l) => l.length);
  step('removed');
} catch (e) {
  result.errors.push(String(e && e.stack || e));
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
