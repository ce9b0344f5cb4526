// mcpgw token console: one module, no dependencies, no build step.
//
// Safety rules this file keeps (token-api/src/console.rs tests some of them):
// - every string from the server or the user reaches the DOM as a text node or
//   an attribute value, never as markup (the page's CSP enforces Trusted Types);
// - the credential lives in sessionStorage only and is sent only in the
//   Authorization header of same-origin API calls;
// - a minted token lives in the DOM of its "shown once" panel and in no
//   variable outside it; leaving the panel removes it.

const STORE_KEY = 'mcpgw.console.credential';
const PAGE_SIZES = [25, 50, 100];
const WARN_DAYS = 7;
const NAMED_METHODS = ['tools/call', 'prompts/get', 'resources/read'];

// ---------------------------------------------------------------------------
// Pure rules, the same as the API's (exported for the browser tests).

/** Rust's `{:?}` of a string, as the API writes it in its messages. */
export function rustDebug(s) {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (ch === '"' || ch === '\\') out += '\\' + ch;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\0') out += '\\0';
    else if (c < 0x20 || (c >= 0x7f && c < 0xa0)) out += '\\u{' + c.toString(16) + '}';
    else out += ch;
  }
  return out + '"';
}

function scopeReason(s) {
  if (new TextEncoder().encode(s).length > 256) return 'longer than 256 characters';
  if (/[\p{White_Space}\p{Cc}]/u.test(s)) return 'must not contain spaces or control characters';
  if (s === 'tokens:read' || s === 'tokens:write') return null;
  if (!s.startsWith('mcp:')) return 'use mcp:<method>[:<name>], tokens:read or tokens:write';
  const rest = s.slice(4);
  const colon = rest.indexOf(':');
  const method = colon < 0 ? rest : rest.slice(0, colon);
  const name = colon < 0 ? null : rest.slice(colon + 1);
  if (method === '') return 'the method after "mcp:" is empty (use mcp:* for all)';
  if (!/^[A-Za-z0-9/_.*-]+$/.test(method)) {
    return "a method has only letters, digits, '/', '_', '-', '.' and '*'";
  }
  if (name !== null) {
    if (!NAMED_METHODS.includes(method)) {
      return 'a name part is allowed only after tools/call, prompts/get or resources/read';
    }
    if (name === '') return 'the name after the method is empty (use * for all)';
  }
  return null;
}

/** The API's `invalid_scopes` message for `s`, or null when `s` is a valid scope. */
export function scopeError(s) {
  const reason = scopeReason(s);
  if (reason === null) return null;
  return `invalid scope ${rustDebug(Array.from(s).slice(0, 80).join(''))}: ${reason}`;
}

/** A tenant or project label's problem, or null (the API's `invalid_<field>` rule). */
export function labelError(field, v) {
  if (v === '') return `${field} must not be empty`;
  if (v.startsWith('_')) return `${field} ${rustDebug(v)} is reserved: names starting with "_" belong to the gateway`;
  if (v.length > 63) return `${field} ${rustDebug(v)} is ${v.length} bytes long; the limit is 63`;
  const bad = Array.from(v).find((c) => !/[a-z0-9_-]/.test(c));
  if (bad !== undefined) {
    const hint = /[A-Z]/.test(bad) ? ' (use lower case)' : '';
    return `${field} ${rustDebug(v)} has '${bad}' at byte ${new TextEncoder().encode(v.slice(0, v.indexOf(bad))).length}; only a-z, 0-9, '_' and '-' are allowed${hint}`;
  }
  return null;
}

/** A token name's problem, or null (1–64 printable characters, no surrounding blanks). */
export function nameError(v) {
  const n = Array.from(v).length;
  if (n === 0) return 'name must not be empty';
  if (n > 64) return `name is ${n} characters long; the limit is 64`;
  if (/\p{Cc}/u.test(v)) return 'name has a control character; use printable characters';
  if (v.trim() !== v) return 'name must not start or end with whitespace';
  return null;
}

/** Seconds of a `30d` / `12h` / `45m` span; Infinity for `never`; null if unreadable. */
export function spanSeconds(s) {
  if (s === 'never') return Infinity;
  const m = /^(\d{1,9})([dhm])$/.exec(s || '');
  if (!m) return null;
  return Number(m[1]) * { d: 86400, h: 3600, m: 60 }[m[2]];
}

/** Whole days and hours until `iso`, and whether it deserves a warning. */
export function expiryInfo(iso, nowMs) {
  if (!iso) return { text: 'never expires', warn: false, past: false };
  const ms = Date.parse(iso) - nowMs;
  if (ms <= 0) return { text: `expired ${ago(-ms)}`, warn: false, past: true };
  return { text: `expires in ${span(ms)}`, warn: ms < WARN_DAYS * 86400e3, past: false };
}

