#!/usr/bin/python3
#
# A fake of AWS STS's AssumeRole for the tests (Debian's python3 and
# python3-botocore), on 127.0.0.1. Every request's Signature Version 4 is
# recomputed with botocore's own signer from what arrived (the headers the
# request says it signed, its body, its X-Amz-Date) and the key pair the
# fake was started with; a wrong one is refused as STS does (403
# SignatureDoesNotMatch), an unknown key id too (403 InvalidClientTokenId).
#
#   fake_sts.py --port P --access-key AKID --secret SECRET --region R
#
# STS's part:
#   POST /   Action=AssumeRole&Version=2011-06-15&RoleArn&RoleSessionName
#            &DurationSeconds[&Policy]: the XML of STS, new credentials
# The control part:
#   GET  /_fake/requests   every STS request, in arrival order: {form,
#                          headers, signed (the signature was right),
#                          status (null: hung), issued (the credentials
#                          answered, if any)}
#   POST /_fake/fail {"mode": "throttle" | "denied" | "expired" | "500" |
#                     "hang" | "garbage", "times": N}
#                          the next N requests with a right signature fail
#                          so: STS's Throttling, AccessDenied, ExpiredToken,
#                          an InternalFailure, no answer until the client
#                          goes, or a 200 that is not STS's XML
#   POST /_fake/reset      forgets everything

import argparse
import datetime
import json
import secrets
import select
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


LOCK = threading.Lock()
STATE = {}
ARGS = None

NS = 'https://sts.amazonaws.com/doc/2011-06-15/'

ERRORS = {
    'throttle': (400, 'Sender', 'Throttling', 'Rate exceeded'),
    'denied': (403, 'Sender', 'AccessDenied',
               'User: arn:aws:iam::123456789012:user/monetize is not '
               'authorized to perform: sts:AssumeRole'),
    'expired': (403, 'Sender', 'ExpiredToken',
                'The security token included in the request is expired'),
    '500': (500, 'Receiver', 'InternalFailure', 'internal failure'),
}


def reset():
    STATE.clear()
    STATE.update(requests=[], fails=[])


def error_xml(kind, code, message):
    return ('<ErrorResponse xmlns="%s">\n  <Error>\n    <Type>%s</Type>\n'
            '    <Code>%s</Code>\n    <Message>%s</Message>\n  </Error>\n'
            '  <RequestId>%s</RequestId>\n</ErrorResponse>\n'
            % (NS, kind, code, message, secrets.token_hex(8)))


