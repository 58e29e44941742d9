// Drives Debian's Chromium (playwright-core, never a downloaded browser) through the web
// app served by a running edge, for tests/web_app.rs. Argument: JSON
//   {edge, admin, tenant_key, landing, pixel, token, bad_token, stripe_key, whsec,
//    pageview_session, shots}
// Prints one JSON object: each scenario's findings, every request to another origin,
// console errors, and `failure` (the first scenario that threw, with its message).
import { chromium } from 'playwright-core';
import { writeFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';

const args = JSON.parse(process.argv[2]);
const edge = new URL(args.edge).origin;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const out = { errors: [], foreign: [], unlabelled: [] };
const TIMEOUT = 30000;
/** The page of the scenario running: on a failure, what it showed. */
let current = null;

/** A fresh context (a new tab's sessionStorage) with the checks every page gets. */
async function open(name, { locale = 'en-US', width = 1280, height = 900 } = {}) {
  const context = await browser.newContext({ locale, viewport: { width, height } });
  const page = await context.newPage();
  current = page;
  page.setDefaultTimeout(TIMEOUT);
  page.on('request', (r) => {
    const url = r.url();
    if (!url.startsWith(`${edge}/`) && !url.startsWith('blob:') && !url.startsWith('data:')) out.foreign.push(url);
  });
  page.on('console', (m) => m.type() === 'error' && out.errors.push(`${name}: ${m.text()}`));
  page.on('pageerror', (e) => out.errors.push(`${name}: ${e.message}`));
  return { context, page };
}

async function shot(page, name) {
  await page.screenshot({ path: `${args.shots}/${name}.png`, fullPage: true });
}

/** Every form control without a label, on the page as it is now. */
async function unlabelled(page, where) {
  const missing = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea')]
    .filter((el) => !el.labels || el.labels.length === 0)
    .map((el) => el.id || el.name || el.outerHTML.slice(0, 60)));
  for (const m of missing) out.unlabelled.push(`${where}: ${m}`);
}

/** The key form, filled and submitted by keyboard only. */
async function signIn(page, key, hash = '#/setup') {
  await page.goto(`${edge}/app/${hash}`);
  await page.locator('#key').waitFor();
  await page.keyboard.type(key);
  await page.keyboard.press('Enter');
}

/** A small PNG (solid colour), as bytes. */
function png(r, g, b) {
  const width = 40;
  const height = 24;
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const byte of buf) c = crcTable[(c ^ byte) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type), data]);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(body));
    return Buffer.concat([length, body, sum]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8;
  header[9] = 2;
  const rows = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) rows.set([r, g, b], y * (width * 3 + 1) + 1 + x * 3);
  }
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header), chunk('IDAT', deflateSync(rows)), chunk('IEND', Buffer.alloc(0))]);
}

async function api(method, path, key, tenant) {
  const headers = { Authorization: `Bearer ${key}` };
  if (tenant) headers['X-Funnelhub-Tenant'] = tenant;
  const response = await fetch(`${edge}${path}`, { method, headers });
  return { status: response.status, body: await response.json().catch(() => null) };
}

