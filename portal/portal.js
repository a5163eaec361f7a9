/*
 * The portal: a one-page application on the module's own API. No
 * framework, no build step; every element is made with the DOM (the CSP
 * forbids inline script and style, and text never goes through innerHTML).
 *
 * Sessions: the access token lives in this closure only (never in
 * storage). The refresh token is the API's HttpOnly SameSite=Strict cookie
 * (monetize_session_cookie on the API's location), which no script here
 * can read: the body's copy is ignored, and a refresh or a logout sends
 * X-Monetize-CSRF. A reload finds the session again through the cookie.
 */
'use strict';

(function () {

const API = document.querySelector('meta[name="monetize-api"]').content;

let access = null;          /* the access token */
let refreshing = null;      /* one refresh at a time: a spent token reused
                               would revoke the whole family */
let me = null;              /* GET /me, for the nav and the dashboard */
let wanted = null;          /* the route asked for before logging in */
let notice = null;          /* said once the next page is drawn */
let products = null;        /* GET /downloads: the nav shows Downloads
                               only when the plan has some */

const main = document.getElementById('main');
const statusBox = document.getElementById('status');


/* ---- the DOM, without innerHTML ---- */

function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
        if (v === null || v === undefined || v === false) {
            continue;
        }
        if (k.startsWith('on')) {
            el.addEventListener(k.slice(2), v);
        } else if (v === true) {
            el.setAttribute(k, '');
        } else {
            el.setAttribute(k, v);
        }
    }
    for (const kid of kids.flat()) {
        if (kid === null || kid === undefined || kid === false) {
            continue;
        }
        el.append(kid instanceof Node ? kid : String(kid));
    }
    return el;
}

const SVG = 'http://www.w3.org/2000/svg';

function s(tag, attrs, ...kids) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
        el.setAttribute(k, v);
    }
    for (const kid of kids) {
        el.append(kid instanceof Node ? kid : String(kid));
    }
    return el;
}

let ids = 0;

/* a labelled input: the label's for= names the input's id */
function field(label, attrs, hint) {
    const id = 'f' + (++ids);
    const hid = hint ? id + '-hint' : null;
    return [h('label', {for: id}, label),
            h('input', Object.assign({id: id, 'aria-describedby': hid},
                                     attrs)),
            hint ? h('p', {class: 'hint', id: hid}, hint) : null];
}

function say(text, kind) {
    statusBox.replaceChildren(text ? h('p', {class: kind || 'ok'}, text)
                                   : '');
}

function view(title, ...kids) {
    document.title = title + ' · ' + document.querySelector('.brand')
                                                 .textContent;
    main.replaceChildren(h('h1', {}, title),
                         ...kids.flat().filter(k => k !== null
                                                   && k !== undefined));
    main.focus({preventScroll: true});
    window.scrollTo(0, 0);
}

function table(cols, rows, empty) {
    if (!rows.length) {
        return h('p', {}, empty || 'Nothing yet.');
    }
    return h('div', {class: 'table'},
        h('table', {},
            h('thead', {}, h('tr', {}, cols.map(c =>
                h('th', {scope: 'col', class: c.num ? 'num' : null},
                  c.title)))),
            h('tbody', {}, rows.map(r => h('tr', {}, cols.map(c =>
                h('td', {class: c.num ? 'num' : null}, c.get(r))))))));
}

function when(iso) {
    if (!iso) {
        return '—';
    }
    const d = new Date(iso);
    return isNaN(d) ? String(iso)
                    : d.toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
}

function money(cents, currency) {
    try {
        return new Intl.NumberFormat('en', {style: 'currency',
            currency: (currency || 'usd').toUpperCase()})
            .format(cents / 100);
    } catch (e) {
        return (cents / 100).toFixed(2) + ' ' + (currency || '');
    }
}

function confirmDialog(text, ok) {
    const dlg = document.getElementById('confirm');
    document.getElementById('confirm-text').textContent = text;
    document.getElementById('confirm-ok').textContent = ok;
    return new Promise(resolve => {
        dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'),
                             {once: true});
        dlg.returnValue = '';
        dlg.showModal();
    });
}

function secretBox(label, value) {
    const code = h('code', {}, value);
    const copy = h('button', {type: 'button', class: 'small', onclick:
        async () => {
            try {
                await navigator.clipboard.writeText(value);
            } catch (e) {
                const sel = window.getSelection();
                const range = document.createRange();
                range.selectNodeContents(code);
                sel.removeAllRanges();
                sel.addRange(range);
                document.execCommand('copy');
            }
            say('Copied to the clipboard.');
        }}, 'Copy');
    return h('div', {class: 'secret', role: 'group', 'aria-label': label},
             h('strong', {}, label + ' (shown this once):'), code, copy);
}


