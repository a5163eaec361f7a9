# The caller's API keys: GET /keys, POST /keys, DELETE /keys/{id},
# POST /keys/{id}/rotate. Another account's key is never revealed (404),
# a key is shown once and stored only as its HMAC, revocation is
# idempotent, and a rotation is one transaction.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Digest::SHA qw(hmac_sha256_hex);

sub hash { hmac_sha256_hex($_[0], $ENV{MONETIZE_KEY_SECRET}) }

sub user {
    my ($id, $email) = @_;
    Test::Monetize::psql("INSERT INTO users (id, email, password_hash)"
                         . " VALUES (\$1, \$2, 'x')", $id, $email);
}

# A key we know, with the times we choose (NULL when not given).
sub key {
    my ($user, $id, $key, %o) = @_;
    Test::Monetize::psql(
        "INSERT INTO api_keys (id, user_id, key_hash, prefix, name,"
        . "                    created_at, last_used_at, expires_at,"
        . "                    revoked_at)"
        . " VALUES (\$1, \$2, \$3, \$4, \$5, coalesce(\$6, now()), \$7,"
        . "         \$8, \$9)",
        $id, $user, hash($key), substr($key, 0, 12), $o{name} // 'default',
        $o{created}, $o{used}, $o{expires}, $o{revoked});
}

my $alice = 'a0000000-0000-4000-8000-000000000000';
my $bob = 'b0000000-0000-4000-8000-000000000000';
my $carol = 'c0000000-0000-4000-8000-000000000000';
my $kid = sub { sprintf '00000000-0000-4000-8000-%012d', $_[0] };
my $A = 'sk_live_' . ('A' x 32);
my $B = 'sk_live_' . ('B' x 32);
my $C = 'sk_live_' . ('C' x 32);

user($alice, 'alice@example.com');
key($alice, $kid->(1), $A, name => 'main',
    created => '2026-01-01 00:00:00+00', used => '2026-01-05 10:20:30+00');
key($alice, $kid->(2), 'sk_live_' . ('R' x 32), name => 'old',
    created => '2025-12-01 00:00:00+00',
    revoked => '2025-12-24 18:00:00+00');
key($alice, $kid->(3), 'sk_live_' . ('E' x 32), name => 'expired',
    created => '2025-11-01 00:00:00+00',
    expires => '2025-11-30 23:59:59+00');
user($bob, 'bob@example.com');
key($bob, $kid->(11), $B, name => 'bob');

plan tests => scalar blocks() + 28;
run_tests();


# --- the flows, through the Perl API ---------------------------------------

my $ngx = Test::Monetize::Nginx->start(
    config => 'location /v1/ { monetize_api; }', workers => 2);

sub call {
    my ($method, $path, $key, $json) = @_;
    return $ngx->request($method, $path,
        headers => [Authorization => "Bearer $key"],
        defined $json ? (json => $json) : ());
}

# A new key works at once and is listed first.
my $res = call(POST => '/v1/keys', $A, {name => 'ci', expires_in => 86400});
is $res->{status}, 201, 'POST /keys: 201';
my $new = $res->{json};
is call(GET => '/v1/verify_credits', $new->{key})->{status}, 200,
    'the new key authenticates';
$res = call(GET => '/v1/keys', $new->{key});
is $res->{json}{keys}[0]{id}, $new->{id}, 'GET /keys lists the new key first';
is_deeply [Test::Monetize::psql(
        'SELECT key_hash, prefix, extract(epoch FROM expires_at - created_at)'
        . ' FROM api_keys WHERE id = $1', $new->{id})],
    [[hash($new->{key}), substr($new->{key}, 0, 12), '86400.000000']],
    'only the HMAC and the prefix are stored; expires_at = created_at + 1 day';

# Rotation with a grace period: both keys work until it ends; the new key
# has the old one's name and expiry.
my ($old_expiry) = Test::Monetize::psql(
    'SELECT expires_at FROM api_keys WHERE id = $1', $new->{id});