function span(ms) {
  const min = Math.round(ms / 60e3);
  if (min < 60) return `${Math.max(min, 1)} min`;
  const h = Math.round(ms / 3600e3);
  if (h < 48) return `${h} h`;
  return `${Math.round(ms / 86400e3)} days`;
}

function ago(ms) {
  return `${span(ms)} ago`;
}

/** `2026-11-23 18:40 UTC`. */
export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
}

/** Ready-to-paste client configurations for a token at a gateway URL. */
export function clientConfigs(url, token, serverName) {
  const auth = `Bearer ${token}`;
  const json = (v) => JSON.stringify(v, null, 2);
  const init = JSON.stringify({
    jsonrpc: '2.0', id: 1, method: 'initialize',
    params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'curl', version: '1' } },
  });
  return [
    {
      id: 'claude', title: 'Claude Desktop', file: 'claude_desktop_config.json',
      text: json({ mcpServers: { [serverName]: { command: 'npx', args: ['mcp-remote', url, '--header', `Authorization: ${auth}`] } } }),
    },
    {
      id: 'cursor', title: 'Cursor', file: '.cursor/mcp.json',
      text: json({ mcpServers: { [serverName]: { url, headers: { Authorization: auth } } } }),
    },
    {
      id: 'vscode', title: 'VS Code', file: '.vscode/mcp.json',
      text: json({ servers: { [serverName]: { type: 'http', url, headers: { Authorization: auth } } } }),
    },
    {
      id: 'curl', title: 'curl', file: 'a shell',
      text: `curl -s ${shellQuote(url)} \\\n  -H ${shellQuote('Authorization: ' + auth)} \\\n  -H 'content-type: application/json' \\\n  -H 'accept: application/json, text/event-stream' \\\n  -d ${shellQuote(init)}`,
    },
  ];
}

function shellQuote(s) {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

/** A server name for client configurations: the token's tenant, lower-case and safe. */
export function serverName(tenant) {
  return `${tenant}-via-gateway`.replace(/[^a-z0-9_-]/g, '-');
}

// ---------------------------------------------------------------------------
// DOM helpers: strings only ever become text.

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'value') el.value = v;
    else if (k === 'checked' || k === 'disabled' || k === 'hidden' || k === 'readOnly' || k === 'required' || k === 'selected') el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const $ = (id) => document.getElementById(id);

let fieldSeq = 0;
/** A labelled field: label, control, hint and an error slot tied with aria-describedby. */
function field(labelText, control, hint) {
  const id = control.id || `f${++fieldSeq}`;
  control.id = id;
  const err = h('p', { class: 'field-error', id: `${id}-err`, hidden: true });
  const described = [`${id}-err`];
  let hintEl = null;
  if (hint) {
    hintEl = h('p', { class: 'hint', id: `${id}-hint` }, hint);
    described.push(`${id}-hint`);
  }
  control.setAttribute('aria-describedby', described.join(' '));
  const wrap = h('div', { class: 'field' }, h('label', { for: id }, labelText), control, hintEl, err);
  wrap.showError = (msg) => {
    err.textContent = msg || '';
    err.hidden = !msg;
    if (msg) control.setAttribute('aria-invalid', 'true');
    else control.removeAttribute('aria-invalid');
  };
  return wrap;
}

function errorBox(e) {
  const box = h('div', { class: 'error', role: 'alert' });
  if (e instanceof ApiFailure) append(box, [h('strong', {}, `${e.status} ${e.code}`), ': ', e.message]);
  else append(box, String(e && e.message ? e.message : e));
  return box;
}

// A notice outlives the one view change it caused (signed in, revoked, deleted), not the next.
let noticeFresh = false;
function notice(msg) {
  $('notice').textContent = msg;
  noticeFresh = true;
}

function badge(status) {
  return h('span', { class: `badge ${status}` }, status);
}

function expiryCell(t) {
  const info = expiryInfo(t.expires_at, Date.now());
  const warn = info.warn && t.status === 'active';
  return h('span', { class: warn ? 'warn' : null, title: when(t.expires_at) },
    warn ? '⚠ ' : '', info.text);
}

// ---------------------------------------------------------------------------
// API access.

class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const session = {
  get credential() { return sessionStorage.getItem(STORE_KEY); },
  me: null,
};

