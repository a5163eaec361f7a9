# Refunds a worker still has to write when it exits gracefully (reload,
# quit) are written before it goes: their retry keeps it alive, for a
# bounded number of tries. The refunds here wait for an account that a psql
# session holds, across a reload.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $flag = Test::Monetize::new_dir('flag') . '/answer';

# the upstream fails each call, but only once the test lets it answer
my $be = Test::Monetize::Backend->start(sub {
    Test::Monetize::wait_until(20, sub { -e $flag });
    return (503, {'Content-Type' => 'text/plain'}, "failed\n");
});

my $db = Test::Monetize::database();

my $ngx = Test::Monetize::Nginx->start(
    workers => 1,
    postgres => qq{monetize_postgres "host=$ENV{MONETIZE_PG_HOST} }
              . qq{port=$ENV{MONETIZE_PG_PORT} dbname=$db user=monetize }
              . qq{password=env:MONETIZE_PG_PASSWORD" pool=2 timeout=1s;},
    config => <<"CONF");
    location /api/ {
        monetize_gate on;
        monetize_cost 2;
        monetize_refund_on 5xx;
        proxy_set_header X-Request-Id \$request_id;
        proxy_pass http://127.0.0.1:@{[ $be->port ]};
    }
CONF

my ($user, $key) = Test::Monetize::account(credits => 10);

sub count_of {
    my ($kind) = @_;
    my ($n) = Test::Monetize::psql(
        "SELECT count(*) FROM credit_ledger"
        . " WHERE user_id = \$1 AND kind = \$2", $user, $kind);
    return $n->[0];
}

my @calls = map {
    $ngx->start_request('GET', "/api/$_", headers => {'X-API-Key' => $key},
                        timeout => 30)
} 1 .. 3;
ok Test::Monetize::wait_until(10, sub { count_of('debit') == 3 }),
    'three calls debited, their upstream still working';

# the refunds will wait for the account, and time out, again and again
my $hold = Test::Monetize::psql_session();
$hold->query('BEGIN');
$hold->query("SELECT 1 FROM balances WHERE user_id = '$user' FOR UPDATE");

my $mark = $ngx->error_log_mark;
Test::Monetize::_spew($flag, '');
is $ngx->finish_request($_)->{status}, 503, 'the upstream fails the call'
    for @calls;
ok $ngx->wait_for_log(qr/refused "SELECT count.*monetize_refund/,
                      since => $mark),
    'the refunds wait for the account: PostgreSQL times them out';

my ($old) = $ngx->worker_pids;
$ngx->reload(wait_old => 0);

# the old worker would be gone within a second or two; hold it a little
# longer than that, then let the refunds through
my $gone = Test::Monetize::wait_until(4, sub {
    !Test::Monetize::_alive($old) });
$hold->query('COMMIT');

ok !$gone, 'the exiting worker waits for its refunds';
ok Test::Monetize::wait_until(10, sub { count_of('refund') == 3 }),
    '... and writes them all'
    or diag "refunds written: " . count_of('refund');
ok Test::Monetize::wait_until(10, sub { !Test::Monetize::_alive($old) }),
    '... then exits';
unlike $ngx->error_log_since($mark), qr/not yet written|are dropped/,
    'no refund is dropped';

$hold->close;

Test::Monetize::reconcile(
    served => [map { $_->{headers}{'x-request-id'} } $be->requests]);

done_testing;
