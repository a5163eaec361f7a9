# The gate in nginx's access phase, as limit_req is: its denials are
# statuses that nginx finalizes, so error_page takes them where the
# operator says (the JSON answer is the gate's only when no error_page
# does); and "satisfy any", which would let a passing allow serve a call
# without a key and without a debit, is refused with the gate.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

for (['poor', 'P', 'b', credits => 1],
     ['revoked', 'R', 'c', revoked => 1, credits => 5])
{
    my ($name, $letter, $id, %o) = @$_;
    Test::Monetize::account(email => "$name\@example.com",
        keys => ['sk_live_' . ($letter x 32)],
        key_ids => ["00000000-0000-4000-8000-00000000000$id"], %o);
}

plan tests => scalar blocks();
run_tests();

__DATA__

=== TEST 1: satisfy any in a gated location is refused
--- config
    location /api/ {
        satisfy any;
        allow 127.0.0.1;
        deny all;
        monetize_gate on;
        proxy_pass http://127.0.0.1:1/;
    }
--- must_die
--- error_log
"monetize_gate on" cannot be combined with "satisfy any" in location "/api/"

=== TEST 2: satisfy any inherited from the server is refused as well
--- config
    satisfy any;
    location /api/ {
        allow 127.0.0.1;
        monetize_gate on;
        proxy_pass http://127.0.0.1:1/;
    }
--- must_die
--- error_log
"monetize_gate on" cannot be combined with "satisfy any"

=== TEST 3: satisfy any where the gate is off is nginx's business
--- config
    satisfy any;
    location /api/ { monetize_gate on; satisfy all; proxy_pass http://127.0.0.1:1/; }
    location /open/ { allow 127.0.0.1; deny all; return 200 "open\n"; }
--- request
GET /open/x
--- error_code: 200
--- response_body
open

=== TEST 4: error_page 402 = /somewhere is honoured, and nothing is debited
--- http_config
    monetize_cache zone=keys:1m;
--- config
    location /api/ {
        monetize_gate on;
        monetize_cost 2;
        error_page 402 = /top-up;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/;
    }
    location = /top-up { return 200 "buy credits at the shop\n"; }
    location /backend/ { return 500 "must not be reached\n"; }
--- more_headers
X-API-Key: sk_live_PPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPP
--- request
GET /api/hello
--- error_code: 200
--- response_body
buy credits at the shop
--- sql
SELECT count(*) FROM credit_ledger l JOIN users u ON u.id = l.user_id WHERE u.email = 'poor@example.com' AND l.kind = 'debit'
--- sql_result
0

=== TEST 5: error_page 401 to a named location; the answer keeps WWW-Authenticate
--- config
    location /api/ {
        monetize_gate on;
        error_page 401 @login;
        proxy_pass http://127.0.0.1:1/;
    }
    location @login {
        default_type text/plain;
        return 401 "log in first\n";
    }
--- request
GET /api/hello
--- error_code: 401
--- response_body
log in first
--- response_headers
WWW-Authenticate: Bearer

=== TEST 6: error_page 403 without "=": the page is the operator's, the status the gate's
--- config
    location /api/ {
        monetize_gate on;
        error_page 403 /revoked.txt;
        proxy_pass http://127.0.0.1:1/;
    }
    location = /revoked.txt { return 200 "this key was revoked\n"; }
--- more_headers
X-API-Key: sk_live_RRRRRRRRRRRRRRRRRRRRRRRRRRRRRRRR
--- request
GET /api/hello
--- error_code: 403
--- response_body
this key was revoked

=== TEST 7: an error_page for other statuses leaves the gate's JSON as it was
--- http_config
    monetize_cache zone=keys:1m;
    monetize_top_up_url https://billing.example.com/top-up;
--- config
    location /api/ {
        monetize_gate on;
        monetize_cost 2;
        error_page 404 500 = /oops;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/;
    }
    location = /oops { return 200 "oops\n"; }
    location /backend/ { return 500 "must not be reached\n"; }
--- more_headers
X-API-Key: sk_live_PPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPP
--- request
GET /api/hello
--- error_code: 402
--- response_headers
Content-Type: application/json
Cache-Control: no-store
X-Credits-Remaining: 1
--- response_json
{"error": {"code": "insufficient_credits", "message": "this call costs 2 credits; the balance is 1",
           "balance": 1, "top_up_url": "https://billing.example.com/top-up"}}

=== TEST 8: an error_page into a gated location finds the same denial, in JSON
--- config
    location /api/ {
        monetize_gate on;
        error_page 401 /api/why;
        proxy_pass http://127.0.0.1:1/;
    }
--- request
GET /api/hello
--- error_code: 401
--- response_json
{"error": {"code": "missing_credentials"}}
--- response_headers
WWW-Authenticate: Bearer

=== TEST 9: HEAD: the status and headers of the denial, no body
--- config
    location /api/ { monetize_gate on; proxy_pass http://127.0.0.1:1/; }
--- request
HEAD /api/hello
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer
Content-Type: application/json
--- response_body
