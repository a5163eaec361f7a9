# POST /use_credit: the caller spends its credits, one ledger entry per
# charge; the same idempotency key never charges twice; a balance that
# cannot pay is 402 and writes nothing.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Digest::SHA qw(hmac_sha256_hex);

# An account with a key we know, and credits granted through the ledger.
sub account {
    my ($user, $email, $key_id, $key, $credits) = @_;
    Test::Monetize::psql(
        "INSERT INTO users (id, email, password_hash) VALUES (\$1, \$2, 'x');"
        . " INSERT INTO api_keys (id, user_id, key_hash, prefix)"
        . " VALUES (\$3, \$1, \$4, 'sk_live_xxxx')",
        $user, $email, $key_id, hmac_sha256_hex($key, $ENV{MONETIZE_KEY_SECRET}));
    Test::Monetize::psql("SELECT monetize_credit(\$1, \$2, 'admin', \$3)",
                         $user, $credits, "fixture:$email")
        if $credits;
}

my $alice = 'a0000000-0000-4000-8000-000000000000';
my $erin = 'e0000000-0000-4000-8000-000000000000';
account($alice, 'alice@example.com', '00000000-0000-4000-8000-00000000000a',
        'sk_live_' . ('A' x 32), 100);
account('b0000000-0000-4000-8000-000000000000', 'bob@example.com',
        '00000000-0000-4000-8000-00000000000b', 'sk_live_' . ('B' x 32), 5);
account('d0000000-0000-4000-8000-000000000000', 'dave@example.com',
        '00000000-0000-4000-8000-00000000000d', 'sk_live_' . ('D' x 32), 0);
account($erin, 'erin@example.com', '00000000-0000-4000-8000-00000000000e',
        'sk_live_' . ('E' x 32), 1000);

plan tests => scalar blocks() + 10;
run_tests();


# --- concurrency and bodiless calls, through the Perl API ------------------

my $ngx = Test::Monetize::Nginx->start(
    config => 'location /v1/ { monetize_api; }', workers => 2);
my @auth = (headers => [Authorization => 'Bearer sk_live_' . ('E' x 32)]);

my @res = $ngx->parallel([map { [POST => '/v1/use_credit', @auth,
    json => {amount => 7, idempotency_key => 'once'}] } 1 .. 20]);
is_deeply [map { $_->{status} } @res], [(200) x 20],
    '20 calls at once with one idempotency key: all 200';
is_deeply [map { $_->{json}{balance} } @res], [(993) x 20],
    'all with the balance after the one charge';