async function call(method, path, { query, body, credential } = {}) {
  const cred = credential ?? session.credential;
  const qs = query ? new URLSearchParams(Object.entries(query).filter(([, v]) => v !== '' && v !== null && v !== undefined)).toString() : '';
  const headers = { Authorization: `Bearer ${cred}`, Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path + (qs ? `?${qs}` : ''), {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store', credentials: 'omit', redirect: 'error', referrerPolicy: 'no-referrer',
    });
  } catch (e) {
    throw new ApiFailure(0, 'unreachable', `the token API did not answer (${e.message}); is it running?`);
  }
  if (resp.status === 204) return null;
  let data = null;
  try { data = await resp.json(); } catch { /* not JSON: reported below */ }
  if (!resp.ok) {
    const err = data && data.error;
    const failure = new ApiFailure(resp.status, err ? err.code : `http_${resp.status}`, err ? err.message : `the API answered ${resp.status}`);
    // A credential that stopped working mid-session (revoked, expired): back to sign-in.
    if (resp.status === 401 && credential === undefined) signOut(`Signed out: ${failure.message}`);
    throw failure;
  }
  return data;
}

// ---------------------------------------------------------------------------
// Session.

function signOut(message) {
  sessionStorage.removeItem(STORE_KEY);
  session.me = null;
  renderChrome();
  go('#/signin');
  notice(message || 'Signed out.');
}

function renderChrome() {
  const me = session.me;
  $('nav').hidden = !me;
  $('signout').hidden = !me;
  $('who').textContent = '';
  if (!me) return;
  $('nav-tokens').hidden = !me.can_read;
  $('nav-audit').hidden = !me.can_read;
  $('nav-mint').hidden = !me.can_write;
  const p = me.principal;
  const rights = me.can_read && me.can_write ? 'read + write' : me.can_read ? 'read only' : 'write only';
  append($('who'), p.kind === 'admin'
    ? ['admin key · all tenants']
    : [`token ${p.token_id} · ${p.tenant}/${p.project} · ${rights}`]);
}

async function restoreSession() {
  if (!session.credential) return false;
  try {
    session.me = await call('GET', '/api/v1/whoami', { credential: session.credential });
  } catch (e) {
    sessionStorage.removeItem(STORE_KEY);
    notice(`Signed out: ${e.message}`);
    return false;
  }
  renderChrome();
  return true;
}

// ---------------------------------------------------------------------------
// Views.

function page(title, ...content) {
  const main = $('main');
  const h1 = h('h1', { tabindex: '-1' }, title);
  main.replaceChildren(h1, ...content.flat());
  return h1;
}

function viewSignIn() {
  const input = h('input', { type: 'password', id: 'credential', name: 'credential', autocomplete: 'off', spellcheck: 'false', required: true });
  const f = field('Admin key or management token', input,
    'A token needs tokens:read (to list) or tokens:write (to mint, revoke, delete). It is kept in this tab only and forgotten on sign-out or when the tab closes.');
  const out = h('div', { id: 'signin-result' });
  const form = h('form', { id: 'signin', class: 'card narrow', novalidate: true }, f,
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'), out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    out.replaceChildren();
    const candidate = input.value.trim();
    if (!candidate) { f.showError('Paste the admin key or a token.'); input.focus(); return; }
    f.showError('');
    let me;
    try {
      me = await call('GET', '/api/v1/whoami', { credential: candidate });
    } catch (e) {
      out.append(errorBox(e));
      input.select();
      return;
    }
    if (!me.can_read && !me.can_write) {
      out.append(errorBox('This token holds neither tokens:read nor tokens:write; sign in with the admin key or a token that holds one of them.'));
      return;
    }
    input.value = '';
    sessionStorage.setItem(STORE_KEY, candidate);
    session.me = me;
    renderChrome();
    notice('Signed in.');
    go(me.can_read ? '#/tokens' : '#/mint');
  });
  const h1 = page('Sign in', form);
  input.focus();
  return h1;
}

/** Filters that a token principal cannot change are fixed to its own tenant + project. */
function ownScope() {
  const p = session.me.principal;
  return p.kind === 'token' ? { tenant: p.tenant, project: p.project } : null;
}

function filterForm(params, fields, onApply) {
  const own = ownScope();
  const controls = {};
  const parts = [];
  for (const [name, label] of fields) {
    let control;
    if (name === 'status') {
      control = h('select', { id: `filter-${name}`, name },
        [['', 'live (active + expired)'], ['active', 'active'], ['expired', 'expired'], ['revoked', 'revoked'], ['all', 'all, revoked too']]
          .map(([v, t]) => h('option', { value: v, selected: (params.get(name) || '') === v }, t)));
    } else if (name === 'limit') {
      const current = Number(params.get('limit')) || 50;
      const sizes = PAGE_SIZES.includes(current) ? PAGE_SIZES : [...PAGE_SIZES, current].sort((a, b) => a - b);
      control = h('select', { id: `filter-${name}`, name },
        sizes.map((n) => h('option', { value: String(n), selected: current === n }, `${n} a page`)));
    } else {
      const fixed = own && own[name];
      control = h('input', { id: `filter-${name}`, name, value: fixed || params.get(name) || '', readOnly: Boolean(fixed), autocomplete: 'off', spellcheck: 'false', placeholder: 'any' });
    }
    controls[name] = control;
    parts.push(field(label, control));
  }
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filters', novalidate: true }, parts,
    h('button', { type: 'submit' }, 'Apply'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const next = new URLSearchParams();
    for (const [name, c] of Object.entries(controls)) if (c.value) next.set(name, c.value.trim());
    onApply(next);
  });
  return form;
}

