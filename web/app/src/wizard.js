// The setup wizard: tenant and landing page → gateway → Meta → review. Each step's fields
// are checked in the browser first, then by the step's validation tool on the edge
// (`POST …/actions/{tool}`); the review validates everything again, configures the tenant
// (`autoconfigure`) and can roll it back. Beside it: the live status and, when a step
// fails, the chat. Secrets typed here stay in this page's memory only.

import { auth, call, ApiError, TENANT_ID } from './api.js';
import { h, fill, field, fieldError, clearErrors, showApiError } from './dom.js';
import { t } from './i18n.js';
import { statusPanel, STEPS } from './status.js';
import { chatPanel } from './chat.js';

const GATEWAYS = {
  hotmart: ['client_id', 'client_secret', 'basic', 'webhook_secret'],
  kiwify: ['client_id', 'client_secret', 'account_id', 'webhook_secret'],
  stripe: ['secret_key', 'webhook_secret'],
};
const SECRET_FIELDS = new Set(['client_secret', 'basic', 'secret_key', 'webhook_secret', 'access_token']);
const PAGES = ['start', 'gateway', 'meta', 'review'];
/** The tool each page runs, and the session step it validates. */
const TOOLS = {
  start: ['probe_landing_url', 'url'],
  gateway: ['validate_gateway_credentials', 'gateway'],
  meta: ['validate_meta_token', 'meta'],
};

/** What the wizard holds across renders of one session (a language change re-renders). */
let draft = fresh(null);

function fresh(session) {
  return { session, page: 0, status: null, values: { gateway: 'hotmart' }, configured: null };
}

