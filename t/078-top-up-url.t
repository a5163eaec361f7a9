# The top_up_url of a 402 names the host and port the client called: from
# its Host header, or without one (HTTP/1.0) the server's name and the port
# it was called on; monetize_top_up_url replaces it.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my ($user, $key) = Test::Monetize::account(credits => 1);
$ENV{TEST_NGINX_KEY} = $key;

plan tests => scalar blocks() + 1;
run_tests();

my $ngx = Test::Monetize::Nginx->start(
    config => 'location /v1/ { monetize_api; }');
my $body = '{"amount": 5}';
my $res = $ngx->request('POST', '/v1/use_credit', raw =>
    "POST /v1/use_credit HTTP/1.0\r\nAuthorization: Bearer $key\r\n"
    . "Content-Type: application/json\r\n"
    . "Content-Length: " . length($body) . "\r\n\r\n$body");
is_deeply [$res->{status}, $res->{json}{error}{top_up_url}],
    [402, 'http://localhost:' . $ngx->port . '/v1/purchase_credits'],
    'no Host header: the server\'s name and the port called';
$ngx->stop;

__DATA__

=== TEST 1: the Host header, with its port
--- config
    location /v1/ { monetize_api; }
--- more_headers
Host: api.example.com:8080
Authorization: Bearer $TEST_NGINX_KEY
Content-Type: application/json
--- request
POST /v1/use_credit
{"amount": 5}
--- error_code: 402
--- response_json
{"error": {"code": "insufficient_credits",
           "top_up_url": "http://api.example.com:8080/v1/purchase_credits"}}

=== TEST 2: $monetize_host for a URL of one's own
--- http_config
    monetize_top_up_url https://$monetize_host/billing;
--- config
    location /v1/ { monetize_api; }
--- more_headers
Host: localhost:8443
Authorization: Bearer $TEST_NGINX_KEY
Content-Type: application/json
--- request
POST /v1/use_credit
{"amount": 5}
--- error_code: 402
--- response_json
{"error": {"top_up_url": "https://localhost:8443/billing"}}
