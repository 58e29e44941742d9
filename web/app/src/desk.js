// The ops desk (#/desk, #/desk/session/<id>, #/desk/ticket/<id>, #/desk/event/<id>,
// #/desk/events/<session>): the onboarding (or landing-page) funnel of the last 48 h as bars with the
// active sessions, a session's timeline, the newest tickets and a ticket with its
// timeline, and event search with each event's history (dedupe, match, dispatch, attempts
// against Meta, dead letters) and "replay this dispatch". Everything reads the edge's read
// API; an operator's key names the tenant it reads (X-Funnelhub-Tenant).

import { auth, call, TENANT_ID } from './api.js';
import { h, fill, when, table, field, fieldError, clearErrors, showApiError } from './dom.js';
import { t, lang } from './i18n.js';

const FUNNELS = {
  onboarding: {
    path: '/api/v1/onboard/funnel',
    stages: ['started', 'domain_validated', 'dns_applied', 'account_created', 'infra_synced', 'completed'],
  },
  tracking: {
    path: '/api/v1/funnel/tracking',
    stages: ['click', 'pageview', 'initiate_checkout', 'checkout_abandoned', 'payment_pending', 'purchase'],
  },
};
const EVENT_TYPES = ['click', 'pageview', 'initiate_checkout', 'checkout_abandoned', 'payment_pending', 'purchase',
  'payment_failed', 'refund', 'chargeback', 'cancel', 'subscription_renewed', 'subscription_canceled', 'plan_changed',
  'onboarding_started', 'domain_validated', 'dns_applied', 'account_created', 'infra_synced', 'onboarding_completed',
  'onboarding_failed'];

let funnelChoice = 'onboarding';

const link = (href, text) => h('a', { href }, text);
const enc = encodeURIComponent;

/** The desk view for `route` (after `#/desk/`). */
export function desk(route) {
  const body = h('div', { class: 'desk-body' });
  const element = h('div', { class: 'desk' }, h('h1', {}, t('desk.title')), tenantChooser(), body);
  if (auth.operator() && !auth.tenant()) {
    fill(body, h('p', { class: 'hint' }, t('desk.choose_tenant')));
    return { element };
  }
  const [what, id] = route;
  if (what === 'session' && id) fill(body, back(), sessionView(id));
  else if (what === 'ticket' && id) fill(body, back(), ticketView(id));
  else if (what === 'event' && id) fill(body, back(), eventView(id));
  else if (what === 'events' && id) fill(body, back(), searchView(id));
  else fill(body, funnelView(), ticketsView(), searchView());
  return { element };
}

function back() {
  return h('p', {}, link('#/desk', t('desk.back')));
}

/** Operators choose the tenant they look at; a tenant's key shows its own. */
function tenantChooser() {
  if (!auth.operator()) return h('p', { class: 'hint' }, t('desk.tenant'), ' ', h('code', {}, auth.tenant()));
  const form = h('form', { class: 'row wrap tenant-choice', novalidate: true },
    field({ id: 'desk-tenant', label: t('desk.tenant'), value: auth.tenant(), autocomplete: 'off' }),
    h('button', { type: 'submit' }, t('desk.open')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const control = form.querySelector('#desk-tenant');
    const id = control.value.trim();
    if (!TENANT_ID.test(id)) {
      fieldError(control, t('check.tenant_id'));
      control.focus();
      return;
    }
    auth.chooseTenant(id);
    if (location.hash === '#/desk') window.dispatchEvent(new HashChangeEvent('hashchange'));
    else location.hash = '#/desk';
  });
  return form;
}

/** Load `path` into `host`, showing what it renders or the API's error. */
async function into(host, path, render) {
  fill(host, h('p', { class: 'hint' }, t('desk.loading')));
  try {
    fill(host, render(await call('GET', path)));
  } catch (error) {
    fill(host, h('p', { class: 'error', role: 'alert' }, error.message));
  }
}