/* ---- the API ---- */

const WORDS = {
    invalid_credentials: 'The email address or the password is wrong.',
    email_not_verified: 'Confirm your email address first: open the link '
                        + 'in the mail we sent you.',
    email_taken: 'An account with this email address exists already. '
                 + 'Log in, or reset its password.',
    account_suspended: 'This account is suspended. Contact the operator.',
    invalid_token: 'This link is not valid any more: it was used, or it '
                   + 'expired. Ask for a new one.',
    token_expired: 'Your session has ended. Please log in again.',
    forbidden: 'This page is for operators only.',
    csrf_failed: 'The session could not be renewed from this page. '
                 + 'Please log in again.',
    backend_unavailable: 'The service is unavailable for a moment. '
                         + 'Please try again shortly.',
    not_found: 'This is not available on this server.',
    insufficient_credits: 'The balance is too low for this.',
    key_inactive: 'This key is revoked or expired already.',
    upstream_error: 'The payment provider refused the request. '
                    + 'Please try again later.',
    negative_balance: 'The balance cannot go below zero.',
    subscription_required: 'Your plan does not include this. The plans '
                           + 'are on the Billing page.',
};

class ApiError extends Error {
    constructor(status, body) {
        const err = (body && body.error) || {};
        super(words(status, err));
        this.status = status;
        this.code = err.code || null;
    }
}

function words(status, err) {
    if (err.code === 'validation_failed' && err.fields) {
        return 'Please check: ' + Object.entries(err.fields)
            .map(([k, v]) => k.replace(/_/g, ' ') + ' ' + v).join('; ')
            + '.';
    }
    if (err.code === 'rate_limited' || status === 429) {
        return 'Too many attempts. Please wait a minute and try again.';
    }
    if (WORDS[err.code]) {
        return WORDS[err.code];
    }
    if (status >= 500) {
        return 'Something went wrong on the server (' + status
               + '). Please try again later.';
    }
    return err.message ? err.message.charAt(0).toUpperCase()
                         + err.message.slice(1) + '.'
                       : 'The request failed (' + status + ').';
}

async function raw(method, path, body, auth) {
    const headers = {'Accept': 'application/json'};
    if (body !== undefined) {
        headers['Content-Type'] = 'application/json';
    }
    if (auth && access) {
        headers['Authorization'] = 'Bearer ' + access;
    }
    if (path.startsWith('auth/')) {
        headers['X-Monetize-CSRF'] = '1';
    }
    let res;
    try {
        res = await fetch(API + path, {method: method, headers: headers,
            credentials: 'same-origin', cache: 'no-store',
            body: body === undefined ? undefined : JSON.stringify(body)});
    } catch (e) {
        throw new ApiError(0, {error: {message:
            'the server cannot be reached; check your connection'}});
    }
    let json = null;
    if (res.status !== 204) {
        try {
            json = await res.json();
        } catch (e) {
            json = null;
        }
    }
    return {status: res.status, json: json};
}

function takeTokens(json) {
    access = json.access_token;
}

/* a new pair from the cookie; false if there is no session */
function refresh() {
    if (!refreshing) {
        refreshing = (async () => {
            try {
                const r = await raw('POST', 'auth/refresh', {});
                if (r.status === 200 && r.json && r.json.access_token) {
                    takeTokens(r.json);
                    return true;
                }
                if (r.status >= 500) {
                    throw new ApiError(r.status, r.json);
                }
                access = null;
                return false;
            } finally {
                refreshing = null;
            }
        })();
    }
    return refreshing;
}

async function api(method, path, body) {
    let r = await raw(method, path, body, true);
    if (r.status === 401 && access) {
        if (await refresh()) {
            r = await raw(method, path, body, true);
        } else {
            loggedOut('Your session has ended. Please log in again.');
            throw new ApiError(401, r.json);
        }
    }
    if (r.status >= 400 || r.status === 0) {
        throw new ApiError(r.status, r.json);
    }
    return r.json;
}

function loggedOut(message, kind) {
    access = null;
    me = null;
    products = null;
    nav();
    notice = message ? [message, kind || 'error'] : null;
    if (location.hash !== '#login') {
        location.hash = '#login';
    }
}

/* runs fn, showing its failure in words; disables the button meanwhile */
async function attempt(button, fn) {
    if (button) {
        button.disabled = true;
    }
    say('');
    try {
        await fn();
    } catch (e) {
        if (!(e instanceof ApiError)) {
            console.error(e);
        }
        say(e instanceof ApiError ? e.message
                                  : 'Something went wrong in the page.',
            'error');
    } finally {
        if (button) {
            button.disabled = false;
        }
    }
}

