# The management API's routing and body handling: every client mistake is
# a JSON error of the contract, never a 500.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

plan tests => scalar blocks() + 6;
run_tests();

sub chunked {
    my ($body) = @_;
    return "POST /v1/register HTTP/1.1\r\nHost: localhost\r\n"
        . "Connection: close\r\nContent-Type: application/json\r\n"
        . "Transfer-Encoding: chunked\r\n\r\n"
        . sprintf("%x\r\n%s\r\n0\r\n\r\n", length $body, $body);
}

# A chunked body's size is known only once it is read.
my $ngx = Test::Monetize::Nginx->start(
    http_config => 'monetize_api_max_body 64;',
    config => 'location /v1/ { monetize_api; }');
my $body = '{"email": "' . ('a' x 100) . '@example.com"}';
my $res = $ngx->request('POST', '/v1/register', raw => chunked($body));
is_deeply [$res->{status}, $res->{json}{error}{code}], [400, 'body_too_large'],
    'a chunked body over the limit is 400 body_too_large';

# Its last buffer is empty, with no memory behind it (UBSan saw a memcpy
# from NULL there).
$res = $ngx->request('POST', '/v1/register', raw => chunked('{"email": 1}'));
is_deeply [$res->{status}, $res->{json}{error}{fields}{email}],
    [422, 'must be a string'], 'a chunked body within the limit is read';
$ngx->stop;

# The documented limit, 16k by default, holds though nginx's own
# client_body_buffer_size is 8k: a body within it is read, not refused.
sub padded {
    my ($size) = @_;
    my $body = '{"email": 1, "pad": "';
    return $body . ('x' x ($size - length($body) - 2)) . '"}';
}

$ngx = Test::Monetize::Nginx->start(
    config => 'location /v1/ { monetize_api; }');
for my $case ([15 * 1024, 422, 'validation_failed'],
              [16 * 1024, 422, 'validation_failed'],
              [17 * 1024, 400, 'body_too_large'])
{
    my ($size, $status, $code) = @$case;
    $res = $ngx->request('POST', '/v1/register',
        headers => ['Content-Type' => 'application/json'],
        body => padded($size));
    is_deeply [$res->{status}, $res->{json}{error}{code}], [$status, $code],
        "a body of $size bytes: $status $code" or diag $res->{body};
}
$res = $ngx->request('POST', '/v1/register', raw => chunked(padded(15 * 1024)));
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [422, 'validation_failed'], 'a chunked body of 15k is read too';
$ngx->stop;

__DATA__

=== TEST 1: /health answers when PostgreSQL does
--- config
    location /v1/ { monetize_api; }
--- request
GET /v1/health
--- error_code: 200
--- response_headers
Content-Type: application/json
Cache-Control: no-store
--- response_json
{"status": "ok", "postgres": "ok"}

=== TEST 2: HEAD works where GET does, without a body
--- config
    location /v1/ { monetize_api; }
--- request
HEAD /v1/health
--- error_code: 200
--- response_body

=== TEST 3: a trailing slash is ignored
--- config
    location /v1/ { monetize_api; }
--- request
GET /v1/health/
--- error_code: 200

=== TEST 4: an unknown path is 404 not_found
--- config
    location /v1/ { monetize_api; }
--- request
GET /v1/no/such/thing
--- error_code: 404
--- response_json
{"error": {"code": "not_found", "message": "re:."}}

=== TEST 5: the location itself is no endpoint
--- config
    location /v1/ { monetize_api; }
--- request
GET /v1/
--- error_code: 404
--- response_json
{"error": {"code": "not_found"}}

=== TEST 6: a known path with another method is 405 with Allow
--- config
    location /v1/ { monetize_api; }
--- request
DELETE /v1/health
--- error_code: 405
--- response_headers
Allow: GET
--- response_json
{"error": {"code": "method_not_allowed", "message": "use GET on this endpoint"}}

=== TEST 7: POST to a GET endpoint, with a body, is 405 and the body is discarded
--- config
    location /v1/ { monetize_api; }
--- request eval
["POST /v1/health\n{\"a\":1}", "GET /v1/health"]
--- error_code eval
[405, 200]

=== TEST 8: a body that is not JSON
--- config
    location /v1/ { monetize_api; }
--- more_headers
Content-Type: application/json
--- request
POST /v1/register
{"email": "a@example.com",
--- error_code: 400
--- response_json
{"error": {"code": "invalid_json", "message": "re:^the body is not valid JSON: .* \\(line 1, column \\d+\\)$"}}

=== TEST 9: JSON that is not an object
--- config
    location /v1/ { monetize_api; }
--- more_headers
Content-Type: application/json
--- request
POST /v1/register
["a@example.com", "password"]
--- error_code: 400
--- response_json
{"error": {"code": "invalid_json", "message": "the body must be a JSON object"}}

=== TEST 10: a key given twice in the object
--- config
    location /v1/ { monetize_api; }
--- more_headers
Content-Type: application/json
--- request
POST /v1/register
{"email": "a@example.com", "email": "b@example.com", "password": "12345678"}
--- error_code: 400
--- response_json
{"error": {"code": "invalid_json", "message": "re:duplicate"}}

=== TEST 11: invalid UTF-8 in a string
--- config
    location /v1/ { monetize_api; }
--- more_headers
Content-Type: application/json
--- request eval
"POST /v1/register\n{\"email\": \"a\xff\@example.com\", \"password\": \"12345678\"}"
--- error_code: 400
--- response_json
{"error": {"code": "invalid_json"}}

=== TEST 12: the wrong content type
--- config
    location /v1/ { monetize_api; }
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- request
POST /v1/register
email=a@example.com&password=12345678
--- error_code: 400
--- response_json
{"error": {"code": "invalid_request", "message": "send the body as Content-Type: application/json"}}

=== TEST 13: no content type at all
--- config
    location /v1/ { monetize_api; }
--- request
POST /v1/register
{"email": "a@example.com", "password": "12345678"}
--- error_code: 400
--- response_json
{"error": {"code": "invalid_request"}}

=== TEST 14: a content type with parameters is fine
--- config
    location /v1/ { monetize_api; }
--- more_headers
Content-Type: Application/JSON; charset=utf-8
--- request
POST /v1/register
{"email": 1}
--- error_code: 422
--- response_json
{"error": {"code": "validation_failed"}}

=== TEST 15: a body over the limit, announced by Content-Length
--- http_config
    monetize_api_max_body 64;
--- config
    location /v1/ { monetize_api; }
--- more_headers
Content-Type: application/json
--- request eval
"POST /v1/register\n{\"email\": \"" . ("a" x 100) . "\@example.com\"}"
--- error_code: 400
--- response_json
{"error": {"code": "body_too_large", "message": "the body may have at most 64 bytes"}}

=== TEST 16: an empty body is an empty object
--- config
    location /v1/ { monetize_api; }
--- request
POST /v1/register
--- error_code: 422
--- response_json
{"error": {"code": "validation_failed", "fields": {"email": "is required", "password": "is required"}}}