const scenarios = {
  /** A wrong key stays on the key form, and a key the API later refuses returns to it. */
  async wrong_key() {
    const { context, page } = await open('wrong_key');
    await signIn(page, 'not-a-key-at-all', '#/desk');
    await page.locator('#key-error').waitFor({ state: 'visible' });
    const error = await page.locator('#key-error').innerText();
    const onForm = await page.locator('#key').isVisible();
    // A key accepted once, then refused (revoked): the next call lands on the key form.
    await page.evaluate(() => {
      sessionStorage.setItem('funnelhub.key', 'revoked-key-123456');
      sessionStorage.setItem('funnelhub.who', JSON.stringify({ kind: 'tenant', tenant_id: 'acme', scope: 'admin' }));
    });
    await page.reload();
    await page.locator('.notice').waitFor();
    const notice = await page.locator('.notice').innerText();
    const hash = await page.evaluate(() => location.hash);
    const stored = await page.evaluate(() => sessionStorage.getItem('funnelhub.key'));
    await unlabelled(page, 'key form');
    await shot(page, 'key-form');
    await context.close();
    return { error, onForm, notice, hash, stored };
  },

  /** The wizard's happy path, by an operator: every step checked, then configured. */
  async wizard() {
    const { context, page } = await open('wizard');
    await signIn(page, args.admin);
    await page.locator('form[data-page="start"]').waitFor();
    await unlabelled(page, 'wizard start');
    // The browser's own checks: nothing is sent for a malformed field.
    // By keyboard only: the heading has focus, Tab reaches the first field, Enter submits.
    let actions = 0;
    page.on('request', (r) => r.url().includes('/actions/') && (actions += 1));
    await page.keyboard.press('Tab');
    const firstFocus = await page.evaluate(() => document.activeElement.id);
    await page.keyboard.type('shop');
    await page.keyboard.press('Tab');
    await page.keyboard.type('not a url');
    await page.keyboard.press('Enter');
    await page.locator('#url-error').waitFor({ state: 'visible' });
    const urlError = await page.locator('#url-error').innerText();
    const focusAfterError = await page.evaluate(() => document.activeElement.id);
    const sentForBadUrl = actions;
    await page.keyboard.press('Control+A');
    await page.keyboard.type(`${args.landing}/shop`);
    await page.keyboard.press('Enter');
    await page.locator('form[data-page="gateway"]').waitFor();
    const session = decodeURIComponent((await page.evaluate(() => location.hash)).split('/')[2] || '');
    await page.selectOption('#gateway', 'stripe');
    await page.locator('#stripe-secret_key').waitFor();
    const gatewayShown = await page.locator('#gateway').inputValue();
    await unlabelled(page, 'wizard gateway');
    const webhookUrl = await page.locator('[data-testid="webhook-url"]').inputValue();
    await page.fill('#stripe-secret_key', args.stripe_key);
    await page.fill('#stripe-webhook_secret', args.whsec);
    await page.click('form[data-page="gateway"] button[type="submit"]');
    await page.locator('form[data-page="meta"]').waitFor();
    await page.fill('#pixel_id', args.pixel);
    await page.fill('#access_token', args.token);
    await unlabelled(page, 'wizard meta');
    await page.click('form[data-page="meta"] button[type="submit"]');
    await page.locator('[data-page="review"]').waitFor();
    const configure = page.getByRole('button', { name: 'Configure' });
    await configure.waitFor();
    await page.waitForFunction(() => [...document.querySelectorAll('button')].some((b) => b.textContent === 'Configure' && !b.disabled));
    await configure.click();
    await page.locator('[data-testid="configured"]').waitFor();
    // The live status follows: configured, without a reload.
    await page.waitForFunction(() => document.querySelector('[data-testid="state"]')?.textContent === 'configured');
    const steps = await page.$$eval('[data-testid="status"] .step-list li', (lis) => lis.map((li) => li.className));
    await shot(page, 'wizard-configured');
    const configured = await page.locator('[data-testid="configured"]').innerText();
    // And back: the tenant as it was.
    await page.getByRole('button', { name: 'Roll back' }).click();
    await page.locator('[data-testid="rolled-back"]').waitFor();
    await page.waitForFunction(() => document.querySelector('[data-testid="state"]')?.textContent === 'rolled back');
    const rolledBack = await page.locator('[data-testid="rolled-back"]').innerText();
    await context.close();
    return {
      session, firstFocus, urlError, focusAfterError, sentForBadUrl, gatewayShown, webhookUrl, configured, steps, rolledBack,
    };
  },

  /**
   * A bad Meta token: the failure shows live (status panel) and the chat opens; the chat
   * diagnoses it, and a new token given in the chat re-validates. Then a screenshot goes
   * up by the picker and one by drag-and-drop, and both show in the conversation. Then
   * "talk to a person" hands the session off.
   */
  async chat() {
    const { context, page } = await open('chat', { locale: 'pt-BR' });
    await signIn(page, args.admin);
    await page.locator('form[data-page="start"]').waitFor();
    const heading = await page.locator('h1').innerText();
    await page.fill('#tenant_id', 'loja2');
    await page.fill('#url', `${args.landing}/loja2`);
    await page.click('form[data-page="start"] button[type="submit"]');
    await page.locator('form[data-page="gateway"]').waitFor();
    await page.selectOption('#gateway', 'stripe');
    await page.fill('#stripe-secret_key', args.stripe_key);
    await page.click('form[data-page="gateway"] button[type="submit"]');
    await page.locator('form[data-page="meta"]').waitFor();
    await page.fill('#pixel_id', args.pixel);
    await page.fill('#access_token', args.bad_token);
    await page.click('form[data-page="meta"] button[type="submit"]');
    await page.locator('[data-testid="step-failure"]').waitFor();
    const stepFailure = await page.locator('[data-testid="step-failure"]').innerText();
    // Live: the status panel shows the failure with its recommendation, the chat is open.
    await page.locator('[data-testid="last-failure"]').waitFor();
    const lastFailure = await page.locator('[data-testid="last-failure"]').innerText();
    await page.locator('[data-testid="chat"]').waitFor({ state: 'visible' });
    await unlabelled(page, 'chat');
    await page.fill('#chat-message', 'O token da Meta não funciona, o que faço?');
    await page.click('[data-testid="chat"] button[type="submit"]');
    await page.locator('.message.assistant').first().waitFor();
    const diagnosis = await page.locator('.message.assistant').last().innerText();
    await page.fill('#chat-message', `gerei outro token, tente de novo: ${args.token}`);
    await page.click('[data-testid="chat"] button[type="submit"]');
    await page.waitForFunction(() => document.querySelectorAll('.message.assistant').length >= 2);
    const revalidation = await page.locator('.message.assistant').last().innerText();
    const revalidated = await page.locator('.message.assistant').last().locator('.action').first().getAttribute('class');
    await page.waitForFunction(() => document.querySelector('[data-testid="status"] li[data-step="meta"]')?.className === 'step-success');
    // The wizard's failed step says it is fixed now.
    await page.locator('[data-testid="fixed"]').waitFor();
    const fixed = await page.locator('[data-testid="fixed"]').innerText();
    await shot(page, 'chat-diagnosis');

    // Screenshots: one by the picker, one dropped on the panel.
    await page.setInputFiles('#chat-file', { name: 'erro-pixel.png', mimeType: 'image/png', buffer: png(200, 40, 40) });
    await page.waitForFunction(() => document.querySelectorAll('.pending li').length === 1);
    const dropped = png(40, 160, 60).toString('base64');
    await page.evaluate(async (b64) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const transfer = new DataTransfer();
      transfer.items.add(new File([bytes], 'gerenciador.png', { type: 'image/png' }));
      const panel = document.querySelector('[data-testid="chat"]');
      panel.dispatchEvent(new DragEvent('dragover', { dataTransfer: transfer, bubbles: true, cancelable: true }));
      panel.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }, dropped);
    await page.waitForFunction(() => document.querySelectorAll('.pending li').length === 2);
    // Not an image: refused in the browser, nothing sent.
    await page.setInputFiles('#chat-file', { name: 'notas.txt', mimeType: 'text/plain', buffer: Buffer.from('hello') });
    const notImage = await page.locator('[data-testid="chat"] .form-error').innerText();
    await page.fill('#chat-message', 'Aqui estão os prints da tela');
    await page.click('[data-testid="chat"] button[type="submit"]');
    await page.waitForFunction(() => {
      const shots = [...document.querySelectorAll('.message.user .shots img')];
      return shots.length === 2 && shots.every((img) => img.complete && img.naturalWidth === 40);
    });
    const pendingAfter = await page.locator('.pending li').count();
    await shot(page, 'chat-screenshots');

    // A person.
    await page.click('[data-testid="talk-to-person"]');
    await page.locator('[data-testid="handoff"]').waitFor({ state: 'visible' });
    // The live status may show the hand-off before the button's answer names the ticket.
    await page.locator('[data-testid="handoff"] code').waitFor();
    const handoff = await page.locator('[data-testid="handoff"]').innerText();
    await page.waitForFunction(() => document.querySelector('[data-testid="state"]')?.textContent === 'com uma pessoa');
    const personDisabled = await page.locator('[data-testid="talk-to-person"]').isDisabled();
    const session = decodeURIComponent((await page.evaluate(() => location.hash)).split('/')[2] || '');
    await shot(page, 'handoff');

    // The same session opened again by its URL (a reload): status and conversation return.
    await page.reload();
    await page.locator('[data-testid="chat"]').waitFor({ state: 'visible' });
    await page.waitForFunction(() => document.querySelectorAll('.message').length >= 6);
    const afterReload = await page.locator('.message').count();
    // A session that does not exist (a stale or hand-edited link) says so.
    await page.goto(`${edge}/app/#/setup/setup-does-not-exist%ZZ`);
    await page.locator('[data-testid="gone"]').waitFor();
    const gone = await page.locator('[data-testid="gone"]').innerText();
    await context.close();
    return {
      heading, stepFailure, lastFailure, diagnosis, revalidation, revalidated, fixed, notImage, pendingAfter,
      handoff, personDisabled, session, afterReload, gone,
    };
  },

  /** The desk, with the tenant's own key: the funnel equals the API's, tickets, events. */
  async desk() {
    const { context, page } = await open('desk');
    await signIn(page, args.tenant_key, '#/desk');
    await page.locator('[data-testid="funnel"] .bars').waitFor();
    await unlabelled(page, 'desk');
    const bars = await page.$$eval('.bars .bar', (els) => Object.fromEntries(els.map((e) => [e.dataset.stage, Number(e.dataset.count)])));
    const total = await page.locator('[data-testid="funnel-total"]').innerText();
    const active = await page.$$eval('[data-testid="funnel"] tbody tr', (rows) => rows.map((r) => r.cells[0].innerText));
    const fromApi = await api('GET', '/api/v1/onboard/funnel', args.tenant_key);
    await shot(page, 'desk');

    // A session's timeline.
    await page.click(`[data-testid="funnel"] tbody a >> nth=0`);
    await page.locator('[data-testid="timeline"]').waitFor();
    const timeline = await page.$$eval('[data-testid="timeline"] > li strong', (els) => els.map((e) => e.textContent));

    // A ticket with its timeline.
    await page.goto(`${edge}/app/#/desk`);
    await page.locator('[data-testid="tickets"] tbody a').first().waitFor();
    const tickets = await page.$$eval('[data-testid="tickets"] tbody tr', (rows) => rows.map((r) => r.cells[1].innerText));
    await page.locator('[data-testid="tickets"] tbody a').first().click();
    await page.locator('[data-testid="ticket"] h2').waitFor();
    const ticket = await page.locator('[data-testid="ticket"]').innerText();

    // Event search: the API's error next to the field it names (from after to).
    await page.goto(`${edge}/app/#/desk`);
    await page.locator('#q-session').waitFor();
    await page.fill('#q-from', '2026-12-10T10:00');
    await page.fill('#q-to', '2026-12-01T10:00');
    await page.click('[data-testid="search"] button[type="submit"]');
    await page.locator('#q-from-error').waitFor({ state: 'visible' });
    const fromError = await page.locator('#q-from-error').innerText();
    await page.fill('#q-from', '');
    await page.fill('#q-to', '');
    await page.fill('#q-session', args.pageview_session);
    await page.click('[data-testid="search"] button[type="submit"]');
    await page.locator('[data-testid="results"] tbody a').first().waitFor();
    await page.locator('[data-testid="results"] tbody a').first().click();
    await page.locator('[data-testid="event"] h2').waitFor();
    const copies = await page.locator('[data-testid="copies"]').innerText();
    await page.locator('[data-testid="replay"]').first().click();
    await page.locator('[data-testid="replay-outcome"] p').waitFor();
    const replayed = await page.locator('[data-testid="replay-outcome"] p').innerText();
    await shot(page, 'desk-event');
    await context.close();
    return { bars, total, active, api: fromApi, timeline, tickets, ticket, fromError, copies, replayed };
  },

  /** An operator's key reads any tenant it names; 375 px wide, nothing overflows. */
  async operator_mobile() {
    const { context, page } = await open('operator_mobile', { width: 375, height: 780 });
    await signIn(page, args.admin, '#/desk');
    await page.locator('#desk-tenant').waitFor();
    await page.fill('#desk-tenant', 'acme');
    await page.keyboard.press('Enter');
    await page.locator('[data-testid="funnel"] .bars').waitFor();
    const bars = await page.$$eval('.bars .bar', (els) => Object.fromEntries(els.map((e) => [e.dataset.stage, Number(e.dataset.count)])));
    const deskOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await shot(page, 'mobile-desk');
    await page.goto(`${edge}/app/#/setup`);
    await page.locator('form[data-page="start"]').waitFor();
    const wizardOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await shot(page, 'mobile-wizard');
    await context.close();
    return { bars, deskOverflow, wizardOverflow };
  },
};

const only = args.only ? [args.only] : Object.keys(scenarios);
for (const name of only) {
  try {
    out[name] = await scenarios[name]();
  } catch (error) {
    out.failure = `${name}: ${error.message}`;
    if (current) {
      out.failure_page = await current.locator('main').innerText().catch(() => null);
      await shot(current, `failure-${name}`).catch(() => {});
    }
    break;
  }
}
await browser.close();
writeFileSync(1, `${JSON.stringify(out)}\n`);
