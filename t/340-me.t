# GET /me (also /profile) and PATCH /me: the account, its plan and limits,
# its Stripe subscription (null without one), balance, use this period,
# quota left and keys, in one answer.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Digest::SHA ();

plan tests => 18;

my $ngx = Test::Monetize::Nginx->start(
    config => 'location /v1/ { monetize_api; }');

my ($alice, $A, $A2) = Test::Monetize::account(
    email => 'alice@example.com', keys => 2, credits => 250,
    plan => 'starter');
# the first key is revoked (by its hash: key ids are random, so "the
# first" would be either key, and half the time the one the test calls with)
Test::Monetize::psql(
    'UPDATE api_keys SET revoked_at = now() WHERE key_hash = $1',
    Digest::SHA::hmac_sha256_hex($A, $ENV{MONETIZE_KEY_SECRET}));

# Use this period (today), and before it (the day before the month began:
# not counted); the quota's count of this period.
my ($period) = Test::Monetize::psql(
    'SELECT monetize_iso8601(period_start), monetize_iso8601(period_end)'
    . ' FROM monetize_plan_of($1)', $alice);
Test::Monetize::psql(
    "INSERT INTO usage (user_id, api_key_id, location, day, calls, credits)"
    . " SELECT \$1, k.id, l, d, c, cr"
    . "   FROM (SELECT id FROM api_keys WHERE user_id = \$1 LIMIT 1) k,"
    . "        (VALUES ('/a', (now() AT TIME ZONE 'UTC')::date, 7, 12),"
    . "                ('/b', (now() AT TIME ZONE 'UTC')::date, 3, 0),"
    . "                ('/a', (date_trunc('month', now() AT TIME ZONE 'UTC')"
    . "                        - interval '1 day')::date, 100, 100))"
    . "        AS v (l, d, c, cr)", $alice);
Test::Monetize::psql(
    'INSERT INTO quota_usage (user_id, period_start, calls)'
    . ' SELECT $1, period_start, 30 FROM monetize_plan_of($1)', $alice);

my ($created) = Test::Monetize::psql(
    'SELECT monetize_iso8601(created_at) FROM users WHERE id = $1', $alice);

sub call {
    my ($method, $path, $key, $json) = @_;
    return $ngx->request($method, $path,
        $key ? (headers => [Authorization => "Bearer $key"]) : (),
        defined $json ? (json => $json) : ());
}

my $expected = {
    user => {id => $alice, email => 'alice@example.com', name => undef,
             email_verified => JSON::PP::false, is_admin => JSON::PP::false,
             created_at => $created->[0]},
    plan => {id => 'starter', name => 'Starter', monthly_quota => 10000,
             rate_limit => {requests_per_second => 10, burst => 20}},
    subscription => undef,
    balance => 250,
    period => {start => $period->[0], end => $period->[1],
               calls => 10, credits => 12},
    quota => {limit => 10000, used => 30, remaining => 9970},
    keys => {active => 1, total => 2},
};

my $res = call(GET => '/v1/me', $A2);
is $res->{status}, 200, 'GET /me: 200';
is Test::Monetize::json_match($expected, $res->{json}), undef,
    'the user, plan and limits, no subscription, balance, use this period,'
    . ' quota left, keys'
    or diag explain $res->{json};

$res = call(GET => '/v1/profile', $A2);
is Test::Monetize::json_match($expected, $res->{json}), undef,
    'GET /profile: the same';

$res = call(GET => '/v1/me');
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [401, 'missing_credentials'], 'without a credential: 401';

# A Stripe subscription shows; an operator's plan (no Stripe id) does not.
Test::Monetize::psql(
    "INSERT INTO subscriptions (user_id, plan_id, status,"
    . "   stripe_subscription_id, current_period_start, current_period_end)"
    . " VALUES (\$1, 'professional', 'active', 'sub_123',"
    . "         '2026-01-01 00:00:00+00', now() + interval '10 days')",
    $alice);
$res = call(GET => '/v1/me', $A2);
is Test::Monetize::json_match({
        plan => {id => 'professional', monthly_quota => 100000},
        subscription => {plan => 'professional', status => 'active',
                         current_period_start => '2026-01-01T00:00:00Z',
                         cancel_at_period_end => JSON::PP::false},
        period => {start => '2026-01-01T00:00:00Z'},
        quota => {limit => 100000, used => 0, remaining => 100000}},
    $res->{json}), undef,
    'a Stripe subscription: its plan, its period, its quota'
    or diag explain $res->{json};
Test::Monetize::psql(
    "DELETE FROM subscriptions WHERE stripe_subscription_id = 'sub_123'");

# An unlimited plan: no quota left to count.
my ($ent, $E) = Test::Monetize::account(plan => 'enterprise');
$res = call(GET => '/v1/me', $E);
is Test::Monetize::json_match({plan => {id => 'enterprise',
                                        monthly_quota => undef},
                               quota => {limit => undef, used => 0,
                                         remaining => undef},
                               balance => 0,
                               period => {calls => 0, credits => 0}},
                              $res->{json}), undef,
    'an unlimited plan: quota limit and remaining null; nothing used';

# PATCH /me
$res = call(PATCH => '/v1/me', $A2, {name => 'Alice Liddell'});
is $res->{status}, 200, 'PATCH /me {"name"}: 200';
is $res->{json}{user}{name}, 'Alice Liddell', 'it answers the new name';
is_deeply [Test::Monetize::psql('SELECT name FROM users WHERE id = $1',
                                $alice)],
    [['Alice Liddell']], 'and stores it';
is Test::Monetize::json_match({balance => 250, keys => {active => 1}},
                              $res->{json}), undef,
    'with the rest of /me';

$res = call(PATCH => '/v1/me', $A2, {});
is_deeply [$res->{status}, $res->{json}{user}{name}], [200, 'Alice Liddell'],
    'no name: nothing changes';

for my $bad ([5, 'must be a string'], ['', 'must have 1 to 200 bytes'],
             ['x' x 201, 'must have 1 to 200 bytes'],
             ["a\x01b", 'must not contain control characters'])
{
    $res = call(PATCH => '/v1/me', $A2, {name => $bad->[0]});
    is_deeply [$res->{status}, $res->{json}{error}{code},
               $res->{json}{error}{fields}{name}],
        [422, 'validation_failed', $bad->[1]],
        "name " . JSON::PP->new->allow_nonref->encode($bad->[0]) . ": 422";
}

$res = call(PATCH => '/v1/me', $A2, {name => undef});
is_deeply [$res->{status}, $res->{json}{user}{name}], [200, undef],
    'name null clears it';

$res = call(PUT => '/v1/me', $A2, {name => 'x'});
is_deeply [$res->{status}, $res->{headers}{allow}], [405, 'GET, PATCH'],
    'PUT /me: 405, Allow: GET, PATCH';

my $log = $ngx->error_log_since(0);
is $log =~ /\[(alert|crit|emerg|error)\]/ ? $1 : undef, undef,
    'no error in the error log' or diag $log;
