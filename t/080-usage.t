# GET /usage: the caller's calls and credits per day, summed over its keys
# and locations, from the usage table the gate fills; one entry per day
# with usage, in date order; every bad argument is a 422 with fields.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Digest::SHA qw(hmac_sha256_hex);
use POSIX qw(strftime);

sub day_ago { strftime('%Y-%m-%d', gmtime(time - $_[0] * 86400)) }

my $alice = 'a0000000-0000-4000-8000-000000000000';
my $bob = 'b0000000-0000-4000-8000-000000000000';
my ($k1, $k2, $kb) = map { "00000000-0000-4000-8000-00000000000$_" } 1, 2, 3;

Test::Monetize::psql(
    "INSERT INTO users (id, email, password_hash)"
    . " VALUES (\$1, 'alice\@example.com', 'x'), (\$2, 'bob\@example.com', 'x');"
    . " INSERT INTO api_keys (id, user_id, key_hash, prefix)"
    . " VALUES (\$3, \$1, \$6, 'sk_live_AAAA'), (\$4, \$1, 'other', 'sk_live_xxxx'),"
    . "        (\$5, \$2, \$7, 'sk_live_BBBB')",
    $alice, $bob, $k1, $k2, $kb,
    map { hmac_sha256_hex('sk_live_' . ($_ x 32), $ENV{MONETIZE_KEY_SECRET}) }
        'A', 'B');

# Fixed days, and days counted back from today (UTC).
Test::Monetize::psql(
    "INSERT INTO usage (user_id, api_key_id, location, day, calls, credits)"
    . " VALUES (\$1, \$3, '/api/',   '2026-01-01', 3, 6),"
    . "        (\$1, \$4, '/api/',   '2026-01-01', 2, 4),"
    . "        (\$1, \$3, '/other/', '2026-01-01', 1, 0),"
    . "        (\$1, \$3, '/api/',   '2026-01-03', 10, 10),"
    . "        (\$1, \$3, '/api/',   '2026-01-05', 0, 0),"
    . "        (\$1, \$3, '/api/',   '2025-12-31', 5, 5),"
    . "        (\$1, \$3, '/api/',   '2026-01-11', 7, 7),"
    . "        (\$1, \$3, '/api/',   \$6, 1, 1),"
    . "        (\$1, \$4, '/api/',   \$6, 1, 3),"
    . "        (\$1, \$3, '/api/',   \$7, 2, 2),"
    . "        (\$1, \$3, '/api/',   \$8, 4, 4),"
    . "        (\$2, \$5, '/api/',   '2026-01-01', 100, 100)",
    $alice, $bob, $k1, $k2, $kb, day_ago(0), day_ago(29), day_ago(30));

# Bob spends credits through /use_credit too.
Test::Monetize::psql("SELECT monetize_credit(\$1, 100, 'admin', 'fixture')",
                     $bob);

plan tests => scalar blocks();
run_tests();

__DATA__

=== TEST 1: a range: one entry per day with usage, summed over keys and locations
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
GET /v1/usage?from=2026-01-01&to=2026-01-10
--- error_code: 200
--- response_body
{"usage":[{"date":"2026-01-01","calls":6,"credits":10},{"date":"2026-01-03","calls":10,"credits":10}]}

=== TEST 2: granularity=day is the default; the order of arguments is free
--- config
    location /v1/ { monetize_api; }
--- more_headers
X-API-Key: sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
GET /v1/usage?granularity=day&to=2026-01-10&from=2026-01-01
--- response_json
{"usage": [{"date": "2026-01-01", "calls": 6, "credits": 10},
           {"date": "2026-01-03", "calls": 10, "credits": 10}]}

=== TEST 3: by default the last 30 days, today (UTC) included
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
GET /v1/usage
--- response_json eval
{usage => [{date => main::day_ago(29), calls => 2, credits => 2},
           {date => main::day_ago(0), calls => 2, credits => 4}]}

=== TEST 4: "to" alone: the 30 days that end then
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
GET /v1/usage?to=2026-01-03
--- response_json
{"usage": [{"date": "2025-12-31", "calls": 5, "credits": 5},
           {"date": "2026-01-01", "calls": 6, "credits": 10},
           {"date": "2026-01-03", "calls": 10, "credits": 10}]}

=== TEST 5: "from" alone: up to today
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request eval
"GET /v1/usage?from=" . main::day_ago(5)
--- response_json eval
{usage => [{date => main::day_ago(0), calls => 2, credits => 4}]}

