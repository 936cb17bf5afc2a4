// The Strongroom console: one script for every page, served by the vault itself.
//
// It talks to the vault's own /v1 API with the session cookie, which no script can read.
// Rules kept here: text from people (reasons, comments) is only ever set as text, never as
// markup; a revealed card number lives in one text node for at most 60 seconds and is wiped
// on leaving the page; nothing is written to storage, the URL or history; every change sends
// the session's CSRF token; the page's own polling says so, and does not keep an idle
// session alive.
'use strict';

const IDLE_SECONDS = 15 * 60;
const REVEAL_SECONDS = 60;
const POLL_MS = 5000;

const session = { csrf: null, me: null, expiresAt: null, idleUntil: null };
const revealed = new Set();

// ---- small helpers ---------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'text') el.textContent = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
  for (const child of children) {
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function main() {
  return document.getElementById('main');
}

function show(...nodes) {
  const m = main();
  m.replaceChildren(...nodes);
}

function notice(text, kind) {
  const el = document.getElementById('notice');
  el.textContent = text;
  el.className = 'notice ' + (kind || 'info');
  el.hidden = !text;
}

function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return d.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
  });
}

function countdown(deadline, label) {
  const el = h('span', { class: 'countdown', 'data-deadline': deadline, 'data-label': label || '' });
  drawCountdown(el, Date.now());
  return el;
}

function drawCountdown(el, now) {
  const left = Math.round((Date.parse(el.dataset.deadline) - now) / 1000);
  const label = el.dataset.label;
  if (left <= 0) {
    el.textContent = (label ? label + ' ' : '') + 'ended';
    el.classList.add('over');
    return;
  }
  const hours = Math.floor(left / 3600);
  const minutes = Math.floor((left % 3600) / 60);
  const seconds = String(left % 60).padStart(2, '0');
  const text = hours > 0 ? `${hours} h ${String(minutes).padStart(2, '0')} min` : `${minutes}:${seconds}`;
  el.textContent = (label ? label + ' ' : '') + 'in ' + text;
}

function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll('[data-deadline]')) drawCountdown(el, now);
  if (session.idleUntil && now > session.idleUntil) ended();
}

function problemText(body, status) {
  if (body && body.detail) return `${body.detail} (${body.code})`;
  return `The vault answered ${status}.`;
}

function ended() {
  session.idleUntil = null;
  wipeRevealed();
  location.replace('/console?ended=1');
}

async function api(method, path, body, options) {
  const opts = options || {};
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && session.csrf) headers['X-CSRF-Token'] = session.csrf;
  if (opts.poll) headers['X-Strongroom-Poll'] = '1';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
      redirect: 'error',
    });
  } catch (e) {
    return { ok: false, status: 0, body: { detail: 'The vault could not be reached.', code: 'network' } };
  }
  let data = null;
  if (response.status !== 204) {
    try { data = await response.json(); } catch (e) { data = null; }
  }
  if (response.status === 401 && !opts.quiet) {
    ended();
  } else if (!opts.poll && response.ok && session.expiresAt) {
    // The person did something: the vault moved the idle limit, so does the page.
    session.idleUntil = Math.min(Date.now() + IDLE_SECONDS * 1000, session.expiresAt);
  }
  return { ok: response.ok, status: response.status, body: data };
}

function home(roles) {
  if (roles.includes('requester')) return '/console/requests';
  if (roles.includes('approver')) return '/console/inbox';
  if (roles.includes('auditor')) return '/console/audit';
  return '/console/grants';
}

const PAGES = [
  { page: 'requests', title: 'My requests', roles: ['requester'] },
  { page: 'inbox', title: 'Approvals', roles: ['approver'] },
  { page: 'grants', title: 'Active grants', roles: ['admin', 'approver'] },
  { page: 'audit', title: 'Audit trail', roles: ['auditor'] },
  { page: 'report', title: 'Usage report', roles: ['auditor'] },
];

function allowed(page) {
  const entry = PAGES.find((p) => p.page === page);
  return entry && entry.roles.some((r) => session.me.roles.includes(r));
}

function chrome(current) {
  const nav = document.getElementById('nav');
  nav.replaceChildren(...PAGES.filter((p) => allowed(p.page)).map((p) => h('a', {
    href: '/console/' + p.page,
    'aria-current': p.page === current ? 'page' : null,
  }, p.title)));
  nav.hidden = false;
  document.getElementById('who-name').textContent =
    `${session.me.name} (${session.me.roles.join(', ')})`;
  const expiry = document.getElementById('who-expiry');
  expiry.replaceChildren(countdown(new Date(session.expiresAt).toISOString(), 'session ends'));
  document.getElementById('who').hidden = false;
  document.getElementById('sign-out').addEventListener('click', signOut);
}