function funnelView() {
  const host = h('div');
  const choice = field({
    id: 'funnel-choice', label: t('desk.funnel'), tag: 'select',
    options: Object.keys(FUNNELS).map((f) => [f, t(`funnel.${f}`)]),
  });
  const select = choice.querySelector('select');
  select.value = funnelChoice;
  select.addEventListener('change', () => {
    funnelChoice = select.value;
    load();
  });
  const load = () => {
    const funnel = FUNNELS[funnelChoice];
    into(host, funnel.path, (data) => {
      const top = Math.max(1, ...funnel.stages.map((s) => data.stages[s] || 0), data.failed || 0);
      const bar = (name, label, count, cls = '') => {
        const filled = h('span', { class: 'bar-fill' });
        // Set through the DOM: the policy allows no inline style attributes.
        filled.style.width = `${Math.round((100 * count) / top)}%`;
        return h('li', { class: `bar ${cls}`, 'data-stage': name, 'data-count': count },
          h('span', { class: 'bar-label' }, label),
          h('span', { class: 'bar-track' }, filled),
          h('span', { class: 'bar-count' }, String(count)));
      };
      const bars = h('ol', { class: 'bars', 'aria-label': t('desk.stages') },
        funnel.stages.map((s) => bar(s, t(`stage.${s}`), data.stages[s] || 0)),
        bar('failed', t('stage.failed'), data.failed || 0, 'failed'));
      const sessions = data.active_sessions || [];
      return [
        h('p', { 'data-testid': 'funnel-total' }, t('desk.sessions_48h', { n: data.sessions, hours: data.window_hours })),
        bars,
        h('h3', {}, t('desk.active', { n: sessions.length })),
        sessions.length ? table(
          [t('desk.session'), t('desk.stage'), t('desk.domain'), t('desk.updated')],
          sessions.map((s) => [
            funnelChoice === 'onboarding'
              ? link(`#/desk/session/${enc(s.session_id)}`, s.session_id)
              : link(`#/desk/events/${enc(s.session_id)}`, s.session_id),
            t(`stage.${s.stage}`), s.domain || '—', when(s.updated_at_ms, lang())]),
          t('desk.active_caption'),
        ) : h('p', { class: 'hint' }, t('desk.none')),
      ];
    });
  };
  load();
  return h('section', { class: 'card', 'aria-labelledby': 'funnel-title', 'data-testid': 'funnel' },
    h('h2', { id: 'funnel-title' }, t('desk.funnel_title')), choice, host);
}

function timeline(events) {
  return h('ol', { class: 'timeline', 'data-testid': 'timeline' }, events.map((e) => h('li', {},
    h('strong', {}, e.event_type), ' ', h('small', {}, when(e.created_at_ms, lang())),
    Object.keys(e.data || {}).length
      ? h('dl', {}, Object.entries(e.data).map(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))]))
      : null)));
}

function sessionView(id) {
  const host = h('section', { class: 'card', 'data-testid': 'session' });
  into(host, `/api/v1/onboard/sessions/${enc(id)}/timeline`, (s) => [
    h('h2', {}, t('desk.session'), ' ', h('code', {}, s.session_id)),
    h('p', {}, t('desk.domain'), ': ', s.domain || '—', ' · ', t('desk.stage'), ': ',
      s.stage ? t(`stage.${s.stage}`) : '—', s.outcome ? ` (${t(`outcome.${s.outcome}`)})` : ''),
    timeline(s.events),
  ]);
  return host;
}

function ticketsView() {
  const host = h('div');
  into(host, '/api/v1/desk/tickets', (data) => (data.tickets.length ? table(
    [t('desk.ticket'), t('desk.kind'), t('desk.subject'), t('desk.session'), t('desk.created')],
    data.tickets.map((k) => [
      link(`#/desk/ticket/${enc(k.ticket_id)}`, k.ticket_id.slice(0, 8)),
      t(`ticket.${k.kind}`), k.subject, k.session_id, when(k.created_at_ms, lang())]),
  ) : h('p', { class: 'hint' }, t('desk.no_tickets'))));
  return h('section', { class: 'card', 'aria-labelledby': 'tickets-title', 'data-testid': 'tickets' },
    h('h2', { id: 'tickets-title' }, t('desk.tickets')), host);
}

function ticketView(id) {
  const host = h('section', { class: 'card', 'data-testid': 'ticket' });
  into(host, `/api/v1/desk/tickets/${enc(id)}`, (k) => [
    h('h2', {}, t(`ticket.${k.kind}`)),
    h('p', {}, k.subject),
    h('p', {}, t('desk.session'), ': ',
      k.kind === 'setup_needs_human' ? link(`#/setup/${enc(k.session_id)}`, k.session_id) : link(`#/desk/session/${enc(k.session_id)}`, k.session_id),
      ' · ', t('desk.created'), ': ', when(k.created_at_ms, lang())),
    k.timeline.length ? timeline(k.timeline) : h('p', { class: 'hint' }, t('desk.no_timeline')),
  ]);
  return host;
}