function onSubmit(form, fn) {
    form.addEventListener('submit', ev => {
        ev.preventDefault();
        attempt(form.querySelector('button[type="submit"]'), () =>
            fn(new FormData(form)));
    });
    return form;
}


/* ---- the pages of a visitor ---- */

function pageSignup() {
    const form = h('form', {class: 'card narrow', novalidate: true},
        field('Email address', {type: 'email', name: 'email', required: true,
                                autocomplete: 'email'}),
        field('Password', {type: 'password', name: 'password',
                           required: true, minlength: 8, maxlength: 72,
                           autocomplete: 'new-password'},
              'At least 8 characters.'),
        field('Name (optional)', {type: 'text', name: 'name',
                                  autocomplete: 'name'}),
        h('button', {type: 'submit'}, 'Sign up'));
    onSubmit(form, async data => {
        const body = {email: data.get('email'),
                      password: data.get('password')};
        if (data.get('name')) {
            body.name = data.get('name');
        }
        const r = await api('POST', 'auth/register', body);
        const done = [h('p', {}, 'Your account is made. We sent a mail to ',
                        h('strong', {}, r.user.email),
                        ': open its link to confirm the address, then ',
                        h('a', {href: '#login'}, 'log in'), '.')];
        if (r.api_key) {
            done.push(secretBox('Your first API key', r.api_key));
        }
        view('Check your mail', ...done);
    });
    view('Sign up', form,
         h('p', {}, 'Have an account? ', h('a', {href: '#login'}, 'Log in'),
           '.'));
}

function pageLogin() {
    const resend = h('button', {type: 'button', class: 'secondary', hidden:
        true}, 'Send the confirmation mail again');
    const form = h('form', {class: 'card narrow', novalidate: true},
        field('Email address', {type: 'email', name: 'email', required: true,
                                autocomplete: 'username'}),
        field('Password', {type: 'password', name: 'password',
                           required: true, autocomplete:
                           'current-password'}),
        h('button', {type: 'submit'}, 'Log in'), resend);
    onSubmit(form, async data => {
        try {
            const r = await api('POST', 'auth/login',
                                {email: data.get('email'),
                                 password: data.get('password')});
            takeTokens(r);
        } catch (e) {
            resend.hidden = e.code !== 'email_not_verified';
            throw e;
        }
        await loadMe();
        const to = wanted || '#dashboard';
        wanted = null;
        say('');
        location.hash = to;
    });
    resend.addEventListener('click', () => attempt(resend, async () => {
        await api('POST', 'auth/resend-verification',
                  {email: form.elements.email.value});
        say('If the address has an unconfirmed account, a new mail is on '
            + 'its way.');
    }));
    view('Log in', form,
         h('p', {}, h('a', {href: '#forgot'}, 'Forgot your password?')),
         h('p', {}, 'New here? ', h('a', {href: '#signup'},
                                     'Make an account'), '.'));
}

async function pageVerify(params) {
    view('Confirming your address', h('p', {}, 'One moment…'));
    try {
        await api('POST', 'auth/verify-email', {token: params.get('token')
                                                       || ''});
        view('Address confirmed',
             h('p', {}, 'Thank you: your email address is confirmed. ',
               access ? h('a', {href: '#dashboard'}, 'Go to the dashboard')
                      : h('a', {href: '#login'}, 'Log in'), '.'));
    } catch (e) {
        view('This link did not work', h('p', {}, e.message),
             h('p', {}, h('a', {href: '#login'}, 'Log in'),
               ' to have a new one sent.'));
    }
}

function pageForgot() {
    const form = h('form', {class: 'card narrow', novalidate: true},
        field('Email address', {type: 'email', name: 'email', required: true,
                                autocomplete: 'email'}),
        h('button', {type: 'submit'}, 'Send me a reset link'));
    onSubmit(form, async data => {
        await api('POST', 'auth/forgot-password', {email: data.get('email')});
        view('Check your mail',
             h('p', {}, 'If an account has this address, a mail with a '
               + 'link to choose a new password is on its way.'));
    });
    view('Forgot your password?', form,
         h('p', {}, h('a', {href: '#login'}, 'Back to log in')));
}

