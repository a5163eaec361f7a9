# GET /plans is kept by each worker until the plans table changes; an answer
# read before a change committed, and received after the change was heard,
# must not be kept: the next GET /plans shows the change.
#
# The race is held, not hoped for: with monetize.test_hold on (in the
# connection's options), monetize_plans_json() (sql/016_billing.sql) takes
# advisory lock 60062 after it read the plans; a psql session holds it.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $ngx = Test::Monetize::Nginx->start(
    workers => 1,
    log_level => 'debug',
    postgres => sprintf('monetize_postgres "host=%s port=%s dbname=%s '
                        . 'user=%s password=env:MONETIZE_PG_PASSWORD '
                        . q{options='-c monetize.test_hold=on'" }
                        . 'pool=4 timeout=5s;',
                        $ENV{MONETIZE_PG_HOST}, $ENV{MONETIZE_PG_PORT},
                        Test::Monetize::database(), $ENV{MONETIZE_PG_USER}),
    http_config => 'monetize_cache zone=keys:1m;',
    config => 'location /v1/ { monetize_api; }');

ok $ngx->wait_for_log('listening for changes on postgres'),
    'the worker listens for changes';

sub starter_price {
    my ($res) = @_;
    my ($starter) = grep { $_->{id} eq 'starter' } @{$res->{json}{plans}};
    return $starter->{price_cents};
}

my $s = Test::Monetize::psql_session();
$s->query('SELECT pg_advisory_lock(60062)');

my $held = $ngx->start_request('GET', '/v1/plans');
ok Test::Monetize::wait_until(10, sub {
    my ($n) = map { $_->[0] } Test::Monetize::psql(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        . " AND objid = 60062 AND NOT granted");
    $n == 1;
}), 'GET /plans read the plans and is held';

my $mark = $ngx->error_log_mark;
Test::Monetize::psql("UPDATE plans SET price_cents = 3900 WHERE id = 'starter'");
ok $ngx->wait_for_log('monetize cache: every entry stale', since => $mark),
    'meanwhile a plan changes, and the worker heard of it';

$s->query('SELECT pg_advisory_unlock(60062)');
is starter_price($ngx->finish_request($held)), 2900,
    'the held answer shows what it read';

my @next = map { starter_price($ngx->request('GET', '/v1/plans')) } 1 .. 3;
is_deeply \@next, [3900, 3900, 3900], 'the next answers show the change';

done_testing;
