#!/usr/bin/python3
# An independent JWT implementation for the tests (Debian's python3-jwt):
#   jwt_tool.py decode SECRET TOKEN       verified claims and header, JSON
#   jwt_tool.py encode SECRET ALG CLAIMS  a token (ALG "none": unsigned);
#                                         "now+N" / "now-N" in CLAIMS'
#                                         numbers are relative to now
import json
import sys
import time

import jwt


def main():
    cmd, secret = sys.argv[1], sys.argv[2]

    if cmd == 'decode':
        token = sys.argv[3]
        try:
            claims = jwt.decode(token, secret, algorithms=['HS256'],
                                options={'require': ['exp', 'iat', 'sub']})
        except jwt.InvalidTokenError as e:
            print('refused: %s' % e, file=sys.stderr)
            sys.exit(1)
        print(json.dumps({'header': jwt.get_unverified_header(token),
                          'claims': claims}))
        return

    alg, claims = sys.argv[3], json.loads(sys.argv[4])
    now = int(time.time())
    for k, v in claims.items():
        if isinstance(v, str) and v.startswith('now'):
            claims[k] = now + int(v[3:] or 0)
    if alg == 'none':
        print(jwt.encode(claims, None, algorithm='none'))
    else:
        print(jwt.encode(claims, secret, algorithm=alg))


main()
