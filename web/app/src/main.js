// The app's shell: the key form, the navigation, the language, and the routes (in the
// URL's hash, so the edge serves one page): #/key, #/setup[/<session>], #/desk[/...]
// (desk.js).

import { auth, whoami, ApiError } from './api.js';
import { h, fill, field, fieldError } from './dom.js';
import { t, lang, setLang } from './i18n.js';
import { wizard } from './wizard.js';
import { desk } from './desk.js';

const main = document.getElementById('main');
let leaving = null;

/** The route after the key form. */
let wanted = '#/setup';
/** Why the key form is shown again (a key the API refused), until a key is accepted. */
let notice = null;

function navigation() {
  const nav = document.getElementById('nav');
  const here = location.hash || '#/setup';
  const link = (href, text) => h('a', {
    href, 'aria-current': here.startsWith(href) ? 'page' : null,
  }, text);
  fill(nav, auth.key() ? [link('#/setup', t('nav.setup')), link('#/desk', t('nav.desk'))] : []);
  const signout = document.getElementById('signout');
  signout.hidden = !auth.key();
  signout.textContent = t('nav.signout');
  document.getElementById('lang-label').textContent = t('nav.language');
  document.querySelector('.skip').textContent = t('nav.skip');
  document.documentElement.lang = lang();
}

function keyForm(notice) {
  const form = h('form', { class: 'card narrow', novalidate: true },
    h('h1', {}, t('key.title')),
    h('p', {}, t('key.intro')),
    notice ? h('p', { class: 'notice', role: 'status' }, notice) : null,
    field({ id: 'key', label: t('key.label'), type: 'password', autocomplete: 'off', required: true, hint: t('key.hint') }),
    h('button', { type: 'submit', class: 'primary' }, t('key.submit')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const input = form.querySelector('#key');
    const key = input.value.trim();
    fieldError(input, null);
    if (!key) {
      fieldError(input, t('key.required'));
      input.focus();
      return;
    }
    try {
      auth.signIn(key, await whoami(key));
      notice = null;
      location.hash = wanted === '#/key' ? '#/setup' : wanted;
      render();
    } catch (error) {
      fieldError(input, error instanceof ApiError && error.status === 401 ? t('key.wrong') : error.message);
      input.focus();
    }
  });
  return form;
}

/** A route segment decoded; a malformed escape (a hand-edited URL) stays as typed. */
function decoded(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

function render() {
  if (leaving) leaving();
  leaving = null;
  navigation();
  const route = (location.hash || '#/setup').slice(2).split('/').map(decoded);
  if (!auth.key() || route[0] === 'key') {
    if (route[0] !== 'key') wanted = location.hash || '#/setup';
    fill(main, keyForm(notice));
    main.querySelector('#key').focus();
    return;
  }
  const view = route[0] === 'desk' ? desk(route.slice(1)) : wizard(route[1]);
  leaving = view.leave;
  fill(main, view.element);
  const heading = main.querySelector('h1');
  if (heading) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
}

auth.onUnauthorized(() => {
  notice = t('key.expired');
  wanted = location.hash && location.hash !== '#/key' ? location.hash : '#/setup';
  if (location.hash === '#/key') render();
  else location.hash = '#/key';
});

document.getElementById('signout').addEventListener('click', () => {
  auth.signOut();
  notice = null;
  location.hash = '#/key';
});
const select = document.getElementById('lang');
select.value = lang();
select.addEventListener('change', () => {
  setLang(select.value);
  render();
});
window.addEventListener('hashchange', render);
render();