=== TEST 6: one day; a day without usage
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request eval
["GET /v1/usage?from=2026-01-03&to=2026-01-03",
 "GET /v1/usage?from=2026-01-05&to=2026-01-05",
 "GET /v1/usage?from=2024-02-29&to=2024-02-29"]
--- response_body eval
["{\"usage\":[{\"date\":\"2026-01-03\",\"calls\":10,\"credits\":10}]}\n",
 "{\"usage\":[]}\n", "{\"usage\":[]}\n"]

=== TEST 7: another account sees only its own usage
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB
--- request
GET /v1/usage?from=2025-01-01&to=2026-01-01
--- response_json
{"usage": [{"date": "2026-01-01", "calls": 100, "credits": 100}]}

=== TEST 8: the longest range is 366 days
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request eval
["GET /v1/usage?from=2025-01-12&to=2026-01-12",
 "GET /v1/usage?from=2024-01-01&to=2024-12-31",
 "GET /v1/usage?from=0001-01-01&to=0001-12-31",
 "GET /v1/usage?from=9999-01-01&to=9999-12-31"]
--- error_code: 200
--- response_json eval
[{usage => [{date => '2025-12-31', calls => 5, credits => 5},
            {date => '2026-01-01', calls => 6, credits => 10},
            {date => '2026-01-03', calls => 10, credits => 10},
            {date => '2026-01-11', calls => 7, credits => 7}]},
 ({usage => []}) x 3]

=== TEST 9: a longer range
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request eval
["GET /v1/usage?from=2025-01-11&to=2026-01-12",
 "GET /v1/usage?from=2024-01-01&to=2025-01-01",
 "GET /v1/usage?from=" . main::day_ago(366)]
--- error_code: 422
--- response_json
{"error": {"code": "validation_failed",
           "fields": {"from": "the range may span at most 366 days"}}}

=== TEST 10: "from" after "to"
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request eval
["GET /v1/usage?from=2026-01-02&to=2026-01-01",
 "GET /v1/usage?from=" . main::day_ago(-1)]
--- error_code: 422
--- response_json
{"error": {"code": "validation_failed",
           "fields": {"from": "must not be after \"to\" (by default, today in UTC)"}}}

=== TEST 11: dates that are not
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request eval
[map { "GET /v1/usage?to=$_" }
     '2026-02-30', '2025-02-29', '2100-02-29', '2026-13-01', '2026-00-10',
     '2026-01-00', '2026-04-31', '0000-01-01', '2026-1-1', '20260101',
     '2026-01-01T00:00:00Z', '2026%2D01%2D01', '', '+026-01-01', '2026/01/01',
     'yesterday']
--- error_code: 422
--- response_json
{"error": {"code": "validation_failed",
           "fields": {"to": "must be a date as YYYY-MM-DD"}}}

=== TEST 12: every failing argument at once
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request
GET /v1/usage?from=2026-02-30&to=tomorrow&granularity=week
--- error_code: 422
--- response_json
{"error": {"code": "validation_failed", "message": "some fields are not valid",
           "fields": {"from": "must be a date as YYYY-MM-DD",
                      "to": "must be a date as YYYY-MM-DD",
                      "granularity": "must be \"day\""}}}

=== TEST 13: granularities other than day
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- request eval
[map { "GET /v1/usage?granularity=$_" } 'hour', 'month', 'DAY', 'days', '']
--- error_code: 422
--- response_json
{"error": {"fields": {"granularity": "must be \"day\""}}}

=== TEST 14: a caller is needed; only GET (and HEAD)
--- config
    location /v1/ { monetize_api; }
--- request eval
["GET /v1/usage", "POST /v1/usage"]
--- error_code eval
[401, 405]
--- response_json eval
[{error => {code => 'missing_credentials'}},
 {error => {code => 'method_not_allowed'}}]


=== TEST 15: credits spent through /use_credit are use too: one call each
--- config
    location /v1/ { monetize_api; }
--- more_headers
Authorization: Bearer sk_live_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB
Content-Type: application/json
--- request eval
["POST /v1/use_credit\n{\"amount\": 5}",
 "POST /v1/use_credit\n{\"amount\": 2, \"idempotency_key\": \"k\"}",
 "POST /v1/use_credit\n{\"amount\": 2, \"idempotency_key\": \"k\"}",
 "GET /v1/usage"]
--- response_json eval
[{balance => 95}, {balance => 93}, {balance => 93},
 {usage => [{date => day_ago(0), calls => 2, credits => 7}]}]