function pageReset(params) {
    const form = h('form', {class: 'card narrow', novalidate: true},
        field('New password', {type: 'password', name: 'password',
                               required: true, minlength: 8, maxlength: 72,
                               autocomplete: 'new-password'},
              'At least 8 characters.'),
        field('The new password again', {type: 'password', name: 'again',
                                         required: true,
                                         autocomplete: 'new-password'}),
        h('button', {type: 'submit'}, 'Change the password'));
    onSubmit(form, async data => {
        if (data.get('password') !== data.get('again')) {
            throw new ApiError(422, {error: {message:
                'the two passwords differ'}});
        }
        await api('POST', 'auth/reset-password',
                  {token: params.get('token') || '',
                   password: data.get('password')});
        view('Password changed',
             h('p', {}, 'Your password is changed, and every session '
               + 'signed out. ', h('a', {href: '#login'}, 'Log in'), '.'));
    });
    view('Choose a new password', form);
}


/* ---- the pages of a customer ---- */

async function loadMe() {
    me = await api('GET', 'me');
    await loadProducts();
    nav();
    return me;
}

/* for the nav only: if the list cannot be had, the link stays hidden
   (the page itself says why) */
async function loadProducts() {
    try {
        products = (await api('GET', 'downloads')).products || [];
    } catch (e) {
        products = [];
    }
}

function stat(label, value) {
    return h('div', {}, h('dt', {}, label), h('dd', {}, value));
}

async function pageDashboard() {
    const m = await loadMe();
    const to = new Date();
    const from = new Date(to.getTime() - 29 * 86400000);
    const day = d => d.toISOString().slice(0, 10);
    const u = await api('GET', 'usage?granularity=day&from=' + day(from)
                               + '&to=' + day(to));
    const plan = m.plan || {};
    const rl = plan.rate_limit || {};
    const q = m.quota || {};
    const period = m.period || {};
    view('Dashboard',
        h('dl', {class: 'stats'},
            stat('Balance', (m.balance ?? 0) + ' credits'),
            stat('Plan', plan.name || 'none'),
            stat('Quota used this period', q.limit
                 ? (q.used ?? 0) + ' of ' + q.limit + ' calls'
                 : (period.calls ?? 0) + ' calls (no quota)'),
            stat('Rate limit', rl.requests_per_second
                 ? rl.requests_per_second + ' per second, burst '
                   + (rl.burst ?? 0)
                 : 'none'),
            stat('Period', period.start ? when(period.start).slice(0, 10)
                 + ' to ' + when(period.end).slice(0, 10) : '—')),
        h('h2', {}, 'Calls and credits per day'),
        chart(fillDays(u.usage || [], from, to)),
        h('details', {},
            h('summary', {}, 'The same as a table'),
            table([{title: 'Day', get: r => r.date},
                   {title: 'Calls', num: true, get: r => r.calls},
                   {title: 'Credits', num: true, get: r => r.credits}],
                  (u.usage || []).filter(r => r.calls || r.credits),
                  'No calls in these 30 days.')));
}

function fillDays(rows, from, to) {
    const by = new Map(rows.map(r => [String(r.date).slice(0, 10), r]));
    const out = [];
    for (let t = from.getTime(); t <= to.getTime() + 1; t += 86400000) {
        const d = new Date(t).toISOString().slice(0, 10);
        const r = by.get(d) || {};
        out.push({date: d, calls: Number(r.calls || 0),
                  credits: Number(r.credits || 0)});
    }
    return out;
}

/* two bars a day, calls and credits, on one scale; each bar has a title */
function chart(days) {
    const W = 640, H = 220, L = 40, B = 24, T = 10;
    const max = Math.max(1, ...days.map(d => Math.max(d.calls, d.credits)));
    const step = (W - L - 4) / days.length;
    const bw = Math.max(1, step / 2 - 1);
    const y = v => T + (H - B - T) * (1 - v / max);
    const svg = s('svg', {viewBox: `0 0 ${W} ${H}`, role: 'img',
                          'aria-labelledby': 'chart-title',
                          class: 'usage-chart'},
        s('title', {id: 'chart-title'}, 'Calls and credits per day, '
          + days[0].date + ' to ' + days[days.length - 1].date
          + ': ' + days.reduce((a, d) => a + d.calls, 0) + ' calls, '
          + days.reduce((a, d) => a + d.credits, 0) + ' credits'),
        s('line', {class: 'axis', x1: L, y1: H - B, x2: W, y2: H - B}),
        s('line', {class: 'axis', x1: L, y1: T, x2: L, y2: H - B}),
        s('text', {x: L - 4, y: T + 8, 'text-anchor': 'end'}, max),
        s('text', {x: L - 4, y: H - B, 'text-anchor': 'end'}, 0));
    days.forEach((d, i) => {
        const x = L + 2 + i * step;
        for (const [k, off] of [['calls', 0], ['credits', bw + 1]]) {
            const v = d[k];
            svg.append(s('rect', {class: k, x: x + off, y: y(v),
                                  width: bw, height: H - B - y(v),
                                  'data-date': d.date, 'data-value': v},
                         s('title', {}, d.date + ': ' + v + ' ' + k)));
        }
        if (i % 7 === 0 && i + 4 < days.length || i === days.length - 1) {
            svg.append(s('text', {x: x, y: H - 6}, d.date.slice(5)));
        }
    });
    return h('div', {class: 'chart'}, svg,
             h('p', {class: 'legend'}, h('span', {class: 'calls'}, 'calls'),
               h('span', {class: 'credits'}, 'credits')));
}

