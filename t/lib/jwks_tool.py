#!/usr/bin/python3
# The identity provider of the JWKS tests (t/60x), made with an independent
# implementation (Debian's python3-jwt and python3-cryptography):
#   jwks_tool.py key DIR KID ALG            a new private key, DIR/KID.pem
#                                           (ALG RS256 ES256 ES384 EdDSA)
#   jwks_tool.py jwks DIR KID[:ALG[:USE]]...  the JWKS of those keys' public
#                                           halves ("-" leaves alg/use out)
#   jwks_tool.py sign DIR KID ALG CLAIMS [HEADER]
#                                           a token; "now+N"/"now-N" in
#                                           CLAIMS are relative to now; ALG
#                                           "none": unsigned; "HS256-pub":
#                                           HMAC keyed with the public key's
#                                           PEM (algorithm confusion)
import base64
import hashlib
import hmac
import json
import os
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode()


def load(d, kid):
    with open(os.path.join(d, kid + '.pem'), 'rb') as f:
        return serialization.load_pem_private_key(f.read(), None)


def newkey(alg):
    if alg.startswith('RS'):
        return rsa.generate_private_key(65537, 2048)
    if alg == 'ES256':
        return ec.generate_private_key(ec.SECP256R1())
    if alg == 'ES384':
        return ec.generate_private_key(ec.SECP384R1())
    if alg == 'EdDSA':
        return ed25519.Ed25519PrivateKey.generate()
    raise SystemExit('unknown alg ' + alg)


def jwk(key, kid, alg, use):
    pub = key.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        n = pub.public_numbers()
        k = {'kty': 'RSA', 'n': b64(n.n.to_bytes((n.n.bit_length() + 7) // 8,
                                                 'big')),
             'e': b64(n.e.to_bytes(3, 'big'))}
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        n = pub.public_numbers()
        size = (pub.curve.key_size + 7) // 8
        k = {'kty': 'EC',
             'crv': {256: 'P-256', 384: 'P-384'}[pub.curve.key_size],
             'x': b64(n.x.to_bytes(size, 'big')),
             'y': b64(n.y.to_bytes(size, 'big'))}
    else:
        raw = pub.public_bytes(serialization.Encoding.Raw,
                               serialization.PublicFormat.Raw)
        k = {'kty': 'OKP', 'crv': 'Ed25519', 'x': b64(raw)}
    k['kid'] = kid
    if alg != '-':
        k['alg'] = alg
    if use != '-':
        k['use'] = use
    return k


def main():
    cmd, d = sys.argv[1], sys.argv[2]

    if cmd == 'key':
        kid, alg = sys.argv[3], sys.argv[4]
        pem = newkey(alg).private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
        with open(os.path.join(d, kid + '.pem'), 'wb') as f:
            f.write(pem)
        return

    if cmd == 'jwks':
        keys = []
        for spec in sys.argv[3:]:
            kid, alg, use = (spec.split(':') + ['-', '-'])[:3]
            keys.append(jwk(load(d, kid), kid, alg, use))
        print(json.dumps({'keys': keys}))
        return

    kid, alg, claims = sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
    header = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {}
    now = int(time.time())
    for k, v in claims.items():
        if isinstance(v, str) and v.startswith('now'):
            claims[k] = now + int(v[3:] or 0)

    if alg == 'none':
        print(jwt.encode(claims, None, algorithm='none', headers=header))
        return

    if alg == 'HS256-pub':
        # PyJWT refuses a PEM as an HMAC key; the attacker would not
        pub = load(d, kid).public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo)
        h = dict({'alg': 'HS256', 'typ': 'JWT', 'kid': kid}, **header)
        signing = (b64(json.dumps(h).encode()) + '.'
                   + b64(json.dumps(claims).encode()))
        sig = hmac.new(pub, signing.encode(), hashlib.sha256).digest()
        print(signing + '.' + b64(sig))
        return

    print(jwt.encode(claims, load(d, kid), algorithm=alg,
                     headers=dict({'kid': kid}, **header)))


main()
