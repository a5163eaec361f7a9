# monetize_jwt_secret, monetize_jwt_ttl, monetize_require_verified_email:
# good values start; bad ones fail nginx -t naming the directive (and the
# value, except a secret's); without a secret there are no sessions.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

plan tests => scalar blocks();
run_tests();

__DATA__

=== TEST 1: a secret, both ttls, verified addresses required: nginx starts
--- http_config
    monetize_jwt_secret 0123456789abcdef0123456789abcdef;
    monetize_jwt_ttl access=5m refresh=7d;
    monetize_require_verified_email off;
--- config
    location /v1/ { monetize_api; }
--- request
GET /v1/health
--- error_code: 200

=== TEST 2: a secret of fewer than 32 bytes, its value not logged
--- http_config
    monetize_jwt_secret short-secret-of-31-bytes-xxxxxx;
--- config
    location /v1/ { monetize_api; }
--- must_die
--- error_log
monetize_jwt_secret: the secret must have at least 32 bytes, it has 31

=== TEST 3: a ttl that is not a time
--- http_config
    monetize_jwt_ttl access=soon;
--- config
    location /v1/ { monetize_api; }
--- must_die
--- error_log
monetize_jwt_ttl: invalid or repeated "access=soon"

=== TEST 4: an unknown parameter
--- http_config
    monetize_jwt_ttl session=5m;
--- config
    location /v1/ { monetize_api; }
--- must_die
--- error_log
monetize_jwt_ttl: invalid parameter "session=5m", give access=TIME and/or refresh=TIME

=== TEST 5: the secret from an unset environment variable
--- http_config
    monetize_jwt_secret env:MONETIZE_NO_SUCH_VARIABLE;
--- config
    location /v1/ { monetize_api; }
--- must_die
--- error_log
MONETIZE_NO_SUCH_VARIABLE

=== TEST 6: without a secret, login is 404: sessions are off
--- config
    location /v1/ { monetize_api; }
--- more_headers
Content-Type: application/json
--- request
POST /v1/auth/login
{"email": "ada@example.com", "password": "analytical engine"}
--- error_code: 404
--- response_json
{"error": {"code": "not_found", "message": "re:monetize_jwt_secret"}}

=== TEST 7: without a secret, a JWT is no credential
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhIn0.c2ln
--- request
GET /v1/credits
--- error_code: 401
--- response_json
{"error": {"code": "invalid_token"}}