function pager(state, reload) {
  const prev = h('button', { type: 'button', disabled: state.stack.length === 0, on: { click: () => { state.cursor = state.stack.pop() ?? null; reload(); } } }, '← Newer');
  const next = h('button', { type: 'button', id: 'next-page', disabled: !state.next, on: { click: () => { state.stack.push(state.cursor); state.cursor = state.next; reload(); } } }, 'Older →');
  return h('nav', { class: 'pager', 'aria-label': 'Pages' }, prev, h('span', {}, `page ${state.stack.length + 1}`), next);
}

function viewTokens(params) {
  const results = h('div', { id: 'results', 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Loading…'));
  const state = { cursor: null, stack: [], next: null };
  const reload = async () => {
    const status = params.get('status') || '';
    const query = {
      tenant: params.get('tenant'), project: params.get('project'), limit: params.get('limit') || 50,
      cursor: state.cursor,
    };
    if (status === 'all') query.include_revoked = 'true';
    else if (status) query.status = status;
    try {
      const data = await call('GET', '/api/v1/mcptokens', { query });
      state.next = data.next_cursor;
      results.replaceChildren(tokenTable(data.tokens), pager(state, reload));
    } catch (e) {
      results.replaceChildren(errorBox(e));
    }
  };
  const actions = session.me.can_write ? h('a', { class: 'button primary', href: '#/mint', id: 'mint-button' }, 'Mint a token') : null;
  const h1 = page('Tokens',
    h('div', { class: 'toolbar' }, actions),
    filterForm(params, [['tenant', 'Tenant'], ['project', 'Project'], ['status', 'Status'], ['limit', 'Page size']],
      (next) => go(`#/tokens?${next}`)),
    results);
  reload();
  return h1;
}

function tokenTable(tokens) {
  if (tokens.length === 0) return h('p', { class: 'empty' }, 'No tokens match these filters.');
  const head = ['Name', 'Tenant / project', 'Status', 'Scopes', 'Expiry', 'Last used', 'Created'];
  return h('table', { class: 'tokens' },
    h('caption', { class: 'sr-only' }, 'Tokens, newest first'),
    h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, tokens.map((t) => h('tr', { 'data-id': t.id },
      h('td', { 'data-label': 'Name' }, h('a', { href: `#/token/${encodeURIComponent(t.id)}`, class: 'token-name' }, t.name)),
      h('td', { 'data-label': 'Tenant / project' }, `${t.tenant} / ${t.project}`),
      h('td', { 'data-label': 'Status' }, badge(t.status)),
      h('td', { 'data-label': 'Scopes' }, scopeList(t.scopes)),
      h('td', { 'data-label': 'Expiry' }, expiryCell(t)),
      h('td', { 'data-label': 'Last used' }, t.last_used_at ? when(t.last_used_at) : 'never'),
      h('td', { 'data-label': 'Created' }, when(t.created_at)),
    ))));
}

function scopeList(scopes) {
  if (scopes.length === 0) return h('span', { class: 'muted' }, 'none (no MCP methods)');
  return h('ul', { class: 'scopes' }, scopes.map((s) => h('li', {}, h('code', {}, s))));
}

function viewToken(id) {
  const body = h('div', { id: 'detail' }, h('p', { class: 'muted' }, 'Loading…'));
  const h1 = page('Token', body);
  (async () => {
    let t;
    try {
      t = await call('GET', `/api/v1/mcptokens/${encodeURIComponent(id)}`);
    } catch (e) {
      body.replaceChildren(errorBox(e), h('p', {}, h('a', { href: '#/tokens' }, 'Back to the token list')));
      return;
    }
    h1.textContent = `Token ${t.name}`;
    const info = expiryInfo(t.expires_at, Date.now());
    const rows = [
      ['Id', h('code', {}, t.id)], ['Name', t.name], ['Tenant', t.tenant], ['Project', t.project],
      ['Status', badge(t.status)], ['Scopes', scopeList(t.scopes)], ['Token starts', h('code', {}, t.hint)],
      ['Created', `${when(t.created_at)} by ${t.created_by}`],
      ['Expires', h('span', { class: info.warn && t.status === 'active' ? 'warn' : null, id: 'expiry' },
        t.expires_at ? `${when(t.expires_at)} (${info.text})` : 'never', info.warn && t.status === 'active' ? ' ⚠ renew soon' : '')],
      ['Revoked', when(t.revoked_at)],
      ['Last used', t.last_used_at ? when(t.last_used_at) : 'never (not since it was minted)'],
    ];
    const dl = h('dl', { class: 'detail' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    const actions = h('div', { class: 'toolbar' });
    if (session.me.can_write && t.status !== 'revoked') {
      actions.append(h('button', { type: 'button', class: 'danger', id: 'revoke', on: { click: () => confirmRevoke(t) } }, 'Revoke…'));
    }
    if (session.me.can_write) {
      actions.append(h('button', { type: 'button', class: 'danger outline', id: 'delete', on: { click: () => confirmDelete(t) } }, 'Delete…'));
    }
    const events = h('div', { id: 'events' }, h('p', { class: 'muted' }, 'Loading…'));
    body.replaceChildren(dl, actions, h('h2', {}, 'What happened to it'), events,
      h('p', {}, h('a', { href: '#/tokens' }, '← All tokens')));
    try {
      const data = await call('GET', '/api/v1/audit', { query: { token_id: t.id, limit: 100 } });
      events.replaceChildren(eventTable(data.events, false));
    } catch (e) {
      events.replaceChildren(errorBox(e));
    }
  })();
  return h1;
}

function eventTable(events, withToken) {
  if (events.length === 0) return h('p', { class: 'empty' }, 'No events.');
  const head = ['When', 'Event', ...(withToken ? ['Token', 'Tenant / project'] : []), 'By', 'Details'];
  return h('table', { class: 'events' },
    h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, events.map((e) => h('tr', {},
      h('td', { 'data-label': 'When' }, when(e.at)),
      h('td', { 'data-label': 'Event' }, h('span', { class: `event ${e.event}` }, e.event.replace('_', ' '))),
      withToken ? [
        h('td', { 'data-label': 'Token' }, e.token_id
          ? h('a', { href: `#/token/${encodeURIComponent(e.token_id)}` }, e.token_name || e.token_id)
          : (e.token_name || '—')),
        h('td', { 'data-label': 'Tenant / project' }, `${e.tenant} / ${e.project}`),
      ] : [],
      h('td', { 'data-label': 'By' }, actorText(e.actor)),
      h('td', { 'data-label': 'Details' }, detailText(e.detail)),
    ))));
}

function actorText(actor) {
  if (actor.startsWith('McpToken:')) return h('span', { title: actor }, `token ${actor.slice(9, 21)}…`);
  return actor;
}

function detailText(d) {
  if (!d || typeof d !== 'object') return '';
  const parts = [];
  if (d.reason) parts.push(`reason: ${d.reason}`);
  if (d.scope) parts.push(`scope: ${d.scope}`);
  if (Array.isArray(d.scopes)) parts.push(`scopes: ${d.scopes.join(' ') || 'none'}`);
  if ('expires_at' in d) parts.push(`expires: ${d.expires_at ? when(d.expires_at) : 'never'}`);
  if (d.tenant && d.reason === 'tenant_mismatch') parts.push(`asked for ${d.tenant}/${d.project}`);
  return parts.join(' · ');
}

/** A modal confirmation; resolves true when confirmed. Escape or Cancel resolve false. */
function confirmDialog({ id, title, text, confirmLabel, extra }) {
  return new Promise((resolve) => {
    const dialog = h('dialog', { id, 'aria-labelledby': `${id}-title`, 'aria-describedby': `${id}-text` });
    const close = (v) => () => dialog.close(v);
    append(dialog, [
      h('h2', { id: `${id}-title` }, title), h('p', { id: `${id}-text` }, text), extra || null,
      h('div', { class: 'toolbar' },
        h('button', { type: 'button', class: 'danger', id: `${id}-confirm`, on: { click: close('confirm') } }, confirmLabel),
        h('button', { type: 'button', id: `${id}-cancel`, on: { click: close('cancel') } }, 'Cancel')),
    ]);
    dialog.addEventListener('close', () => {
      const ok = dialog.returnValue === 'confirm';
      dialog.remove();
      resolve(ok);
    });
    document.body.append(dialog);
    dialog.showModal();
    $(`${id}-cancel`).focus();
  });
}

async function confirmRevoke(t) {
  const reason = h('textarea', { name: 'reason', id: 'revoke-reason', rows: '2', maxlength: '500' });
  const ok = await confirmDialog({
    id: 'revoke-dialog', title: `Revoke ${t.name}?`,
    text: `Gateways refuse ${t.hint} within one revocation poll period. Revoking cannot be undone; the name becomes free again.`,
    confirmLabel: 'Revoke token',
    extra: field('Reason (optional, goes to the audit log)', reason),
  });
  if (!ok) return;
  const why = reason.value.trim();
  try {
    await call('POST', `/api/v1/mcptokens/${encodeURIComponent(t.id)}/revoke`, why ? { body: { reason: why } } : {});
    notice(`Revoked ${t.name}.`);
  } catch (e) {
    notice(`Revoke failed: ${e.message}`);
  }
  route();
}

async function confirmDelete(t) {
  const ok = await confirmDialog({
    id: 'delete-dialog', title: `Delete ${t.name}?`,
    text: `${t.name} disappears for good${t.status === 'active' ? ' and gateways stop accepting it within one poll period' : ''}. Its audit events stay.`,
    confirmLabel: 'Delete token',
  });
  if (!ok) return;
  try {
    await call('DELETE', `/api/v1/mcptokens/${encodeURIComponent(t.id)}`);
    notice(`Deleted ${t.name}.`);
    go('#/tokens');
  } catch (e) {
    notice(`Delete failed: ${e.message}`);
    route();
  }
}

function viewAudit(params) {
  const results = h('div', { id: 'results', 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Loading…'));
  const state = { cursor: null, stack: [], next: null };
  const reload = async () => {
    try {
      const data = await call('GET', '/api/v1/audit', {
        query: { tenant: params.get('tenant'), project: params.get('project'), limit: params.get('limit') || 50, cursor: state.cursor },
      });
      state.next = data.next_cursor;
      results.replaceChildren(eventTable(data.events, true), pager(state, reload));
    } catch (e) {
      results.replaceChildren(errorBox(e));
    }
  };
  const h1 = page('Audit log',
    filterForm(params, [['tenant', 'Tenant'], ['project', 'Project'], ['limit', 'Page size']],
      (next) => go(`#/audit?${next}`)),
    results);
  reload();
  return h1;
}

// ----- Mint

const PRESETS = [['1d', '1 day'], ['7d', '7 days'], ['30d', '30 days'], ['90d', '90 days'], ['365d', '1 year'], ['never', 'never expires']];

/** Builds one scope from its parts; the preview shows what the API will get. */
function scopeBuilder(scopes, onChange) {
  const kind = h('select', { id: 'scope-kind' },
    [['all', 'Every MCP method (mcp:*)'], ['method', 'MCP methods (glob)'], ['named', 'One tool, prompt or resource (glob)'],
      ['tokens:read', 'Manage tokens: read'], ['tokens:write', 'Manage tokens: write'], ['custom', 'Type a scope']]
      .map(([v, t]) => h('option', { value: v }, t)));
  const method = h('input', { id: 'scope-method', value: 'tools/list', autocomplete: 'off', spellcheck: 'false' });
  const namedMethod = h('select', { id: 'scope-named-method' }, NAMED_METHODS.map((m) => h('option', { value: m }, m)));
  const name = h('input', { id: 'scope-name', autocomplete: 'off', spellcheck: 'false', placeholder: 'e.g. search_* or whoami' });
  const custom = h('input', { id: 'scope-custom', autocomplete: 'off', spellcheck: 'false', placeholder: 'mcp:tools/call:whoami' });
  const fMethod = field('Method', method, 'e.g. tools/list, prompts/*, * for all');
  const fNamedMethod = field('Method', namedMethod);
  const fName = field('Name', name, 'tool or prompt name, or resource URI; * matches any run of characters');
  const fCustom = field('Scope', custom, 'mcp:<method>[:<name>], tokens:read or tokens:write');
  const preview = h('code', { id: 'scope-preview' });
  const problem = h('p', { class: 'field-error', id: 'scope-error', role: 'alert', hidden: true });
  const add = h('button', { type: 'button', id: 'scope-add' }, 'Add scope');
  const list = h('ul', { class: 'chips', id: 'scope-list', 'aria-label': 'Scopes of the new token' });

  const current = () => {
    switch (kind.value) {
      case 'all': return 'mcp:*';
      case 'method': return `mcp:${method.value.trim()}`;
      case 'named': return `mcp:${namedMethod.value}:${name.value.trim()}`;
      case 'custom': return custom.value.trim();
      default: return kind.value;
    }
  };
  const refresh = () => {
    fMethod.hidden = kind.value !== 'method';
    fNamedMethod.hidden = fName.hidden = kind.value !== 'named';
    fCustom.hidden = kind.value !== 'custom';
    const s = current();
    preview.textContent = s;
    const err = s === '' ? 'type a scope' : scopeError(s);
    const dup = !err && scopes.includes(s) ? `${s} is already in the list` : null;
    problem.textContent = err || dup || '';
    problem.hidden = !(err || dup);
    add.disabled = Boolean(err || dup);
  };
  const renderList = () => {
    list.replaceChildren(...scopes.map((s, i) => h('li', {},
      h('code', {}, s),
      h('button', { type: 'button', class: 'chip-remove', 'aria-label': `Remove scope ${s}`, on: { click: () => { scopes.splice(i, 1); renderList(); refresh(); onChange(); } } }, '×'))));
    if (scopes.length === 0) list.append(h('li', { class: 'muted' }, 'no scopes: the token can call no MCP method'));
  };
  for (const c of [kind, method, namedMethod, name, custom]) c.addEventListener('input', refresh);
  add.addEventListener('click', () => {
    const s = current();
    if (scopeError(s) || scopes.includes(s)) return;
    scopes.push(s);
    renderList();
    refresh();
    onChange();
  });
  renderList();
  refresh();
  return h('fieldset', { class: 'scope-builder', id: 'scope-builder' }, h('legend', {}, 'Scopes'), list,
    h('div', { class: 'builder-row' }, field('Add a scope', kind), fMethod, fNamedMethod, fName, fCustom),
    h('p', {}, 'Scope to add: ', preview), problem, add);
}

function viewMint() {
  const me = session.me;
  const own = ownScope();
  const maxSecs = spanSeconds(me.max_ttl);
  const tenant = h('input', { id: 'mint-tenant', name: 'tenant', value: own ? own.tenant : '', readOnly: Boolean(own), autocomplete: 'off', spellcheck: 'false', required: true });
  const project = h('input', { id: 'mint-project', name: 'project', value: own ? own.project : 'default', readOnly: Boolean(own), autocomplete: 'off', spellcheck: 'false' });
  const name = h('input', { id: 'mint-name', name: 'name', autocomplete: 'off', required: true, maxlength: '64' });
  const presets = PRESETS.filter(([v]) => spanSeconds(v) <= maxSecs);
  const expiry = h('select', { id: 'mint-expiry', name: 'expiry' },
    presets.map(([v, t]) => h('option', { value: v, selected: v === me.default_ttl }, v === me.default_ttl ? `${t} (default)` : t)),
    h('option', { value: 'date' }, 'until a date…'));
  const date = h('input', { id: 'mint-date', name: 'date', type: 'date' });
  const fDate = field('Expires on (00:00 UTC that day)', date);
  fDate.hidden = true;
  expiry.addEventListener('input', () => { fDate.hidden = expiry.value !== 'date'; });
  const mode = h('select', { id: 'mint-rbac', name: 'rbac' },
    h('option', { value: 'scopes' }, 'the scopes below'),
    own ? h('option', { value: 'clone' }, 'clone my scopes (rbac: clone)') : null,
    h('option', { value: 'empty' }, 'no MCP access (rbac: empty)'));
  const scopes = ['mcp:*'];
  const builder = scopeBuilder(scopes, () => {});
  mode.addEventListener('input', () => { builder.hidden = mode.value !== 'scopes'; });
  const fields = {
    tenant: field('Tenant', tenant, own ? 'a token mints in its own tenant' : 'lower-case letters, digits, _ and -'),
    project: field('Project', project),
    name: field('Name', name, 'unique among the live tokens of the tenant + project, e.g. laptop-alice'),
    expiry: field('Lifetime', expiry, `this API allows at most ${me.max_ttl}`),
  };
  const result = h('div', { id: 'mint-result' });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'mint-submit' }, 'Mint token');
  const form = h('form', { id: 'mint', class: 'card', novalidate: true },
    h('div', { class: 'grid' }, fields.tenant, fields.project, fields.name, fields.expiry, fDate),
    field('Scopes from', mode), builder, result, submit);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    result.replaceChildren();
    for (const f of [...Object.values(fields), fDate]) f.showError('');
    const problems = [
      ['tenant', labelError('tenant', tenant.value.trim())],
      ['project', project.value.trim() === '' ? null : labelError('project', project.value.trim())],
      ['name', nameError(name.value)],
    ].filter(([, e]) => e);
    if (expiry.value === 'date' && !date.value) problems.push(['date', 'pick a date, or another lifetime']);
    for (const [k, e] of problems) (k === 'date' ? fDate : fields[k]).showError(e);
    if (problems.length) {
      (problems[0][0] === 'date' ? date : { tenant, project, name }[problems[0][0]]).focus();
      return;
    }
    const body = { tenant: tenant.value.trim(), name: name.value };
    if (project.value.trim()) body.project = project.value.trim();
    body.ttl = expiry.value === 'date' ? date.value : expiry.value;
    if (mode.value === 'scopes') body.scopes = [...scopes];
    else body.rbac = mode.value;
    submit.disabled = true;
    try {
      const created = await call('POST', '/api/v1/mcptokens', { body });
      showOnce(created);
    } catch (e) {
      const m = /^invalid_(tenant|project|name|ttl)$/.exec(e.code);
      if (m) fields[m[1] === 'ttl' ? 'expiry' : m[1]].showError(`${e.code}: ${e.message}`);
      if (e.code === 'name_taken') fields.name.showError(`${e.code}: ${e.message}`);
      result.replaceChildren(errorBox(e));
      submit.disabled = false;
    }
  });
  const h1 = page('Mint a token', form);
  (own ? name : tenant).focus();
  return h1;
}

