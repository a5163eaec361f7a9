# POST /register: validation, the rows it writes in one transaction, the
# key shown once and stored only as a keyed hash, the signup grant in the
# ledger.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Digest::SHA qw(hmac_sha256_hex);

plan tests => scalar blocks() + 10;
run_tests();

my $ngx = Test::Monetize::Nginx->start(
    http_config => "monetize_bcrypt_cost 4;\nmonetize_signup_credits 250;",
    config => 'location /v1/ { monetize_api; }');

my $res = $ngx->request('POST', '/v1/register',
    json => {email => 'Grace@Example.COM', password => 'correct horse',
             name => "Grace H\x{f6}pper"});

is $res->{status}, 201, 'register: 201';
my $body = $res->{json};
my $key = $body->{api_key} // '';
like $key, qr/\Ask_live_[0-9A-Za-z]{32}\z/, 'the key: sk_live_ + 32 base62';

my ($user) = Test::Monetize::psql(
    'SELECT id, email, name, email_verified, password_hash FROM users'
    . ' WHERE id = $1', $body->{user}{id});
is_deeply [@$user[0 .. 3]],
    [$body->{user}{id}, 'grace@example.com', "Grace H\xc3\xb6pper", 'f'],
    'the user row: lowercased email, name, not verified';
like $user->[4], qr/\A\$2b\$04\$.{53}\z/, 'the password is a bcrypt $2b$ hash';

my ($k) = Test::Monetize::psql(
    'SELECT id, key_hash, prefix, name, revoked_at FROM api_keys'
    . ' WHERE user_id = $1', $body->{user}{id});
is_deeply $k, [$body->{api_key_id},
               hmac_sha256_hex($key, $ENV{MONETIZE_KEY_SECRET}),
               substr($key, 0, 12), 'default', undef],
    'only the HMAC of the key is stored, with its first 12 characters';

my @money = Test::Monetize::psql(
    'SELECT b.balance, l.delta, l.kind, l.reference = $2, l.balance_after'
    . '  FROM balances b JOIN credit_ledger l USING (user_id)'
    . ' WHERE b.user_id = $1', $body->{user}{id}, "signup:$body->{user}{id}");
is_deeply \@money, [[250, 250, 'signup', 't', 250]],
    'the signup grant: one ledger entry, and the balance it makes';

$ngx->stop;

# A registration the address limit refuses changes nothing: no account, no
# signup credits, one answer.
$ngx = Test::Monetize::Nginx->start(
    http_config => "monetize_bcrypt_cost 4;\nmonetize_signup_credits 100;",
    api_limit => 'monetize_api_limit 10r/m burst=2;',
    config => 'location /v1/ { monetize_api; }');
my $mark = $ngx->error_log_mark;
my @res = map {
    $ngx->request('POST', '/v1/register',
                  json => {email => "farm$_\@example.com",
                           password => 'correct horse'})
} 1 .. 4;
is_deeply [map { $_->{status} } @res], [201, 201, 429, 429],
    'valid registrations past the limit: 429';
is_deeply [map { $_->{json}{error}{code} } @res[2, 3]],
    ['rate_limited', 'rate_limited'], '... rate_limited, a JSON answer';
is_deeply [Test::Monetize::psql(
    q{SELECT count(*), (SELECT count(*) FROM credit_ledger l
                         JOIN users u ON u.id = l.user_id
                        WHERE u.email LIKE 'farm%')
        FROM users WHERE email LIKE 'farm%'})],
    [[2, 2]], '... and only the two admitted made accounts and credits';
unlike $ngx->error_log_since($mark), qr/\[alert\]/,
    '... with nothing sent twice (no alert)';
$ngx->stop;

__DATA__

=== TEST 1: a registration answers with the user, the key, and the credits
--- http_config
    monetize_bcrypt_cost 4;
    monetize_signup_credits 7;
--- config
    location /v1/ { monetize_api; }
--- more_headers
Content-Type: application/json
--- request
POST /v1/register
{"email": "ada@example.com", "password": "analytical engine"}
--- error_code: 201
--- response_json
{"user": {"id": "re:^[0-9a-f-]{36}$", "email": "ada@example.com", "email_verified": false},
 "api_key": "re:^sk_live_[0-9A-Za-z]{32}$", "api_key_id": "re:^[0-9a-f-]{36}$", "credits": 7}