async function pageKeys() {
    const form = h('form', {class: 'card', novalidate: true},
        h('div', {class: 'row'},
            h('div', {}, field('Name of the new key', {type: 'text',
                                                       name: 'name',
                                                       maxlength: 100})),
            h('button', {type: 'submit'}, 'Create a key')));
    onSubmit(form, async data => {
        const body = data.get('name') ? {name: data.get('name')} : {};
        const r = await api('POST', 'keys', body);
        await pageKeys();
        main.insertBefore(secretBox('New key ' + r.prefix, r.key),
                          main.children[1]);
        say('The key is created. Copy it now: it is not shown again.');
    });
    const k = await api('GET', 'keys');
    const active = r => !r.revoked_at
                        && !(r.expires_at && new Date(r.expires_at)
                             <= new Date());
    view('API keys', form,
        table([{title: 'Name', get: r => r.name || '—'},
               {title: 'Prefix', get: r => h('code', {}, r.prefix)},
               {title: 'Created', get: r => when(r.created_at)},
               {title: 'Last used', get: r => when(r.last_used_at)},
               {title: 'Expires', get: r => when(r.expires_at)},
               {title: 'State', get: r => r.revoked_at ? 'revoked'
                                          : active(r) ? 'active'
                                                      : 'expired'},
               {title: 'Actions', get: r => active(r) ? keyActions(r) : ''}],
              k.keys || [], 'No keys yet: create one above.'));
}

function keyActions(key) {
    const grace = h('select', {'aria-label': 'Grace for the old key '
                                             + key.prefix},
        h('option', {value: '3600'}, 'old key works 1 hour'),
        h('option', {value: '86400'}, 'old key works 1 day'),
        h('option', {value: '0'}, 'old key stops now'));
    const rotate = h('button', {type: 'button', class: 'small secondary',
                                'data-action': 'rotate',
                                'aria-label': 'Rotate ' + key.prefix},
                     'Rotate');
    const revoke = h('button', {type: 'button', class: 'small danger',
                                'data-action': 'revoke',
                                'aria-label': 'Revoke ' + key.prefix},
                     'Revoke');
    rotate.addEventListener('click', () => attempt(rotate, async () => {
        const r = await api('POST', 'keys/' + key.id + '/rotate',
                            {grace_seconds: Number(grace.value)});
        await pageKeys();
        main.insertBefore(secretBox('New key ' + r.prefix, r.key),
                          main.children[1]);
        say('The key is rotated. Copy the new one now.');
    }));
    revoke.addEventListener('click', () => attempt(revoke, async () => {
        if (!await confirmDialog('Revoke the key ' + key.prefix + '? '
                                 + 'Calls with it are refused at once. '
                                 + 'This cannot be undone.', 'Revoke')) {
            return;
        }
        await api('DELETE', 'keys/' + key.id);
        await pageKeys();
        say('The key ' + key.prefix + ' is revoked.');
    }));
    return h('div', {}, grace, rotate, revoke);
}