async function signOut() {
  wipeRevealed();
  await api('DELETE', '/v1/sessions/current', undefined, { quiet: true });
  location.replace('/console?signed_out=1');
}

function field(label, control, hint) {
  const id = control.id;
  const hintId = hint ? id + '-hint' : null;
  if (hintId) control.setAttribute('aria-describedby', hintId);
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    control,
    hint ? h('p', { class: 'hint', id: hintId }, hint) : null);
}

function errorBox(id) {
  return h('p', { id, class: 'error', role: 'alert', hidden: true });
}

function setError(el, text) {
  el.textContent = text || '';
  el.hidden = !text;
}

// ---- sign in ---------------------------------------------------------------------------

async function signInPage() {
  document.title = 'Sign in · Strongroom';
  const params = new URLSearchParams(location.search);
  const current = await api('GET', '/v1/sessions/current', undefined, { quiet: true });
  if (current.ok) {
    location.replace(home(current.body.principal.roles));
    return;
  }
  if (params.has('ended')) notice('Your session ended. Sign in again.', 'warn');
  if (params.has('signed_out')) notice('You are signed out.', 'info');
  const key = h('input', { id: 'api-key', name: 'api-key', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' });
  const code = h('input', { id: 'totp', name: 'totp', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', maxlength: '6' });
  const error = errorBox('sign-in-error');
  const form = h('form', { id: 'sign-in', class: 'panel narrow', novalidate: true },
    h('h1', {}, 'Sign in'),
    field('API key', key, 'Your personal key (sr_…). It is sent once and not kept by this page.'),
    field('One-time code', code, 'The 6-digit code from your authenticator, if you have one.'),
    error,
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    setError(error, '');
    const body = { api_key: key.value.trim() };
    if (code.value.trim()) body.totp = code.value.trim();
    const r = await api('POST', '/v1/sessions', body, { quiet: true });
    key.value = '';
    code.value = '';
    if (!r.ok) {
      setError(error, problemText(r.body, r.status));
      key.focus();
      return;
    }
    location.replace(home(r.body.principal.roles));
  });
  show(form);
  key.focus();
}

// ---- requester -------------------------------------------------------------------------

function policyFor(policies, purpose) {
  return policies.find((p) => p.purposes.includes(purpose) && p.roles.includes('requester'));
}

function limitsText(p) {
  if (!p) return '';
  const parts = [
    p.approvals === 0 ? 'approved at once' : `needs ${p.approvals} approval${p.approvals > 1 ? 's' : ''}`,
    `up to ${Math.floor(p.max_duration_seconds / 60)} minutes`,
    `up to ${p.max_uses} use${p.max_uses > 1 ? 's' : ''}`,
    `up to ${p.max_tokens} token${p.max_tokens > 1 ? 's' : ''}`,
  ];
  if (p.hours_utc) parts.push(`only ${p.hours_utc} UTC`);
  if (p.source_cidrs) parts.push(`only from ${p.source_cidrs.join(', ')}`);
  if (p.mfa) parts.push('one-time code required');
  return `Policy ${p.name}: ${parts.join(' · ')}.`;
}

async function requestsPage() {
  const policies = (await api('GET', '/v1/policies')).body?.policies || [];
  const purposes = [];
  for (const p of policies.filter((p) => p.roles.includes('requester'))) {
    for (const purpose of p.purposes) if (!purposes.includes(purpose)) purposes.push(purpose);
  }
  const tokens = h('textarea', { id: 'tokens', rows: '3', required: true, spellcheck: 'false', autocomplete: 'off' });
  const purpose = h('select', { id: 'purpose', required: true },
    purposes.map((p) => h('option', { value: p }, p.replace(/_/g, ' '))));
  const limits = h('p', { id: 'policy-limits', class: 'limits', 'aria-live': 'polite' });
  const reason = h('textarea', { id: 'reason', rows: '2', maxlength: '1000', required: true });
  const minutes = h('input', { id: 'duration', type: 'number', min: '1', value: '15', required: true });
  const uses = h('input', { id: 'uses', type: 'number', min: '1', value: '1', required: true });
  const code = h('input', { id: 'request-totp', inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: '6' });
  const codeField = field('One-time code', code, 'Required by this policy.');
  const error = errorBox('request-error');
  const update = () => {
    const p = policyFor(policies, purpose.value);
    limits.textContent = limitsText(p);
    if (p) {
      minutes.max = String(Math.floor(p.max_duration_seconds / 60));
      uses.max = String(p.max_uses);
    }
    codeField.hidden = !(p && p.mfa);
  };
  purpose.addEventListener('change', update);
  const form = h('form', { id: 'request-form', class: 'panel', novalidate: true },
    h('h2', {}, 'Request access'),
    field('Tokens', tokens, 'One token per line, as your tools show them. Never a card number.'),
    field('Purpose', purpose),
    limits,
    field('Reason', reason, 'Why you need to see these cards: a case or chargeback number helps the approver.'),
    h('div', { class: 'row' }, field('Duration (minutes)', minutes), field('Uses', uses)),
    codeField,
    error,
    h('button', { type: 'submit', class: 'primary' }, 'Request access'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    setError(error, '');
    const list = tokens.value.split(/[\s,]+/).map((t) => t.trim()).filter(Boolean);
    const body = {
      tokens: list,
      purpose: purpose.value,
      reason: reason.value.trim(),
      duration_seconds: Math.round(Number(minutes.value) * 60),
      max_uses: Number(uses.value),
    };
    if (code.value.trim()) body.totp = code.value.trim();
    const r = await api('POST', '/v1/access-requests', body);
    code.value = '';
    if (!r.ok) {
      setError(error, problemText(r.body, r.status));
      return;
    }
    tokens.value = '';
    reason.value = '';
    notice(r.body.status === 'approved' ? 'Approved at once by policy.' : 'Request sent to the approvers.', 'info');
    await refreshRequests(true);
  });
  update();
  const list = h('section', { id: 'my-requests', 'aria-labelledby': 'my-requests-title' },
    h('h2', { id: 'my-requests-title' }, 'Your requests'),
    h('div', { id: 'request-list' }));
  show(h('h1', {}, 'My requests'), h('div', { class: 'split' }, form, list));
  await refreshRequests(true);
  setInterval(() => refreshRequests(false), POLL_MS);
}

let requestsSignature = '';

async function refreshRequests(force) {
  const poll = !force;
  const [requests, grants] = await Promise.all([
    api('GET', '/v1/access-requests?limit=50', undefined, { poll }),
    api('GET', '/v1/grants?limit=100', undefined, { poll }),
  ]);
  if (!requests.ok || !grants.ok) return;
  const byRequest = new Map(grants.body.grants.map((g) => [g.request_id, g]));
  const signature = JSON.stringify(requests.body.requests.map((r) => {
    const g = byRequest.get(r.id);
    return [r.id, r.status, g && g.uses, g && g.revoked_at];
  }));
  // Never redraw under a card number on screen or under the person's hands.
  if (!force && (signature === requestsSignature || revealed.size > 0)) return;
  requestsSignature = signature;
  const target = document.getElementById('request-list');
  if (!target) return;
  if (requests.body.requests.length === 0) {
    target.replaceChildren(h('p', { class: 'muted' }, 'No requests yet.'));
    return;
  }
  target.replaceChildren(h('ul', { class: 'cards' },
    requests.body.requests.map((r) => requestItem(r, byRequest.get(r.id)))));
}

function statusBadge(status) {
  return h('span', { class: 'badge ' + status }, status);
}

function grantActive(g) {
  return g && !g.revoked_at && Date.parse(g.expires_at) > Date.now() && g.uses < g.max_uses;
}

function requestItem(r, grant) {
  const active = r.status === 'approved' && grantActive(grant);
  const title = `${r.purpose.replace(/_/g, ' ')}: ${r.any_token ? 'any token' : r.tokens.length + ' token' + (r.tokens.length > 1 ? 's' : '')}`;
  const headerId = 'req-' + r.id;
  let timing;
  if (r.status === 'pending') {
    timing = h('span', {}, `${r.approvals} of ${r.approvals_required} approvals · request `, countdown(r.expires_at, 'expires'));
  } else if (grant) {
    timing = h('span', {}, h('span', { class: 'uses', 'data-grant': grant.jti }, `uses ${grant.uses} of ${grant.max_uses}`), ' · ',
      grant.revoked_at ? 'released' : countdown(grant.expires_at, 'grant ends'));
  }
  const tokenRows = r.tokens.map((t) => {
    const output = h('output', { class: 'pan', 'aria-live': 'polite' });
    const reveal = active ? h('button', {
      type: 'button', class: 'reveal', 'aria-label': `Reveal card of token ${t}`,
      onclick: () => revealCard(r.id, t, output, reveal),
    }, 'Reveal') : null;
    return h('li', { class: 'token-row' }, h('code', {}, t), reveal, output);
  });
  const release = active ? h('button', {
    type: 'button', class: 'danger',
    onclick: async () => {
      const res = await api('POST', `/v1/grants/${grant.jti}/revoke`);
      if (!res.ok) notice(problemText(res.body, res.status), 'error');
      else notice('Grant released: it can no longer be used.', 'info');
      wipeRevealed();
      await refreshRequests(true);
    },
  }, 'Release') : null;
  const decisions = r.decisions.filter((d) => d.comment).map((d) =>
    h('p', { class: 'muted' }, `${d.decision === 'approve' ? 'Approved' : 'Denied'}: `, d.comment));
  return h('li', { class: 'card', 'aria-labelledby': headerId },
    h('div', { class: 'card-head' }, h('h3', { id: headerId }, title), statusBadge(r.status)),
    h('p', {}, r.reason),
    h('p', { class: 'muted' }, `Asked ${when(r.created_at)} · `, timing),
    decisions,
    h('ul', { class: 'tokens' }, tokenRows),
    release ? h('div', { class: 'actions' }, release) : null);
}

function groupDigits(digits) {
  return digits.replace(/(\d{4})(?=\d)/g, '$1 ');
}

async function revealCard(id, token, output, button) {
  button.disabled = true;
  const r = await api('POST', `/v1/access-requests/${id}/reveal`, { tokens: [token] });
  button.disabled = false;
  if (!r.ok) {
    notice(problemText(r.body, r.status), 'error');
    return;
  }
  const value = r.body.data[0].value;
  output.textContent = groupDigits(value);
  output.classList.add('shown');
  const entry = { output, timer: null };
  entry.timer = setTimeout(() => hide(entry), REVEAL_SECONDS * 1000);
  revealed.add(entry);
  output.append(' ', countdown(new Date(Date.now() + REVEAL_SECONDS * 1000).toISOString(), 'hidden'));
  notice(`Card shown for ${REVEAL_SECONDS} seconds. One use of the grant was spent.`, 'info');
  // The count of uses, updated in place: the list is not redrawn under a card on screen.
  const grants = await api('GET', '/v1/grants?limit=100', undefined, { poll: true });
  for (const g of (grants.ok ? grants.body.grants : [])) {
    const el = document.querySelector(`.uses[data-grant="${g.jti}"]`);
    if (el) el.textContent = `uses ${g.uses} of ${g.max_uses}`;
  }
}

function hide(entry) {
  clearTimeout(entry.timer);
  entry.output.textContent = '';
  entry.output.classList.remove('shown');
  revealed.delete(entry);
}

function wipeRevealed() {
  for (const entry of [...revealed]) hide(entry);
}

// ---- approver --------------------------------------------------------------------------

async function inboxPage() {
  show(h('h1', {}, 'Approvals'), h('div', { id: 'inbox' }, h('p', { class: 'muted' }, 'Loading…')));
  await drawInbox();
  let known = null;
  setInterval(async () => {
    const r = await api('GET', '/v1/access-requests?status=pending&limit=100', undefined, { poll: true });
    if (!r.ok) return;
    const ids = r.body.requests.map((x) => x.id).join(',');
    if (known === null) known = ids;
    if (ids !== known) {
      const refresh = document.getElementById('inbox-refresh');
      if (refresh) refresh.hidden = false;
    }
  }, POLL_MS * 2);
}

async function drawInbox() {
  const target = document.getElementById('inbox');
  const r = await api('GET', '/v1/access-requests?status=pending&limit=100');
  if (!r.ok) {
    target.replaceChildren(h('p', { class: 'error' }, problemText(r.body, r.status)));
    return;
  }
  const pending = r.body.requests;
  const refresh = h('button', { type: 'button', id: 'inbox-refresh', hidden: true, onclick: () => drawInbox() }, 'New requests: refresh');
  const reviews = await Promise.all(pending.map((p) => api('GET', `/v1/access-requests/${p.id}/review`)));
  const items = reviews.map((rev, i) => rev.ok
    ? reviewCard(rev.body)
    : h('li', { class: 'card error' }, problemText(rev.body, rev.status), ' ', pending[i].id));
  target.replaceChildren(
    h('p', { class: 'muted' }, `${pending.length} pending request${pending.length === 1 ? '' : 's'}, newest first.`),
    refresh,
    pending.length ? h('ul', { class: 'cards' }, items) : h('p', {}, 'Nothing waits for you.'));
}

function reviewCard(review) {
  const r = review.request;
  const who = review.requester.name || review.requester.id;
  const headerId = 'rev-' + r.id;
  const policy = review.policy;
  const cards = h('div', { class: 'scroll' }, h('table', { class: 'data' },
    h('caption', {}, 'Cards asked for'),
    h('thead', {}, h('tr', {}, ['Token', 'Card', 'Reveals (30 days)', 'Revealed by'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, review.cards.map((c) => h('tr', {},
      h('td', {}, h('code', {}, c.token)),
      h('td', {}, c.state === 'live'
        ? `${c.brand_name} ${c.masked}`
        : `${c.state}${c.masked ? ' ' + c.masked : ''}`),
      h('td', { class: 'num' }, `${c.reveals_30d}${c.reveals_capped ? '+' : ''}`),
      h('td', {}, c.revealed_by.length
        ? c.revealed_by.map((b) => `${b.name || b.principal} (${b.count})`).join(', ')
        : 'nobody'))))));
  const recent = review.recent_requests.length
    ? h('ul', { class: 'plain' }, review.recent_requests.map((x) =>
      h('li', {}, statusBadge(x.status), ` ${x.purpose.replace(/_/g, ' ')} · ${x.any_token ? 'any token' : x.tokens + ' token(s)'} · ${when(x.created_at)}`)))
    : h('p', { class: 'muted' }, 'No other requests.');
  const comment = h('textarea', { id: 'comment-' + r.id, rows: '2', maxlength: '1000' });
  const code = h('input', { id: 'code-' + r.id, inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: '6' });
  const result = errorBox('result-' + r.id);
  const decide = async (verb) => {
    setError(result, '');
    const body = {};
    if (comment.value.trim()) body.comment = comment.value.trim();
    if (verb === 'approve' && code.value.trim()) body.totp = code.value.trim();
    const res = await api('POST', `/v1/access-requests/${r.id}/${verb}`, body);
    code.value = '';
    if (!res.ok) {
      setError(result, problemText(res.body, res.status));
      return;
    }
    notice(verb === 'approve'
      ? (res.body.status === 'approved' ? `Approved: ${who} can now reveal.` : 'Approval recorded; more approvals are needed.')
      : `Denied ${who}'s request.`, 'info');
    await drawInbox();
  };
  const needed = review.approvals_needed;
  return h('li', { class: 'card', 'aria-labelledby': headerId },
    h('div', { class: 'card-head' },
      h('h2', { id: headerId }, `${who} asks to see ${r.any_token ? 'any card' : r.tokens.length + ' card' + (r.tokens.length > 1 ? 's' : '')}`),
      statusBadge(r.status)),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Purpose'), h('dd', {}, r.purpose.replace(/_/g, ' ')),
      h('dt', {}, 'Reason'), h('dd', {}, r.reason),
      h('dt', {}, 'Asked'), h('dd', {}, when(r.created_at), ' · ', countdown(r.expires_at, 'lapses')),
      h('dt', {}, 'Would allow'), h('dd', {}, `${Math.round(r.duration_seconds / 60)} minutes, ${r.max_uses} use${r.max_uses > 1 ? 's' : ''}`),
      h('dt', {}, 'Policy'), h('dd', {}, policy ? limitsText(policy) : r.policy),
      h('dt', {}, 'Approvals'), h('dd', {}, `${r.approvals} of ${r.approvals_required} given; ${needed} more needed`)),
    cards,
    h('h3', {}, `Recent requests by ${who}`),
    recent,
    h('form', { class: 'decide', novalidate: true, onsubmit: (e) => e.preventDefault() },
      field('Comment', comment),
      field('One-time code', code, 'Needed to approve under a policy with a second factor.'),
      result,
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'primary', onclick: () => decide('approve') }, 'Approve'),
        h('button', { type: 'button', class: 'danger', onclick: () => decide('deny') }, 'Deny'))));
}

// ---- admin -----------------------------------------------------------------------------

async function grantsPage() {
  show(h('h1', {}, 'Active grants'), h('div', { id: 'grants' }));
  await drawGrants();
}

async function drawGrants() {
  const target = document.getElementById('grants');
  const r = await api('GET', '/v1/grants?active=true&limit=500');
  if (!r.ok) {
    target.replaceChildren(h('p', { class: 'error' }, problemText(r.body, r.status)));
    return;
  }
  const grants = r.body.grants;
  const rows = grants.map((g) => h('tr', {},
    h('td', {}, h('code', { title: g.grantee }, g.grantee.slice(0, 8))),
    h('td', {}, g.purpose.replace(/_/g, ' ')),
    h('td', {}, g.any_token ? 'any token' : g.tokens.join(', ')),
    h('td', {}, when(g.issued_at)),
    h('td', {}, countdown(g.expires_at, 'ends')),
    h('td', { class: 'num' }, `${g.uses} / ${g.max_uses}`),
    h('td', {}, h('button', {
      type: 'button', class: 'danger', 'aria-label': `Revoke grant ${g.jti}`,
      onclick: async () => {
        const res = await api('POST', `/v1/grants/${g.jti}/revoke`);
        notice(res.ok ? 'Grant revoked.' : problemText(res.body, res.status), res.ok ? 'info' : 'error');
        await drawGrants();
      },
    }, 'Revoke'))));
  const confirmBox = h('div', { class: 'confirm', hidden: true, role: 'group', 'aria-label': 'Confirm revoking all grants' },
    h('p', {}, `Revoke all ${grants.length} active grant${grants.length === 1 ? '' : 's'} of the tenant? Nobody can use them afterwards.`),
    h('button', {
      type: 'button', class: 'danger', onclick: async () => {
        const res = await api('POST', '/v1/grants/revoke-all', {});
        notice(res.ok ? `Revoked ${res.body.revoked} grant(s).` : problemText(res.body, res.status), res.ok ? 'info' : 'error');
        await drawGrants();
      },
    }, 'Revoke all grants'),
    h('button', { type: 'button', onclick: () => { confirmBox.hidden = true; } }, 'Cancel'));
  const revokeAll = session.me.roles.includes('admin') && grants.length ? h('button', {
    type: 'button', class: 'danger', onclick: () => { confirmBox.hidden = false; confirmBox.querySelector('button').focus(); },
  }, 'Revoke all') : null;
  target.replaceChildren(
    grants.length
      ? h('div', { class: 'scroll' }, h('table', { class: 'data' },
        h('caption', {}, `${grants.length} active grant${grants.length === 1 ? '' : 's'}`),
        h('thead', {}, h('tr', {}, ['Grantee', 'Purpose', 'Tokens', 'Issued', 'Expires', 'Uses', ''].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows)))
      : h('p', {}, 'No active grants.'),
    h('div', { class: 'actions' }, revokeAll),
    confirmBox);
}

// ---- auditor ---------------------------------------------------------------------------

const ACTIONS = [
  'token.tokenize', 'token.tokenize_batch', 'token.lookup', 'token.delete', 'detokenize',
  'access_request.create', 'access_request.approve', 'access_request.deny', 'access_request.expire',
  'grant.revoke', 'grant.revoke_all', 'session.start', 'session.end', 'auth.failure', 'audit.read',
  'principal.create', 'principal.disable', 'principal.totp_unlock', 'key.create', 'key.rotate',
  'key.reencrypt', 'key.destroy', 'key.rewrap', 'key.split', 'tenant.shred', 'tokenize.enumeration_suspected',
  'token.lookup_suspicious', 'guard.release', 'guard.import_open', 'guard.import_close',
  'token.purge', 'service.start', 'service.stop', 'policy.load',
];

function isoFromLocal(value) {
  return value ? new Date(value).toISOString() : null;
}

async function auditPage() {
  const action = h('select', { id: 'f-action' }, h('option', { value: '' }, 'Any'), ACTIONS.map((a) => h('option', { value: a }, a)));
  const outcome = h('select', { id: 'f-outcome' }, ['', 'success', 'denied', 'error'].map((o) => h('option', { value: o }, o || 'Any')));
  const actor = h('input', { id: 'f-actor', spellcheck: 'false', autocomplete: 'off' });
  const token = h('input', { id: 'f-token', spellcheck: 'false', autocomplete: 'off' });
  const since = h('input', { id: 'f-since', type: 'datetime-local' });
  const until = h('input', { id: 'f-until', type: 'datetime-local' });
  const limit = h('input', { id: 'f-limit', type: 'number', min: '1', max: '500', value: '50' });
  const error = errorBox('audit-error');
  const results = h('div', { id: 'audit-results' });
  let cursor = null;
  const search = async (more) => {
    setError(error, '');
    const q = new URLSearchParams();
    if (action.value) q.set('action', action.value);
    if (outcome.value) q.set('outcome', outcome.value);
    if (actor.value.trim()) q.set('actor', actor.value.trim());
    if (token.value.trim()) q.set('token', token.value.trim());
    if (since.value) q.set('since', isoFromLocal(since.value));
    if (until.value) q.set('until', isoFromLocal(until.value));
    q.set('limit', limit.value || '50');
    if (more && cursor) q.set('cursor', cursor);
    const r = await api('GET', '/v1/audit?' + q.toString());
    if (!r.ok) {
      setError(error, problemText(r.body, r.status));
      return;
    }
    cursor = r.body.next_cursor;
    const rows = r.body.events.map((e) => h('tr', { class: e.outcome },
      h('td', {}, when(e.at)),
      h('td', {}, e.action),
      h('td', {}, e.outcome),
      h('td', {}, e.code || ''),
      h('td', {}, e.actor ? h('code', { title: e.actor }, e.actor.slice(0, 8)) : ''),
      h('td', {}, e.purpose || ''),
      h('td', {}, e.tokens.join(', ')),
      h('td', {}, [e.detail, e.reason].filter(Boolean).join(' · ')),
      h('td', {}, e.subject || '')));
    let body = results.querySelector('tbody');
    if (!more || !body) {
      body = h('tbody', {});
      results.replaceChildren(h('div', { class: 'scroll' }, h('table', { class: 'data', id: 'audit-table' },
        h('caption', {}, 'Audit records, newest first'),
        h('thead', {}, h('tr', {}, ['Time', 'Action', 'Outcome', 'Code', 'Actor', 'Purpose', 'Tokens', 'Detail', 'Subject'].map((t) => h('th', { scope: 'col' }, t)))),
        body)));
    }
    body.append(...rows);
    const older = document.getElementById('older');
    if (older) older.remove();
    if (cursor) results.append(h('button', { type: 'button', id: 'older', onclick: () => search(true) }, 'Older records'));
    if (!rows.length && !more) results.replaceChildren(h('p', {}, 'No records match.'));
  };
  const form = h('form', { class: 'panel filters', novalidate: true },
    h('div', { class: 'grid' },
      field('Action', action), field('Outcome', outcome), field('Actor (principal id)', actor),
      field('Token', token), field('Since (your time)', since), field('Until (your time)', until),
      field('Records', limit)),
    error,
    h('button', { type: 'submit', class: 'primary' }, 'Search'));
  form.addEventListener('submit', (e) => { e.preventDefault(); search(false); });
  show(h('h1', {}, 'Audit trail'), form, results);
  await search(false);
}

function dateInput(id, date) {
  return h('input', { id, type: 'date', value: date.toISOString().slice(0, 10), required: true });
}

function barChart(title, rows) {
  const max = Math.max(1, ...rows.map((r) => r[1]));
  const height = rows.length * 28 + 8;
  const chart = svg('svg', { viewBox: `0 0 400 ${height}`, width: '100%', role: 'img', 'aria-label': title, class: 'chart' });
  rows.forEach(([label, value], i) => {
    const y = 4 + i * 28;
    chart.append(
      svg('text', { x: 0, y: y + 16, class: 'chart-label' }, label),
      svg('rect', { x: 150, y, width: Math.max(1, Math.round((value / max) * 200)), height: 20, class: 'bar' }),
      svg('text', { x: 156 + Math.round((value / max) * 200), y: y + 16, class: 'chart-value' }, String(value)));
  });
  return h('figure', {}, chart, h('figcaption', {}, title));
}

function table(caption, head, rows) {
  // A column of numbers reads right-aligned, its heading too.
  const numeric = head.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number'));
  const cls = (i) => (numeric[i] ? 'num' : null);
  return h('div', { class: 'scroll' }, h('table', { class: 'data' },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, head.map((t, i) => h('th', { scope: 'col', class: cls(i) }, t)))),
    h('tbody', {}, rows.length ? rows.map((r) => h('tr', {}, r.map((c, i) => h('td', { class: cls(i) }, c))))
      : h('tr', {}, h('td', { colspan: head.length }, 'None')))));
}

