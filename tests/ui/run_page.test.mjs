// End-to-end test of the sluice web UI in headless Chromium, driven by
// playwright-core (no bundled browser: Debian's /usr/bin/chromium).
//
//   node run_page.test.mjs FIXTURE_SERVER ARTIFACT_DIR
//
// FIXTURE_SERVER is tests/server's ui_fixture_server: a real `sluice serve`
// over a fresh store with one finished run. The test loads that run's page,
// checks that the DAG shows every step with its phase, opens a step's log,
// checks the runs list and its filter, and saves screenshots to
// ARTIFACT_DIR. Exit 0 on success, 1 on failure, 77 (CTest: skipped) when
// playwright-core or Chromium is not installed.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const [fixture, artifactDir] = process.argv.slice(2);
if (!fixture || !artifactDir) {
  console.error('usage: node run_page.test.mjs FIXTURE_SERVER ARTIFACT_DIR');
  process.exit(2);
}
const CHROMIUM = process.env.SLUICE_CHROMIUM || '/usr/bin/chromium';
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  console.error('SKIP: playwright-core is not installed; run `npm ci --prefix tests/ui`');
  process.exit(77);
}
if (!existsSync(CHROMIUM)) {
  console.error(`SKIP: ${CHROMIUM} not found; install Debian's chromium package`);
  process.exit(77);
}

const work = mkdtempSync(join(tmpdir(), 'sluice-ui-'));
mkdirSync(artifactDir, { recursive: true });
const server = spawn(fixture, [join(work, 'fixture')], { stdio: ['pipe', 'pipe', 'inherit'] });
let context;
let failed = false;

function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
  console.log('ok - ' + what);
}

// Bounded wait for the fixture's JSON line.
function readFixture() {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('fixture server did not start in 60s')), 60000);
    const rl = createInterface({ input: server.stdout });
    rl.once('line', line => { clearTimeout(timer); resolve(JSON.parse(line)); });
    server.once('exit', code => { clearTimeout(timer); reject(new Error('fixture server exited ' + code)); });
  });
}

try {
  const fx = await readFixture();
  const expected = fx.steps;  // instance -> phase
  context = await chromium.launchPersistentContext(join(work, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1400, height: 900 },
  });
  // The admin token unless the test has saved another one.
  await context.addInitScript(token => { if (!localStorage.getItem('sluice.token')) localStorage.setItem('sluice.token', token); },
                              fx.token);
  const page = context.pages()[0] || await context.newPage();
  const pageErrors = [];
  page.on('pageerror', e => pageErrors.push(String(e)));

  // The run page: every step in the DAG, with its phase.
  await page.goto(`${fx.url}/#/runs/${encodeURIComponent(fx.run_id)}`);
  const instances = Object.keys(expected);
  await page.waitForFunction(n => document.querySelectorAll('#dag g.node').length === n,
                             instances.length, { timeout: 20000 });
  for (const instance of instances) {
    const node = page.locator(`#dag g.node[data-instance="${instance}"]`);
    check(await node.count() === 1, `DAG shows step ${instance}`);
    check(await node.getAttribute('data-phase') === expected[instance],
          `step ${instance} has phase ${expected[instance]}`);
    check((await node.textContent()).includes(expected[instance]), `step ${instance} shows its phase as text`);
  }
  check(await page.locator('#dag path.edge').count() >= 5, 'DAG has the dependency edges');
  await page.waitForFunction(() => document.getElementById('who').dataset.role === 'admin', null, { timeout: 10000 });
  check(await page.locator('#cancel').count() === 1 && await page.locator('#resume').count() === 1,
        'an admin is offered Cancel and Resume');
  check((await page.locator('#run-phase').textContent()).trim() === 'Failed', 'run phase is shown');
  await page.screenshot({ path: join(artifactDir, 'run-page.png'), fullPage: true });

  // A step's log.
  await page.locator('#dag g.node[data-instance="prepare"]').click();
  await page.waitForFunction(() => document.getElementById('log').textContent.includes('hello from prepare'),
                             null, { timeout: 10000 });
  check((await page.locator('#log-step').textContent()) === 'prepare', 'log header names the step');
  await page.screenshot({ path: join(artifactDir, 'step-log.png'), fullPage: true });

  // The runs list, and its phase filter.
  await page.goto(`${fx.url}/#/runs`);
  await page.waitForSelector(`#runs tr[data-run="${fx.run_id}"]`, { timeout: 10000 });
  check(true, 'runs list shows the run');
  await page.selectOption('#f-phase', 'Succeeded');
  await page.waitForFunction(() => location.hash.includes('phase=Succeeded'));
  await page.waitForFunction(() => document.querySelectorAll('#runs tbody tr').length === 0, null, { timeout: 10000 });
  check(true, 'phase filter hides the failed run');
  await page.screenshot({ path: join(artifactDir, 'runs-list.png'), fullPage: true });

  // A viewer: the same run page and the pipeline page offer no write action.
  await page.evaluate(token => localStorage.setItem('sluice.token', token), fx.viewer_token);
  await page.goto(`${fx.url}/#/runs/${encodeURIComponent(fx.run_id)}`);
  await page.reload();
  await page.waitForFunction(n => document.querySelectorAll('#dag g.node').length === n,
                             instances.length, { timeout: 20000 });
  await page.waitForFunction(() => document.getElementById('who').dataset.role === 'viewer', null, { timeout: 10000 });
  check((await page.locator('#who').textContent()) === 'ui-viewer (viewer)', 'the header names the viewer and its role');
  check(await page.locator('#cancel').count() === 0 && await page.locator('#resume').count() === 0,
        'a viewer is offered neither Cancel nor Resume');
  await page.screenshot({ path: join(artifactDir, 'run-page-viewer.png'), fullPage: true });
  await page.goto(`${fx.url}/#/pipelines/retrain`);
  await page.waitForSelector('#metrics', { timeout: 10000 });
  check(await page.locator('#trigger').count() === 0, 'a viewer is offered no Run button on the pipeline page');

  check(pageErrors.length === 0, 'no JavaScript errors: ' + pageErrors.join('; '));
} catch (e) {
  failed = true;
  console.error('FAIL: ' + (e && e.stack || e));
} finally {
  if (context) await context.close().catch(() => {});
  server.stdin.end();
  await new Promise(resolve => {
    const t = setTimeout(() => { server.kill('SIGKILL'); resolve(); }, 10000);
    server.once('exit', () => { clearTimeout(t); resolve(); });
    if (server.exitCode !== null) { clearTimeout(t); resolve(); }
  });
  rmSync(work, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