async function pageBilling(params) {
    const parts = [];
    if (params.get('checkout') === 'success') {
        parts.push(h('p', {class: 'card'}, 'Thank you: the payment went '
                     + 'through. Credits appear as soon as the payment '
                     + 'provider confirms it.'));
    } else if (params.get('checkout') === 'cancel') {
        parts.push(h('p', {class: 'card'}, 'The payment was cancelled; '
                     + 'nothing was charged.'));
    }
    const m = await loadMe();
    const p = await api('GET', 'plans');
    let status = null;
    try {
        status = await api('GET', 'billing/status');
    } catch (e) {
        if (e.code !== 'not_found') {
            throw e;
        }
    }
    parts.push(h('dl', {class: 'stats'},
        stat('Balance', (m.balance ?? 0) + ' credits'),
        stat('Plan', (status && status.plan) || (m.plan && m.plan.name)
                     || 'none'),
        stat('Subscription', !(status && status.status)
                             || status.status === 'none' ? 'none'
             : status.status + (status.current_period_end
                 ? (status.cancel_at_period_end ? ', ends ' : ', renews ')
                   + when(status.current_period_end).slice(0, 10)
                 : ''))));
    const buy = (label, path, body) => {
        const b = h('button', {type: 'button'}, label);
        b.addEventListener('click', () => attempt(b, async () => {
            const r = await api('POST', path, body);
            location.assign(r.checkout_url);
        }));
        return b;
    };
    parts.push(h('h2', {}, 'Buy credits'),
        h('div', {class: 'plans'}, (p.credit_packs || []).map(c =>
            h('section', {class: 'card'},
              h('h3', {}, c.name),
              h('p', {class: 'price'}, money(c.price_cents, c.currency)),
              h('p', {}, c.credits + ' credits'),
              c.buyable === false ? null
                  : buy('Buy ' + c.name, 'purchase_credits', {pack: c.id})))),
        (p.credit_packs || []).length ? null
            : h('p', {}, 'No credit packs are on sale.'),
        h('h2', {}, 'Plans'),
        h('div', {class: 'plans'}, (p.plans || []).map(pl =>
            h('section', {class: 'card'},
              h('h3', {}, pl.name),
              h('p', {class: 'price'}, money(pl.price_cents, pl.currency)
                + (pl.interval ? ' a ' + pl.interval : '')),
              h('p', {}, pl.monthly_quota ? pl.monthly_quota
                         + ' calls a month' : 'pay per call'),
              m.plan && m.plan.id === pl.id
                  ? h('p', {}, h('strong', {}, 'Your plan'))
                  : pl.price_cents && pl.buyable !== false
                      ? buy('Choose ' + pl.name, 'billing/checkout',
                            {plan: pl.id})
                      : null))));
    if (params.get('checkout') === 'success') {
        watchBalance(m.balance ?? 0);
    }
    const portal = h('button', {type: 'button', class: 'secondary'},
                     'Manage payment methods and invoices');
    portal.addEventListener('click', () => attempt(portal, async () => {
        const r = await api('POST', 'billing/portal');
        location.assign(r.portal_url);
    }));
    parts.push(h('h2', {}, 'Invoices and payment methods'), portal);
    view('Billing', ...parts);
}


async function pageDownloads() {
    const r = await api('GET', 'downloads');
    products = r.products || [];
    view('Downloads', products.length
        ? [h('p', {}, 'Each link is yours alone and works for a limited '
             + 'time: get a new one when it has expired.'),
           h('div', {class: 'plans'}, products.map(downloadCard))]
        : h('p', {}, 'Your plan includes no downloads. The plans are on ',
            h('a', {href: '#billing'}, 'the Billing page'), '.'));
}

function downloadCard(p) {
    const out = h('div', {class: 'download'});
    const get = h('button', {type: 'button', 'data-product': p.id,
                             'aria-label': 'Get download link for '
                                           + p.name},
                  'Get download link');
    get.addEventListener('click', () => attempt(get, async () => {
        out.replaceChildren();
        const t = await api('POST', 'downloads/token', {product: p.id});
        out.replaceChildren(
            h('p', {}, h('a', {href: t.url, download: true},
                         'Download ' + p.name)),
            h('p', {class: 'hint'}, 'The link works until '
              + when(t.expires_at) + '. Anyone who has it can use it '
              + 'until then: keep it to yourself.'));
        say('The download link for ' + p.name + ' is ready.');
    }));
    return h('section', {class: 'card'}, h('h2', {}, p.name), get, out);
}


/* after a checkout: the credits come with Stripe's webhook, a moment
   later; look for a minute, while the billing page is shown */
async function watchBalance(before) {
    const page = location.hash;
    for (let i = 0; i < 30; i++) {
        await new Promise(resolve => setTimeout(resolve, 2000));
        if (location.hash !== page) {
            return;
        }
        let now;
        try {
            now = (await api('GET', 'me')).balance ?? 0;
        } catch (e) {
            return;
        }
        if (location.hash !== page) {
            return;
        }
        if (now !== before) {
            const dd = main.querySelector('.stats dd');
            if (dd) {
                dd.textContent = now + ' credits';
            }
            say('The payment is confirmed: your balance is now ' + now
                + ' credits.');
            return;
        }
    }
}


/* ---- the operator's pages ---- */

