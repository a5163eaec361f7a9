#!/usr/bin/python3
"""The portal in headless Chromium, as a customer and an operator use it.

Run by t/511-portal-browser.t, which starts nginx, PostgreSQL and the mail
sink. Prints one line a check, "ok - NAME" or "not ok - NAME<TAB>WHY", which
the .t file turns into TAP; calls to the gated API go outside the browser
(urllib). Every page is saved as a screenshot at desktop and phone width,
its DOM checked as valid HTML, and the browser's console for CSP
violations.
"""

import argparse
import glob
import hashlib
import hmac
import html5lib
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import (NoSuchElementException,
                                        StaleElementReferenceException,
                                        TimeoutException)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

DESKTOP = (1280, 900)
PHONE = (390, 844)

args = None
driver = None
failures = 0
csp_logs = []


def check(name, cond, why=''):
    global failures
    if cond:
        print('ok - ' + name, flush=True)
    else:
        failures += 1
        print('not ok - %s\t%s' % (name, why), flush=True)
    return cond


def wait(cond, timeout=10):
    # a page drawn again leaves stale elements: look again
    return WebDriverWait(driver, timeout, ignored_exceptions=[
        StaleElementReferenceException]).until(cond)


def text_of(sel):
    for _ in range(20):
        try:
            return css(sel).text
        except (StaleElementReferenceException, NoSuchElementException):
            time.sleep(0.1)
    return ''


def css(sel):
    return driver.find_element(By.CSS_SELECTOR, sel)


def h1(text, timeout=10):
    try:
        wait(EC.text_to_be_present_in_element((By.CSS_SELECTOR, 'main h1'),
                                              text), timeout)
        return True
    except TimeoutException:
        return False


def status_text():
    return text_of('#status')


def go(route):
    driver.execute_script('location.hash = arguments[0]', route)


def fill(label, value):
    """types into the input that a <label> names (the label must work)"""
    el = driver.find_element(By.XPATH, '//label[normalize-space()="%s"]'
                             % label)
    inp = driver.find_element(By.ID, el.get_attribute('for'))
    inp.clear()
    inp.send_keys(value)
    return inp


def submit(text):
    driver.find_element(By.XPATH, '//main//button[normalize-space()="%s"]'
                        % text).click()


def read_logs():
    for entry in driver.get_log('browser'):
        if 'Content Security Policy' in entry.get('message', ''):
            csp_logs.append(entry['message'])


def valid_html(name):
    """the page's DOM, as served plus what the script made, is valid HTML"""
    doc = '<!DOCTYPE html>\n' + driver.execute_script(
        'return document.documentElement.outerHTML')
    parser = html5lib.HTMLParser(strict=True)
    try:
        parser.parse(doc)
        errors = []
    except html5lib.html5parser.ParseError as e:
        errors = [str(e)]
    errors += driver.execute_script(r'''
        const out = [];
        const ids = new Set();
        for (const el of document.querySelectorAll('[id]')) {
            if (ids.has(el.id)) out.push('duplicate id ' + el.id);
            ids.add(el.id);
        }
        for (const el of document.querySelectorAll('input, select')) {
            const labelled = el.getAttribute('aria-label')
                || (el.id && document.querySelector(
                        'label[for="' + el.id + '"]'));
            if (!labelled) out.push('unlabelled ' + el.outerHTML);
        }
        for (const el of document.querySelectorAll('label[for]')) {
            if (!document.getElementById(el.htmlFor))
                out.push('label for nothing: ' + el.htmlFor);
        }
        for (const el of document.querySelectorAll('[style]')) {
            out.push('inline style on ' + el.tagName);
        }
        for (const el of document.querySelectorAll('[aria-describedby]')) {
            for (const id of el.getAttribute('aria-describedby').split(' '))
                if (!document.getElementById(id))
                    out.push('described by nothing: ' + id);
        }
        const words = document.body.innerText;
        for (const w of ['null', 'undefined', 'NaN'])
            if (new RegExp('\\b' + w + '\\b').test(words))
                out.push('the page shows ' + w);
        if (words.includes('[object'))
            out.push('the page shows [object');
        if (document.querySelectorAll('main h1').length !== 1)
            out.push('not one h1 in main');
        return out;''')
    check('%s: valid HTML, labelled, no inline style' % name, not errors,
          '; '.join(errors)[:500])


