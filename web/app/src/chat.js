// The troubleshooting chat of a setup session: the conversation (`GET …/messages`), a
// message with its screenshots (`POST …/attachments`, by the picker or dropped on the
// panel, then `POST …/chat` naming them), the tools the assistant ran, and the hand-off
// to a person (`POST …/escalate`), shown once the session is `needs_human`.

import { call, blobUrl, ApiError } from './api.js';
import { h, fill, when, field, fieldError } from './dom.js';
import { t, lang } from './i18n.js';

const MAX_MESSAGE = 2000;
const MAX_IMAGE_BYTES = 5 * 1024 * 1024;
const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/webp'];

/** The chat of session `id`, closed until `open()` (or opened at once with `{open: true}`). */
export function chatPanel(id, { open = false } = {}) {
  const base = `/api/v1/setup/sessions/${encodeURIComponent(id)}`;
  const list = h('ol', { class: 'messages', 'aria-live': 'polite', 'data-testid': 'messages' });
  const handoff = h('div', { class: 'notice handoff', role: 'status', 'data-testid': 'handoff', hidden: true });
  const pending = h('ul', { class: 'pending', 'aria-label': t('chat.attached') });
  const picker = h('input', { type: 'file', id: 'chat-file', accept: IMAGE_TYPES.join(','), class: 'sr-only', multiple: true });
  const formError = h('p', { class: 'error form-error', role: 'alert', hidden: true });
  const messageField = field({ id: 'chat-message', label: t('chat.message'), tag: 'textarea', rows: 3, maxlength: MAX_MESSAGE, apiField: 'message' });
  const send = h('button', { type: 'submit', class: 'primary' }, t('chat.send'));
  const person = h('button', { type: 'button', 'data-testid': 'talk-to-person' }, t('chat.person'));
  const form = h('form', { class: 'chat-form', novalidate: true },
    messageField,
    h('div', { class: 'row wrap' },
      h('label', { for: 'chat-file', class: 'button' }, t('chat.attach')),
      picker,
      h('span', { class: 'hint' }, t('chat.drop'))),
    pending,
    formError,
    h('div', { class: 'row wrap' }, send, person));
  const element = h('section', { class: 'card chat', 'aria-labelledby': 'chat-title', 'data-testid': 'chat', hidden: !open },
    h('h2', { id: 'chat-title' }, t('chat.title')),
    h('p', { class: 'hint' }, t('chat.intro')),
    handoff, list, form);
  /** Screenshots uploaded for the next message: {attachment_id, url}. */
  let attached = [];
  let loaded = false;
  let ticket = null;
  /** The newest message shown: the next load asks only for what came after it. */
  let lastSeq = 0;
  const textarea = form.querySelector('textarea');

  /** Show the messages after the newest one shown (all of them the first time). */
  async function load() {
    loaded = true;
    let cursor = lastSeq || null;
    try {
      do {
        const page = await call('GET', `${base}/messages?limit=100${cursor ? `&cursor=${cursor}` : ''}`);
        page.messages.forEach(show);
        cursor = page.next_cursor;
      } while (cursor);
    } catch (error) {
      formError.textContent = error.message;
      formError.hidden = false;
    }
  }

  function show(message) {
    if (message.seq <= lastSeq) return;
    lastSeq = message.seq;
    const images = h('div', { class: 'shots' });
    for (const attachment of message.attachment_ids || []) {
      const img = h('img', { alt: t('chat.screenshot'), 'data-attachment': attachment });
      images.append(img);
      blobUrl(`${base}/attachments/${attachment}`).then((url) => { img.src = url; }).catch(() => { img.alt = t('chat.gone'); });
    }
    list.append(h('li', { class: `message ${message.role}`, 'data-role': message.role },
      h('p', { class: 'who' }, t(`chat.${message.role}`), ' ', h('small', {}, when(message.at, lang()))),
      h('p', { class: 'text' }, message.text),
      message.attachment_ids?.length ? images : null,
      message.actions?.length ? h('ul', { class: 'actions', 'aria-label': t('chat.actions') },
        message.actions.map((a) => h('li', { class: `action ${a.status}`, 'data-tool': a.tool },
          t('chat.ran', { tool: a.tool }), ' ', h('strong', {}, t(`result.${a.status}`)),
          a.reason ? `: ${a.reason}` : ''))) : null));
    list.lastElementChild.scrollIntoView({ block: 'nearest' });
  }

  async function upload(files) {
    formError.hidden = true;
    for (const file of files) {
      if (!IMAGE_TYPES.includes(file.type)) {
        formError.textContent = t('chat.not_image', { name: file.name });
        formError.hidden = false;
        continue;
      }
      if (file.size > MAX_IMAGE_BYTES) {
        formError.textContent = t('chat.too_big', { name: file.name });
        formError.hidden = false;
        continue;
      }
      const body = new FormData();
      body.append('file', file, file.name);
      try {
        const stored = await call('POST', `${base}/attachments`, body);
        const preview = URL.createObjectURL(file);
        attached.push(stored);
        pending.append(h('li', { 'data-attachment': stored.attachment_id },
          h('img', { src: preview, alt: file.name }),
          h('button', {
            type: 'button',
            'aria-label': t('chat.remove', { name: file.name }),
            onclick: (e) => {
              attached = attached.filter((a) => a.attachment_id !== stored.attachment_id);
              e.target.closest('li').remove();
            },
          }, '×')));
      } catch (error) {
        formError.textContent = error.message;
        formError.hidden = false;
      }
    }
  }

  picker.addEventListener('change', () => {
    upload([...picker.files]);
    picker.value = '';
  });
  element.addEventListener('dragover', (e) => {
    e.preventDefault();
    element.classList.add('dropping');
  });
  element.addEventListener('dragleave', () => element.classList.remove('dropping'));
  element.addEventListener('drop', (e) => {
    e.preventDefault();
    element.classList.remove('dropping');
    upload([...(e.dataTransfer?.files || [])]);
  });

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    fieldError(textarea, null);
    formError.hidden = true;
    const message = textarea.value.trim();
    if (!message) {
      fieldError(textarea, t('chat.empty'));
      textarea.focus();
      return;
    }
    send.disabled = true;
    send.textContent = t('chat.sending');
    try {
      const answer = await call('POST', `${base}/chat`, {
        message,
        attachment_ids: attached.map((a) => a.attachment_id),
      });
      textarea.value = '';
      attached = [];
      pending.replaceChildren();
      // The question and the answer, in order, with whatever else arrived meanwhile.
      await load();
      update(answer.session);
    } catch (error) {
      if (error instanceof ApiError && error.field === 'message') fieldError(textarea, error.message);
      else {
        formError.textContent = error.message;
        formError.hidden = false;
      }
    } finally {
      send.disabled = false;
      send.textContent = t('chat.send');
    }
  });

  person.addEventListener('click', async () => {
    person.disabled = true;
    try {
      const answer = await call('POST', `${base}/escalate`);
      ticket = answer.ticket_id;
      update(answer.session);
    } catch (error) {
      formError.textContent = error.message;
      formError.hidden = false;
      person.disabled = false;
    }
  });

  /** Follow the session's status: the hand-off state. */
  function update(status) {
    if (!status) return;
    const handedOff = status.state === 'needs_human';
    handoff.hidden = !handedOff;
    person.disabled = handedOff;
    if (handedOff) {
      fill(handoff, h('strong', {}, t('chat.handoff_title')), ' ', t('chat.handoff'),
        ticket ? h('span', {}, ' ', t('chat.ticket'), ' ', h('code', {}, ticket)) : null);
    }
  }

  function openPanel({ focus = true } = {}) {
    element.hidden = false;
    if (!loaded) load();
    if (focus) textarea.focus();
  }
  if (open) openPanel({ focus: false });
  return { element, open: openPanel, update, isOpen: () => !element.hidden };
}