async function copyText(text, what) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No async clipboard (permission, insecure context): the selection route.
    const ta = h('textarea', { class: 'offscreen', readOnly: true, 'aria-hidden': 'true' });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    const ok = document.execCommand('copy');
    ta.remove();
    if (!ok) { notice(`Could not copy; select the ${what} and copy it by hand.`); return; }
  }
  notice(`Copied the ${what}.`);
}

/** The minted token, shown this once. Nothing outside this panel holds it. */
function showOnce(created) {
  const me = session.me;
  const tokenEl = h('code', { id: 'new-token', class: 'secret' }, created.token);
  const url = h('input', { id: 'gateway-url', type: 'url', value: me.gateway_url || '', placeholder: 'https://mcp.example.com/mcp', autocomplete: 'off', spellcheck: 'false' });
  const configs = h('div', { id: 'configs' });
  const renderConfigs = () => {
    const u = url.value.trim() || 'https://<your gateway>/mcp';
    configs.replaceChildren(...clientConfigs(u, tokenEl.textContent, serverName(created.tenant)).map((c) => {
      const pre = h('pre', { id: `config-${c.id}`, tabindex: '0' }, c.text);
      return h('section', { class: 'config', 'aria-labelledby': `config-${c.id}-title` },
        h('div', { class: 'config-head' },
          h('h3', { id: `config-${c.id}-title` }, c.title, h('span', { class: 'muted' }, ` — ${c.file}`)),
          h('button', { type: 'button', id: `copy-${c.id}`, on: { click: () => copyText(pre.textContent, `${c.title} configuration`) } }, 'Copy')),
        pre);
    }));
  };
  url.addEventListener('input', renderConfigs);
  renderConfigs();
  const done = h('button', { type: 'button', class: 'primary', id: 'done', on: { click: () => {
    panel.remove();
    notice('');
    noticeFresh = false;
    go(me.can_read ? `#/token/${encodeURIComponent(created.id)}` : '#/mint');
  } } }, 'I have copied it — done');
  const panel = h('section', { class: 'card once', id: 'shown-once', 'aria-labelledby': 'once-title' },
    h('p', { class: 'warn', role: 'note' }, '⚠ Copy it now: this is the only time it is shown. The API keeps only its SHA-256.'),
    h('div', { class: 'secret-row' }, tokenEl,
      h('button', { type: 'button', id: 'copy-token', class: 'primary', on: { click: () => copyText(tokenEl.textContent, 'token') } }, 'Copy token')),
    h('p', {}, `Tenant ${created.tenant}, project ${created.project}, ${created.expires_at ? `expires ${when(created.expires_at)}` : 'never expires'}; scopes: ${created.scopes.join(' ') || 'none'}.`),
    field('Gateway MCP URL', url, me.gateway_url ? 'set by the operator (variable gateway_url); change it here if clients reach the gateway elsewhere' : 'the operator did not set gateway_url: type the URL clients use'),
    configs, done);
  const h1 = page(`Token ${created.name} minted`, panel);
  h1.id = 'once-title';
  h1.focus();
}

