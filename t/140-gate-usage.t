# Usage: the calls the gate admits are counted per account, key, location
# and day, and written in batches (once a second per worker), not once per
# call.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my @keys = map { 'sk_live_' . ($_ x 32) } qw(U V);
my ($user) = Test::Monetize::account(keys => \@keys, key_names => [qw(U V)],
                                     credits => 1000);

my $ngx = Test::Monetize::Nginx->start(
    workers => 2,
    http_config => 'monetize_cache zone=keys:1m;',
    config => <<'CONF');
    location /search/ {
        monetize_gate on;
        monetize_cost 2;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /free/ {
        monetize_gate on;
        monetize_cost 0;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /backend/ { return 200 "ok\n"; }
CONF

my @calls = ((['/search/a', 0]) x 30, (['/search/b', 1]) x 20,
             (['/free/c', 0]) x 10);
my @res = $ngx->parallel([map {
    [GET => $_->[0], headers => {'X-API-Key' => $keys[$_->[1]]}]
} @calls], concurrency => 20);
is scalar(grep { $_->{status} == 200 } @res), 60, '60 calls admitted';

# a call the balance cannot pay is not usage
Test::Monetize::psql("SELECT monetize_credit(\$1, -balance, 'admin', 'empty')"
                     . " FROM balances WHERE user_id = \$1", $user);
$ngx->request('GET', '/search/x', headers => {'X-API-Key' => $keys[0]});

my $expected = [
    ['/free/', 'U', 10, 0],
    ['/search/', 'U', 30, 60],
    ['/search/', 'V', 20, 40],
];

my $rows = Test::Monetize::wait_until(5, sub {
    my @rows = Test::Monetize::psql(
        "SELECT u.location, k.name, sum(u.calls), sum(u.credits)"
        . "  FROM usage u JOIN api_keys k ON k.id = u.api_key_id"
        . " WHERE u.user_id = \$1 AND u.day = (now() AT TIME ZONE 'UTC')::date"
        . " GROUP BY 1, 2 ORDER BY 1, 2", $user);
    (@rows == 3 && $rows[1][2] == 30 && $rows[2][2] == 20) ? \@rows : undef;
});
is_deeply $rows, $expected,
    'calls and credits per key and location, for today (UTC)';

my ($writes) = Test::Monetize::psql(
    "SELECT count(*) FROM usage WHERE user_id = \$1", $user);
is $writes->[0], 3, 'added up in one row per key, location and day';

# last_used_at: fresh to the minute, without a write per call
my @used = Test::Monetize::psql(
    "SELECT name, last_used_at IS NOT NULL,"
    . "       last_used_at > now() - interval '1 minute'"
    . "  FROM api_keys WHERE user_id = \$1 ORDER BY name", $user);
is_deeply \@used, [['U', 't', 't'], ['V', 't', 't']],
    'each key used has a last_used_at of the last minute';

my ($stamp) = Test::Monetize::psql(
    "SELECT last_used_at FROM api_keys WHERE user_id = \$1 AND name = 'V'",
    $user);
Test::Monetize::psql("SELECT monetize_credit(\$1, 10, 'admin', 'more')",
                     $user);
$ngx->request('GET', '/search/again', headers => {'X-API-Key' => $keys[1]});
my ($again) = Test::Monetize::psql(
    "SELECT last_used_at FROM api_keys WHERE user_id = \$1 AND name = 'V'",
    $user);
is $again->[0], $stamp->[0], 'a call within the minute does not write it again';

done_testing;