$res = call(POST => "/v1/keys/$new->{id}/rotate", $A, {grace_seconds => 600});
is $res->{status}, 201, 'rotate with a grace period: 201';
my $rot = $res->{json};
like $rot->{key}, qr/\Ask_live_[0-9A-Za-z]{32}\z/, 'the rotated key is new';
isnt $rot->{id}, $new->{id}, 'with an id of its own';
is $rot->{name}, 'ci', 'and the old name';
is_deeply [Test::Monetize::psql(
        'SELECT n.expires_at = $2, n.key_hash = $3,'
        . '       o.expires_at BETWEEN now() + interval \'590 s\''
        . '                        AND now() + interval \'600 s\''
        . '  FROM api_keys n, api_keys o WHERE n.id = $1 AND o.id = $4',
        $rot->{id}, $old_expiry->[0], hash($rot->{key}), $new->{id})],
    [['t', 't', 't']],
    'the new key keeps the old expiry; the old one now ends with the grace';
is call(GET => '/v1/verify_credits', $new->{key})->{status}, 200,
    'the old key works during the grace period';
is call(GET => '/v1/verify_credits', $rot->{key})->{status}, 200,
    'and so does the new one';

# Rotation without a grace period: the old key stops at once.
$res = call(POST => "/v1/keys/$rot->{id}/rotate", $rot->{key});
is $res->{status}, 201, 'rotate the key we call with, without grace: 201';
my $rot2 = $res->{json};
$res = call(GET => '/v1/verify_credits', $rot->{key});
is_deeply [$res->{status}, $res->{json}{error}{code}], [403, 'key_expired'],
    'the rotated key stops at once';
is call(GET => '/v1/verify_credits', $rot2->{key})->{status}, 200,
    'its successor works';
$res = call(POST => "/v1/keys/$rot->{id}/rotate", $rot2->{key});
is_deeply [$res->{status}, $res->{json}{error}{code}], [409, 'key_inactive'],
    'a key rotated without grace cannot be rotated again';

# Revoking the key we call with.
$res = call(DELETE => "/v1/keys/$rot2->{id}", $rot2->{key});
is_deeply [$res->{status}, $res->{body}], [204, ''],
    'DELETE the key we call with: 204, no body';
is $res->{headers}{'content-type'}, undef, 'and no Content-Type';
$res = call(GET => '/v1/verify_credits', $rot2->{key});
is_deeply [$res->{status}, $res->{json}{error}{code}], [403, 'key_revoked'],
    'the revoked key stops';
my ($revoked_at) = Test::Monetize::psql(
    'SELECT revoked_at FROM api_keys WHERE id = $1', $rot2->{id});
is call(DELETE => "/v1/keys/$rot2->{id}", $A)->{status}, 204,
    'revoking it again: 204';
is_deeply [Test::Monetize::psql(
        'SELECT revoked_at FROM api_keys WHERE id = $1', $rot2->{id})],
    [$revoked_at], 'and revoked_at is unchanged';

# The cap: 100 active keys. Revoked and expired ones do not count.
my $carols = $kid->(21);
user($carol, 'carol@example.com');
key($carol, $carols, $C, name => 'carol');
Test::Monetize::psql(
    "INSERT INTO api_keys (user_id, key_hash, prefix, revoked_at, expires_at)"
    . " SELECT \$1, 'h' || i, 'sk_live_xxxx',"
    . "        CASE WHEN i > 99 AND i <= 120 THEN now() END,"
    . "        CASE WHEN i > 120 THEN now() - interval '1 s' END"
    . "   FROM generate_series(1, 140) AS i", $carol);
$res = call(POST => '/v1/keys', $C, {});
is_deeply [$res->{status}, $res->{json}{error}{code}], [422, 'too_many_keys'],
    'the 101st active key: 422 too_many_keys';
