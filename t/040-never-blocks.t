# The worker never blocks: with one worker, while 20 registrations are in
# flight (their passwords hashing at bcrypt cost 12, their inserts waiting
# on a lock that a psql session holds on the users table), a plain location
# on the same worker answers, before any registration finishes. The test
# asserts the order of events, never a time.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $ngx = Test::Monetize::Nginx->start(
    workers => 1,
    config => <<'CONF');
    location /v1/ { monetize_api; }
    location = /ping { return 200 "pong\n"; }
CONF

is scalar($ngx->worker_pids), 1, 'one worker';

my $lock = Test::Monetize::psql_session();
$lock->query('BEGIN');
$lock->query('LOCK TABLE users IN ACCESS EXCLUSIVE MODE');

my @registrations = map {
    $ngx->start_request('POST', '/v1/register', timeout => 60,
        json => {email => "user$_\@example.com", password => "password $_"})
} 1 .. 20;

sub waiting_on_lock {
    my ($n) = Test::Monetize::psql(
        "SELECT count(*) FROM pg_stat_activity"
        . " WHERE application_name = 'nginx-monetize'"
        . "   AND wait_event_type = 'Lock'");
    return $n->[0];
}

# While the passwords hash (a quarter of a second each, on two cores). Had
# the worker hashed them itself, it would answer only after all 20 hashes,
# when all 4 pooled connections already wait on the lock.
my $ping1 = $ngx->request('GET', '/ping');
is $ping1->{status}, 200, 'a plain location answers while passwords hash';
cmp_ok waiting_on_lock(), '<', 4, '... before the inserts all reached the lock';
is scalar(grep { $_->done } @registrations), 0,
    '... and before any registration finished';

# once the inserts wait on the lock: the pool's 4 connections all blocked
my $waiting = Test::Monetize::wait_until(30, sub {
    my $n = waiting_on_lock();
    $n >= 4 ? $n : 0;
});
is $waiting, 4, 'every pooled connection waits on the lock';

my $ping2 = $ngx->request('GET', '/ping');
is $ping2->{status}, 200, 'a plain location answers while inserts wait';
is scalar(grep { $_->done } @registrations), 0,
    '... and still no registration finished';

my $health = $ngx->start_request('GET', '/v1/health', timeout => 60);

$lock->query('ROLLBACK');

my @done = map { $ngx->finish_request($_) } @registrations;
is_deeply [map { $_->{status} } @done], [(201) x 20],
    'all 20 registrations succeed once the lock is gone';

my $first_registration = (sort { $a <=> $b } map { $_->{seq} } @done)[0];
ok $ping1->{seq} < $first_registration && $ping2->{seq} < $first_registration,
    'both plain answers came before the first registration';

is $ngx->finish_request($health)->{status}, 200,
    'a query queued behind the blocked ones is served after them';

my ($users) = Test::Monetize::psql('SELECT count(*) FROM users');
is $users->[0], 20, '20 users';

done_testing;
