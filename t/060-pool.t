# The PostgreSQL pool: more requests than connections wait their turn;
# every wait is bounded by the timeout; a client that goes away mid-query
# leaves nothing dangling.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use IO::Socket::INET;

sub pooled_connections {
    my ($n) = Test::Monetize::psql(
        "SELECT count(*) FROM pg_stat_activity"
        . " WHERE application_name = 'nginx-monetize'");
    return $n->[0];
}

sub waiting_on_lock {
    my ($n) = Test::Monetize::psql(
        "SELECT count(*) FROM pg_stat_activity"
        . " WHERE application_name = 'nginx-monetize'"
        . "   AND wait_event_type = 'Lock'");
    return $n->[0];
}

my $db = Test::Monetize::database();
my $pg = "host=$ENV{MONETIZE_PG_HOST} port=$ENV{MONETIZE_PG_PORT} "
       . "dbname=$db user=monetize password=env:MONETIZE_PG_PASSWORD";

# --- many requests, few connections -------------------------------------

my $ngx = Test::Monetize::Nginx->start(
    workers => 1,
    postgres => qq{monetize_postgres "$pg" pool=2 timeout=10s;},
    config => 'location /v1/ { monetize_api; }');

my @res = $ngx->parallel([map { [GET => '/v1/health'] } 1 .. 100],
                         concurrency => 50);
is scalar(grep { $_->{status} == 200 } @res), 100,
    '100 concurrent requests over a pool of 2: all answered';
cmp_ok pooled_connections(), '<=', 2, 'with at most 2 connections';
$ngx->stop;

# --- a statement slower than the timeout --------------------------------------

$ngx = Test::Monetize::Nginx->start(
    workers => 1,
    http_config => 'monetize_bcrypt_cost 4;',
    postgres => qq{monetize_postgres "$pg" pool=1 timeout=1s;},
    config => 'location /v1/ { monetize_api; }');

my $lock = Test::Monetize::psql_session();
$lock->query('BEGIN');
$lock->query('LOCK TABLE users IN ACCESS EXCLUSIVE MODE');

my $mark = $ngx->error_log_mark;
my $blocked = $ngx->start_request('POST', '/v1/register',
    json => {email => 'slow@example.com', password => '12345678'});
ok Test::Monetize::wait_until(10, sub { waiting_on_lock() == 1 }),
    'a registration waits on the lock';

my $queued = $ngx->start_request('GET', '/v1/health');

my $slow = $ngx->finish_request($blocked);
is_deeply [$slow->{status}, $slow->{json}{error}{code}],
    [503, 'backend_unavailable'], 'a statement over the timeout: 503';
ok $ngx->wait_for_log(qr/refused "SELECT user_id.*canceling statement due to statement timeout/,
                      since => $mark),
    '... PostgreSQL cancelled it, and the log says so on one line';

is $ngx->finish_request($queued)->{status}, 200,
    'the query queued behind it is served next';

$lock->query('ROLLBACK');

my ($slow_user) = Test::Monetize::psql(
    "SELECT count(*) FROM users WHERE email = 'slow\@example.com'");
is $slow_user->[0], 0,
    'the cancelled statement was rolled back: the 503 told the truth';
$ngx->stop;

# --- a server that accepts and never answers -----------------------------

my $silent = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1',
                                   LocalPort => 0, Proto => 'tcp') or die $!;
$ngx = Test::Monetize::Nginx->start(
    workers => 1,
    postgres => 'monetize_postgres "hostaddr=127.0.0.1 port='
                . $silent->sockport . ' dbname=x user=x password=x"'
                . ' pool=1 timeout=500ms;',
    config => 'location /v1/ { monetize_api; }');
$mark = $ngx->error_log_mark;
my $res = $ngx->request('GET', '/v1/health');
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [503, 'backend_unavailable'], 'a silent server: 503, not a hang';
ok $ngx->wait_for_log('connecting to postgres "127.0.0.1:', since => $mark),
    '... the connect timed out, and the log says which server';
$ngx->stop;
close $silent;

# --- clients that leave while their queries wait --------------------------

$ngx = Test::Monetize::Nginx->start(
    workers => 1,
    http_config => 'monetize_bcrypt_cost 4;',
    postgres => qq{monetize_postgres "$pg" pool=2 timeout=20s;},
    config => 'location /v1/ { monetize_api; }');
my @workers = $ngx->worker_pids;

$lock->query('BEGIN');
$lock->query('LOCK TABLE users IN ACCESS EXCLUSIVE MODE');

my @socks;
for my $i (1 .. 6) {
    my $body = qq{{"email":"gone$i\@example.com","password":"12345678"}};
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $ngx->port) or die $!;
    print $s "POST /v1/register HTTP/1.1\r\nHost: localhost\r\n"
           . "Content-Type: application/json\r\n"
           . "Content-Length: " . length($body) . "\r\n\r\n$body";
    push @socks, $s;
}

ok Test::Monetize::wait_until(10, sub { waiting_on_lock() == 2 }),
    'two registrations wait on the lock, four in the queue';
close $_ for @socks;

# nginx notices a closed client only when it writes; a request still
# waiting holds its place, so make the close visible by ending the wait
$lock->query('ROLLBACK');

ok Test::Monetize::wait_until(10, sub {
    my ($n) = Test::Monetize::psql(
        "SELECT count(*) FROM users WHERE email LIKE 'gone%'");
    $n->[0] == 6;
}), 'the statements of the clients that left still complete';

is $ngx->request('GET', '/v1/health')->{status}, 200,
    'the pool serves the next request';
is_deeply [$ngx->worker_pids], \@workers, 'the same worker: nothing crashed';

done_testing;
