// funnelhub.js: the landing-page tracker, served by the edge at /sdk/v1/funnelhub.js.
//
//   <script async src="https://EDGE/sdk/v1/funnelhub.js" data-tenant="shop"></script>
//
// Contract (docs/tracker.md): no dependency, no request to any origin but the edge, no
// global but `window.funnelhub`, never throws into the page. Every hit carries a UUID v4
// event id, also given to the Meta pixel (`fbq`, when present) as `eventID`, so Meta
// deduplicates the browser and server copies. No Meta cookie is written without ads
// consent. Personal data given to `identify` is normalized and SHA-256 hashed here; the
// raw values never leave the page.

(() => {
  const w = window;
  const d = document;
  if (w.funnelhub && w.funnelhub.version) return;

  const script =
    d.currentScript || d.querySelector('script[data-tenant][src*="funnelhub.js"]');
  const attr = (name, fallback) => (script && script.getAttribute('data-' + name)) || fallback;
  const tenant = attr('tenant', '');
  let endpoint = attr('endpoint', '');
  try {
    endpoint = endpoint || new URL(script.src).origin;
  } catch (_) {}
  const idleMs = Number(attr('session-timeout', '30')) * 60000 || 1800000;
  const checkoutHosts = attr(
    'checkout-hosts',
    'pay.hotmart.com,go.hotmart.com,pay.kiwify.com.br,buy.stripe.com'
  )
    .split(',')
    .map((h) => h.trim().toLowerCase())
    .filter(Boolean);
  const createFbp = attr('create-fbp', 'true') !== 'false';
  const callingCode = attr('calling-code', '').replace(/\D/g, '');

  const DAY = 86400000;
  const QUEUE_KEY = '_fh_queue';
  const QUEUE_MAX = 50;
  const ATTEMPTS_MAX = 5;

  const safe = (f) =>
    function () {
      try {
        return f.apply(this, arguments);
      } catch (e) {
        return undefined;
      }
    };

  const uuid = () => {
    if (w.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    const h = Array.from(b, (x) => (x + 256).toString(16).slice(1)).join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  };

  // Cookies on the registrable domain (eTLD+1): the shortest suffix of the host a cookie
  // sticks to, as Meta's pixel finds its subdomainIndex.
  const readCookie = (name) => {
    const m = d.cookie.match(new RegExp('(?:^|; )' + name + '=([^;]*)'));
    return m ? decodeURIComponent(m[1]) : undefined;
  };
  const host = location.hostname;
  let cookieDomain = '';
  const labels = host.split('.');
  if (!/^[\d.]+$/.test(host) && host.indexOf(':') < 0 && labels.length > 1) {
    for (let i = labels.length - 2; i >= 0; i--) {
      const candidate = labels.slice(i).join('.');
      d.cookie = `_fh_probe=1; path=/; domain=${candidate}; SameSite=Lax`;
      if (readCookie('_fh_probe')) {
        cookieDomain = candidate;
        d.cookie = `_fh_probe=; path=/; domain=${candidate}; max-age=0`;
        break;
      }
    }
  }
  const subdomainIndex = cookieDomain ? cookieDomain.split('.').length - 1 : 0;
  const writeCookie = (name, value, maxAgeMs) => {
    const domain = cookieDomain ? `; domain=${cookieDomain}` : '';
    d.cookie = `${name}=${encodeURIComponent(value)}; path=/; max-age=${Math.floor(
      maxAgeMs / 1000
    )}; SameSite=Lax${domain}${location.protocol === 'https:' ? '; Secure' : ''}`;
    return readCookie(name) === value;
  };

  // Identity: a visitor id (400 days) and a session id renewed after idle minutes. Without
  // cookies, one id for this page.
  const now = () => Date.now();
  let visitorId = readCookie('_fh_vid');
  if (!visitorId) {
    visitorId = uuid();
    writeCookie('_fh_vid', visitorId, 400 * DAY);
  }
  const session = () => {
    const [id, last] = (readCookie('_fh_sid') || '').split('.');
    const sid = id && now() - Number(last) < idleMs ? id : uuid().replace(/-/g, '');
    if (!writeCookie('_fh_sid', `${sid}.${now()}`, idleMs)) {
      return (session.page = session.page || sid);
    }
    return sid;
  };

  // Consent: no ads consent until granted (by `funnelhub.consent`, an IAB TCF v2 CMP or
  // Google Consent Mode).
  const consent = { ads: false, analytics: undefined };
  const consentFrom = (ads, analytics) => {
    if (typeof ads === 'boolean') consent.ads = ads;
    if (typeof analytics === 'boolean') consent.analytics = analytics;
    if (consent.ads) clickCookies();
  };
  const gtagConsent = (entry) => {
    if (!entry || entry[0] !== 'consent' || typeof entry[2] !== 'object') return;
    const c = entry[2];
    const ads =
      c.ad_storage === undefined
        ? undefined
        : c.ad_storage === 'granted' && c.ad_user_data !== 'denied';
    const analytics =
      c.analytics_storage === undefined ? undefined : c.analytics_storage === 'granted';
    consentFrom(ads, analytics);
  };

  // Google Consent Mode: `gtag('consent', ...)` calls in `dataLayer`, read where we left
  // off before every hit (gtag may load after us; we create no global of our own).
  let layerSeen = 0;
  const scanLayer = () => {
    const layer = w.dataLayer;
    if (!Array.isArray(layer)) return;
    for (; layerSeen < layer.length; layerSeen++) safe(gtagConsent)(layer[layerSeen]);
  };

  // Meta click ids. `_fbc` keeps the click time of the visit that carried the fbclid; a
  // later page without a new fbclid never rewrites it. fbclid is case-sensitive.
  const params = new URLSearchParams(location.search);
  const fbclid = params.get('fbclid') || undefined;
  let fbc = readCookie('_fbc');
  let fbp = readCookie('_fbp');
  // Other platforms' click ids (Google Ads, TikTok), kept like _fbc for 90 days.
  const fromUrl = {};
  ['gclid', 'gbraid', 'wbraid', 'ttclid'].forEach(
    (k) => params.get(k) && (fromUrl[k] = params.get(k).slice(0, 512))
  );
  let clickIds = {};
  try {
    clickIds = JSON.parse(readCookie('_fh_clk') || '{}');
  } catch (_) {}
  function clickCookies() {
    if (!consent.ads) return;
    if (Object.keys(fromUrl).length) {
      clickIds = { ...clickIds, ...fromUrl };
      writeCookie('_fh_clk', JSON.stringify(clickIds), 90 * DAY);
    }
    if (fbclid && !(fbc && fbc.split('.').slice(3).join('.') === fbclid)) {
      fbc = `fb.${subdomainIndex}.${now()}.${fbclid}`;
      writeCookie('_fbc', fbc, 90 * DAY);
    }
    if (!fbp && createFbp) {
      fbp = `fb.${subdomainIndex}.${now()}.${Math.floor(Math.random() * 2147483647)}`;
      writeCookie('_fbp', fbp, 90 * DAY);
    }
  }

  // The campaign of the visit (UTM parameters of the landing URL), kept for the session's
  // later pages and checkout links.
  const UTM = ['utm_source', 'utm_medium', 'utm_campaign', 'utm_content', 'utm_term'];
  let campaign = {};
  try {
    campaign = JSON.parse(readCookie('_fh_utm') || '{}');
  } catch (_) {}
  if (UTM.some((k) => params.get(k))) {
    campaign = {};
    UTM.forEach((k) => params.get(k) && (campaign[k] = params.get(k).slice(0, 256)));
  }
  writeCookie('_fh_utm', JSON.stringify(campaign), idleMs);

  // Identify: normalized and hashed by Meta's rules, here.
  let identity = {};
  const sha256 = async (text) => {
    const bytes = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
    return Array.from(new Uint8Array(bytes), (x) => (x + 256).toString(16).slice(1)).join('');
  };
  // The edge's rules (schemas/src/identity.rs), checked against the same vectors.
  const normalize = {
    email: (v) => {
      const e = v.trim().toLowerCase();
      return e.includes('@') ? e : undefined;
    },
    phone: (v, code) => {
      // A number written with + carries its country code already.
      const digits = v.replace(/\D/g, '').replace(/^0+/, '');
      if (code && !/^\s*\+/.test(v) && digits && digits.length <= 11) return code + digits;
      return digits || undefined;
    },
    external_id: (v) => v.trim() || undefined,
  };
  // The hash of `value` as field `field` (undefined: nothing to send). Without
  // SubtleCrypto (a page not served over https) nothing is hashed, so nothing is sent.
  const hash = async (field, value, options) => {
    try {
      if (typeof value !== 'string' || !normalize[field]) return undefined;
      const trimmed = value.trim();
      if (/^[0-9a-fA-F]{64}$/.test(trimmed)) return trimmed.toLowerCase();
      const code = ((options && options.callingCode) || callingCode || '').replace(/\D/g, '');
      const normalized = normalize[field](value, code);
      return normalized === undefined || !(w.crypto && crypto.subtle)
        ? undefined
        : await sha256(normalized);
    } catch (_) {
      return undefined;
    }
  };

  // Delivery: fetch with keepalive (it outlives the page and tells 503 apart), else
  // sendBeacon. A hit the edge answered 503 or that never arrived waits in a bounded
  // queue (by event id, so never twice) for the next page or the browser coming online.
  const store = {
    read: () => {
      try {
        return JSON.parse(localStorage.getItem(QUEUE_KEY) || '[]');
      } catch (_) {
        return [];
      }
    },
    write: (queue) => {
      try {
        localStorage.setItem(QUEUE_KEY, JSON.stringify(queue.slice(-QUEUE_MAX)));
      } catch (_) {}
    },
  };
  const settle = (eventId, retryAt) => {
    const queue = store.read().filter((e) => e.body.event_id !== eventId);
    if (retryAt) {
      const entry = pending.get(eventId);
      if (entry && entry.attempts < ATTEMPTS_MAX) queue.push({ ...entry, retryAt });
    }
    store.write(queue);
  };
  const pending = new Map();
  const send = (entry) => {
    const url = `${endpoint}/api/v1/track/${entry.kind}?tenant=${encodeURIComponent(tenant)}`;
    const body = JSON.stringify(entry.body);
    entry.attempts = (entry.attempts || 0) + 1;
    pending.set(entry.body.event_id, entry);
    store.write(store.read().filter((e) => e.body.event_id !== entry.body.event_id).concat(entry));
    if (w.fetch) {
      fetch(url, {
        method: 'POST',
        body,
        keepalive: true,
        credentials: 'omit',
        headers: { 'content-type': 'text/plain' },
      })
        .then((r) => {
          if (r.status === 503 || r.status === 429) {
            const after = Number(r.headers.get('retry-after')) || 5;
            settle(entry.body.event_id, now() + after * 1000);
          } else {
            settle(entry.body.event_id);
          }
        })
        .catch(() => settle(entry.body.event_id, now() + 5000));
    } else if (navigator.sendBeacon && navigator.sendBeacon(url, body)) {
      settle(entry.body.event_id);
    }
  };
  const flush = safe(() => {
    const due = store.read().filter((e) => !e.retryAt || e.retryAt <= now());
    due.forEach((e) => pending.has(e.body.event_id) || send(e));
  });

  const META_EVENT = { pageview: 'PageView', initiate_checkout: 'InitiateCheckout' };
  const track = safe((kind, props) => {
    props = props || {};
    scanLayer();
    if (!['pageview', 'click', 'initiate_checkout'].includes(kind) || !tenant) return;
    const eventId = uuid();
    const body = {
      session_id: session(),
      event_id: eventId,
      occurred_at: now(),
      page_url: location.href.slice(0, 2000),
      referrer: d.referrer ? d.referrer.slice(0, 2000) : undefined,
      ...(consent.ads ? clickIds : {}),
      fbc: consent.ads ? fbc : undefined,
      fbp: consent.ads ? fbp : undefined,
      ...campaign,
      consent_ads: consent.ads,
      consent_analytics: consent.analytics,
      value: typeof props.value === 'number' ? props.value : undefined,
      currency: props.currency,
      content_ids: Array.isArray(props.content_ids) ? props.content_ids.map(String) : undefined,
      external_id: identity.external_id,
      email: identity.email,
      phone: identity.phone,
    };
    send({ kind, body });
    if (typeof w.fbq === 'function' && META_EVENT[kind] && consent.ads) {
      const custom = {};
      if (body.value !== undefined) custom.value = body.value;
      if (body.currency) custom.currency = body.currency;
      if (body.content_ids) custom.content_ids = body.content_ids;
      w.fbq('track', META_EVENT[kind], custom, { eventID: eventId });
    }
    return eventId;
  });

  // The sale joins its click: checkout links leave with the session id (Hotmart and Kiwify
  // `sck`, Stripe Payment Links `client_reference_id`) and the campaign.
  const decorate = safe((link) => {
    const url = new URL(link.href, location.href);
    const target = url.hostname.toLowerCase();
    if (!checkoutHosts.some((h) => target === h || target.endsWith('.' + h))) return false;
    const sid = session();
    if (target.endsWith('stripe.com')) {
      url.searchParams.set('client_reference_id', sid);
    } else {
      url.searchParams.set('sck', sid);
      UTM.forEach((k) => {
        if (campaign[k] && !url.searchParams.get(k)) url.searchParams.set(k, campaign[k]);
      });
      if (campaign.utm_source && !url.searchParams.get('src')) {
        url.searchParams.set('src', campaign.utm_source);
      }
    }
    link.href = url.toString();
    return true;
  });
  d.addEventListener(
    'click',
    safe((event) => {
      const el = event.target && event.target.closest && event.target.closest('a[href],[data-fh-event]');
      if (!el) return;
      const named = el.getAttribute('data-fh-event');
      const checkout = el.tagName === 'A' && decorate(el);
      if (named) track(named, { value: Number(el.getAttribute('data-fh-value')) || undefined });
      else if (checkout) track('initiate_checkout');
    }),
    true
  );

  const api = {
    version: '1',
    track,
    identify: safe(async (traits) => {
      const next = {};
      for (const key of ['email', 'phone', 'external_id']) {
        const hashed = await hash(key, traits && traits[key]);
        if (hashed) next[key] = hashed;
      }
      identity = { ...identity, ...next };
    }),
    hash: safe(hash),
    consent: safe((c) => consentFrom(c && c.ads, c && c.analytics)),
    session,
    visitor: () => visitorId,
  };
  w.funnelhub = api;

  // Consent sources that were there before us, then the first page view.
  scanLayer();
  const start = safe(() => {
    flush();
    track('pageview');
  });
  if (typeof w.__tcfapi === 'function') {
    let started = false;
    const begin = () => started || ((started = true), start());
    w.__tcfapi('addEventListener', 2, (data, ok) => {
      if (ok && data && ['tcloaded', 'useractioncomplete'].includes(data.eventStatus)) {
        const p = (data.purpose && data.purpose.consents) || {};
        consentFrom(!!(p[1] && p[3] && p[4]), !!(p[1] && p[8]));
        begin();
      }
    });
    setTimeout(begin, 500);
  } else {
    clickCookies();
    start();
  }
  w.addEventListener('online', flush);
})();