def shot(name):
    """the page at desktop and at phone width; no sideways scrolling"""
    valid_html(name)
    for label, (w, h) in (('desktop', DESKTOP), ('phone', PHONE)):
        driver.set_window_size(w, h)
        time.sleep(0.2)
        path = os.path.join(args.shots, '%s-%s.png' % (name, label))
        driver.save_screenshot(path)
        if label == 'phone':
            over = driver.execute_script(
                'return document.documentElement.scrollWidth'
                ' - document.documentElement.clientWidth')
            check('%s: fits a phone\'s width' % name, over <= 0,
                  '%d px too wide' % over)
    driver.set_window_size(*DESKTOP)
    read_logs()


def gated(key, path='/api/hello'):
    req = urllib.request.Request(args.base + path,
                                 headers={'Authorization': 'Bearer ' + key})
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, {}
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read())
        except ValueError:
            return e.code, {}


def mail_link(email, kind, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        for f in sorted(glob.glob(os.path.join(args.mail, '*'))):
            with open(f, encoding='utf-8', errors='replace') as fh:
                text = fh.read()
            if ('X-Envelope-To: ' + email) not in text:
                continue
            m = re.search(r'(https?://\S+?token=[A-Za-z0-9_-]+)', text)
            if m and kind in m.group(1):
                return m.group(1)
        time.sleep(0.3)
    return None


def refresh_cookie():
    for c in driver.execute_cdp_cmd('Network.getAllCookies', {})['cookies']:
        if c['name'] == 'monetize_refresh':
            return c
    return None


def refresh_with(token):
    req = urllib.request.Request(
        args.base + '/v1/auth/refresh', method='POST',
        data=json.dumps({'refresh_token': token}).encode(),
        headers={'Content-Type': 'application/json'})
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read()[:200]


def login(email, password):
    go('#login')
    h1('Log in')
    fill('Email address', email)
    fill('Password', password)
    submit('Log in')


def key_row(prefix):
    return driver.find_element(By.XPATH, '//tr[td/code[normalize-space()='
                               '"%s"]]' % prefix)


def fake_stripe(what):
    with urllib.request.urlopen(args.stripe + '/_fake/objects/' + what,
                                timeout=10) as res:
        return json.loads(res.read())


def buy_credits():
    """a pack bought: to Stripe Checkout (the fake) and back"""
    driver.find_element(By.XPATH, '//main//button[starts-with('
                        'normalize-space(), "Buy ")]').click()
    try:
        wait(lambda d: d.current_url.startswith(args.stripe + '/pay/'), 15)
        ok = True
    except TimeoutException:
        ok = False
    check('Buy: the browser goes to Stripe Checkout', ok,
          driver.current_url + ' ' + status_text())
    sessions = fake_stripe('checkout_sessions')
    check('... one Checkout Session, mode payment', len(sessions) == 1
          and sessions[0].get('mode') == 'payment', sessions)
    if not sessions:
        return
    s = sessions[0]
    back = s['success_url'].replace('{CHECKOUT_SESSION_ID}', s['id'])
    check('... which sends the customer back to the portal',
          back.startswith(args.base + '/portal/#billing?checkout=success'),
          back)
    driver.get(back)
    check('back from Checkout: the billing page says the payment went'
          ' through', h1('Billing') and 'payment went through'
          in text_of('main'), text_of('main')[:200])
    shot('billing-success')

    # Stripe's webhook: the event the fake makes of the paid session, signed
    # as Stripe signs (HMAC-SHA256 of "t.body")
    before = int(re.search(r'Balance\s+(\d+) credits',
                           text_of('.stats')).group(1))
    with urllib.request.urlopen(args.stripe + '/_fake/event/'
                                'checkout.session.completed/' + s['id'],
                                timeout=10) as res:
        event = res.read()
    t = str(int(time.time()))
    sig = hmac.new(args.webhook_secret.encode(), t.encode() + b'.' + event,
                   hashlib.sha256).hexdigest()
    req = urllib.request.Request(
        args.base + '/v1/webhooks/stripe', data=event, method='POST',
        headers={'Content-Type': 'application/json',
                 'Stripe-Signature': 't=%s,v1=%s' % (t, sig)})
    with urllib.request.urlopen(req, timeout=10) as res:
        check('Stripe\'s webhook of the payment: 200', res.status == 200,
              res.status)
    want = 'your balance is now %d credits' % (before + 1000)
    try:
        wait(lambda d: want in status_text(), 20)
        ok = True
    except TimeoutException:
        ok = False
    check('the billing page shows the new balance (+1000)', ok
          and re.search(r'Balance\s+%d credits' % (before + 1000),
                        text_of('.stats')), status_text())
    shot('billing-paid')
    driver.find_element(By.XPATH, '//main//button[normalize-space()='
                        '"Manage payment methods and invoices"]').click()
    try:
        wait(lambda d: d.current_url.startswith(args.stripe + '/portal/'),
             15)
        ok = True
    except TimeoutException:
        ok = False
    check('the billing portal button goes to Stripe\'s portal', ok,
          driver.current_url + ' ' + status_text())
    driver.get(args.base + '/portal/#billing?checkout=cancel')
    check('a cancelled checkout: said so', h1('Billing')
          and 'cancelled' in text_of('main'), text_of('main')[:200])
    go('#billing')
    h1('Billing')


def psql(sql):
    """a statement in the test's database, as Test::Monetize::psql runs it"""
    res = subprocess.run(json.loads(args.psql), input=sql + '\n',
                         capture_output=True, text=True, timeout=30)
    if res.returncode:
        raise RuntimeError('psql: ' + res.stderr)
    return res.stdout.strip()


def fetch_bytes(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def downloads():
    """the Downloads page: shown once the plan has products; a link each"""
    go('#dashboard')
    h1('Dashboard')
    check('no product for the plan: Downloads not in the menu',
          not css('a[href="#downloads"]').is_displayed())
    # the file and the location are the .t's; the product, for free plans
    psql("INSERT INTO products (id, name, source, plans) VALUES"
         " ('%s', 'Command-line tool', '/srv/cli.bin', '{free}')"
         % args.product)
    driver.refresh()
    check('a product for the plan: Downloads in the menu', h1('Dashboard')
          and wait(EC.visibility_of_element_located(
              (By.CSS_SELECTOR, 'a[href="#downloads"]'))),
          text_of('header'))
    css('a[href="#downloads"]').click()
    check('the downloads page', h1('Downloads'), status_text())
    text = text_of('main')
    check('... lists the plan\'s product, not the others',
          'Command-line tool' in text and 'Pro tool' not in text, text)
    shot('downloads')

    button = '//main//button[normalize-space()="Get download link"]'
    driver.find_element(By.XPATH, button).click()
    try:
        wait(EC.presence_of_element_located((By.CSS_SELECTOR,
                                             'main a[download]')))
        ok = True
    except TimeoutException:
        ok = False
    check('a download link, with the token', ok, status_text())
    if not ok:
        return
    link = css('main a[download]')
    url = link.get_attribute('href')
    check('... to the download location, with ?token=', url.startswith(
        args.base + '/downloads/%s?token=' % args.product), url)
    check('... saying until when it works',
          re.search(r'works until \d{4}-\d\d-\d\d \d\d:\d\d UTC',
                    text_of('main')), text_of('main'))
    shot('downloads-link')
    status, body = fetch_bytes(url)
    with open(args.file, 'rb') as fh:
        want = fh.read()
    check('the link, followed outside the browser: the file\'s bytes',
          status == 200 and body == want, '%s %d bytes' % (status,
                                                          len(body)))
    at = url.index('token=') + len('token=')
    bad = url[:at] + ('B' if url[at] == 'A' else 'A') + url[at + 1:]
    check('... and with the token altered: refused',
          fetch_bytes(bad)[0] == 403, bad)

    # the plan stops including the product while the page is open
    psql("UPDATE products SET plans = '{professional}' WHERE id = '%s'"
         % args.product)
    driver.find_element(By.XPATH, button).click()
    try:
        wait(lambda d: 'does not include' in status_text())
        ok = True
    except TimeoutException:
        ok = False
    check('a product the plan no longer has: the error in words', ok
          and '{' not in status_text(), status_text())
    check('... and no link shown', not driver.find_elements(
        By.CSS_SELECTOR, 'main a[download]'))
    shot('downloads-refused')
    psql("UPDATE products SET plans = '{free}' WHERE id = '%s'"
         % args.product)


def customer():
    email, password = args.email, 'correct horse battery'

    driver.get(args.base + '/portal/')
    check('a visitor lands on the log in page', h1('Log in'),
          css('main').text)
    shot('login')

    go('#signup')
    h1('Sign up')
    shot('signup')
    fill('Email address', 'not an address')
    fill('Password', password)
    submit('Sign up')
    try:
        wait(lambda d: 'Please check' in status_text())
        ok = True
    except TimeoutException:
        ok = False
    check('a bad address: the error in words, not JSON',
          ok and '{' not in status_text(), status_text())
    shot('signup-error')

    fill('Email address', email)
    submit('Sign up')
    check('signed up', h1('Check your mail'), css('main').text)
    first_key = css('.secret code').text
    check('... the first key shown once', first_key.startswith('sk_'),
          first_key)
    shot('signed-up')

    login(email, password)
    try:
        wait(lambda d: 'Confirm your email' in status_text())
        ok = True
    except TimeoutException:
        ok = False
    check('log in before confirming: told so in words', ok, status_text())
    check('... with a button to send the mail again',
          driver.find_element(By.XPATH, '//button[normalize-space()="Send '
                              'the confirmation mail again"]').is_displayed())

    link = mail_link(email, 'verify')
    check('the confirmation mail arrives, with a link', link, 'no mail')
    driver.get(link)
    if '#verify' in link:
        ok = h1('Address confirmed')
        shot('verified')
    else:
        ok = 'verified' in driver.find_element(By.TAG_NAME, 'body').text
    check('the link confirms the address', ok,
          driver.find_element(By.TAG_NAME, 'body').text[:200])

    driver.get(args.base + '/portal/#login')
    css('main a[href="#forgot"]').click()
    h1('Forgot your password?')
    shot('forgot')
    fill('Email address', email)
    submit('Send me a reset link')
    check('forgot password: told to look in the mail', h1('Check your mail'),
          status_text())
    link = mail_link(email, '#reset')
    check('the reset mail arrives, with a link to the portal', link,
          'no mail')
    driver.get(link)
    h1('Choose a new password')
    shot('reset')
    password = 'a new horse battery'
    fill('New password', password)
    fill('The new password again', 'something else')
    submit('Change the password')
    try:
        wait(lambda d: 'differ' in status_text())
        ok = True
    except TimeoutException:
        ok = False
    check('two different passwords: told so', ok, status_text())
    fill('The new password again', password)
    submit('Change the password')
    check('the password is changed', h1('Password changed'), status_text())

    login(email, 'correct horse battery')
    try:
        wait(lambda d: 'wrong' in status_text())
        ok = True
    except TimeoutException:
        ok = False
    check('the old password is refused, in words', ok, status_text())
    login(email, password)
    check('logged in: the dashboard', h1('Dashboard'), status_text())
    driver.refresh()
    check('a reload keeps the session (the cookie)', h1('Dashboard'),
          text_of('main')[:200])
    check('... the balance shown',
          re.search(r'Balance\s+%d credits' % args.credits,
                    css('.stats').text), css('.stats').text)
    check('... the operator\'s pages not in the menu',
          not css('a[href="#admin/users"]').is_displayed())
    token_in_storage = driver.execute_script(
        'return JSON.stringify(localStorage) + JSON.stringify(sessionStorage)'
        ' + document.cookie')
    check('no token in localStorage, sessionStorage or a script\'s cookie',
          'eyJ' not in token_in_storage
          and 'monetize_refresh' not in token_in_storage,
          token_in_storage[:100])
    cookie = refresh_cookie()
    check('the refresh token is an HttpOnly, SameSite=Strict cookie',
          cookie and cookie['httpOnly'] and cookie['sameSite'] == 'Strict',
          cookie)
    shot('dashboard-empty')

    go('#keys')
    h1('API keys')
    fill('Name of the new key', 'ci')
    submit('Create a key')
    wait(EC.presence_of_element_located((By.CSS_SELECTOR, '.secret code')))
    key = css('.secret code').text
    check('a key created, shown once', key.startswith('sk_'), key)
    css('.secret button').click()
    try:
        wait(lambda d: 'Copied' in status_text())
        ok = True
    except TimeoutException:
        ok = False
    check('... the copy button copies', ok, status_text())
    shot('keys-created')

    codes = [gated(key)[0] for _ in range(3)]
    check('three gated calls with the new key, outside the browser: 200',
          codes == [200, 200, 200], codes)

    # the meter writes usage in batches: look again until it is there
    today = time.strftime('%Y-%m-%d', time.gmtime())
    end = time.time() + 10
    while True:
        go('#billing')
        h1('Billing')
        go('#dashboard')
        h1('Dashboard')
        wait(EC.presence_of_element_located((By.CSS_SELECTOR,
                                             'svg.usage-chart')))
        bar = driver.find_elements(By.CSS_SELECTOR,
                                   'rect.calls[data-date="%s"]' % today)
        value = int(bar[0].get_attribute('data-value')) if bar else -1
        if value == 3 or time.time() > end:
            break
        time.sleep(0.5)
    check('the chart shows today\'s 3 calls', value == 3, value)
    check('... and its bar is drawn',
          bar and float(bar[0].get_attribute('height')) > 0)
    credits = driver.find_elements(By.CSS_SELECTOR,
                                   'rect.credits[data-date="%s"]' % today)
    check('... and the 3 credits',
          credits and credits[0].get_attribute('data-value') == '3')
    shot('dashboard')

    if args.psql:
        downloads()

    # the access token expires; the next page refreshes it
    time.sleep(args.ttl + 1.5)
    go('#keys')
    check('after the access token expired: still logged in',
          h1('API keys'), css('main').text[:200])
    prefix = key[:12]
    row = key_row(prefix)
    check('the key is listed as active', 'active' in row.text, row.text)

    Select(row.find_element(By.TAG_NAME, 'select')).select_by_value('3600')
    row.find_element(By.CSS_SELECTOR, '[data-action="rotate"]').click()
    try:
        wait(lambda d: 'rotated' in status_text())
    except TimeoutException:
        pass
    new_key = css('.secret code').text
    check('rotated: a new key shown once', new_key.startswith('sk_')
          and new_key != key, new_key)
    check('... the old key works during its grace', gated(key)[0] == 200)
    check('... and the new one', gated(new_key)[0] == 200)
    shot('keys-rotated')

    new_prefix = new_key[:12]
    key_row(new_prefix).find_element(
        By.CSS_SELECTOR, '[data-action="revoke"]').click()
    wait(EC.visibility_of_element_located((By.ID, 'confirm')))
    check('revoking asks first', 'cannot be undone'
          in css('#confirm').text, css('#confirm').text)
    shot('keys-confirm')
    driver.find_element(By.XPATH, '//dialog//button[.="Cancel"]').click()
    time.sleep(0.3)
    check('... cancelled: the key still works', gated(new_key)[0] == 200)
    key_row(new_prefix).find_element(
        By.CSS_SELECTOR, '[data-action="revoke"]').click()
    wait(EC.visibility_of_element_located((By.ID, 'confirm')))
    css('#confirm-ok').click()
    try:
        wait(lambda d: 'revoked' in key_row(new_prefix).text)
        ok = True
    except TimeoutException:
        ok = False
    check('confirmed: the key is listed as revoked', ok)
    status, body = gated(new_key)
    check('... and a gated call with it is refused', status in (401, 403),
          '%s %s' % (status, body))
    shot('keys-revoked')

    go('#billing')
    check('the billing page', h1('Billing'), css('main').text[:200])
    shot('billing')

    if args.stripe:
        buy_credits()

    # a stolen refresh token, used after the browser spent it
    stolen = refresh_cookie()['value']
    time.sleep(args.ttl + 1.5)
    go('#dashboard')
    h1('Dashboard')
    check('the browser refreshed: a new cookie',
          refresh_cookie()['value'] != stolen)
    status, body = refresh_with(stolen)
    check('the stolen (spent) refresh token, reused: 401',
          status == 401, '%s %s' % (status, body))
    time.sleep(args.ttl + 1.5)
    go('#keys')
    check('... the family is revoked: the browser must log in again',
          h1('Log in'), text_of('main')[:200])
    check('... told why, in words', 'session has ended' in status_text(),
          status_text())
    login(email, password)
    check('logged in again', h1('Dashboard'), status_text())

    css('#logout').click()
    check('logged out: the log in page', h1('Log in'), css('main').text)
    go('#dashboard')
    time.sleep(0.5)
    check('... and the session is gone (no refresh)', h1('Log in'),
          css('main').text[:100])
    return first_key


def operator(first_key):
    check('before: the first key passes the gate',
          gated(first_key)[0] == 200)
    login(args.admin, 'operator password')
    check('the operator logs in', h1('Dashboard'), status_text())
    check('... the operator\'s pages in the menu',
          css('a[href="#admin/users"]').is_displayed())

    go('#admin/users')
    h1('Users')
    fill('Email address, or its beginning', args.email)
    submit('Search')
    wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, 'tbody tr')) == 1)
    row = css('tbody tr')
    check('the search finds the customer', args.email in row.text, row.text)
    shot('admin-users')

    row.find_element(By.CSS_SELECTOR, 'input[type="number"]').send_keys('25')
    row.find_element(By.CSS_SELECTOR, 'input[type="text"]').send_keys(
        'goodwill')
    row.find_element(By.XPATH, './/button[.="Grant"]').click()
    try:
        wait(lambda d: 'credits granted' in status_text())
        ok = True
    except TimeoutException:
        ok = False
    check('credits granted', ok, status_text())

    css('tbody tr [data-action="suspend"]').click()
    wait(EC.visibility_of_element_located((By.ID, 'confirm')))
    css('#confirm-ok').click()
    try:
        wait(lambda d: 'suspended' in text_of('tbody tr'))
        ok = True
    except TimeoutException:
        ok = False
    check('the customer is suspended', ok)
    status, body = gated(first_key)
    check('the customer\'s next gated call: 403 account_suspended',
          status == 403 and body.get('error', {}).get('code')
          == 'account_suspended', '%s %s' % (status, body))
    shot('admin-suspended')

    go('#admin/audit')
    check('the audit log', h1('Audit log'), css('main').text[:200])
    text = text_of('main')
    check('... has the suspension and the grant', 'user.update' in text
          and 'suspended' in text and 'credits.' in text, text[:300])
    shot('admin-audit')
    go('#admin/webhooks')
    check('the webhook events', h1('Webhook events'), status_text())
    shot('admin-webhooks')
    go('#admin/revenue')
    check('the revenue', h1('Revenue')
          and 'Credits sold this month' in text_of('main'), status_text())
    shot('admin-revenue')
    go('#admin/top')
    check('the top accounts', h1('Top accounts'), status_text())
    try:
        wait(lambda d: args.email in text_of('main table'))
        ok = True
    except TimeoutException:
        ok = False
    check('... list the customer and its calls', ok, text_of('main')[:300])
    shot('admin-top')