$res = call(POST => "/v1/keys/$carols/rotate", $C, {grace_seconds => 60});
is_deeply [$res->{status}, $res->{json}{error}{code}], [422, 'too_many_keys'],
    'a rotation with grace at the cap: 422 (both keys would count)';
$res = call(POST => "/v1/keys/$carols/rotate", $C, {});
is $res->{status}, 201, 'a rotation without grace at the cap: 201';
is_deeply [Test::Monetize::psql('SELECT monetize_active_keys($1, NULL)',
                                $carol)],
    [[100]], 'still 100 active keys';

# Creations at once do not pass the cap together.
my $carol_key = $res->{json}{key};
Test::Monetize::psql("UPDATE api_keys SET revoked_at = now()"
                     . " WHERE key_hash IN ('h1', 'h2', 'h3', 'h4', 'h5')");
my @res = $ngx->parallel([map { [POST => '/v1/keys',
    headers => [Authorization => "Bearer $carol_key"], json => {}] } 1 .. 10]);
is_deeply [sort map { $_->{status} } @res], [(201) x 5, (422) x 5],
    '10 creations at once with room for 5: 5 pass, 5 are refused';
is_deeply [Test::Monetize::psql('SELECT monetize_active_keys($1, NULL)',
                                $carol)],
    [[100]], 'and the account has 100 active keys';

# Rotations of one key at once: one new key, the others find it rotated.
$res = call(POST => '/v1/keys', $A, {name => 'contended'});
my $contended = $res->{json}{id};
@res = $ngx->parallel([map { [POST => "/v1/keys/$contended/rotate",
    headers => [Authorization => "Bearer $A"], json => {}] } 1 .. 10]);
is_deeply [sort map { $_->{status} } @res], [201, (409) x 9],
    '10 rotations of one key at once: one 201, nine 409';
is_deeply [Test::Monetize::psql(
        "SELECT count(*) FROM api_keys WHERE name = 'contended'")],
    [[2]], 'one new key';

$ngx->stop;

__DATA__

=== TEST 1: GET /keys: all the caller's keys, revoked and expired too, newest first
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
GET /v1/keys
--- error_code: 200
--- response_json
{"keys": [
  {"id": "00000000-0000-4000-8000-000000000001", "name": "main",
   "prefix": "sk_live_AAAA", "created_at": "2026-01-01T00:00:00Z",
   "last_used_at": "2026-01-05T10:20:30Z", "expires_at": null,
   "revoked_at": null},
  {"id": "00000000-0000-4000-8000-000000000002", "name": "old",
   "prefix": "sk_live_RRRR", "created_at": "2025-12-01T00:00:00Z",
   "last_used_at": null, "expires_at": null,
   "revoked_at": "2025-12-24T18:00:00Z"},
  {"id": "00000000-0000-4000-8000-000000000003", "name": "expired",
   "prefix": "sk_live_EEEE", "created_at": "2025-11-01T00:00:00Z",
   "last_used_at": null, "expires_at": "2025-11-30T23:59:59Z",
   "revoked_at": null}]}

=== TEST 2: the listing has exactly these fields, and never a hash
--- config
    location /v1/ { monetize_api; }
