# PostgreSQL stopped, then started again: /health says 503 while it is down
# and 200 after, with no nginx restart; the outage is logged once.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my (undef, $key) = Test::Monetize::account(credits => 100);

my $ngx = Test::Monetize::Nginx->start(
    workers => 2,
    http_config => "monetize_bcrypt_cost 4;\nmonetize_cache zone=keys:1m;",
    config => <<'CONF');
    location /v1/ { monetize_api; }
    location /api/ {
        monetize_gate on;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /backend/ { return 200 "ok\n"; }
CONF

sub gated {
    my @r = $ngx->parallel([map { [GET => "/api/$_", headers => {'X-API-Key' => $key}] }
                            1 .. 6], concurrency => 6);
    my %s;
    $s{$_->{status} // 'none'}++ for @r;
    return (\%s, $r[0]);
}

my ($master) = $ngx->pids;

is $ngx->request('GET', '/v1/health')->{status}, 200, 'up: 200';
is_deeply((gated())[0], {200 => 6}, 'gated calls pass (and the key is cached)');

my $mark = $ngx->error_log_mark;
Test::Monetize::pg_stop();

my @down = $ngx->parallel([map { [GET => '/v1/health'] } 1 .. 10],
                          concurrency => 5);
is_deeply [map { $_->{status} } @down], [(503) x 10], 'down: 503, every time';
is $down[0]{json}{error}{code}, 'backend_unavailable', '... backend_unavailable';
is $down[0]{json}{postgres}, 'down', '... with "postgres":"down"';
is $down[0]{headers}{'retry-after'}, '1', '... and Retry-After';

my ($gated, $one) = gated();
is_deeply $gated, {503 => 6},
    'gated calls while down: 503, though the key is cached (no debit, no call)';
is_deeply [$one->{json}{error}{code}, $one->{headers}{'retry-after'}],
    ['backend_unavailable', 1], '... backend_unavailable, Retry-After: 1';

my $reg = $ngx->request('POST', '/v1/register',
    json => {email => 'while-down@example.com', password => '12345678'});
is_deeply [$reg->{status}, $reg->{json}{error}{code}],
    [503, 'backend_unavailable'], 'a registration while down: 503';

my @lines = grep { /cannot connect to postgres/ }
            split /\n/, $ngx->error_log_since($mark);
cmp_ok scalar(@lines), '<=', 2,
    'the outage is logged once per worker, not once per request';
unlike $ngx->error_log_since($mark), qr/\[(alert|crit|emerg)\]/,
    'no alert while down';

$mark = $ngx->error_log_mark;
Test::Monetize::pg_start();

my $up = Test::Monetize::wait_until(10, sub {
    $ngx->request('GET', '/v1/health')->{status} == 200
});
ok $up, 'back up: 200 again';

my @after = $ngx->parallel([map { [GET => '/v1/health'] } 1 .. 10],
                           concurrency => 5);
is_deeply [map { $_->{status} } @after], [(200) x 10],
    'and every request after';

$reg = $ngx->request('POST', '/v1/register',
    json => {email => 'after@example.com', password => '12345678'});
is $reg->{status}, 201, 'a registration after: 201';
is_deeply((gated())[0], {200 => 6}, 'gated calls pass again');

my ($debits) = Test::Monetize::psql(
    "SELECT count(*) FROM credit_ledger WHERE kind = 'debit'");
is $debits->[0], 12, 'the ledger has the 12 calls that passed, none of the 503s';

ok $ngx->wait_for_log('is reachable again', since => $mark),
    'the end of the outage is logged';
is(($ngx->pids)[0], $master, 'the same nginx master: no restart');

done_testing;
