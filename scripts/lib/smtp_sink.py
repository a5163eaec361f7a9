#!/usr/bin/python3
#
# A mail sink for the demo and the tests: an SMTP server (Debian's
# python3-aiosmtpd) on 127.0.0.1 that accepts every mail and writes each
# to DIR/NNNNNN-<time>.eml, the envelope first (X-Envelope-From/-To), then
# the message as it came. Files appear whole (written, then renamed).
#
#   smtp_sink.py --port 2525 --dir var/mail [--pidfile FILE]
#                [--auth USER:PASSWORD]    (then AUTH is required)

import argparse
import asyncio
import os
import signal
import time

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Sink:
    def __init__(self, directory):
        self.dir = directory
        self.n = len([f for f in os.listdir(directory)
                      if f.endswith('.eml')])

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        name = '%06d-%d.eml' % (self.n, int(time.time()))
        tmp = os.path.join(self.dir, '.' + name)
        with open(tmp, 'wb') as f:
            f.write(b'X-Envelope-From: %s\r\n'
                    % envelope.mail_from.encode())
            for rcpt in envelope.rcpt_tos:
                f.write(b'X-Envelope-To: %s\r\n' % rcpt.encode())
            content = envelope.original_content or envelope.content
            if isinstance(content, str):
                content = content.encode()
            f.write(content)
        os.rename(tmp, os.path.join(self.dir, name))
        return '250 OK: queued as %s' % name


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--dir', required=True)
    ap.add_argument('--pidfile')
    ap.add_argument('--auth')
    a = ap.parse_args()

    os.makedirs(a.dir, exist_ok=True)
    sink = Sink(a.dir)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    kw = {}
    if a.auth:
        user, password = a.auth.encode().split(b':', 1)

        def authenticator(server, session, envelope, mechanism, data):
            ok = (isinstance(data, LoginPassword)
                  and data.login == user and data.password == password)
            return AuthResult(success=ok, handled=False)

        # loopback only: no TLS needed to test the login
        kw = dict(auth_required=True, auth_require_tls=False,
                  authenticator=authenticator)

    server = loop.run_until_complete(loop.create_server(
        lambda: SMTP(sink, hostname='sink.localhost', **kw),
        '127.0.0.1', a.port))

    if a.pidfile:
        with open(a.pidfile, 'w') as f:
            f.write('%d\n' % os.getpid())

    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.add_signal_handler(signal.SIGINT, loop.stop)
    loop.run_forever()
    server.close()


if __name__ == '__main__':
    main()