function seconds(s) {
  if (s === null || s === undefined) return '—';
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

async function reportPage() {
  const now = new Date();
  const since = dateInput('r-since', new Date(now.getTime() - 30 * 86400000));
  const until = dateInput('r-until', new Date(now.getTime() + 86400000));
  const error = errorBox('report-error');
  const out = h('div', { id: 'report' });
  const load = async () => {
    setError(error, '');
    const q = new URLSearchParams({
      since: new Date(since.value + 'T00:00:00Z').toISOString(),
      until: new Date(until.value + 'T00:00:00Z').toISOString(),
    });
    const r = await api('GET', '/v1/reports/usage?' + q.toString());
    if (!r.ok) {
      setError(error, problemText(r.body, r.status));
      return;
    }
    const rep = r.body;
    const counts = (c) => [c.total, c.approved, c.automatic, c.denied, c.expired, c.pending];
    out.replaceChildren(
      h('p', { class: 'muted' }, `From ${when(rep.since)} to ${when(rep.until)}.`),
      h('section', { 'aria-labelledby': 'g-title' },
        h('h2', { id: 'g-title' }, 'Grants issued and used'),
        table('Grants', ['Issued', 'Uses spent', 'Uses allowed', 'Never used', 'Revoked'],
          [[rep.grants.issued, rep.grants.uses, rep.grants.allowed, rep.grants.unused, rep.grants.revoked]]),
        barChart('Uses spent against uses allowed', [['uses spent', rep.grants.uses], ['uses allowed', rep.grants.allowed]])),
      h('section', { 'aria-labelledby': 'q-title' },
        h('h2', { id: 'q-title' }, 'Requests'),
        table('Requests by status', ['All', 'Approved', 'Approved at once', 'Denied', 'Expired', 'Pending'], [counts(rep.requests)]),
        table('By requester', ['Requester', 'All', 'Approved', 'Approved at once', 'Denied', 'Expired', 'Pending'],
          rep.by_requester.map((x) => [x.name, ...counts(x)])),
        barChart('Requests per requester', rep.by_requester.map((x) => [x.name, x.total])),
        table('By purpose', ['Purpose', 'All', 'Approved', 'Approved at once', 'Denied', 'Expired', 'Pending'],
          rep.by_purpose.map((x) => [x.purpose, ...counts(x)]))),
      h('section', { 'aria-labelledby': 'f-title' },
        h('h2', { id: 'f-title' }, 'Refusals'),
        table('Refused calls by code', ['Code', 'Count'], rep.refusals.map((x) => [x.code, x.count])),
        rep.refusals.length ? barChart('Refusals by code', rep.refusals.map((x) => [x.code, x.count])) : null),
      h('section', { 'aria-labelledby': 'd-title' },
        h('h2', { id: 'd-title' }, 'Time from request to decision'),
        table('Decisions by people', ['Decided', 'Median', '90th percentile', 'Longest'],
          [[rep.decisions.decided, seconds(rep.decisions.median_seconds), seconds(rep.decisions.p90_seconds), seconds(rep.decisions.max_seconds)]])));
  };
  const form = h('form', { class: 'panel filters', novalidate: true },
    h('div', { class: 'row' }, field('Since (UTC day)', since), field('Until (UTC day, not included)', until)),
    error,
    h('button', { type: 'submit', class: 'primary' }, 'Show report'));
  form.addEventListener('submit', (e) => { e.preventDefault(); load(); });
  show(h('h1', {}, 'Usage report'), form, out);
  await load();
}

// ---- start -----------------------------------------------------------------------------

const RENDER = {
  requests: requestsPage, inbox: inboxPage, grants: grantsPage, audit: auditPage, report: reportPage,
};

async function start() {
  // A card number on screen goes when the person leaves or hides the page.
  window.addEventListener('pagehide', wipeRevealed);
  document.addEventListener('visibilitychange', () => { if (document.hidden) wipeRevealed(); });
  setInterval(tick, 1000);
  const page = location.pathname.replace(/^\/console\/?/, '');
  if (!page) {
    await signInPage();
    return;
  }
  const current = await api('GET', '/v1/sessions/current');
  if (!current.ok) return;
  session.me = current.body.principal;
  session.csrf = current.body.csrf_token;
  session.expiresAt = Date.parse(current.body.expires_at);
  session.idleUntil = Math.min(Date.parse(current.body.idle_expires_at), session.expiresAt);
  if (!allowed(page)) {
    location.replace(home(session.me.roles));
    return;
  }
  const entry = PAGES.find((p) => p.page === page);
  document.title = `${entry.title} · Strongroom`;
  chrome(page);
  await RENDER[page]();
  tick();
  main().focus();
}

document.addEventListener('DOMContentLoaded', start);