is scalar(grep { ($_->{headers}{'idempotent-replayed'} // '') eq 'true' }
          @res), 19, '19 of them are replays';
is_deeply [Test::Monetize::psql(
        "SELECT count(*) FROM credit_ledger WHERE reference = \$1",
        "use_credit:$erin:key:once")],
    [[1]], 'one ledger entry';

@res = $ngx->parallel([map { [POST => '/v1/use_credit', @auth,
    json => {amount => 3}] } 1 .. 20]);
is_deeply [sort map { $_->{status} } @res], [(200) x 20],
    '20 calls at once without a key: all 200';
is_deeply [Test::Monetize::psql(
        "SELECT b.balance, count(l.*) FILTER (WHERE l.kind = 'use_credit'),"
        . "     sum(l.delta)"
        . " FROM balances b JOIN credit_ledger l USING (user_id)"
        . " WHERE b.user_id = \$1 GROUP BY b.balance", $erin)],
    [[933, 21, 933]],
    'each charged once: balance 1000 - 7 - 20 * 3, the sum of the ledger';

# "curl -X POST": no body, no Content-Length, no Content-Type.
my $res = $ngx->request('POST', '/v1/use_credit', raw =>
    "POST /v1/use_credit HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
    . "Authorization: Bearer sk_live_" . ('E' x 32) . "\r\n\r\n");
is_deeply [$res->{status}, $res->{json}], [200, {balance => 932}],
    'a POST without a body is a POST of {}: one credit';
# A key refused for want of credits charges once they are there.
@auth = (headers => [Authorization => 'Bearer sk_live_' . ('D' x 32)]);
$res = $ngx->request('POST', '/v1/use_credit', @auth,
                     json => {idempotency_key => 'retry-me'});
is_deeply [$res->{status}, $res->{json}{error}{balance}], [402, 0],
    'with no credits: 402';
Test::Monetize::psql("SELECT monetize_credit(\$1, 5, 'admin', 'top-up')",
                     'd0000000-0000-4000-8000-000000000000');
$res = $ngx->request('POST', '/v1/use_credit', @auth,
                     json => {idempotency_key => 'retry-me'});
is_deeply [$res->{status}, $res->{json}], [200, {balance => 4}],
    'the same idempotency key after a top-up: charged';

is_deeply [Test::Monetize::psql(
        'SELECT count(*) FROM balances b WHERE b.balance <>'
        . ' (SELECT sum(delta) FROM credit_ledger l'
        . '   WHERE l.user_id = b.user_id)')],
    [[0]], 'every balance is the sum of its ledger';

$ngx->stop;

__DATA__

=== TEST 1: one credit by default; the ledger says who, with which key
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
POST /v1/use_credit
--- error_code: 200
--- response_body
{"balance":99}
--- response_headers
!Idempotent-Replayed
--- sql
SELECT delta, kind, api_key_id, balance_after, reference ~ '^use_credit:a0000000-0000-4000-8000-000000000000:key:req_[0-9a-f]{32}$' FROM credit_ledger WHERE kind = 'use_credit'
--- sql_result
-1	use_credit	00000000-0000-4000-8000-00000000000a	99	t

=== TEST 2: each call without an idempotency key charges
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Content-Type: application/json
--- request eval
["POST /v1/use_credit\n{\"amount\": 2}", "POST /v1/use_credit\n{\"amount\": 2}"]
--- response_json eval
[{balance => 97}, {balance => 95}]
--- sql
SELECT count(DISTINCT reference), sum(delta) FROM credit_ledger WHERE kind = 'use_credit'
--- sql_result
3	-5

=== TEST 3: an idempotency key charges once; a replay answers the balance
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Content-Type: application/json
--- request eval
["POST /v1/use_credit\n{\"amount\": 10, \"idempotency_key\": \"order-1\"}",
 "POST /v1/use_credit\n{\"amount\": 10, \"idempotency_key\": \"order-1\"}"]
--- error_code: 200
--- response_json eval
[{balance => 85}, {balance => 85}]
--- response_headers eval
["!Idempotent-Replayed", "Idempotent-Replayed: true"]
--- sql
SELECT delta, balance_after FROM credit_ledger WHERE reference = 'use_credit:a0000000-0000-4000-8000-000000000000:key:order-1'
--- sql_result
-10	85

=== TEST 4: a replay answers the current balance, not the one of the charge
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Content-Type: application/json
--- request eval
["POST /v1/use_credit\n{\"amount\": 5}",
 "POST /v1/use_credit\n{\"idempotency_key\": \"order-1\", \"amount\": 10}"]
--- response_json eval
[{balance => 80}, {balance => 80}]

=== TEST 5: the same key with another amount: 409, nothing charged
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Content-Type: application/json
--- request eval
["POST /v1/use_credit\n{\"amount\": 11, \"idempotency_key\": \"order-1\"}",
 "POST /v1/use_credit\n{\"idempotency_key\": \"order-1\"}"]
--- error_code: 409
--- response_json
{"error": {"code": "idempotency_conflict", "message": "this idempotency key was used for another amount"}}
--- sql
SELECT balance FROM balances WHERE user_id = 'a0000000-0000-4000-8000-000000000000'
--- sql_result
80

=== TEST 6: idempotency keys are per account
--- config
    location /v1/ { monetize_api; }
--- more_headers
X-API-Key: sk_live_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB
Content-Type: application/json
--- request
POST /v1/use_credit
{"amount": 2, "idempotency_key": "order-1"}
--- error_code: 200
--- response_json
{"balance": 3}
--- sql
SELECT count(*) FROM credit_ledger WHERE reference LIKE 'use_credit:%:key:order-1'
--- sql_result
2

=== TEST 7: more than the balance: 402 insufficient_credits, nothing written
--- config
    location /v1/ { monetize_api; }
--- more_headers
X-API-Key: sk_live_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB
Content-Type: application/json
Host: api.example.com
--- request eval
["POST /v1/use_credit\n{\"amount\": 4}",
 "POST /v1/use_credit\n{\"amount\": 4, \"idempotency_key\": \"big\"}",
 "POST /v1/use_credit\n{\"amount\": 1000000000}"]
--- error_code: 402
--- response_json eval
[map { {error => {code => 'insufficient_credits',
                  message => "this call costs $_ credits; the balance is 3",
                  balance => 3,
                  top_up_url => 'http://api.example.com/v1/purchase_credits'}} }
     4, 4, 1000000000]
--- sql
SELECT b.balance, count(l.*) FROM balances b JOIN credit_ledger l USING (user_id) WHERE b.user_id = 'b0000000-0000-4000-8000-000000000000' GROUP BY b.balance
--- sql_result
3	2

=== TEST 8: a replay charges nothing, even when the balance could not pay it now
--- config
    location /v1/ { monetize_api; }
--- more_headers
X-API-Key: sk_live_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB
Content-Type: application/json
--- request eval
["POST /v1/use_credit\n{\"amount\": 3}",
 "POST /v1/use_credit\n{\"amount\": 2, \"idempotency_key\": \"order-1\"}",
 "POST /v1/use_credit"]
--- error_code eval
[200, 200, 402]
--- response_json eval
[{balance => 0}, {balance => 0}, {error => {code => 'insufficient_credits', balance => 0}}]

=== TEST 9: amounts that are not
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Content-Type: application/json
--- request eval
[map { "POST /v1/use_credit\n{\"amount\": $_}" }
     '0', '-1', '1000000001', '9223372036854775807', '1.5', '1e2', '"5"',
     'true', '[1]']
--- error_code: 422
--- response_json eval
[map { {error => {code => 'validation_failed', fields => {amount => $_}}} }
     ('must be from 1 to 1000000000') x 4, ('must be an integer') x 5]

=== TEST 10: idempotency keys that are not
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Content-Type: application/json
--- request eval
[map { "POST /v1/use_credit\n{\"idempotency_key\": $_}" }
     '""', '"' . ('k' x 256) . '"', '"caf\u00e9"', '"a\tb"', '"del\u007f"',
     '42', 'false']
--- error_code: 422
--- response_json eval
[map { {error => {code => 'validation_failed', fields => {idempotency_key => $_}}} }
     ('must have 1 to 255 bytes') x 2, ('must be printable ASCII') x 3,
     ('must be a string') x 2]

=== TEST 11: both fields wrong at once; nothing charged
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Content-Type: application/json
--- request
POST /v1/use_credit
{"amount": 0, "idempotency_key": ""}
--- error_code: 422
--- response_json
{"error": {"code": "validation_failed", "message": "some fields are not valid",
           "fields": {"amount": "must be from 1 to 1000000000",
                      "idempotency_key": "must have 1 to 255 bytes"}}}
--- sql
SELECT balance FROM balances WHERE user_id = 'a0000000-0000-4000-8000-000000000000'
--- sql_result
80

=== TEST 12: the longest key, of every printable character; the largest amount
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Content-Type: application/json
--- request eval
["POST /v1/use_credit\n" . JSON::PP->new->encode({amount => 1,
     idempotency_key => ('x' x 160) . join('', map { chr } 0x20 .. 0x7e)}),
 "POST /v1/use_credit\n{\"amount\": 1000000000, \"idempotency_key\": \"huge\"}"]
--- error_code eval
[200, 402]
--- response_json eval
[{balance => 79}, {error => {code => 'insufficient_credits'}}]
--- sql
SELECT length(reference) - length('use_credit:a0000000-0000-4000-8000-000000000000:key:') FROM credit_ledger WHERE reference LIKE '%xxx %'
--- sql_result
255

=== TEST 13: a caller is needed; only POST
--- config
    location /v1/ { monetize_api; }
--- request eval
["POST /v1/use_credit", "GET /v1/use_credit"]
--- error_code eval
[401, 405]
--- response_json eval
[{error => {code => 'missing_credentials'}},
 {error => {code => 'method_not_allowed'}}]
