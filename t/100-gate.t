# The gate: a call passes with a valid API key and enough credits, its cost
# debited in the ledger before it goes upstream; every bad credential or
# cost gets its JSON error, and debits nothing.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

# accounts whose keys (one letter 32 times) and key ids we know
for (['rich', 'A', 'a', credits => 10], ['poor', 'P', 'b', credits => 1],
     ['revoked', 'R', 'c', revoked => 1, credits => 5],
     ['expired', 'E', 'd', expires_in => -60, credits => 5],
     ['suspended', 'S', 'e', suspended => 1, credits => 5])
{
    my ($name, $letter, $id, %o) = @$_;
    Test::Monetize::account(email => "$name\@example.com",
        keys => ['sk_live_' . ($letter x 32)],
        key_ids => ["00000000-0000-4000-8000-00000000000$id"], %o);
}

plan tests => scalar blocks() + 1;
run_tests();
Test::Monetize::reconcile();

__DATA__

=== TEST 1: a paid call goes through; its debit is in the ledger
--- http_config
    monetize_cache zone=keys:1m;
--- config
    location /api/ {
        monetize_gate on;
        proxy_set_header X-User-Id $monetize_user_id;
        proxy_set_header X-Key-Id $monetize_key_id;
        proxy_set_header X-Plan $monetize_plan;
        proxy_set_header X-Credits $monetize_credits;
        proxy_set_header X-Auth $monetize_auth;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/;
    }
    location /backend/ {
        return 200 "served $http_x_key_id $http_x_plan $http_x_credits $http_x_auth $uri\n";
    }
--- more_headers
X-API-Key: sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
GET /api/hello
--- error_code: 200
--- response_headers
X-Credits-Remaining: 9
--- response_body
served 00000000-0000-4000-8000-00000000000a free 9 api_key /backend/hello
--- sql
SELECT l.kind, l.delta, l.balance_after, l.reference ~ '^call:[0-9a-f]{32}$' FROM credit_ledger l JOIN users u ON u.id = l.user_id WHERE u.email = 'rich@example.com' ORDER BY l.id
--- sql_result
admin	10	10	f
debit	-1	9	t

=== TEST 2: Authorization: Bearer works the same, at another cost
--- http_config
    monetize_cache zone=keys:1m;