async function pageUsers(params) {
    const form = h('form', {class: 'card', novalidate: true},
        h('div', {class: 'row'},
            h('div', {}, field('Email address, or its beginning',
                               {type: 'search', name: 'email',
                                value: params.get('email') || ''})),
            h('button', {type: 'submit'}, 'Search')));
    onSubmit(form, async data => {
        location.hash = '#admin/users?email='
                        + encodeURIComponent(data.get('email'));
    });
    const q = params.get('email') ? '?limit=50&email='
                                    + encodeURIComponent(params.get('email'))
                                  : '?limit=50';
    const r = await api('GET', 'admin/users' + q);
    view('Users', form,
        table([{title: 'Email', get: u => u.email},
               {title: 'Plan', get: u => u.plan || '—'},
               {title: 'Balance', num: true, get: u => u.balance},
               {title: 'State', get: u => u.suspended ? 'suspended'
                     : u.email_verified ? 'active' : 'unconfirmed'},
               {title: 'Since', get: u => when(u.created_at).slice(0, 10)},
               {title: 'Actions', get: userActions}],
              r.users || [], 'No user matches.'));
}

function userActions(u) {
    const toggle = h('button', {type: 'button',
                                class: 'small ' + (u.suspended ? 'secondary'
                                                               : 'danger'),
                                'data-action': u.suspended ? 'unsuspend'
                                                           : 'suspend',
                                'aria-label': (u.suspended ? 'Unsuspend '
                                               : 'Suspend ') + u.email},
                     u.suspended ? 'Unsuspend' : 'Suspend');
    toggle.addEventListener('click', () => attempt(toggle, async () => {
        if (!u.suspended && !await confirmDialog('Suspend ' + u.email
                + '? Its keys and sessions stop working.', 'Suspend')) {
            return;
        }
        await api('PATCH', 'admin/users/' + u.id,
                  {suspended: !u.suspended});
        await route();
        say(u.email + (u.suspended ? ' is active again.'
                                   : ' is suspended.'));
    }));
    const amount = h('input', {type: 'number', step: '1',
                               'aria-label': 'Credits for ' + u.email,
                               placeholder: 'credits', class: 'amount'});
    const reason = h('input', {type: 'text', 'aria-label': 'Reason for '
                               + u.email, placeholder: 'reason'});
    const grant = h('button', {type: 'button', class: 'small',
                               'aria-label': 'Grant credits to ' + u.email},
                    'Grant');
    /* one key per form shown: a retried click grants once */
    let key = crypto.randomUUID();
    grant.addEventListener('click', () => attempt(grant, async () => {
        const r = await api('POST', 'admin/credits',
                            {user_id: u.id, amount: Number(amount.value),
                             reason: reason.value, idempotency_key: key});
        key = crypto.randomUUID();
        await route();
        say(r.amount + ' credits granted to ' + u.email
            + '; the balance is ' + r.balance_after + '.');
    }));
    return h('div', {}, toggle, h('div', {class: 'row'}, amount, reason,
                                  grant));
}

function show(v) {
    if (v === null || v === undefined) {
        return '—';
    }
    if (typeof v === 'object') {
        return Object.entries(v).map(([k, x]) => k.replace(/_/g, ' ')
                                     + ': ' + show(x)).join(', ');
    }
    if (typeof v === 'string' && /^\d{4}-\d\d-\d\dT/.test(v)) {
        return when(v);
    }
    return String(v);
}

async function pageAudit() {
    const r = await api('GET', 'admin/audit?limit=100');
    view('Audit log',
        table([{title: 'When', get: e => when(e.created_at)},
               {title: 'Who', get: e => show(e.actor)},
               {title: 'Action', get: e => e.action},
               {title: 'Target', get: e => show(e.target)},
               {title: 'Details', get: e => show(e.details)},
               {title: 'Address', get: e => e.address || '—'}],
              r.entries || [], 'The log is empty.'));
}


async function pageWebhooks(params) {
    const st = params.get('status') || '';
    const filter = h('select', {id: 'wh-status', 'aria-label':
                                'Which events'},
        [['', 'all events'], ['applied', 'applied'], ['pending',
         'received, not applied']].map(([v, t]) =>
            h('option', {value: v, selected: v === st}, t)));
    filter.addEventListener('change', () => {
        location.hash = '#admin/webhooks' + (filter.value ? '?status='
                                             + filter.value : '');
    });
    const r = await api('GET', 'admin/webhook_events?limit=100'
                               + (st ? '&status=' + st : ''));
    view('Webhook events', h('div', {class: 'card'}, filter),
        table([{title: 'Received', get: e => when(e.received_at)},
               {title: 'Provider', get: e => e.provider},
               {title: 'Type', get: e => e.type},
               {title: 'Event', get: e => h('code', {}, e.id)},
               {title: 'State', get: e => e.status},
               {title: 'Applied', get: e => when(e.processed_at)}],
              r.events || [], 'No events.'));
}

