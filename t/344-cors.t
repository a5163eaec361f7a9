# CORS on the management API: monetize_cors_origins ORIGIN... | off. A
# preflight from an allowed origin is answered 204 with the
# Access-Control-Allow-* headers (the origin echoed, never "*"); an actual
# request from it gets Allow-Origin; a refused origin gets no CORS header;
# every answer of such a location says Vary: Origin.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

plan tests => scalar blocks();
run_tests();

__DATA__

=== TEST 1: a preflight from an allowed origin: 204 and the headers
--- config
    location /v1/ {
        monetize_api;
        monetize_cors_origins https://app.example.com http://localhost:3000;
    }
--- request
OPTIONS /v1/keys
--- more_headers
Origin: https://app.example.com
Access-Control-Request-Method: POST
Access-Control-Request-Headers: authorization, content-type
--- error_code: 204
--- response_headers
Access-Control-Allow-Origin: https://app.example.com
Access-Control-Allow-Credentials: true
Access-Control-Allow-Methods: GET, POST, PATCH, PUT, DELETE
Access-Control-Allow-Headers: Authorization, Content-Type, X-API-Key, X-Monetize-CSRF
Access-Control-Max-Age: 600
Vary: Origin
--- response_body

=== TEST 2: the other allowed origin, with a port
--- config
    location /v1/ {
        monetize_api;
        monetize_cors_origins https://app.example.com http://localhost:3000;
    }
--- request
OPTIONS /v1/me
--- more_headers
Origin: http://localhost:3000
Access-Control-Request-Method: GET
--- error_code: 204
--- response_headers
Access-Control-Allow-Origin: http://localhost:3000

=== TEST 3: a preflight from a refused origin: no CORS header
--- config
    location /v1/ {
        monetize_api;
        monetize_cors_origins https://app.example.com http://localhost:3000;
    }
--- request eval
["OPTIONS /v1/keys", "OPTIONS /v1/keys", "OPTIONS /v1/keys",
 "OPTIONS /v1/keys"]
--- more_headers eval
["Origin: https://evil.example.com\nAccess-Control-Request-Method: POST",
 "Origin: https://app.example.com.evil.com\nAccess-Control-Request-Method: POST",
 "Origin: https://app.example.com:443\nAccess-Control-Request-Method: POST",
 "Origin: http://app.example.com\nAccess-Control-Request-Method: POST"]
--- error_code: 405
--- response_headers
!Access-Control-Allow-Origin
!Access-Control-Allow-Credentials
!Access-Control-Allow-Methods
Vary: Origin

=== TEST 4: an actual request from an allowed origin
--- config
    location /v1/ {
        monetize_api;
        monetize_cors_origins https://app.example.com http://localhost:3000;
    }
--- request
GET /v1/health
--- more_headers
Origin: https://APP.example.com
--- error_code: 200
--- response_headers
Access-Control-Allow-Origin: https://APP.example.com
Access-Control-Allow-Credentials: true
Access-Control-Expose-Headers: Retry-After, WWW-Authenticate, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset
Vary: Origin
!Access-Control-Allow-Methods
--- response_json
{"status": "ok"}

=== TEST 5: an error answer from an allowed origin keeps the headers
--- config
    location /v1/ {
        monetize_api;
        monetize_cors_origins https://app.example.com http://localhost:3000;
    }
--- request
GET /v1/me
--- more_headers
Origin: https://app.example.com
--- error_code: 401
--- response_headers
Access-Control-Allow-Origin: https://app.example.com
Vary: Origin
--- response_json
{"error": {"code": "missing_credentials"}}

=== TEST 6: an actual request from a refused origin: no CORS header
--- config
    location /v1/ {
        monetize_api;
        monetize_cors_origins https://app.example.com http://localhost:3000;
    }
--- request
GET /v1/health
--- more_headers
Origin: https://evil.example.com
--- error_code: 200
--- response_headers
!Access-Control-Allow-Origin
!Access-Control-Allow-Credentials
!Access-Control-Expose-Headers
Vary: Origin

=== TEST 7: no Origin (not a browser's cross-origin call): no CORS header
--- config
    location /v1/ {
        monetize_api;
        monetize_cors_origins https://app.example.com;
    }
--- request
GET /v1/health
--- error_code: 200
--- response_headers
!Access-Control-Allow-Origin
Vary: Origin

=== TEST 8: inherited from the server level, and "off" in a location
--- config
    monetize_cors_origins https://app.example.com;
    location /v1/ { monetize_api; }
    location /v2/ { monetize_api; monetize_cors_origins off; }
--- request eval
["GET /v1/health", "GET /v2/health"]
--- more_headers
Origin: https://app.example.com
--- error_code: 200
--- response_headers eval
["Access-Control-Allow-Origin: https://app.example.com\nVary: Origin",
 "!Access-Control-Allow-Origin\n!Vary"]

=== TEST 9: without the directive, nothing changes
--- config
    location /v1/ { monetize_api; }
--- request
OPTIONS /v1/keys
--- more_headers
Origin: https://app.example.com
Access-Control-Request-Method: POST
--- error_code: 405
--- response_headers
!Access-Control-Allow-Origin
!Vary

=== TEST 10: "*" is refused
--- config
    location /v1/ { monetize_api; monetize_cors_origins *; }
--- must_die
--- error_log
monetize_cors_origins: "*" is not an origin

=== TEST 11: an origin with a path is refused
--- config
    location /v1/ {
        monetize_api;
        monetize_cors_origins https://app.example.com/;
    }
--- must_die
--- error_log
monetize_cors_origins: "https://app.example.com/" is not an origin

=== TEST 12: an origin without a scheme, or with another, is refused
--- config
    location /v1/ {
        monetize_api;
        monetize_cors_origins app.example.com ftp://x.example.com;
    }
--- must_die
--- error_log
monetize_cors_origins: "app.example.com" is not an origin

=== TEST 13: an IPv6 origin with a port is an origin
--- config
    location /v1/ {
        monetize_api;
        monetize_cors_origins http://[::1]:8080 https://127.0.0.1:8443;
    }
--- request
GET /v1/health
--- more_headers
Origin: http://[::1]:8080
--- error_code: 200
--- response_headers
Access-Control-Allow-Origin: http://[::1]:8080

=== TEST 14: the directive given twice in one place
--- config
    location /v1/ {
        monetize_api;
        monetize_cors_origins https://a.example.com;
        monetize_cors_origins https://b.example.com;
    }
--- must_die
--- error_log
"monetize_cors_origins" directive is duplicate