// ---------------------------------------------------------------------------
// Router: #/signin, #/tokens?…, #/token/<id>, #/mint, #/audit?…

/** Shows `hash`, also when it is already the current one (no hashchange then). */
function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function route() {
  const hash = location.hash || '#/';
  const [path, qs] = hash.slice(1).split('?');
  const params = new URLSearchParams(qs || '');
  if (!noticeFresh) $('notice').textContent = '';
  noticeFresh = false;
  if (!session.me) {
    viewSignIn();
    return;
  }
  let h1;
  const me = session.me;
  const home = me.can_read ? '#/tokens' : '#/mint';
  if (path === '/tokens' && me.can_read) h1 = viewTokens(params);
  else if (path.startsWith('/token/') && me.can_read) h1 = viewToken(decodeURIComponent(path.slice(7)));
  else if (path === '/mint' && me.can_write) h1 = viewMint();
  else if (path === '/audit' && me.can_read) h1 = viewAudit(params);
  else { location.replace(home); return; }
  for (const [id, p] of [['nav-tokens', '/tokens'], ['nav-mint', '/mint'], ['nav-audit', '/audit']]) {
    if (path === p) $(id).setAttribute('aria-current', 'page');
    else $(id).removeAttribute('aria-current');
  }
  if (path !== '/mint' && h1) h1.focus();
}

async function start() {
  $('signout').addEventListener('click', () => signOut('Signed out; the credential is forgotten.'));
  window.addEventListener('hashchange', route);
  await restoreSession();
  route();
}

if (typeof document !== 'undefined' && document.getElementById('main')) start();
