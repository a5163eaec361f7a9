#!/usr/bin/python3
#
# A fake of Stripe's API for the tests and the demo (stdlib only), on
# 127.0.0.1: form-encoded requests in, JSON out, Bearer auth, idempotency
# keys as Stripe keeps them, and a control API under /_fake/ to read what
# it was sent, make it fail, and make webhook events.
#
#   fake_stripe.py --port P --key sk_test_... [--pidfile FILE]
#                  [--webhook URL --webhook-secret whsec_...]
#
# Stripe's part:
#   POST /v1/customers, GET /v1/customers/{id}
#   POST /v1/checkout/sessions, GET /v1/checkout/sessions/{id}
#   POST /v1/billing_portal/sessions
#   POST /v1/billing/meter_events   (a second one with the same identifier
#                                    is a 400, as Stripe answers)
#   GET /v1/subscriptions/{id}
#   GET /pay/{session id}           the "checkout page": what is bought,
#                                   and a Pay button (a plain form)
#   POST /pay/{session id}          pays: the session complete and paid
#                                   (its subscription made, in subscription
#                                   mode); with --webhook, the events Stripe
#                                   would send (checkout.session.completed;
#                                   for a subscription also
#                                   customer.subscription.created and
#                                   invoice.paid) POSTed to URL, signed as
#                                   Stripe signs (Stripe-Signature: t=,v1=
#                                   HMAC-SHA256 of "t.body" under the
#                                   secret), each tried up to 4 times with
#                                   backoff until a 2xx; then a 303 to the
#                                   session's success_url. Paying again
#                                   sends the same events again (same ids),
#                                   as Stripe redelivers them.
#   GET /portal/{portal session id} the "billing portal": a link back to
#                                   its return_url
# The control part:
#   GET  /_fake/requests            every request to /v1/, in arrival order:
#                                   {method, path, query, headers
#                                   (Authorization, Idempotency-Key,
#                                   Stripe-Version, Content-Type as they
#                                   came), form (a flat {name: value}),
#                                   status (answered, or null: dropped or
#                                   hung), at}
#   GET  /_fake/objects/{kind}      customers, checkout_sessions,
#                                   portal_sessions, meter_events,
#                                   subscriptions: the objects made
#   POST /_fake/reset               forgets everything
#   POST /_fake/fail {"path": "/v1/customers", "mode": "500" | "429" |
#                     "409" | "400" | "402" | "404" | "hang" | "drop" |
#                     "lost",
#                     "times": N, "retry_after": S, "method": "POST"}
#                                   the next N matching requests (path
#                                   prefix) fail that way; "hang" never
#                                   answers (until the client goes),
#                                   "drop" closes without an answer,
#                                   "lost" does the work (objects made,
#                                   the idempotency key kept) and then
#                                   closes without an answer
#   GET  /_fake/objects/deliveries  every webhook delivery attempt:
#                                   {event, type, url, attempt, status
#                                   (null: no answer), at}
#   GET  /_fake/event/{type}/{id}[?field=value...]
#                                   a whole Stripe event about an object it
#                                   made; a query overrides fields of
#                                   data.object ("created" and "id" those of
#                                   the event); values are JSON when they
#                                   parse as JSON

import argparse
import hashlib
import hmac
import html
import json
import os
import secrets
import select
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


LOCK = threading.Lock()
STATE = {}
KEY = None
PORT = None
WEBHOOK = None
WEBHOOK_SECRET = None


def reset():
    STATE.clear()
    STATE.update(requests=[], fails=[], idempotency={},
                 customers={}, checkout_sessions={}, portal_sessions={},
                 meter_events={}, subscriptions={}, invoices={}, charges={},
                 payments={}, deliveries={})


def new_id(prefix):
    return prefix + '_test_' + secrets.token_hex(12)


