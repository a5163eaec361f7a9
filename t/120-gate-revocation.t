# Revocation reaches every worker and every nginx node sharing the database
# within a second, whatever the cache's ttl (an hour here): a revoked_at set
# in SQL, a suspended account, and a change made while a node's LISTEN
# connection was down.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Time::HiRes qw(time);

my $config = <<'CONF';
    add_header X-Worker $pid always;
    location /v1/ { monetize_api; }
    location /api/ {
        monetize_gate on;
        monetize_cost 0;
        return 200 "served\n";
    }
CONF

# "return" runs before the access phase; serve from a named backend instead
$config =~ s{return 200 "served\\n";}{proxy_pass http://127.0.0.1:\$server_port/backend/;};
$config .= "    location /backend/ { return 200 \"served\\n\"; }\n";

my %nginx = (
    workers => 2,
    http_config => 'monetize_cache zone=keys:1m ttl=3600s;',
    config => $config,
);
my $a = Test::Monetize::Nginx->start(%nginx);
my $b = Test::Monetize::Nginx->start(%nginx, workers => 1);

# 20 calls to the node of two workers, 5 to the other: the statuses, and
# the workers of the first that answered
sub calls {
    my ($key) = @_;
    my @r = $a->parallel([map { [GET => "/api/$_", headers => {'X-API-Key' => $key}] } 1 .. 20],
                         concurrency => 20);
    my @s = $b->parallel([map { [GET => "/api/$_", headers => {'X-API-Key' => $key}] } 1 .. 5],
                         concurrency => 5);
    my %status;
    $status{$_->{status} // 'none'}++ for @r, @s;
    my %workers = map { ((split /, /, $_->{headers}{'x-worker'} // '')[0] => 1) } @r;
    return (\%status, [sort keys %workers]);
}

# rounds of calls until both workers of the first node have answered
sub calls_on_both_workers {
    my ($key) = @_;
    my (%status, %workers);
    for (1 .. 50) {
        my ($s, $w) = calls($key);
        $status{$_} += $s->{$_} for keys %$s;
        $workers{$_} = 1 for @$w;
        last if keys %workers >= 2;
    }
    return (\%status, [sort keys %workers]);
}

sub stops_within {
    my ($key, $status, $seconds) = @_;
    my $start = time;
    my $stopped = Test::Monetize::wait_until($seconds, sub {
        my ($s) = calls($key);
        $s->{$status} && $s->{$status} == 25;
    });
    return ($stopped, time - $start);
}

my @workers = sort $a->worker_pids;

# --- revoked_at set by hand in SQL ----------------------------------------

my ($user, $key) = Test::Monetize::account();
my ($status, $seen) = calls_on_both_workers($key);
is_deeply [keys %$status], [200], 'the key works on both nodes (and is cached)';
is_deeply $seen, \@workers, '... on both workers of the first';

Test::Monetize::psql(
    "UPDATE api_keys SET revoked_at = now() WHERE user_id = \$1", $user);

my ($stopped, $took) = stops_within($key, 403, 1);
ok $stopped, 'revoked in SQL: every call on both nodes is 403 within 1s';
diag sprintf 'revocation took effect after %.3fs', $took;

($status, $seen) = calls_on_both_workers($key);
is_deeply [[keys %$status], $seen], [[403], \@workers],
    '... on both workers';

# --- DELETE /keys/{id}, and a rotation ----------------------------------

($user, $key) = Test::Monetize::account();
my $second = $a->request('POST', '/v1/keys', headers => {'X-API-Key' => $key},
                         json => {name => 'second'});
is $second->{status}, 201, 'a second key, made through the API';
my $key2 = $second->{json}{key};
is_deeply((calls($key2))[0], {200 => 25}, '... works on both nodes');

my $del = $a->request('DELETE', "/v1/keys/$second->{json}{id}",
                      headers => {'X-API-Key' => $key});
is $del->{status}, 204, 'DELETE /keys/{id}: 204';
($stopped, $took) = stops_within($key2, 403, 1);
ok $stopped, '... and the key is refused on both nodes within 1s';
diag sprintf '... after %.3fs', $took;

my ($key_id) = map { $_->[0] } Test::Monetize::psql(
    "SELECT id FROM api_keys WHERE user_id = \$1 AND revoked_at IS NULL",
    $user);
my $rot = $a->request('POST', "/v1/keys/$key_id/rotate",
                      headers => {'X-API-Key' => $key}, json => {});
is $rot->{status}, 201, 'a rotation without grace';
($stopped) = stops_within($key, 403, 1);
ok $stopped, '... stops the old key on both nodes within 1s';
is_deeply((calls($rot->{json}{key}))[0], {200 => 25},
          '... and the new one works');

# --- a suspended account --------------------------------------------------

($user, $key) = Test::Monetize::account();
is_deeply((calls($key))[0], {200 => 25}, 'a second key works');

Test::Monetize::psql(
    "UPDATE users SET suspended_at = now() WHERE id = \$1", $user);

($stopped, $took) = stops_within($key, 403, 1);
ok $stopped, 'a suspended account stops within 1s on both nodes';
my $res = $a->request('GET', '/api/x', headers => {'X-API-Key' => $key});
is $res->{json}{error}{code}, 'account_suspended', '... as account_suspended';

# --- a revocation while a node was not listening --------------------------

($user, $key) = Test::Monetize::account();
is_deeply((calls($key))[0], {200 => 25}, 'a third key works');

# cut every LISTEN connection, and revoke before they are back
Test::Monetize::psql(
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
    . " WHERE application_name = 'nginx-monetize' AND query LIKE 'LISTEN%'");
Test::Monetize::psql(
    "UPDATE api_keys SET revoked_at = now() WHERE user_id = \$1", $user);

($stopped, $took) = stops_within($key, 403, 10);
ok $stopped, 'a revocation missed while not listening still takes effect';
diag sprintf '... after %.3fs (the listeners reconnect within a second '
             . 'and mark the whole cache stale)', $took;

ok $a->wait_for_log('listening for changes on postgres'),
    'the listeners reconnected';

done_testing;
