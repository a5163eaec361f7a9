# The jobs outbox's claims: a row locked elsewhere (a psql session holds it,
# as a worker's claim would) is skipped, not waited for, by both workers,
# which run every other due row meanwhile, each once; released, it runs. A
# kind whose configuration is absent waits; done rows are pruned after 7
# days, failed ones after 30.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $stripe = Test::Monetize::FakeStripe->start(key => 'sk_test_405');

# accounts made in SQL queue their customers too (the trigger on users)
my @users = map { (Test::Monetize::account())[0] } 1 .. 8;
my ($queued) = Test::Monetize::psql(
    q{SELECT count(*) FROM jobs WHERE kind = 'stripe_customer'});
is $queued->[0], 8, 'each account made in SQL queued its customer';

# without monetize_stripe the jobs wait
my $ngx = Test::Monetize::Nginx->start(
    workers => 2,
    config => 'location /v1/ { monetize_api; }');
ok !Test::Monetize::wait_until(4, sub {
    my ($r) = Test::Monetize::psql('SELECT max(attempts) FROM jobs');
    $r->[0] > 0 }), 'without monetize_stripe, no worker claims them';
$ngx->stop;

my $lock = Test::Monetize::psql_session();
$lock->query('BEGIN');
$lock->query("SELECT id FROM jobs WHERE user_id = '$users[0]' FOR UPDATE");

$ngx = Test::Monetize::Nginx->start(
    workers => 2,
    http_config => 'monetize_stripe secret_key=sk_test_405 api_base='
        . $stripe->url . ' timeout=2s;',
    config => 'location /v1/ { monetize_api; }');

sub customers {
    return { map { $_->[0] => $_->[1] } Test::Monetize::psql(
        'SELECT id, stripe_customer_id FROM users') };
}

ok Test::Monetize::wait_until(20, sub {
    my $c = customers();
    !grep { !defined $c->{$_} } @users[1 .. 7] }),
    'the workers run the 7 rows that are not locked';
my ($held) = Test::Monetize::psql(
    'SELECT attempts, done_at FROM jobs WHERE user_id = $1', $users[0]);
is_deeply $held, [0, undef], 'the locked row is skipped, untouched';
is customers()->{$users[0]}, undef, '... its customer not made';
is scalar($stripe->requests), 7, 'Stripe got 7 requests, one each';

$lock->query('COMMIT');
ok Test::Monetize::wait_until(20, sub { customers()->{$users[0]} }),
    'released, it runs';
is scalar($stripe->objects('customers')), 8, '8 customers in all';
is scalar($stripe->requests), 8, '... in 8 requests';

# the hourly cleanup (each worker's first run is a second after it starts)
Test::Monetize::psql(
    q{UPDATE jobs SET done_at = now() - interval '8 days'
       WHERE user_id = $1}, $users[1]);
Test::Monetize::psql(
    q{UPDATE jobs SET done_at = NULL, failed_at = now() - interval '8 days'
       WHERE user_id = $1}, $users[2]);
Test::Monetize::psql(
    q{UPDATE jobs SET done_at = NULL, failed_at = now() - interval '31 days'
       WHERE user_id = $1}, $users[3]);
$ngx->reload;
ok Test::Monetize::wait_until(10, sub {
    my ($r) = Test::Monetize::psql('SELECT count(*) FROM jobs');
    $r->[0] == 6 }), 'the cleanup deletes old done and failed jobs';
my ($left) = Test::Monetize::psql(
    'SELECT count(*) FROM jobs WHERE user_id = ANY ($1::uuid[])',
    "{$users[2]}");
is $left->[0], 1, '... and keeps a failed one younger than 30 days';

unlike $ngx->error_log_since(0), qr/\[(alert|crit|emerg)\]|sk_test_405/,
    'no alert, no key in the log';

done_testing;
