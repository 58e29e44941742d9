// Building the page: elements from plain data, never from HTML strings (text from the API
// or the user is always set as text, so it cannot inject markup).

/** An element: h('a', {href: '#/'}, 'text', child...). `on*` attributes add listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'class') {
      el.className = value;
    } else if (name === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, '');
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace `el`'s children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A time in ms as the reader's local date and time. */
export function when(ms, lang) {
  if (!ms) return '';
  return new Date(Number(ms)).toLocaleString(lang, { dateStyle: 'short', timeStyle: 'medium' });
}

/** A table: column headings and rows of cells. */
export function table(headings, rows, caption) {
  return h('div', { class: 'scroll' },
    h('table', {},
      caption ? h('caption', {}, caption) : null,
      h('thead', {}, h('tr', {}, headings.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c)))))));
}

/** A labelled field: the label, the control, a hint, and a slot for its error. */
export function field({ id, label, hint, apiField, ...input }) {
  const control = input.tag === 'select'
    ? h('select', { id, name: id, ...without(input, 'tag', 'options', 'value') },
      (input.options || []).map(([value, text]) => h('option', { value }, text)))
    : h(input.tag || 'input', { id, name: id, ...without(input, 'tag') });
  // A select's `value` attribute means nothing: choose the option.
  if (input.tag === 'select' && input.value !== undefined) control.value = input.value;
  const error = h('p', { class: 'error', id: `${id}-error`, role: 'alert', hidden: true });
  control.setAttribute('aria-describedby', `${id}-error${hint ? ` ${id}-hint` : ''}`);
  if (apiField) control.dataset.apiField = apiField;
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    control,
    hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null,
    error);
}

function without(object, ...names) {
  const copy = { ...object };
  for (const n of names) delete copy[n];
  return copy;
}

/** Show `message` as `control`'s error (or clear it with null). */
export function fieldError(control, message) {
  const error = document.getElementById(`${control.id}-error`);
  if (!error) return;
  error.textContent = message || '';
  error.hidden = !message;
  if (message) control.setAttribute('aria-invalid', 'true');
  else control.removeAttribute('aria-invalid');
}

/** Clear every field error in `form`. */
export function clearErrors(form) {
  for (const control of form.querySelectorAll('input, select, textarea')) fieldError(control, null);
  for (const box of form.querySelectorAll('.form-error')) box.hidden = true;
}

/**
 * Show an API error next to the field it names (`data-api-field`, or the control's id), or
 * in the form's error box when it names none here. Returns the control it went to.
 */
export function showApiError(form, error) {
  const named = error.field
    && ([...form.querySelectorAll('[data-api-field]')].find((c) => c.dataset.apiField === error.field)
      || form.querySelector(`#${CSS.escape(error.field)}`));
  if (named) {
    fieldError(named, error.message);
    named.focus();
    return named;
  }
  const box = form.querySelector('.form-error');
  if (box) {
    box.textContent = error.message;
    box.hidden = false;
  }
  return null;
}