--- sql
SELECT count(*), sum(delta) FROM credit_ledger l JOIN users u ON u.id = l.user_id WHERE u.email = 'ada@example.com'
--- sql_result
1	7

=== TEST 2: the same email again, in other case, is 409 email_taken and writes nothing
--- http_config
    monetize_bcrypt_cost 4;
    monetize_signup_credits 7;
--- config
    location /v1/ { monetize_api; }
--- more_headers
Content-Type: application/json
--- request
POST /v1/register
{"email": "ADA@example.com", "password": "another password"}
--- error_code: 409
--- response_json
{"error": {"code": "email_taken"}}
--- sql
SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM api_keys), (SELECT count(*) FROM credit_ledger)
--- sql_result
1	1	1

=== TEST 3: with no signup credits, the balance is 0 and the ledger has no entry
--- http_config
    monetize_bcrypt_cost 4;
--- config
    location /v1/ { monetize_api; }
--- more_headers
Content-Type: application/json
--- request
POST /v1/register
{"email": "zero@example.com", "password": "nothing to start"}
--- error_code: 201
--- response_json
{"credits": 0}
--- sql
SELECT b.balance, (SELECT count(*) FROM credit_ledger l WHERE l.user_id = u.id) FROM users u JOIN balances b ON b.user_id = u.id WHERE u.email = 'zero@example.com'
--- sql_result
0	0

=== TEST 4: every failing field at once
--- config
    location /v1/ { monetize_api; }
--- more_headers
Content-Type: application/json
--- request
POST /v1/register
{"email": "not an address", "password": "short", "name": ""}
--- error_code: 422
--- response_json
{"error": {"code": "validation_failed", "message": "some fields are not valid",
           "fields": {"email": "must be a plain email address (ASCII, no spaces)",
                      "password": "must have at least 8 characters",
                      "name": "must have 1 to 200 bytes"}}}

=== TEST 5: fields of the wrong type
--- config
    location /v1/ { monetize_api; }
--- more_headers
Content-Type: application/json
--- request
POST /v1/register
{"email": ["a@example.com"], "password": 12345678, "name": {"first": "A"}}
--- error_code: 422
--- response_json
{"error": {"fields": {"email": "must be a string", "password": "must be a string", "name": "must be a string"}}}

=== TEST 6: email addresses that are not
--- config
    location /v1/ { monetize_api; }
--- more_headers
Content-Type: application/json
--- request eval
[map { "POST /v1/register\n{\"email\": \"$_\", \"password\": \"12345678\"}" }
     'a@b', '@example.com', 'a@@example.com', 'a@example.', 'a@.com',
     'ab', 'a<b>@example.com', ('x' x 250) . '@example.com']
--- error_code: 422
--- response_json
{"error": {"fields": {"email": "re:."}}}

=== TEST 7: a password longer than bcrypt reads
--- config
    location /v1/ { monetize_api; }
--- more_headers
Content-Type: application/json
--- request eval
"POST /v1/register\n{\"email\": \"long\@example.com\", \"password\": \"" . ("p" x 73) . "\"}"
--- error_code: 422
--- response_json
{"error": {"fields": {"password": "must have at most 72 bytes"}}}

=== TEST 8: a NUL in a string is refused as JSON
--- config
    location /v1/ { monetize_api; }
--- more_headers
Content-Type: application/json
--- request
POST /v1/register
{"email": "nul@example.com", "password": "abcd\u0000efgh"}
--- error_code: 400
--- response_json
{"error": {"code": "invalid_json"}}

=== TEST 9: a name with a control character
--- config
    location /v1/ { monetize_api; }
--- more_headers
Content-Type: application/json
--- request
POST /v1/register
{"email": "ctl@example.com", "password": "12345678", "name": "a\u0007b"}
--- error_code: 422
--- response_json
{"error": {"fields": {"name": "must not contain control characters"}}}

=== TEST 10: a null name is no name; unknown fields are ignored
--- http_config
    monetize_bcrypt_cost 4;
--- config
    location /v1/ { monetize_api; }
--- more_headers
Content-Type: application/json
--- request
POST /v1/register
{"email": "noname@example.com", "password": "12345678", "name": null, "plan": "enterprise"}
--- error_code: 201
--- sql
SELECT name IS NULL FROM users WHERE email = 'noname@example.com'
--- sql_result
t
