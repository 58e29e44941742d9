// The edge's API from the browser: the key (entered once per tab, kept in sessionStorage,
// sent as a bearer token), JSON calls whose errors keep the API's status and field, and
// server-sent events read with fetch (EventSource cannot send the key).

const KEY = 'funnelhub.key';
const WHO = 'funnelhub.who';
const TENANT = 'funnelhub.tenant';

/** A tenant id as the edge accepts it (`check_tenant_id`). */
export const TENANT_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** An error the API answered: its status, code (`error`), message and the field it names. */
export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error;
    this.field = body && body.field;
  }
}

let unauthorized = () => {};

export const auth = {
  key: () => sessionStorage.getItem(KEY),
  /** What whoami said of the key: {kind: 'operator'} or {kind: 'tenant', tenant_id, scope}. */
  who: () => JSON.parse(sessionStorage.getItem(WHO) || 'null'),
  operator: () => auth.who()?.kind === 'operator',
  /** The tenant the app works on: the key's own, or the one an operator chose. */
  tenant: () => (auth.operator() ? sessionStorage.getItem(TENANT) || '' : auth.who()?.tenant_id || ''),
  chooseTenant: (id) => sessionStorage.setItem(TENANT, id),
  signIn(key, who) {
    sessionStorage.setItem(KEY, key);
    sessionStorage.setItem(WHO, JSON.stringify(who));
  },
  signOut() {
    for (const k of [KEY, WHO, TENANT]) sessionStorage.removeItem(k);
  },
  /** Called when the API answers 401: the key is gone or wrong. */
  onUnauthorized(callback) {
    unauthorized = callback;
  },
};

function headers(extra = {}) {
  const out = { Authorization: `Bearer ${auth.key() || ''}`, ...extra };
  if (auth.operator() && auth.tenant()) out['X-Funnelhub-Tenant'] = auth.tenant();
  return out;
}

/** What whoami says of `key` (without storing it); throws ApiError(401) for a wrong one. */
export async function whoami(key) {
  const response = await fetch('/api/v1/whoami', { headers: { Authorization: `Bearer ${key}` } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

/** A JSON call. `body`: an object (sent as JSON), FormData, or undefined. */
export async function call(method, path, body, { signal } = {}) {
  const init = { method, signal, headers: headers() };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({}));
  if (response.status === 401) {
    auth.signOut();
    unauthorized();
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** A binary resource (a screenshot) as an object URL the page may show. */
export async function blobUrl(path) {
  const response = await fetch(path, { headers: headers() });
  if (response.status === 401) {
    auth.signOut();
    unauthorized();
  }
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => ({})));
  return URL.createObjectURL(await response.blob());
}

/**
 * Follow a server-sent event stream: `onEvent(name, data)` for each event, reconnecting
 * after a drop (1 s, then up to 15 s), until `signal` aborts.
 */
export async function follow(path, onEvent, signal, onState = () => {}) {
  let wait = 1000;
  while (!signal.aborted) {
    try {
      const response = await fetch(path, { headers: headers({ Accept: 'text/event-stream' }), signal });
      if (response.status === 401) {
        auth.signOut();
        unauthorized();
        return;
      }
      if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => ({})));
      onState('open');
      wait = 1000;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let name = 'message';
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) name = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          }
          if (data.length) onEvent(name, data.join('\n'));
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof ApiError && e.status === 404) {
        onState('gone');
        return;
      }
    }
    if (signal.aborted) return;
    onState('reconnecting');
    await new Promise((resolve) => setTimeout(resolve, wait));
    wait = Math.min(wait * 2, 15000);
  }
}
