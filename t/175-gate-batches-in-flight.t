# A worker keeps two debit batches in flight, of different accounts (issue
# 11, item 3): one account whose balance row is held does not hold up
# another account's calls, which go in a second batch at once. A call of
# the held account waits for its batch (a second batch of it would only
# wait for the lock); with both batches held, a third account's call waits
# for one of them, as any call did behind the single batch before.
# Exactness is PostgreSQL's (each batch locks its accounts): every call
# answered 200 is debited once.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Time::HiRes qw(time);

my $be = Test::Monetize::Backend->start(sub {
    return (200, {'Content-Type' => 'text/plain'}, "served\n");
});

my $db = Test::Monetize::database();

my $ngx = Test::Monetize::Nginx->start(
    workers => 1,
    http_config => 'monetize_cache zone=keys:1m;',
    postgres => qq{monetize_postgres "host=$ENV{MONETIZE_PG_HOST} }
              . qq{port=$ENV{MONETIZE_PG_PORT} dbname=$db user=monetize }
              . qq{password=env:MONETIZE_PG_PASSWORD" pool=4 timeout=5s;},
    config => <<"CONF");
    location /api/ {
        monetize_gate on;
        monetize_cost 1;
        proxy_set_header X-Request-Id \$request_id;
        proxy_pass http://127.0.0.1:@{[ $be->port ]};
    }
CONF

sub waiting_on_lock {
    my ($n) = Test::Monetize::psql(
        "SELECT count(*) FROM pg_stat_activity"
        . " WHERE application_name = 'nginx-monetize'"
        . "   AND wait_event_type = 'Lock'"
        . "   AND query LIKE '%monetize_debit%'");
    return $n->[0];
}

sub balance {
    my ($user) = @_;
    my ($b) = Test::Monetize::psql(
        "SELECT balance FROM balances WHERE user_id = \$1", $user);
    return $b->[0];
}

sub call {
    my ($key) = @_;
    return $ngx->start_request('GET', '/api/x',
                               headers => {'X-API-Key' => $key},
                               timeout => 10);
}

my @accounts = map { [Test::Monetize::account(credits => 10)] } 1 .. 3;
my ($ua, $ka) = @{$accounts[0]};
my ($ub, $kb) = @{$accounts[1]};
my ($uc, $kc) = @{$accounts[2]};

is $ngx->request('GET', '/api/x', headers => {'X-API-Key' => $_})->{status},
    200, 'a call passes; its key is cached' for $ka, $kb, $kc;

# --- one batch held: another account's call is not held up -------------------

my $hold = Test::Monetize::psql_session();
$hold->query('BEGIN');
$hold->query("SELECT 1 FROM balances WHERE user_id = '$ua' FOR UPDATE");

my $a = call($ka);
ok Test::Monetize::wait_until(10, sub { waiting_on_lock() == 1 }),
    "account A's batch waits for its balance row";

my $t = time;
my $res = $ngx->request('GET', '/api/x', headers => {'X-API-Key' => $kb},
                        timeout => 10);
my $took = time - $t;
is $res->{status}, 200, "account B's call passes while A's batch waits";
cmp_ok $took, '<', 2, '... in its own batch, not after A\'s (5 s timeout)'
    or diag sprintf 'took %.1f s', $took;
is balance($ub), 8, '... and B is debited';
ok !$a->done, "A's call still waits";

my $a2 = call($ka);
select undef, undef, undef, 0.5;
is waiting_on_lock(), 1, "A's second call is not sent in a batch of its own";

# --- two batches held: a third call waits for one of them --------------------

my $hold2 = Test::Monetize::psql_session();
$hold2->query('BEGIN');
$hold2->query("SELECT 1 FROM balances WHERE user_id = '$ub' FOR UPDATE");

my $b = call($kb);
ok Test::Monetize::wait_until(10, sub { waiting_on_lock() == 2 }),
    "B's second call: a second batch, waiting too";

my $c = call($kc);
select undef, undef, undef, 0.5;
is waiting_on_lock(), 2, 'no third batch is sent';
ok !$c->done, "C's call waits for a batch to be answered";

$hold->query('COMMIT');
$res = $ngx->finish_request($a);
is $res->{status}, 200, "A's balance row is let go: A's call passes";
$res = $ngx->finish_request($a2);
is $res->{status}, 200, "... and A's second, in the batch after";
$res = $ngx->finish_request($c);
is $res->{status}, 200, "... and C's";
$hold2->query('COMMIT');
$res = $ngx->finish_request($b);
is $res->{status}, 200, "B's second call passes";

is balance($ua), 7, 'A paid for its three calls';
is balance($ub), 7, 'B for its three';
is balance($uc), 8, 'C for its two';

$_->close for $hold, $hold2;
$ngx->stop;

Test::Monetize::reconcile(
    served => [map { $_->{headers}{'x-request-id'} } $be->requests]);

done_testing;