def unflatten(form):
    """ "a[b][0][c]" names to nested objects; numeric keys to lists """
    root = {}
    for name, value in form:
        parts = []
        head, sep, rest = name.partition('[')
        parts.append(head)
        while sep:
            key, _, rest = rest.partition(']')
            parts.append(key)
            _, sep, rest = rest.partition('[')
        node = root
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value

    def lists(node):
        if not isinstance(node, dict):
            return node
        node = {k: lists(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            return [node[k] for k in sorted(node, key=int)]
        return node

    return lists(root)


def stripe_error(status, type_, message, code=None, param=None):
    err = {'type': type_, 'message': message}
    if code:
        err['code'] = code
    if param:
        err['param'] = param
    return status, {'error': err}


# Stripe's objects ----------------------------------------------------------

def make_customer(p):
    c = {'id': new_id('cus'), 'object': 'customer', 'created': int(time.time()),
         'email': p.get('email'), 'name': p.get('name'),
         'metadata': p.get('metadata', {}), 'livemode': False}
    STATE['customers'][c['id']] = c
    return 200, c


def make_checkout_session(p):
    mode = p.get('mode')
    if mode not in ('payment', 'subscription', 'setup'):
        return stripe_error(400, 'invalid_request_error',
                            'Invalid mode: must be one of payment, '
                            'setup, or subscription', 'parameter_invalid',
                            'mode')
    if not p.get('line_items') and mode != 'setup':
        return stripe_error(400, 'invalid_request_error',
                            'You must provide line_items',
                            'parameter_missing', 'line_items')
    if not p.get('success_url'):
        return stripe_error(400, 'invalid_request_error',
                            'Missing required param: success_url.',
                            'parameter_missing', 'success_url')
    customer = p.get('customer')
    if customer and customer not in STATE['customers']:
        return stripe_error(400, 'invalid_request_error',
                            "No such customer: '%s'" % customer,
                            'resource_missing', 'customer')
    sid = new_id('cs')
    total = 0
    for li in p.get('line_items') or []:
        qty = int(li.get('quantity', 1))
        pd = li.get('price_data') or {}
        total += int(pd.get('unit_amount', 0)) * qty
    s = {'id': sid, 'object': 'checkout.session', 'created': int(time.time()),
         'mode': mode, 'customer': customer,
         'customer_email': p.get('customer_email'),
         'client_reference_id': p.get('client_reference_id'),
         'metadata': p.get('metadata', {}),
         'line_items': p.get('line_items'),
         'success_url': p.get('success_url'),
         'cancel_url': p.get('cancel_url'),
         'subscription_data': p.get('subscription_data'),
         'payment_intent_data': p.get('payment_intent_data'),
         'amount_total': total, 'currency': 'usd',
         'status': 'open', 'payment_status': 'unpaid',
         'payment_intent': None, 'subscription': None,
         'url': 'http://127.0.0.1:%d/pay/%s' % (PORT, sid),
         'livemode': False}
    STATE['checkout_sessions'][sid] = s
    return 200, s


def make_portal_session(p):
    customer = p.get('customer')
    if not customer:
        return stripe_error(400, 'invalid_request_error',
                            'Missing required param: customer.',
                            'parameter_missing', 'customer')
    if customer not in STATE['customers']:
        return stripe_error(400, 'invalid_request_error',
                            "No such customer: '%s'" % customer,
                            'resource_missing', 'customer')
    s = {'id': new_id('bps'), 'object': 'billing_portal.session',
         'created': int(time.time()), 'customer': customer,
         'return_url': p.get('return_url'), 'livemode': False}
    s['url'] = 'http://127.0.0.1:%d/portal/%s' % (PORT, s['id'])
    STATE['portal_sessions'][s['id']] = s
    return 200, s


def make_meter_event(p):
    for f in ('event_name', 'payload'):
        if not p.get(f):
            return stripe_error(400, 'invalid_request_error',
                                'Missing required param: %s.' % f,
                                'parameter_missing', f)
    ident = p.get('identifier') or new_id('mev')
    if ident in STATE['meter_events']:
        return stripe_error(400, 'invalid_request_error',
                            'An event already exists with identifier %s.'
                            % ident, 'resource_already_exists',
                            'identifier')
    e = {'object': 'billing.meter_event', 'created': int(time.time()),
         'event_name': p['event_name'], 'identifier': ident,
         'payload': p['payload'],
         'timestamp': int(p.get('timestamp') or time.time()),
         'livemode': False}
    STATE['meter_events'][ident] = e
    return 200, e


def get_object(kind, oid, what):
    o = STATE[kind].get(oid)
    if o is None:
        return stripe_error(404, 'invalid_request_error',
                            "No such %s: '%s'" % (what, oid),
                            'resource_missing', 'id')
    return 200, o


def subscription_for(session):
    if session.get('subscription'):
        return STATE['subscriptions'][session['subscription']]
    now = int(time.time())
    li = (session.get('line_items') or [{}])[0]
    price = li.get('price') or 'price_test_inline'
    sub = {'id': new_id('sub'), 'object': 'subscription', 'created': now,
           'customer': session.get('customer'), 'status': 'active',
           'cancel_at_period_end': False,
           'current_period_start': now,
           'current_period_end': now + 30 * 86400,
           'metadata': dict(session.get('metadata') or {},
                            **((session.get('subscription_data') or {})
                               .get('metadata') or {})),
           'items': {'object': 'list', 'data': [{
               'id': new_id('si'), 'object': 'subscription_item',
               'price': {'id': price, 'object': 'price',
                         'recurring': {'interval': 'month'}},
               'quantity': int(li.get('quantity', 1)),
               'current_period_start': now,
               'current_period_end': now + 30 * 86400}]},
           'livemode': False}
    STATE['subscriptions'][sub['id']] = sub
    session['subscription'] = sub['id']
    return sub


def event_object(type_, oid):
    """ the data.object of an event of type_ about the object oid """
    if type_.startswith('checkout.session.'):
        s = STATE['checkout_sessions'].get(oid)
        if s is None:
            return None
        s['status'] = 'complete'
        if type_ in ('checkout.session.completed',
                     'checkout.session.async_payment_succeeded'):
            s['payment_status'] = 'paid'
        elif type_ == 'checkout.session.async_payment_failed':
            s['payment_status'] = 'unpaid'
        if s['mode'] == 'payment' and not s['payment_intent']:
            s['payment_intent'] = new_id('pi')
        if s['mode'] == 'subscription':
            subscription_for(s)
        o = dict(s)
        o.pop('line_items', None)
        return o
    if type_.startswith('customer.subscription.'):
        sub = STATE['subscriptions'].get(oid)
        if sub is None:
            s = STATE['checkout_sessions'].get(oid)
            if s is None or s['mode'] != 'subscription':
                return None
            sub = subscription_for(s)
        if type_ == 'customer.subscription.deleted':
            sub['status'] = 'canceled'
        return dict(sub)
    if type_.startswith('invoice.'):
        sub = STATE['subscriptions'].get(oid)
        if sub is None:
            s = STATE['checkout_sessions'].get(oid)
            if s is None or s['mode'] != 'subscription':
                return None
            sub = subscription_for(s)
        paid = type_ == 'invoice.paid'
        if paid:
            sub['status'] = 'active'
        elif type_ == 'invoice.payment_failed':
            sub['status'] = 'past_due'
        inv = {'id': new_id('in'), 'object': 'invoice',
               'created': int(time.time()), 'customer': sub['customer'],
               'subscription': sub['id'],
               'status': 'paid' if paid else 'open', 'paid': paid,
               'billing_reason': 'subscription_cycle',
               'period_start': sub['current_period_start'],
               'period_end': sub['current_period_end'],
               'lines': {'object': 'list', 'data': [{
                   'object': 'line_item',
                   'period': {'start': sub['current_period_start'],
                              'end': sub['current_period_end']},
                   'price': sub['items']['data'][0]['price']}]},
               'livemode': False}
        STATE['invoices'][inv['id']] = inv
        return inv
    if type_ == 'charge.refunded':
        s = STATE['checkout_sessions'].get(oid)
        pi = s['payment_intent'] if s else oid
        if s and not pi:
            return None
        ch = {'id': new_id('ch'), 'object': 'charge',
              'created': int(time.time()), 'payment_intent': pi,
              'customer': s['customer'] if s else None,
              'amount': s['amount_total'] if s else 0,
              'amount_refunded': s['amount_total'] if s else 0,
              'refunded': True,
              'metadata': dict(s['metadata']) if s else {},
              'livemode': False}
        STATE['charges'][ch['id']] = ch
        return ch
    return {'id': oid, 'object': type_.split('.')[0]}


def make_event(type_, oid, query):
    obj = event_object(type_, oid)
    if obj is None:
        return stripe_error(404, 'invalid_request_error',
                            "No object '%s' for %s" % (oid, type_))
    ev = {'id': new_id('evt'), 'object': 'event', 'api_version': None,
          'created': int(time.time()), 'type': type_,
          'data': {'object': obj}, 'livemode': False, 'pending_webhooks': 1,
          'request': {'id': None, 'idempotency_key': None}}
    for k, v in query:
        try:
            v = json.loads(v)
        except ValueError:
            pass
        if k in ('created', 'id'):
            ev[k] = v
        else:
            obj[k] = v
    return 200, ev


# The checkout page, paying, and the webhooks that paying sends ------------

def pay(sid):
    """ the events of paying session sid: made at the first payment, the
    same ones (same ids) again at the next, as Stripe redelivers them """
    s = STATE['checkout_sessions'].get(sid)
    if s is None:
        return None
    events = STATE['payments'].get(sid)
    if events is None:
        types = ['checkout.session.completed']
        if s['mode'] == 'subscription':
            types += ['customer.subscription.created', 'invoice.paid']
        events = []
        for t in types:
            q = ([('billing_reason', '"subscription_create"')]
                 if t == 'invoice.paid' else [])
            events.append(make_event(t, sid, q)[1])
        STATE['payments'][sid] = events
    return s, events


def sign(body, t):
    mac = hmac.new(WEBHOOK_SECRET.encode(), str(t).encode() + b'.' + body,
                   hashlib.sha256)
    return 't=%d,v1=%s' % (t, mac.hexdigest())


def deliver(ev):
    """ POSTs ev to the webhook URL until a 2xx, 4 tries at most (0.5s,
    1s, 2s between), each signed anew as Stripe does; True once 2xx """
    body = json.dumps(ev).encode()
    for attempt in range(1, 5):
        req = urllib.request.Request(WEBHOOK, data=body, method='POST',
            headers={'Content-Type': 'application/json; charset=utf-8',
                     'User-Agent': 'Stripe/1.0 (+https://stripe.com/docs/'
                                   'webhooks)',
                     'Stripe-Signature': sign(body, int(time.time()))})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status = r.status
                r.read()
        except urllib.error.HTTPError as e:
            status = e.code
        except (OSError, ValueError):
            status = None
        with LOCK:
            d = STATE['deliveries']
            d[str(len(d) + 1)] = {'event': ev['id'], 'type': ev['type'],
                                  'url': WEBHOOK, 'attempt': attempt,
                                  'status': status, 'at': time.time()}
        if status is not None and 200 <= status < 300:
            return True
        if attempt < 4:
            time.sleep(0.5 * 2 ** (attempt - 1))
    return False


def page(title, body):
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<title>%s</title></head><body><h1>%s</h1>%s</body></html>\n'
            % (title, title, body)).encode()


def checkout_page(s):
    e = html.escape
    what = ''.join('<li>%s x %s</li>' % (
        e(str(li.get('quantity', 1))),
        e(str((((li.get('price_data') or {}).get('product_data') or {})
               .get('name')) or li.get('price') or 'item')))
        for li in s.get('line_items') or [])
    amount = '%d.%02d %s' % (s['amount_total'] // 100,
                             s['amount_total'] % 100, s['currency'].upper())
    body = ('<p>Mode: %s. Total: %s. Status: %s, %s.</p><ul>%s</ul>'
            % (e(s['mode']), e(amount), e(s['status']),
               e(s['payment_status']), what))
    body += ('<form method="post" action="/pay/%s">'
             '<button type="submit">Pay</button></form>' % e(s['id']))
    if s.get('cancel_url'):
        body += '<p><a href="%s">Cancel</a></p>' % e(s['cancel_url'])
    return page('Fake Stripe Checkout', body)


def portal_page(ps):
    e = html.escape
    body = '<p>Customer %s.</p>' % e(ps['customer'])
    if ps.get('return_url'):
        body += '<p><a href="%s">Return</a></p>' % e(ps['return_url'])
    return page('Fake Stripe billing portal', body)


ROUTES = [
    ('POST', '/v1/customers', make_customer),
    ('POST', '/v1/checkout/sessions', make_checkout_session),
    ('POST', '/v1/billing_portal/sessions', make_portal_session),
    ('POST', '/v1/billing/meter_events', make_meter_event),
]

GETS = [
    ('/v1/customers/', 'customers', 'customer'),
    ('/v1/checkout/sessions/', 'checkout_sessions', 'checkout.session'),
    ('/v1/subscriptions/', 'subscriptions', 'subscription'),
]


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, obj, headers=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.send_header('Request-Id', 'req_' + secrets.token_hex(7))
        # no keep-alive: libcurl retries a request itself on a reused
        # connection that was dropped, which would blur what a test counts
        self.send_header('Connection', 'close')
        self.close_connection = True
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.handle_any('GET')

    def do_POST(self):
        self.handle_any('POST')

    def do_DELETE(self):
        self.handle_any('DELETE')

    def handle_any(self, method):
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        n = int(self.headers.get('Content-Length') or 0)
        raw = self.rfile.read(n) if n else b''
        if path.startswith('/_fake/'):
            return self.control(method, path, url.query, raw)
        if path.startswith('/pay/') or path.startswith('/portal/'):
            return self.pages(method, path)
        return self.stripe(method, path, url.query, raw)

    def html(self, status, body, headers=None):
        self.send_response(status)
        self.send_header('Content-Type', 'text/html; charset=utf-8')
        self.send_header('Content-Length', str(len(body)))
        self.send_header('Connection', 'close')
        self.close_connection = True
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def pages(self, method, path):
        kind, _, oid = path[1:].partition('/')
        with LOCK:
            if kind == 'portal':
                ps = STATE['portal_sessions'].get(oid)
                if ps is None or method != 'GET':
                    return self.html(404, page('No such page', ''))
                return self.html(200, portal_page(ps))
            if method == 'GET':
                s = STATE['checkout_sessions'].get(oid)
                if s is None:
                    return self.html(404, page('No such session', ''))
                return self.html(200, checkout_page(s))
            if method != 'POST':
                return self.html(405, page('Method not allowed', ''))
            paid = pay(oid)
            if paid is None:
                return self.html(404, page('No such session', ''))
            s, events = paid
            success = s['success_url'].replace('{CHECKOUT_SESSION_ID}',
                                               s['id'])
        # not under LOCK: the webhook's receiver may call this fake back
        # and the browser goes on, delivered or not, as with Stripe
        for ev in events:
            if WEBHOOK and not deliver(ev):
                print('%s %s: not delivered to %s' % (ev['id'], ev['type'],
                                                      WEBHOOK), flush=True)
        return self.html(303, page('Paid', '<p><a href="%s">Continue</a>'
                                   '</p>' % html.escape(success)),
                         {'Location': success})

    def control(self, method, path, query, raw):
        with LOCK:
            if path == '/_fake/requests':
                return self.answer(200, STATE['requests'])
            if path == '/_fake/reset' and method == 'POST':
                reset()
                return self.answer(200, {'ok': True})
            if path == '/_fake/fail' and method == 'POST':
                f = json.loads(raw or b'{}')
                f.setdefault('times', 1)
                f['mode'] = str(f.get('mode', '500'))
                STATE['fails'].append(f)
                return self.answer(200, {'ok': True})
            if path.startswith('/_fake/objects/'):
                kind = path[len('/_fake/objects/'):]
                if kind in STATE and isinstance(STATE[kind], dict):
                    return self.answer(200, list(STATE[kind].values()))
            if path.startswith('/_fake/event/'):
                parts = path[len('/_fake/event/'):].split('/', 1)
                if len(parts) == 2:
                    q = urllib.parse.parse_qsl(query, keep_blank_values=True)
                    st, obj = make_event(parts[0], parts[1], q)
                    return self.answer(st, obj)
        return self.answer(404, {'error': 'no such control'})

    def stripe(self, method, path, query, raw):
        ctype = self.headers.get('Content-Type') or ''
        form_pairs = urllib.parse.parse_qsl(
            raw.decode() if method == 'POST' else query,
            keep_blank_values=True)
        rec = {'method': method, 'path': path, 'query': query,
               'headers': {h: self.headers.get(h) for h in (
                   'Authorization', 'Idempotency-Key', 'Stripe-Version',
                   'Content-Type', 'User-Agent')},
               'body': raw.decode(errors='replace'),
               'form': dict(form_pairs), 'status': None, 'at': time.time()}
        with LOCK:
            STATE['requests'].append(rec)
            fail = None
            for f in STATE['fails']:
                if (f['times'] > 0 and path.startswith(f.get('path', '/'))
                        and f.get('method', method) == method):
                    f['times'] -= 1
                    fail = f
                    break

        if fail and fail['mode'] != 'lost':
            return self.fail(rec, fail)

        auth = self.headers.get('Authorization') or ''
        if auth != 'Bearer ' + KEY:
            st, obj = stripe_error(401, 'invalid_request_error',
                                   'Invalid API Key provided: %s' %
                                   mask(auth[7:]))
            rec['status'] = st
            return self.answer(st, obj)

        if method == 'POST' and 'x-www-form-urlencoded' not in ctype:
            st, obj = stripe_error(400, 'invalid_request_error',
                                   'Content-Type must be form-encoded')
            rec['status'] = st
            return self.answer(st, obj)

        params = unflatten(form_pairs)
        key = self.headers.get('Idempotency-Key')

        with LOCK:
            if method == 'POST' and key:
                seen = STATE['idempotency'].get(key)
                if seen:
                    if seen['path'] != path or seen['body'] != raw:
                        st, obj = stripe_error(
                            400, 'idempotency_error',
                            'Keys for idempotent requests can only be used '
                            'with the same parameters they were first used '
                            'with.')
                        rec['status'] = st
                        return self.answer(st, obj)
                    rec['replayed'] = True
                    if fail:
                        return self.drop()
                    rec['status'] = seen['status']
                    return self.answer(seen['status'], seen['obj'],
                                       {'Idempotent-Replayed': 'true'})
            st, obj = self.route(method, path, params)
            if method == 'POST' and key:
                STATE['idempotency'][key] = {'path': path, 'body': raw,
                                             'status': st, 'obj': obj}
            rec['status'] = st
        if fail:
            rec['status'] = None
            return self.drop()
        return self.answer(st, obj)

    def drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def route(self, method, path, params):
        for m, p, fn in ROUTES:
            if m == method and p == path:
                return fn(params)
        if method == 'GET':
            for prefix, kind, what in GETS:
                if path.startswith(prefix) and '/' not in path[len(prefix):]:
                    return get_object(kind, path[len(prefix):], what)
        return stripe_error(404, 'invalid_request_error',
                            'Unrecognized request URL (%s: %s).'
                            % (method, path))

    def fail(self, rec, f):
        mode = f['mode']
        if mode == 'drop':
            return self.drop()
        if mode == 'hang':
            # until the client gives up (or ten minutes)
            self.close_connection = True
            deadline = time.time() + 600
            while time.time() < deadline:
                r, _, _ = select.select([self.connection], [], [], 0.5)
                if r:
                    try:
                        if not self.connection.recv(1, socket.MSG_PEEK):
                            return
                    except OSError:
                        return
            return
        st = int(mode)
        headers = {}
        if f.get('retry_after') is not None:
            headers['Retry-After'] = str(f['retry_after'])
        if st == 429:
            obj = {'error': {'type': 'invalid_request_error',
                             'code': 'rate_limit',
                             'message': 'Too many requests made to the '
                                        'API too quickly'}}
        elif st == 409:
            obj = {'error': {'type': 'idempotency_error',
                             'code': 'lock_timeout',
                             'message': 'There is currently another '
                                        'in-progress request using this '
                                        'Idempotent Key'}}
        elif st >= 500:
            obj = {'error': {'type': 'api_error',
                             'message': 'An unknown error occurred'}}
        elif st == 402:
            obj = {'error': {'type': 'card_error', 'code': 'card_declined',
                             'message': 'Your card was declined.'}}
        else:
            obj = {'error': {'type': 'invalid_request_error',
                             'code': 'resource_missing' if st == 404
                             else 'parameter_invalid',
                             'message': 'Fake failure %d' % st}}
        with LOCK:
            rec['status'] = st
        self.close_connection = True
        return self.answer(st, obj, headers)


def mask(key):
    if len(key) <= 8:
        return '*' * len(key)
    return key[:8] + '*' * (len(key) - 12) + key[-4:]


def main():
    global KEY, PORT, WEBHOOK, WEBHOOK_SECRET
    ap = argparse.ArgumentParser()
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--key', required=True)
    ap.add_argument('--pidfile')
    ap.add_argument('--webhook', metavar='URL')
    ap.add_argument('--webhook-secret', metavar='SECRET')
    a = ap.parse_args()
    if bool(a.webhook) != bool(a.webhook_secret):
        ap.error('--webhook and --webhook-secret go together')
    KEY = a.key
    PORT = a.port
    WEBHOOK = a.webhook
    WEBHOOK_SECRET = a.webhook_secret
    reset()
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    srv = ThreadingHTTPServer(('127.0.0.1', a.port), Handler)
    if a.pidfile:
        with open(a.pidfile, 'w') as f:
            f.write('%d\n' % os.getpid())
    srv.serve_forever()


if __name__ == '__main__':
    main()