async function pageRevenue() {
    const r = await api('GET', 'admin/revenue');
    const sold = r.credits_sold || {};
    view('Revenue',
        h('dl', {class: 'stats'},
            stat('Credits sold this month', sold.this_month ?? 0),
            stat('Credits sold ever', sold.all_time ?? 0),
            (r.mrr || []).length
                ? (r.mrr || []).map(m => stat('Monthly recurring revenue',
                      money(m.amount_cents, m.currency)))
                : stat('Monthly recurring revenue', money(0, 'usd'))),
        h('h2', {}, 'Subscriptions by plan'),
        table([{title: 'Plan', get: x => x.plan},
               {title: 'State', get: x => x.status},
               {title: 'Subscriptions', num: true, get: x => x.count}],
              r.subscriptions || [], 'No subscriptions.'));
}

async function pageTop(params) {
    const days = params.get('days') || '30';
    const pick = h('select', {id: 'top-days', 'aria-label': 'Period'},
        ['1', '7', '30', '90'].map(d => h('option', {value: d, selected:
            d === days}, 'last ' + d + (d === '1' ? ' day' : ' days'))));
    pick.addEventListener('change', () => {
        location.hash = '#admin/top?days=' + pick.value;
    });
    const r = await api('GET', 'admin/top_accounts?limit=20&days='
                               + encodeURIComponent(days));
    view('Top accounts', h('div', {class: 'card'}, pick),
        table([{title: 'Account', get: x => x.email},
               {title: 'Calls', num: true, get: x => x.calls},
               {title: 'Credits', num: true, get: x => x.credits}],
              r.accounts || [], 'No calls in this period.'));
}


/* ---- the router ---- */

const PAGES = {
    signup: {page: pageSignup},
    login: {page: pageLogin},
    verify: {page: pageVerify},
    forgot: {page: pageForgot},
    reset: {page: pageReset},
    dashboard: {page: pageDashboard, auth: true},
    keys: {page: pageKeys, auth: true},
    billing: {page: pageBilling, auth: true},
    downloads: {page: pageDownloads, auth: true},
    'admin/users': {page: pageUsers, auth: true, admin: true},
    'admin/audit': {page: pageAudit, auth: true, admin: true},
    'admin/webhooks': {page: pageWebhooks, auth: true, admin: true},
    'admin/revenue': {page: pageRevenue, auth: true, admin: true},
    'admin/top': {page: pageTop, auth: true, admin: true},
};

function nav() {
    const n = document.getElementById('nav');
    n.hidden = !access;
    for (const li of n.querySelectorAll('.admin')) {
        li.hidden = !(me && me.user && me.user.is_admin);
    }
    document.getElementById('nav-downloads').hidden = !(products
                                                        && products.length);
    const name = location.hash.slice(1).split('?')[0];
    for (const a of n.querySelectorAll('a')) {
        if (a.getAttribute('href') === '#' + name) {
            a.setAttribute('aria-current', 'page');
        } else {
            a.removeAttribute('aria-current');
        }
    }
}

async function route() {
    const hash = location.hash.slice(1);
    const q = hash.indexOf('?');
    const name = q < 0 ? hash : hash.slice(0, q);
    const params = new URLSearchParams(q < 0 ? '' : hash.slice(q + 1));
    const p = PAGES[name];
    if (!p) {
        location.replace('#' + (access ? 'dashboard' : 'login'));
        return;
    }
    if (p.auth && !access) {
        /* a reload: the cookie may still hold a session */
        if (!(await refresh().catch(() => false))) {
            wanted = '#' + hash;
            say('');
            location.hash = '#login';
            return;
        }
    }
    if (p.admin && !(me && me.user)) {
        await loadMe();
    }
    if (p.auth && products === null) {
        await loadProducts();
    }
    if (p.admin && !me.user.is_admin) {
        view('Operators only', h('p', {}, WORDS.forbidden));
        return;
    }
    nav();
    await p.page(params);
    nav();
    if (notice) {
        say(...notice);
        notice = null;
    }
}

document.getElementById('logout').addEventListener('click', ev =>
    attempt(ev.currentTarget, async () => {
        const r = await raw('POST', 'auth/logout', {});
        if (r.status >= 500) {
            throw new ApiError(r.status, r.json);
        }
        loggedOut('You are logged out.', 'ok');
    }));

document.querySelector('.skip').addEventListener('click', ev => {
    ev.preventDefault();
    main.focus();
});

window.addEventListener('hashchange', () => attempt(null, route));
attempt(null, route);

})();