--- config
    location /api/ {
        monetize_gate on;
        monetize_cost 3;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/;
    }
    location /backend/ { return 200 "served\n"; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
GET /api/hello
--- error_code: 200
--- response_headers
X-Credits-Remaining: 6
--- sql
SELECT balance, (SELECT sum(delta) FROM credit_ledger l WHERE l.user_id = b.user_id) FROM balances b JOIN users u ON u.id = b.user_id WHERE u.email = 'rich@example.com'
--- sql_result
6	6

=== TEST 3: a call the balance cannot pay: 402 with the balance and where to top up, never upstream
--- http_config
    monetize_cache zone=keys:1m;
    monetize_top_up_url https://billing.example.com/top-up;
--- config
    location /api/ {
        monetize_gate on;
        monetize_cost 2;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/;
    }
    location /backend/ { return 500 "must not be reached\n"; }
--- more_headers
X-API-Key: sk_live_PPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPP
--- request
GET /api/hello
--- error_code: 402
--- response_headers
X-Credits-Remaining: 1
--- response_json
{"error": {"code": "insufficient_credits", "message": "this call costs 2 credits; the balance is 1",
           "balance": 1, "top_up_url": "https://billing.example.com/top-up"}}
--- sql
SELECT count(*) FROM credit_ledger l JOIN users u ON u.id = l.user_id WHERE u.email = 'poor@example.com' AND l.kind = 'debit'
--- sql_result
0

=== TEST 4: no credential
--- config
    location /api/ { monetize_gate on; proxy_pass http://127.0.0.1:1/; }
--- request
GET /api/hello
--- error_code: 401
--- response_json
{"error": {"code": "missing_credentials"}}
--- error_log
monetize: denied: missing_credentials
--- response_headers
WWW-Authenticate: Bearer

=== TEST 5: not one of our keys
--- config
    location /api/ { monetize_gate on; proxy_pass http://127.0.0.1:1/; }
--- more_headers
X-API-Key: pk_other_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
GET /api/hello
--- error_code: 401
--- response_json
{"error": {"code": "invalid_api_key", "message": "this is not an API key of this service"}}
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"

=== TEST 6: a key that does not exist
--- config
    location /api/ { monetize_gate on; proxy_pass http://127.0.0.1:1/; }
--- more_headers
X-API-Key: sk_live_ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ
--- request
GET /api/hello
--- error_code: 401
--- response_json
{"error": {"code": "invalid_api_key", "message": "no such API key"}}
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"

=== TEST 7: an over-long key
--- config
    location /api/ { monetize_gate on; proxy_pass http://127.0.0.1:1/; }
--- more_headers eval
"X-API-Key: sk_live_" . ("A" x 5000)
--- request
GET /api/hello
--- error_code: 401
--- response_json
{"error": {"code": "invalid_api_key"}}
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"

=== TEST 8: a binary key
--- config
    location /api/ { monetize_gate on; proxy_pass http://127.0.0.1:1/; }
--- more_headers eval
"X-API-Key: sk_live_AAAA\x01\x7f\xffAAAAAAAAAAAAAAAAAAAAAAAAA"
--- request
GET /api/hello
--- error_code: 401
--- response_json
{"error": {"code": "invalid_api_key", "message": "the credential is empty, too long, or not printable ASCII"}}
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"

=== TEST 9: a key given twice
--- config
    location /api/ { monetize_gate on; proxy_pass http://127.0.0.1:1/; }
--- more_headers
X-API-Key: sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
X-API-Key: sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
GET /api/hello
--- error_code: 400
--- response_json
{"error": {"code": "invalid_request", "message": "the X-API-Key header is given more than once"}}
--- response_headers
WWW-Authenticate: Bearer error="invalid_request"

=== TEST 10: Authorization given twice: nginx refuses it, in JSON with the example's error_page
--- config
    error_page 400 = @monetize_bad_request;
    location @monetize_bad_request {
        default_type application/json;
        return 400 '{"error":{"code":"invalid_request","message":"nginx refused the request line or its headers"}}\n';
    }
    location /api/ { monetize_gate on; proxy_pass http://127.0.0.1:1/; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
GET /api/hello
--- error_code: 400
--- response_json
{"error": {"code": "invalid_request"}}
--- no_error_log
[alert]
monetize: denied

=== TEST 11: a revoked key
--- config
    location /api/ { monetize_gate on; proxy_pass http://127.0.0.1:1/; }
--- more_headers
X-API-Key: sk_live_RRRRRRRRRRRRRRRRRRRRRRRRRRRRRRRR
--- request
GET /api/hello
--- error_code: 403
--- response_json
{"error": {"code": "key_revoked"}}
--- response_headers
!WWW-Authenticate

=== TEST 12: an expired key
--- config
    location /api/ { monetize_gate on; proxy_pass http://127.0.0.1:1/; }
--- more_headers
X-API-Key: sk_live_EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE
--- request
GET /api/hello
--- error_code: 403
--- response_json
{"error": {"code": "key_expired"}}
--- response_headers
!WWW-Authenticate

=== TEST 13: a suspended account
--- config
    location /api/ { monetize_gate on; proxy_pass http://127.0.0.1:1/; }
--- more_headers
X-API-Key: sk_live_SSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSS
--- request
GET /api/hello
--- error_code: 403
--- response_json
{"error": {"code": "account_suspended"}}
--- sql
SELECT count(*) FROM credit_ledger WHERE kind = 'debit' AND user_id IN (SELECT id FROM users WHERE email IN ('revoked@example.com', 'expired@example.com', 'suspended@example.com'))
--- sql_result
0
--- response_headers
!WWW-Authenticate

=== TEST 14: a cost variable that is not a number: 400, logged, nothing debited
--- config
    location /api/ {
        monetize_gate on;
        monetize_cost $arg_pages;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/;
    }
    location /backend/ { return 200 "served\n"; }
--- more_headers
X-API-Key: sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request eval
["GET /api/x?pages=two", "GET /api/x?pages=-1", "GET /api/x?pages=", "GET /api/x?pages=99999999999"]
--- error_code: 400
--- response_json
{"error": {"code": "invalid_request", "message": "the cost of this call is not a whole number of credits"}}
--- error_log
monetize: monetize_cost is "two", not a whole number from 0 to 1000000000; nothing is debited
--- sql
SELECT balance FROM balances b JOIN users u ON u.id = b.user_id WHERE u.email = 'rich@example.com'
--- sql_result
6

=== TEST 15: a cost from a variable that is a number
--- config
    location /api/ {
        monetize_gate on;
        monetize_cost $arg_pages;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/;
    }
    location /backend/ { return 200 "served\n"; }
--- more_headers
X-API-Key: sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
GET /api/x?pages=4
--- error_code: 200
--- response_headers
X-Credits-Remaining: 2

=== TEST 16: a free call is authenticated but debits nothing
--- config
    location /api/ {
        monetize_gate on;
        monetize_cost 0;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/;
    }
    location /backend/ { return 200 "served\n"; }
--- more_headers
X-API-Key: sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
GET /api/x
--- error_code: 200
--- sql
SELECT count(*) FROM credit_ledger l JOIN users u ON u.id = l.user_id WHERE u.email = 'rich@example.com' AND l.kind = 'debit'
--- sql_result
3

=== TEST 17: an internal redirect charges nothing more
--- config
    location /api/ {
        monetize_gate on;
        error_page 404 = /api/fallback;
        proxy_intercept_errors on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/;
    }
    location /backend/ { return 404; }
    location = /api/fallback {
        monetize_gate on;
        return 200 "fallback $monetize_credits\n";
    }
--- more_headers
X-API-Key: sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
GET /api/x
--- error_code: 200
--- response_body
fallback 1
--- sql
SELECT count(*) FROM credit_ledger l JOIN users u ON u.id = l.user_id WHERE u.email = 'rich@example.com' AND l.kind = 'debit'
--- sql_result
4

=== TEST 18: nginx's own access checks come first: a call they refuse is not charged
--- config
    location /api/ {
        deny all;
        monetize_gate on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/;
    }
    location /backend/ { return 200 "served\n"; }
--- more_headers
X-API-Key: sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
GET /api/x
--- error_code: 403
--- sql
SELECT count(*) FROM credit_ledger l JOIN users u ON u.id = l.user_id WHERE u.email = 'rich@example.com' AND l.kind = 'debit'
--- sql_result
4
--- no_error_log
monetize: denied

=== TEST 19: without monetize_gate on, nothing is asked
--- config
    location /api/ { monetize_gate off; return 200 "open\n"; }
--- request
GET /api/x
--- error_code: 200
--- response_body
open

=== TEST 20: the gate words a mistake as the API does (t/030), and says how to authenticate
--- config
    location /api/ { monetize_gate on; proxy_pass http://127.0.0.1:1/; }
--- more_headers
Authorization: Basic dXNlcjpwYXNz
--- request
GET /api/hello
--- error_code: 401
--- response_json
{"error": {"code": "invalid_api_key", "message": "the Authorization header must be \"Bearer <key>\""}}
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"
Content-Type: application/json
Cache-Control: no-store

=== TEST 21: the two headers disagree: the API's words too
--- config
    location /api/ { monetize_gate on; proxy_pass http://127.0.0.1:1/; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
X-API-Key: sk_live_ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ
--- request
GET /api/hello
--- error_code: 400
--- response_json
{"error": {"code": "invalid_request", "message": "the Authorization and X-API-Key headers disagree"}}
