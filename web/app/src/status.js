// The live status of a setup session: its steps from the server-sent event stream
// (`GET …/events`), updated without reload, with the last actionable failure and what to
// do about it. Whoever changes the session (this tab, the chat, another edge), it shows.

import { follow } from './api.js';
import { h, fill, when } from './dom.js';
import { t, lang } from './i18n.js';

export const STEPS = ['url', 'gateway', 'meta'];

/**
 * A panel following session `id`; `onStatus(status)` after each change. `leave()` closes
 * the stream.
 */
export function statusPanel(id, onStatus = () => {}) {
  const body = h('div', { class: 'status-body' }, h('p', {}, t('status.connecting')));
  const live = h('span', { class: 'live', 'data-state': 'connecting' }, t('status.connecting'));
  const element = h('section', { class: 'card status', 'aria-labelledby': 'status-title', 'data-testid': 'status' },
    h('div', { class: 'row' }, h('h2', { id: 'status-title' }, t('status.title')), live),
    body);
  const controller = new AbortController();
  follow(`/api/v1/setup/sessions/${encodeURIComponent(id)}/events`, (name, data) => {
    if (name !== 'status') return;
    const status = JSON.parse(data);
    render(body, status);
    onStatus(status);
  }, controller.signal, (state) => {
    live.dataset.state = state;
    live.textContent = t(`status.${state}`);
    if (state === 'gone') {
      fill(body, h('p', { class: 'error', role: 'alert', 'data-testid': 'gone' }, t('status.gone_text')),
        h('p', {}, h('a', { href: '#/setup' }, t('status.start_new'))));
    }
  });
  return { element, leave: () => controller.abort() };
}

function render(body, status) {
  const failure = status.last_failure;
  const standing = failure && status.steps[failure.step]?.status === 'failed';
  fill(body,
    h('p', {},
      t('status.session'), ' ', h('code', {}, status.session_id), ' · ',
      t('status.tenant'), ' ', h('code', {}, status.tenant_id)),
    h('p', {}, t('status.state'), ' ',
      h('strong', { class: `state state-${status.state}`, 'data-testid': 'state' }, t(`state.${status.state}`))),
    h('ol', { class: 'step-list' }, STEPS.map((step) => {
      const s = status.steps[step];
      return h('li', { class: `step-${s.status}`, 'data-step': step },
        h('span', { class: 'dot', 'aria-hidden': 'true' }),
        h('span', {}, t(`step.${step}`), ': ', h('strong', {}, t(`result.${s.status}`)),
          s.attempts ? ` (${t(s.attempts === 1 ? 'status.attempt' : 'status.attempts', { n: s.attempts })})` : '',
          s.at ? h('small', {}, ' · ', when(s.at, lang())) : ''));
    })),
    standing ? h('div', { class: 'failure', role: 'alert', 'data-testid': 'last-failure' },
      h('p', {}, h('strong', {}, t('status.failed', { step: t(`step.${failure.step}`) })), ' ', failure.reason || ''),
      failure.recommendation ? h('p', {}, t('status.do'), ' ', failure.recommendation) : null) : null,
    status.state === 'needs_human' ? h('p', { class: 'notice', 'data-testid': 'handoff-status' }, t('status.handoff')) : null);
}
