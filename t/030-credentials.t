# GET /verify_credits: who is calling, from "Authorization: Bearer" or
# "X-API-Key", and every way a credential can be wrong. A 401 says
# "WWW-Authenticate: Bearer" (RFC 6750), with error="invalid_token" when a
# credential was given; the gate words each mistake the same way.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

# accounts whose keys (one letter 32 times) we know
for (['good', 'A', credits => 42], ['revoked', 'R', revoked => 1],
     ['expired', 'E', expires_in => -60], ['suspended', 'S', suspended => 1])
{
    my ($name, $letter, %o) = @$_;
    Test::Monetize::account(email => "$name\@example.com",
                            keys => ['sk_live_' . ($letter x 32)], %o);
}

plan tests => scalar blocks();
run_tests();

__DATA__

=== TEST 1: the balance, by Authorization: Bearer
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
GET /v1/verify_credits
--- error_code: 200
--- response_body
{"balance":42}

=== TEST 2: the balance, by X-API-Key, at /credits too
--- config
    location /v1/ { monetize_api; }
--- more_headers
X-API-Key: sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request eval
["GET /v1/verify_credits", "GET /v1/credits"]
--- response_json
{"balance": 42}

=== TEST 3: the scheme is case-insensitive; both headers may come if they agree
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
X-API-Key: sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
GET /v1/verify_credits
--- response_json
{"balance": 42}

=== TEST 4: no credential
--- config
    location /v1/ { monetize_api; }
--- request
GET /v1/verify_credits
--- error_code: 401
--- response_json
{"error": {"code": "missing_credentials"}}
--- response_headers
WWW-Authenticate: Bearer

=== TEST 5: another authorization scheme
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Basic dXNlcjpwYXNz
--- request
GET /v1/verify_credits
--- error_code: 401
--- response_json
{"error": {"code": "invalid_api_key", "message": "the Authorization header must be \"Bearer <key>\""}}
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"

=== TEST 6: a key of the right shape that does not exist
--- config
    location /v1/ { monetize_api; }
--- more_headers
X-API-Key: sk_live_ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ
--- request
GET /v1/verify_credits
--- error_code: 401
--- response_json
{"error": {"code": "invalid_api_key", "message": "no such API key"}}
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"

=== TEST 7: a key that is too short is refused before any lookup
--- config
    location /v1/ { monetize_api; }
--- more_headers
X-API-Key: sk_live_short
--- request
GET /v1/verify_credits
--- error_code: 401
--- response_json
{"error": {"code": "invalid_api_key", "message": "this is not an API key of this service"}}
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"

=== TEST 8: a key with a character outside base62 is refused before any lookup
--- config
    location /v1/ { monetize_api; }
--- more_headers
X-API-Key: sk_live_AAAAAAAAAAAAAAAA-AAAAAAAAAAAAAAA
--- request
GET /v1/verify_credits
--- error_code: 401
--- response_json
{"error": {"code": "invalid_api_key", "message": "this is not an API key of this service"}}
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"

=== TEST 9: a key with another prefix is refused before any lookup
--- config
    location /v1/ { monetize_api; }
--- more_headers
X-API-Key: pk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
GET /v1/verify_credits
--- error_code: 401
--- response_json
{"error": {"code": "invalid_api_key", "message": "this is not an API key of this service"}}
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"

=== TEST 10: a key longer than any of ours is refused before any lookup
--- config
    location /v1/ { monetize_api; }
--- more_headers
X-API-Key: sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
GET /v1/verify_credits
--- error_code: 401
--- response_json
{"error": {"code": "invalid_api_key", "message": "this is not an API key of this service"}}
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"

=== TEST 11: a binary key
--- config
    location /v1/ { monetize_api; }
--- more_headers eval
"X-API-Key: sk_live_AAAA\x01\x80AAAAAAAAAAAAAAAAAAAAAAAAAA"
--- request
GET /v1/verify_credits
--- error_code: 401
--- response_json
{"error": {"code": "invalid_api_key", "message": "the credential is empty, too long, or not printable ASCII"}}
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"

=== TEST 12: an empty bearer
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer 
--- request
GET /v1/verify_credits
--- error_code: 401
--- response_json
{"error": {"code": "invalid_api_key"}}
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"

=== TEST 13: X-API-Key given twice is ambiguous
--- config
    location /v1/ { monetize_api; }
--- more_headers
X-API-Key: sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
X-API-Key: sk_live_ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ
--- request
GET /v1/verify_credits
--- error_code: 400
--- response_json
{"error": {"code": "invalid_request", "message": "the X-API-Key header is given more than once"}}
--- response_headers
WWW-Authenticate: Bearer error="invalid_request"

=== TEST 14: the two headers disagree
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
X-API-Key: sk_live_ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ
--- request
GET /v1/verify_credits
--- error_code: 400
--- response_json
{"error": {"code": "invalid_request", "message": "the Authorization and X-API-Key headers disagree"}}
--- response_headers
WWW-Authenticate: Bearer error="invalid_request"

=== TEST 15: a revoked key
--- config
    location /v1/ { monetize_api; }
--- more_headers
X-API-Key: sk_live_RRRRRRRRRRRRRRRRRRRRRRRRRRRRRRRR
--- request
GET /v1/verify_credits
--- error_code: 403
--- response_json
{"error": {"code": "key_revoked"}}
--- response_headers
!WWW-Authenticate

=== TEST 16: an expired key
--- config
    location /v1/ { monetize_api; }
--- more_headers
X-API-Key: sk_live_EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE
--- request
GET /v1/verify_credits
--- error_code: 403
--- response_json
{"error": {"code": "key_expired"}}
--- response_headers
!WWW-Authenticate

=== TEST 17: a suspended account
--- config
    location /v1/ { monetize_api; }
--- more_headers
X-API-Key: sk_live_SSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSS
--- request
GET /v1/verify_credits
--- error_code: 403
--- response_json
{"error": {"code": "account_suspended"}}
--- response_headers
!WWW-Authenticate

=== TEST 18: a key hashed under another secret is no key of ours
--- key_secret
    monetize_key_secret another-secret-of-32-characters!;
--- config
    location /v1/ { monetize_api; }
--- more_headers
X-API-Key: sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
GET /v1/verify_credits
--- error_code: 401
--- response_json
{"error": {"code": "invalid_api_key", "message": "no such API key"}}
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"

=== TEST 19: a key prefix of the operator's choosing
--- http_config
    monetize_key_prefix sk_test_;
--- config
    location /v1/ { monetize_api; }
--- more_headers
X-API-Key: sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
GET /v1/verify_credits
--- error_code: 401
--- response_json
{"error": {"code": "invalid_api_key", "message": "this is not an API key of this service"}}
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"