--- more_headers
X-API-Key: sk_live_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB
--- request
GET /v1/keys
--- error_code: 200
--- response_body_like: ^\{"keys":\[\{"id":"00000000-0000-4000-8000-000000000011","name":"bob","prefix":"sk_live_BBBB","created_at":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ","last_used_at":null,"expires_at":null,"revoked_at":null\}\]\}\n\z

=== TEST 3: the key endpoints need a caller
--- config
    location /v1/ { monetize_api; }
--- more_headers
Content-Type: application/json
--- request eval
["GET /v1/keys", "POST /v1/keys\n{}",
 "DELETE /v1/keys/00000000-0000-4000-8000-000000000001",
 "POST /v1/keys/00000000-0000-4000-8000-000000000001/rotate\n{}"]
--- error_code: 401
--- response_json
{"error": {"code": "missing_credentials"}}

=== TEST 4: POST /keys: a named key that expires; the key is shown this once
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Content-Type: application/json
--- request
POST /v1/keys
{"name": "production \u00e9t\u00e9", "expires_in": 3600}
--- error_code: 201
--- response_json
{"id": "re:^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
 "key": "re:^sk_live_[0-9A-Za-z]{32}$", "prefix": "re:^sk_live_[0-9A-Za-z]{4}$",
 "name": "production \u00e9t\u00e9",
 "expires_at": "re:^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ$"}
--- sql
SELECT user_id, length(key_hash), expires_at - created_at, revoked_at IS NULL FROM api_keys WHERE name = 'production été'
--- sql_result
a0000000-0000-4000-8000-000000000000	64	01:00:00	t

=== TEST 5: POST /keys with an empty body: named "default", never expires
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
POST /v1/keys
--- error_code: 201
--- response_json
{"name": "default", "expires_at": null, "key": "re:^sk_live_"}

=== TEST 6: null fields are absent fields; unknown fields are ignored
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Content-Type: application/json
--- request
POST /v1/keys
{"name": null, "expires_in": null, "scopes": ["all"]}
--- error_code: 201
--- response_json
{"name": "default", "expires_at": null}

=== TEST 7: every failing field at once
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Content-Type: application/json
--- request
POST /v1/keys
{"name": "", "expires_in": 0}
--- error_code: 422
--- response_json
{"error": {"code": "validation_failed", "message": "some fields are not valid",
           "fields": {"name": "must have 1 to 100 bytes",
                      "expires_in": "must be from 1 to 315360000"}}}
--- sql
SELECT count(*) FROM api_keys WHERE user_id = 'a0000000-0000-4000-8000-000000000000'
--- sql_result
6

=== TEST 8: names that are not
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Content-Type: application/json
--- request eval
[map { "POST /v1/keys\n{\"name\": $_}" }
     '""', '"' . ('n' x 101) . '"', '"tab\there"', '"nl\nhere"', '"del\u007f"',
     '"c1\u0085"', '42', 'true', '["x"]', '{"a": 1}']
--- error_code: 422
--- response_json eval
[map { {error => {code => 'validation_failed', fields => {name => $_}}} }
     ('must have 1 to 100 bytes') x 2,
     ('must not contain control characters') x 4,
     ('must be a string') x 4]

=== TEST 9: a name of 100 bytes is long enough
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Content-Type: application/json
--- request eval
"POST /v1/keys\n{\"name\": \"" . ('\u00e9' x 50) . "\"}"
--- error_code: 201
--- response_json eval
{name => "\x{e9}" x 50}

=== TEST 10: lifetimes that are not
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Content-Type: application/json
--- request eval
[map { "POST /v1/keys\n{\"expires_in\": $_}" }
     '0', '-1', '315360001', '9223372036854775807', '1.5', '1e3', '"60"',
     'false']
--- error_code: 422
--- response_json eval
[map { {error => {code => 'validation_failed', fields => {expires_in => $_}}} }
     ('must be from 1 to 315360000') x 4, ('must be an integer') x 4]

=== TEST 11: the longest lifetime: ten years
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Content-Type: application/json
--- request
POST /v1/keys
{"name": "decade", "expires_in": 315360000}
--- error_code: 201
--- sql
SELECT expires_at - created_at FROM api_keys WHERE name = 'decade'
--- sql_result
3650 days

=== TEST 12: a body that is not a JSON object
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Content-Type: application/json
--- request eval
["POST /v1/keys\n{\"name\": ", "POST /v1/keys\n[]"]
--- error_code: 400
--- response_json
{"error": {"code": "invalid_json"}}

=== TEST 13: rotate another account's key, or no key: 404, and nothing changes
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Content-Type: application/json
--- request eval
["POST /v1/keys/00000000-0000-4000-8000-000000000011/rotate\n{}",
 "POST /v1/keys/00000000-0000-4000-8000-999999999999/rotate\n{}",
 "POST /v1/keys/nope/rotate\n{}"]
--- error_code: 404
--- response_json
{"error": {"code": "not_found", "message": "no such key"}}
--- sql
SELECT (SELECT count(*) FROM api_keys WHERE user_id = 'b0000000-0000-4000-8000-000000000000'), (SELECT expires_at IS NULL FROM api_keys WHERE id = '00000000-0000-4000-8000-000000000011')
--- sql_result
1	t

=== TEST 14: rotate a revoked key of our own: 409 key_inactive
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Content-Type: application/json
--- request
POST /v1/keys/00000000-0000-4000-8000-000000000002/rotate
{}
--- error_code: 409
--- response_json
{"error": {"code": "key_inactive", "message": "this key was revoked; create a new one with POST /keys"}}

=== TEST 15: rotate an expired key: 409 key_inactive
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Content-Type: application/json
--- request
POST /v1/keys/00000000-0000-4000-8000-000000000003/rotate
{}
--- error_code: 409
--- response_json
{"error": {"code": "key_inactive", "message": "this key has expired; create a new one with POST /keys"}}

=== TEST 16: grace periods that are not
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Content-Type: application/json
--- request eval
[map { "POST /v1/keys/00000000-0000-4000-8000-000000000001/rotate\n{\"grace_seconds\": $_}" }
     '-1', '2592001', '"60"', '60.0']
--- error_code: 422
--- response_json eval
[map { {error => {code => 'validation_failed', fields => {grace_seconds => $_}}} }
     ('must be from 0 to 2592000') x 2, ('must be an integer') x 2]
--- sql
SELECT count(*), count(*) FILTER (WHERE expires_at IS NULL AND id = '00000000-0000-4000-8000-000000000001') FROM api_keys WHERE user_id = 'a0000000-0000-4000-8000-000000000000' AND name = 'main'
--- sql_result
1	1

=== TEST 17: DELETE another account's key: 404, and it stays active
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
DELETE /v1/keys/00000000-0000-4000-8000-000000000011
--- error_code: 404
--- response_json
{"error": {"code": "not_found", "message": "no such key"}}
--- sql
SELECT revoked_at IS NULL FROM api_keys WHERE id = '00000000-0000-4000-8000-000000000011'
--- sql_result
t

=== TEST 18: DELETE of no key, or of an id that is no uuid: 404
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request eval
["DELETE /v1/keys/00000000-0000-4000-8000-999999999999",
 "DELETE /v1/keys/not-a-key", "DELETE /v1/keys/00000000000040008000000000000001",
 "DELETE /v1/keys/00000000-0000-4000-8000-00000000000g",
 "DELETE /v1/keys/%27%20OR%201=1--",
 "DELETE /v1/keys/00000000-0000-4000-8000-0000000000011"]
--- error_code: 404
--- response_json
{"error": {"code": "not_found", "message": "no such key"}}

=== TEST 19: DELETE a key already revoked: 204, and revoked_at stays
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
DELETE /v1/keys/00000000-0000-4000-8000-000000000002
--- error_code: 204
--- response_body
--- response_headers
Cache-Control: no-store
--- sql
SELECT revoked_at = '2025-12-24 18:00:00+00' FROM api_keys WHERE id = '00000000-0000-4000-8000-000000000002'
--- sql_result
t

=== TEST 20: DELETE an expired key: 204, revoked now
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
DELETE /v1/keys/00000000-0000-4000-8000-000000000003
--- error_code: 204
--- sql
SELECT revoked_at > now() - interval '1 minute' FROM api_keys WHERE id = '00000000-0000-4000-8000-000000000003'
--- sql_result
t

=== TEST 21: other methods on a key
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request eval
["GET /v1/keys/00000000-0000-4000-8000-000000000001",
 "GET /v1/keys/00000000-0000-4000-8000-000000000001/rotate",
 "DELETE /v1/keys"]
--- error_code: 405
--- response_headers eval
["Allow: DELETE", "Allow: POST", "Allow: GET, POST"]

