// Drives Debian's Chromium (playwright-core, never a downloaded browser) through landing
// pages that carry funnelhub.js, for tests/tracker.rs. Argument: JSON
//   {"landing": "http://www.shop.test:PORT", "screenshot": "/path.png"}
// Hosts under shop.test resolve to 127.0.0.1. Prints one JSON object: what the pages did
// (pixel calls, cookies, checkout link followed, session ids, console errors).
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const args = JSON.parse(process.argv[2]);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--host-resolver-rules=MAP *.shop.test 127.0.0.1',
    // SubtleCrypto needs a secure context: the test serves plain http.
    `--unsafely-treat-insecure-origin-as-secure=${args.landing}`,
  ],
});
const errors = [];
const out = { errors };

async function visit(context, path, waitFor) {
  const page = await context.newPage();
  page.on('console', (m) => m.type() === 'error' && errors.push(`${path}: ${m.text()}`));
  page.on('pageerror', (e) => errors.push(`${path}: ${e.message}`));
  const hit = page.waitForResponse((r) => r.url().includes(`/api/v1/track/${waitFor}`), {
    timeout: 15000,
  });
  await page.goto(args.landing + path);
  const response = await hit;
  return { page, status: response.status() };
}

try {
  // Consent granted (Google Consent Mode on the page), a click from an ad.
  const granted = await browser.newContext();
  const first = await visit(
    granted,
    '/?fbclid=AbC-123_xYz&utm_source=facebook&utm_campaign=bf&gclid=Cj0-Test_1',
    'pageview'
  );
  out.first = {
    status: first.status,
    session: await first.page.evaluate(() => window.funnelhub.session()),
    fbq: await first.page.evaluate(() => window.__fbqCalls),
  };
  // The shared hashing vectors, hashed in the page; then identify + a hit.
  const vectors = JSON.parse(readFileSync(args.vectors, 'utf8')).vectors;
  out.vectors = await first.page.evaluate(
    (vectors) =>
      Promise.all(
        vectors.map((v) => window.funnelhub.hash(v.field, v.value, { callingCode: v.calling_code }))
      ),
    vectors
  );
  out.identified = await first.page.evaluate(async () => {
    await window.funnelhub.identify({ email: 'ANA.Souza@Example.COM', phone: '+1 650-555-1212' });
    return window.funnelhub.track('click');
  });
  await new Promise((r) => setTimeout(r, 50));
  const second = await visit(granted, '/page2', 'pageview');
  out.second = {
    status: second.status,
    session: await second.page.evaluate(() => window.funnelhub.session()),
    fbq: await second.page.evaluate(() => window.__fbqCalls),
  };
  out.cookies = Object.fromEntries(
    (await granted.cookies()).map((c) => [c.name, { value: c.value, domain: c.domain }])
  );
  // An element with data-fh-event is tracked on click.
  const cta = second.page.waitForResponse((r) => r.url().includes('/api/v1/track/initiate_checkout'), {
    timeout: 15000,
  });
  await second.page.click('#cta');
  out.cta = (await cta).status();
  // A checkout link leaves with the session id; the checkout itself is not reached.
  let checkout;
  await granted.route('https://pay.hotmart.com/**', (route) => {
    checkout = route.request().url();
    return route.fulfill({ status: 200, contentType: 'text/html', body: '<p>checkout</p>' });
  });
  // The initiate_checkout hit goes with keepalive while the page leaves: the test reads it
  // from the topic.
  await second.page.click('#buy');
  await second.page.waitForURL(/pay\.hotmart\.com/, { timeout: 15000 });
  out.checkout = checkout;
  if (args.screenshot) await first.page.screenshot({ path: args.screenshot });

  // The edge answers 503: the hit waits in the queue and arrives on the next page.
  const flaky = await browser.newContext();
  const refusedHit = await visit(flaky, '/flaky', 'pageview');
  const queued = await refusedHit.page.evaluate(() => window.__fbqCalls[0][3].eventID);
  await new Promise((r) => setTimeout(r, 1200));
  const after = await visit(flaky, '/page2', 'pageview');
  let left;
  for (let i = 0; i < 150; i++) {
    left = await after.page.evaluate(() => JSON.parse(localStorage.getItem('_fh_queue') || '[]'));
    if (left.length === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  out.retried = { refusedStatus: refusedHit.status, eventId: queued, status: after.status, left };

  // Consent from an IAB TCF v2 CMP.
  const tcfContext = await browser.newContext();
  const tcf = await visit(tcfContext, '/tcf?fbclid=Tcf1', 'pageview');
  out.tcf = {
    status: tcf.status,
    session: await tcf.page.evaluate(() => window.funnelhub.session()),
    cookies: (await tcfContext.cookies()).map((c) => c.name),
  };

  // The tracker adds no global but window.funnelhub.
  const bareContext = await browser.newContext();
  const blank = await bareContext.newPage();
  await blank.goto(args.landing + '/blank');
  const baseline = await blank.evaluate(() => Object.keys(window));
  const bare = await visit(bareContext, '/bare', 'pageview');
  out.globals = await bare.page.evaluate(
    (baseline) => Object.keys(window).filter((k) => !baseline.includes(k)),
    baseline
  );

  // Consent denied: no Meta cookie, and the hit says so.
  const denied = await browser.newContext();
  const refused = await visit(denied, '/denied?fbclid=NoCookie1', 'pageview');
  out.denied = {
    status: refused.status,
    session: await refused.page.evaluate(() => window.funnelhub.session()),
    cookies: (await denied.cookies()).map((c) => c.name),
  };
} catch (e) {
  out.failure = String(e && e.stack ? e.stack : e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