def check_signature(method, path, headers, body):
    """None if the signature is right, else STS's error code"""
    auth = headers.get('Authorization', '')
    if not auth.startswith('AWS4-HMAC-SHA256 '):
        return 'MissingAuthenticationToken'
    fields = {}
    for part in auth[len('AWS4-HMAC-SHA256 '):].split(','):
        name, _, value = part.strip().partition('=')
        fields[name] = value
    try:
        akid, day, region, service, term = fields['Credential'].split('/')
        signed = fields['SignedHeaders'].split(';')
        signature = fields['Signature']
    except (KeyError, ValueError):
        return 'IncompleteSignature'
    if akid != ARGS.access_key:
        return 'InvalidClientTokenId'
    amz_date = headers.get('X-Amz-Date', '')
    if (region != ARGS.region or service != 'sts' or term != 'aws4_request'
            or not amz_date.startswith(day) or 'host' not in signed
            or 'x-amz-date' not in signed):
        return 'SignatureDoesNotMatch'
    try:
        when = datetime.datetime.strptime(amz_date, '%Y%m%dT%H%M%SZ')
    except ValueError:
        return 'SignatureDoesNotMatch'
    if abs((datetime.datetime.utcnow() - when).total_seconds()) > 300:
        return 'SignatureDoesNotMatch'

    # botocore signs every header it is given: give it those signed only
    req = AWSRequest(method=method,
                     url='http://%s%s' % (headers.get('Host'), path),
                     data=body,
                     headers={h: headers.get(h, '') for h in signed})
    req.context['timestamp'] = amz_date
    signer = SigV4Auth(Credentials(ARGS.access_key, ARGS.secret), 'sts',
                       ARGS.region)
    canonical = signer.canonical_request(req)
    expected = signer.signature(signer.string_to_sign(req, canonical), req)
    if not secrets.compare_digest(expected, signature):
        return 'SignatureDoesNotMatch'
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
        pass

    def answer(self, status, body, ctype='text/xml'):
        data = body.encode()
        self.send_response(status)
        self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(data)))
        self.send_header('x-amzn-RequestId', secrets.token_hex(8))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get('Content-Length') or 0)
        return self.rfile.read(n) if n else b''

    def do_GET(self):
        if self.path == '/_fake/requests':
            with LOCK:
                return self.answer(200, json.dumps(STATE['requests']),
                                   'application/json')
        self.answer(404, error_xml('Sender', 'InvalidAction', 'GET'))

    def do_POST(self):
        body = self.body()

        if self.path == '/_fake/reset':
            with LOCK:
                reset()
            return self.answer(200, '{}', 'application/json')

        if self.path == '/_fake/fail':
            f = json.loads(body)
            with LOCK:
                STATE['fails'].append([f['mode'], int(f.get('times', 1))])
            return self.answer(200, '{}', 'application/json')

        headers = {k: v for k, v in self.headers.items()}
        form = dict(urllib.parse.parse_qsl(body.decode(),
                                           keep_blank_values=True))
        bad = check_signature('POST', self.path, self.headers, body)
        rec = {'form': form, 'headers': headers, 'signed': bad is None,
               'status': None, 'issued': None}
        with LOCK:
            STATE['requests'].append(rec)
            mode = None
            if bad is None and STATE['fails']:
                mode = STATE['fails'][0][0]
                STATE['fails'][0][1] -= 1
                if STATE['fails'][0][1] <= 0:
                    STATE['fails'].pop(0)

        if bad is not None:
            rec['status'] = 403
            return self.answer(403, error_xml('Sender', bad,
                                              'the signature was refused'))

        if mode == 'hang':
            # until the client goes
            while True:
                r, _, _ = select.select([self.connection], [], [], 1)
                if r and not self.connection.recv(1):
                    return

        if mode == 'garbage':
            rec['status'] = 200
            return self.answer(200, '<html>a proxy page</html>', 'text/html')

        if mode in ERRORS:
            status, kind, code, message = ERRORS[mode]
            rec['status'] = status
            return self.answer(status, error_xml(kind, code, message))

        if (form.get('Action') != 'AssumeRole'
                or form.get('Version') != '2011-06-15'
                or 'RoleArn' not in form or 'RoleSessionName' not in form):
            rec['status'] = 400
            return self.answer(400, error_xml('Sender', 'InvalidAction',
                                              'not AssumeRole'))

        duration = int(form.get('DurationSeconds', '3600'))
        expiration = (datetime.datetime.utcnow()
                      + datetime.timedelta(seconds=duration))
        issued = {
            'AccessKeyId': 'ASIA' + secrets.token_hex(8).upper(),
            'SecretAccessKey': secrets.token_urlsafe(30),
            'SessionToken': 'FwoGZXIvYXdzE' + secrets.token_urlsafe(200),
            'Expiration': expiration.strftime('%Y-%m-%dT%H:%M:%SZ'),
        }
        rec['status'] = 200
        rec['issued'] = issued
        self.answer(200, (
            '<AssumeRoleResponse xmlns="%s">\n'
            '  <AssumeRoleResult>\n'
            '    <SourceIdentity>x</SourceIdentity>\n'
            '    <AssumedRoleUser>\n'
            '      <Arn>%s/%s</Arn>\n'
            '      <AssumedRoleId>AROA3XFRBF535PLBIFPI4:%s</AssumedRoleId>\n'
            '    </AssumedRoleUser>\n'
            '    <Credentials>\n'
            '      <AccessKeyId>%s</AccessKeyId>\n'
            '      <SecretAccessKey>%s</SecretAccessKey>\n'
            '      <SessionToken>%s</SessionToken>\n'
            '      <Expiration>%s</Expiration>\n'
            '    </Credentials>\n'
            '    <PackedPolicySize>6</PackedPolicySize>\n'
            '  </AssumeRoleResult>\n'
            '  <ResponseMetadata>\n'
            '    <RequestId>%s</RequestId>\n'
            '  </ResponseMetadata>\n'
            '</AssumeRoleResponse>\n'
            % (NS, form['RoleArn'], form['RoleSessionName'],
               form['RoleSessionName'], issued['AccessKeyId'],
               issued['SecretAccessKey'], issued['SessionToken'],
               issued['Expiration'], secrets.token_hex(8))))


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--access-key', required=True)
    p.add_argument('--secret', required=True)
    p.add_argument('--region', required=True)
    ARGS = p.parse_args()
    reset()
    server = ThreadingHTTPServer(('127.0.0.1', ARGS.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == '__main__':
    main()