/** Event search; `preset`: a session whose events are listed at once. */
function searchView(preset) {
  const results = h('div', { 'data-testid': 'results' });
  const form = h('form', { class: 'search', novalidate: true },
    h('div', { class: 'grid' },
      field({ id: 'q-type', label: t('desk.type'), tag: 'select', apiField: 'type', options: [['', t('desk.any')], ...EVENT_TYPES.map((e) => [e, e])] }),
      field({ id: 'q-session', label: t('desk.session'), apiField: 'session_id', autocomplete: 'off' }),
      field({ id: 'q-from', label: t('desk.from'), type: 'datetime-local', apiField: 'from' }),
      field({ id: 'q-to', label: t('desk.to'), type: 'datetime-local', apiField: 'to' })),
    h('p', { class: 'error form-error', role: 'alert', hidden: true }),
    h('button', { type: 'submit', class: 'primary' }, t('desk.search')));
  const rows = [];
  async function search(cursor) {
    clearErrors(form);
    const params = new URLSearchParams({ limit: '50' });
    const value = (id) => form.querySelector(id).value.trim();
    if (value('#q-type')) params.set('type', value('#q-type'));
    if (value('#q-session')) params.set('session_id', value('#q-session'));
    for (const [id, name] of [['#q-from', 'from'], ['#q-to', 'to']]) {
      if (value(id)) params.set(name, String(new Date(value(id)).getTime()));
    }
    if (cursor) params.set('cursor', cursor);
    else rows.length = 0;
    try {
      const page = await call('GET', `/api/v1/events?${params}`);
      rows.push(...page.events);
      fill(results, rows.length ? table(
        [t('desk.event'), t('desk.type'), t('desk.session'), t('desk.occurred'), t('desk.order')],
        rows.map((e) => [link(`#/desk/event/${enc(e.event_id)}`, e.event_id.slice(0, 8)), e.event_type, e.session_id,
          when(e.occurred_at_ms, lang()), e.order_id || '—']),
      ) : h('p', { class: 'hint' }, t('desk.no_events')),
      page.next_cursor ? h('button', { type: 'button', onclick: () => search(page.next_cursor) }, t('desk.more')) : null);
    } catch (error) {
      showApiError(form, error);
    }
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    search(null);
  });
  if (preset) {
    form.querySelector('#q-session').value = preset;
    search(null);
  }
  return h('section', { class: 'card', 'aria-labelledby': 'search-title', 'data-testid': 'search' },
    h('h2', { id: 'search-title' }, t('desk.search_title')), form, results);
}

function eventView(id) {
  const host = h('section', { class: 'card', 'data-testid': 'event' });
  into(host, `/api/v1/events/${enc(id)}`, (d) => {
    const e = d.event;
    const replayOutcome = h('div', { 'data-testid': 'replay-outcome' });
    const replay = (eventId) => async (ev) => {
      ev.target.disabled = true;
      try {
        const r = await call('POST', `/api/v1/replay/${enc(eventId)}`);
        fill(replayOutcome, h('p', { class: 'success', role: 'status' }, t('desk.replayed', { id: r.event_id || eventId })));
      } catch (error) {
        fill(replayOutcome, h('p', { class: 'error', role: 'alert' }, error.message));
        ev.target.disabled = false;
      }
    };
    return [
      h('h2', {}, e.event_type, ' ', h('code', {}, e.event_id)),
      h('dl', { class: 'facts' },
        [['desk.source', e.source], ['desk.session', e.session_id], ['desk.occurred', when(e.occurred_at_ms, lang())],
          ['desk.received', when(e.received_at_ms, lang())], ['desk.gateway', e.gateway || '—'], ['desk.order', e.order_id || '—'],
          ['desk.value', e.value != null ? `${e.value} ${e.currency}` : '—'], ['desk.campaign', e.utm_campaign || '—']]
          .map(([k, v]) => [h('dt', {}, t(k)), h('dd', {}, v)])),
      h('h3', {}, t('desk.dedupe')),
      h('p', { 'data-testid': 'copies' }, t('desk.copies', { n: d.dedupe.copies_received })),
      d.dedupe.received.length ? table([t('desk.topic'), t('desk.partition'), t('desk.offset'), t('desk.received')],
        d.dedupe.received.map((r) => [r.source_topic, r.source_partition, r.source_offset, when(r.received_at_ms, lang())])) : null,
      h('h3', {}, t('desk.match')),
      d.matches.length ? table([t('desk.method'), t('desk.score'), t('desk.matched'), t('desk.decided')],
        d.matches.map((m) => [m.method, m.score.toFixed(2), m.matched_session_id || m.matched_event_id || '—', when(m.decided_at_ms, lang())]))
        : h('p', { class: 'hint' }, t('desk.no_match')),
      h('h3', {}, t('desk.dispatch')),
      d.dispatches.length ? table([t('desk.meta_event'), t('desk.pixel'), t('desk.blocked'), ''],
        d.dispatches.map((x) => [x.event_name, x.pixel_id, x.blocked_reason || '—',
          h('button', { type: 'button', onclick: replay(x.event_id), 'data-testid': 'replay' }, t('desk.replay'))]))
        : h('p', { class: 'hint' }, t('desk.no_dispatch')),
      replayOutcome,
      h('h3', {}, t('desk.attempts')),
      d.attempts.length ? table([t('desk.attempt'), t('desk.outcome'), 'HTTP', t('desk.error'), t('desk.latency'), t('desk.when')],
        d.attempts.map((a) => [a.attempt, a.outcome, a.http_status ?? '—', a.error_message || '—', `${a.latency_ms} ms`, when(a.attempted_at_ms, lang())]))
        : h('p', { class: 'hint' }, t('desk.no_attempts')),
      h('h3', {}, t('desk.dead_letters')),
      d.dead_letters.length ? table([t('desk.stage'), t('desk.reason'), t('desk.error'), t('desk.when')],
        d.dead_letters.map((l) => [l.stage, l.reason, l.error, when(l.failed_at_ms, lang())]))
        : h('p', { class: 'hint' }, t('desk.no_dead_letters')),
    ];
  });
  return host;
}