/** The wizard, for session `sessionId` when the URL names one. */
export function wizard(sessionId) {
  if (sessionId !== draft.session) draft = fresh(sessionId || null);
  // A session opened by its URL continues at its first step not validated.
  const resume = Boolean(sessionId) && !draft.status;
  const who = auth.who();
  if (!auth.operator() && who) draft.values.tenant_id = who.tenant_id;
  const progress = h('ol', { class: 'progress', 'aria-label': t('wizard.progress') });
  const stepHost = h('div', { class: 'step-host' });
  const side = h('div', { class: 'side' });
  const element = h('div', { class: 'wizard' },
    h('h1', {}, t('wizard.title')),
    progress,
    h('div', { class: 'layout' }, stepHost, side));
  let panels = null;

  function attach(id) {
    if (panels) return;
    const chat = chatPanel(id, { open: false });
    const help = h('button', { type: 'button', class: 'help', onclick: () => chat.open() }, t('chat.open'));
    const status = statusPanel(id, (s) => {
      const first = !draft.status;
      draft.status = s;
      if (!draft.values.tenant_id) draft.values.tenant_id = s.tenant_id;
      chat.update(s);
      if (['failed', 'needs_human'].includes(s.state) && !chat.isOpen()) chat.open({ focus: false });
      if (first && resume) {
        const next = STEPS.findIndex((step) => s.steps[step].status !== 'success');
        draft.page = next < 0 ? 3 : next;
        renderPage();
      } else if (PAGES[draft.page] === 'review') renderPage();
      else fixedElsewhere(s);
    });
    panels = { chat, status };
    fill(side, status.element, help, chat.element);
  }

  /** A step shown failed here that the chat (or another window) validated since. */
  function fixedElsewhere(s) {
    const page = PAGES[draft.page];
    const outcome = stepHost.querySelector('[data-testid="outcome"]');
    if (!TOOLS[page] || !outcome?.querySelector('.failure')) return;
    if (s.steps[TOOLS[page][1]].status !== 'success') return;
    fill(outcome, h('p', { class: 'success', role: 'status', 'data-testid': 'fixed' }, t('wizard.fixed'), ' ',
      h('button', { type: 'button', class: 'primary', onclick: () => { draft.page += 1; renderPage(); } }, t('wizard.continue'))));
  }

  function renderProgress() {
    fill(progress, PAGES.map((page, i) => h('li', {
      class: i === draft.page ? 'current' : i < draft.page ? 'done' : '',
      'aria-current': i === draft.page ? 'step' : null,
    }, `${i + 1}. ${t(`wizard.${page}`)}`)));
  }

  function renderPage() {
    renderProgress();
    const page = PAGES[draft.page];
    fill(stepHost, page === 'review' ? review() : form(page));
  }

  function input(id, apiField, label, extra = {}) {
    const value = draft.values[id] ?? '';
    const control = field({ id, label, apiField, value, ...extra });
    control.querySelector('input, select, textarea').addEventListener('input', (e) => {
      draft.values[id] = e.target.value;
    });
    return control;
  }

  function form(page) {
    const fields = [];
    if (page === 'start') {
      fields.push(input('tenant_id', 'tenant_id', t('field.tenant_id'), {
        hint: t('hint.tenant_id'), readonly: !auth.operator(), autocomplete: 'off', required: true,
      }));
      fields.push(input('url', 'url', t('field.url'), { type: 'url', hint: t('hint.url'), required: true, placeholder: 'https://' }));
    } else if (page === 'gateway') {
      const select = input('gateway', 'gateway', t('field.gateway'), {
        tag: 'select', options: Object.keys(GATEWAYS).map((g) => [g, t(`gateway.${g}`)]),
      });
      select.querySelector('select').addEventListener('change', () => renderPage());
      fields.push(select);
      const gateway = draft.values.gateway;
      for (const name of GATEWAYS[gateway]) {
        const optional = name === 'webhook_secret';
        fields.push(input(`${gateway}-${name}`, name, t(`field.${gateway}.${name}`), {
          type: SECRET_FIELDS.has(name) ? 'password' : 'text',
          autocomplete: 'off',
          required: !optional,
          hint: t(`hint.${gateway}.${name}`),
        }));
      }
      fields.push(webhookUrl(gateway));
    } else {
      fields.push(input('pixel_id', 'pixel_id', t('field.pixel_id'), { inputmode: 'numeric', autocomplete: 'off', required: true, hint: t('hint.pixel_id') }));
      fields.push(input('access_token', 'access_token', t('field.access_token'), { type: 'password', autocomplete: 'off', required: true, hint: t('hint.access_token') }));
      fields.push(input('test_event_code', 'test_event_code', t('field.test_event_code'), { autocomplete: 'off', hint: t('hint.test_event_code') }));
    }
    const outcome = h('div', { class: 'outcome', 'data-testid': 'outcome' });
    const next = h('button', { type: 'submit', class: 'primary' }, t('wizard.check'));
    const el = h('form', { class: 'card', novalidate: true, 'data-page': page },
      h('h2', {}, t(`wizard.${page}`)),
      h('p', { class: 'hint' }, t(`wizard.${page}.intro`)),
      fields,
      h('p', { class: 'error form-error', role: 'alert', hidden: true }),
      outcome,
      h('div', { class: 'row wrap' },
        draft.page > 0 ? h('button', { type: 'button', onclick: () => { draft.page -= 1; renderPage(); } }, t('wizard.back')) : null,
        next));
    el.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearErrors(el);
      fill(outcome);
      const problems = check(page, el);
      if (problems.length) {
        problems[0].focus();
        return;
      }
      next.disabled = true;
      next.textContent = t('wizard.checking');
      try {
        await ensureSession();
        const [tool] = TOOLS[page];
        const result = await call('POST', `/api/v1/setup/sessions/${encodeURIComponent(draft.session)}/actions/${tool}`, toolInput(page));
        if (result.status === 'success') {
          draft.page += 1;
          renderPage();
          return;
        }
        fill(outcome, h('div', { class: 'failure', role: 'alert', 'data-testid': 'step-failure' },
          h('p', {}, h('strong', {}, t('wizard.failed')), ' ', result.reason || ''),
          result.recommendation ? h('p', {}, t('status.do'), ' ', result.recommendation) : null,
          h('p', {}, t('wizard.ask'))));
        panels?.chat.open({ focus: false });
      } catch (error) {
        if (error instanceof ApiError) showApiError(el, error);
        else showApiError(el, { message: error.message });
      } finally {
        next.disabled = false;
        next.textContent = t('wizard.check');
      }
    });
    return el;
  }

  async function ensureSession() {
    if (draft.session) return;
    const created = await call('POST', '/api/v1/setup/sessions', { tenant_id: draft.values.tenant_id.trim() });
    draft.session = created.session_id;
    history.replaceState(null, '', `#/setup/${encodeURIComponent(created.session_id)}`);
    attach(created.session_id);
  }

  function toolInput(page) {
    const v = draft.values;
    if (page === 'start') return { url: v.url.trim() };
    if (page === 'meta') {
      const input = { pixel_id: v.pixel_id.trim(), access_token: v.access_token.trim() };
      if (v.test_event_code?.trim()) input.test_event_code = v.test_event_code.trim();
      return input;
    }
    const input = { gateway: v.gateway };
    for (const name of GATEWAYS[v.gateway]) {
      const value = (v[`${v.gateway}-${name}`] || '').trim();
      if (value) input[name] = value;
    }
    return input;
  }

  /** The fields that fail the browser's checks, each with its error shown. */
  function check(page, el) {
    const bad = [];
    const fail = (id, message) => {
      const control = el.querySelector(`#${id}`);
      fieldError(control, message);
      bad.push(control);
    };
    const v = (id) => (draft.values[id] || '').trim();
    if (page === 'start') {
      if (!TENANT_ID.test(v('tenant_id'))) fail('tenant_id', t('check.tenant_id'));
      let url = null;
      try { url = new URL(v('url')); } catch { /* below */ }
      if (!url || !['http:', 'https:'].includes(url.protocol) || !url.hostname) fail('url', t('check.url'));
    } else if (page === 'gateway') {
      const g = draft.values.gateway;
      for (const name of GATEWAYS[g]) {
        const id = `${g}-${name}`;
        if (name !== 'webhook_secret' && !v(id)) fail(id, t('check.required'));
      }
      if (g === 'stripe' && v('stripe-secret_key') && !/^(sk|rk)_/.test(v('stripe-secret_key'))) fail('stripe-secret_key', t('check.stripe_key'));
      const secret = v(`${g}-webhook_secret`);
      if (secret && secret.length < 8) fail(`${g}-webhook_secret`, t('check.short_secret'));
      else if (g === 'stripe' && secret && !secret.startsWith('whsec_')) fail('stripe-webhook_secret', t('check.whsec'));
    } else {
      if (!/^\d{1,20}$/.test(v('pixel_id'))) fail('pixel_id', t('check.pixel_id'));
      if (!v('access_token')) fail('access_token', t('check.required'));
    }
    return bad;
  }

  function webhookUrl(gateway) {
    const tenant = (draft.values.tenant_id || auth.tenant() || '').trim();
    const url = `${location.origin}/api/v1/webhooks/${gateway}?tenant=${encodeURIComponent(tenant)}`;
    const id = `webhook-url-${gateway}`;
    return h('div', { class: 'field' },
      h('label', { for: id }, t('wizard.webhook_url', { gateway: t(`gateway.${gateway}`) })),
      h('div', { class: 'row' },
        h('input', { id, readonly: true, value: url, 'data-testid': 'webhook-url' }),
        h('button', {
          type: 'button',
          onclick: (e) => {
            const button = e.target;
            navigator.clipboard?.writeText(url).then(() => { button.textContent = t('wizard.copied'); }, () => {});
            document.getElementById(id).select();
          },
        }, t('wizard.copy'))),
      h('p', { class: 'hint' }, t(`wizard.paste.${gateway}`)));
  }

  function review() {
    const s = draft.status;
    const outcome = h('div', { class: 'outcome', 'data-testid': 'review-outcome' });
    const box = h('div', { class: 'card', 'data-page': 'review' },
      h('h2', {}, t('wizard.review')),
      h('p', { class: 'hint' }, t('wizard.review.intro')),
      s ? h('ul', { class: 'step-list' }, STEPS.map((step) => h('li', { class: `step-${s.steps[step].status}` },
        h('span', { class: 'dot', 'aria-hidden': 'true' }),
        t(`step.${step}`), ': ', h('strong', {}, t(`result.${s.steps[step].status}`))))) : h('p', {}, t('status.connecting')),
      webhookUrl(draft.values.gateway || 'hotmart'),
      outcome,
      h('div', { class: 'row wrap' },
        h('button', { type: 'button', onclick: () => { draft.page = 0; renderPage(); } }, t('wizard.edit')),
        h('button', { type: 'button', onclick: (e) => act(e.target, 'validate', {}) }, t('wizard.revalidate')),
        h('button', {
          type: 'button', class: 'primary', disabled: !s?.can_autoconfigure, onclick: (e) => act(e.target, 'autoconfigure'),
        }, t('wizard.configure')),
        s?.can_rollback ? h('button', { type: 'button', class: 'danger', onclick: (e) => act(e.target, 'rollback') }, t('wizard.rollback')) : null));
    if (draft.configured) fill(outcome, draft.configured);

    async function act(button, what, body) {
      button.disabled = true;
      try {
        const result = await call('POST', `/api/v1/setup/sessions/${encodeURIComponent(draft.session)}/${what}`, body);
        if (what === 'autoconfigure') {
          draft.configured = h('p', { class: 'success', role: 'status', 'data-testid': 'configured' },
            t('wizard.configured', { tenant: result.tenant_id, revision: result.tenant_revision }), ' ',
            (result.applied || []).join(', '));
        } else if (what === 'rollback') {
          draft.configured = h('p', { class: 'notice', role: 'status', 'data-testid': 'rolled-back' }, t('wizard.rolled_back', { revision: result.tenant_revision }));
        } else {
          const failed = result.results.filter((r) => r.status !== 'success');
          draft.configured = failed.length
            ? h('div', { class: 'failure', role: 'alert' }, failed.map((r) => h('p', {}, h('strong', {}, r.tool), ': ', r.reason || '', ' ', r.recommendation || '')))
            : h('p', { class: 'success', role: 'status' }, t('wizard.all_valid'));
        }
        draft.status = result.session || draft.status;
        renderPage();
      } catch (error) {
        fill(outcome, h('p', { class: 'error', role: 'alert' }, error.message));
        button.disabled = false;
      }
    }
    return box;
  }

  if (draft.session) attach(draft.session);
  else fill(side, h('div', { class: 'card' }, h('h2', {}, t('status.title')), h('p', { class: 'hint' }, t('wizard.no_session'))));
  renderPage();
  return { element, leave: () => panels?.status.leave() };
}
