# PostgreSQL stopped, then started again: /health says 503 while it is down
# and 200 after, with no nginx restart; the outage is logged once.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $ngx = Test::Monetize::Nginx->start(
    workers => 2,
    http_config => 'monetize_bcrypt_cost 4;',
    config => 'location /v1/ { monetize_api; }');

my ($master) = $ngx->pids;

is $ngx->request('GET', '/v1/health')->{status}, 200, 'up: 200';

my $mark = $ngx->error_log_mark;
Test::Monetize::pg_stop();

my @down = $ngx->parallel([map { [GET => '/v1/health'] } 1 .. 10],
                          concurrency => 5);
is_deeply [map { $_->{status} } @down], [(503) x 10], 'down: 503, every time';
is $down[0]{json}{error}{code}, 'backend_unavailable', '... backend_unavailable';
is $down[0]{json}{postgres}, 'down', '... with "postgres":"down"';
is $down[0]{headers}{'retry-after'}, '1', '... and Retry-After';

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

ok $ngx->wait_for_log('is reachable again', since => $mark),
    'the end of the outage is logged';
is(($ngx->pids)[0], $master, 'the same nginx master: no restart');

done_testing;