def main():
    global args, driver
    p = argparse.ArgumentParser()
    for a in ('base', 'mail', 'shots', 'email', 'admin'):
        p.add_argument('--' + a, required=True)
    p.add_argument('--stripe', default='')   # the fake Stripe's URL
    p.add_argument('--webhook-secret', default='')
    p.add_argument('--psql', default='')     # JSON: the psql command
    p.add_argument('--product', default='')  # a product's id, its file:
    p.add_argument('--file', default='')
    p.add_argument('--ttl', type=float, required=True)
    p.add_argument('--credits', type=int, required=True)
    args = p.parse_args()

    o = webdriver.ChromeOptions()
    o.binary_location = '/usr/bin/chromium'
    for a in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage',
              '--disable-gpu', '--no-first-run', '--disable-extensions',
              '--disable-background-networking', '--disable-sync',
              '--window-size=%d,%d' % DESKTOP):
        o.add_argument(a)
    o.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    driver = webdriver.Chrome(service=Service('/usr/bin/chromedriver'),
                              options=o)
    driver.set_page_load_timeout(20)
    try:
        first_key = customer()
        operator(first_key)
        read_logs()
        check('no CSP violation in the console', not csp_logs,
              ' | '.join(csp_logs)[:500])

        # the check above can fail: an inline script is reported
        driver.execute_script(
            "const s = document.createElement('script');"
            "s.textContent = 'window.inlineRan = 1';"
            "document.body.append(s);")
        time.sleep(0.3)
        ran = driver.execute_script('return window.inlineRan === 1')
        read_logs()
        check('control: an inline script is blocked, and reported',
              not ran and csp_logs, 'ran=%s logs=%s' % (ran, csp_logs))
    except Exception as e:   # the rest of the checks cannot run
        check('the browser run completes', False, repr(e)[:500])
        try:
            driver.save_screenshot(os.path.join(args.shots, 'failure.png'))
        except Exception:
            pass
    finally:
        driver.quit()
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
