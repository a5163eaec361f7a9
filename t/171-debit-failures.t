# The gate's debits under the failures they must survive: a batch refused
# while calls wait behind it, a deadlock, connections cut while a debit
# waits for a lock, a debit that waited in the pool's queue, a PostgreSQL
# that hangs. Whatever a client is answered, the money agrees with it: a
# call answered 200 was debited once, one answered 503 costs nothing.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Time::HiRes qw(time);

my $be = Test::Monetize::Backend->start(sub {
    return (200, {'Content-Type' => 'text/plain'}, "served\n");
});

my $db = Test::Monetize::database();
my $socket = "host=$ENV{MONETIZE_PG_HOST} port=$ENV{MONETIZE_PG_PORT}";
my $tcp = "hostaddr=127.0.0.1 port=$ENV{MONETIZE_PG_PORT}";

sub start_nginx {
    my ($where, $options) = @_;
    return Test::Monetize::Nginx->start(
        workers => 1,
        http_config => 'monetize_cache zone=keys:1m;',
        postgres => qq{monetize_postgres "$where dbname=$db user=monetize }
                  . qq{password=env:MONETIZE_PG_PASSWORD" $options;},
        config => <<"CONF");
    location /api/ {
        monetize_gate on;
        monetize_cost 1;
        proxy_set_header X-Request-Id \$request_id;
        proxy_pass http://127.0.0.1:@{[ $be->port ]};
    }
CONF
}

sub waiting_on_lock {
    my ($like) = @_;
    my ($n) = Test::Monetize::psql(
        "SELECT count(*) FROM pg_stat_activity"
        . " WHERE application_name = 'nginx-monetize'"
        . "   AND wait_event_type = 'Lock' AND query LIKE \$1",
        $like // '%');
    return $n->[0];
}

sub balance {
    my ($user) = @_;
    my ($b) = Test::Monetize::psql(
        "SELECT balance FROM balances WHERE user_id = \$1", $user);
    return $b->[0];
}

sub call {
    my ($ngx, $key, %o) = @_;
    return $ngx->start_request('GET', '/api/x',
                               headers => {'X-API-Key' => $key},
                               timeout => $o{timeout} // 10);
}

# what a call cost settles to what its answer says (a void may come after)
sub costs_what_it_says {
    my ($user, $before, $res, $name) = @_;
    my $cost = ($res->{status} // 0) == 200 ? 1 : 0;
    my $settled = Test::Monetize::wait_until(10, sub {
        $before - balance($user) == $cost });
    ok $settled, "$name: answered " . ($res->{status} // 'nothing')
                 . ", charged $cost"
        or diag 'charged ' . ($before - balance($user));
}

# --- item 7: a batch refused while another call waits behind it -------------

my $ngx = start_nginx($socket, 'pool=2 timeout=1s');
my ($ua, $ka) = Test::Monetize::account(credits => 10);
my ($ub, $kb) = Test::Monetize::account(credits => 10);
is $ngx->request('GET', '/api/x', headers => {'X-API-Key' => $_})->{status},
    200, 'a call passes' for $ka, $kb;

my $hold = Test::Monetize::psql_session();
$hold->query('BEGIN');
$hold->query("SELECT 1 FROM balances WHERE user_id = '$ua' FOR UPDATE");

my $a = call($ngx, $ka);
Test::Monetize::wait_until(10, sub { waiting_on_lock() == 1 });
my $b = call($ngx, $kb, timeout => 6);

is $ngx->finish_request($a)->{status}, 503,
    'a debit over the statement timeout: 503';
my $t = time;
my $res = $ngx->finish_request($b);
is $res->{status}, 200,
    'the call queued behind it is debited and answered at once';
$hold->query('COMMIT');
$ngx->stop;

# --- item 8: a debit chosen as a deadlock's victim is sent again -----------

$ngx = start_nginx($socket, 'pool=2 timeout=5s');

# a session of its own watches, so that it sees a wait at once
my $watch = Test::Monetize::psql_session();

sub waiting_now {
    my ($n) = $watch->query(
        "SELECT count(*) FROM pg_stat_activity"
        . " WHERE application_name = 'nginx-monetize'"
        . "   AND wait_event_type = 'Lock'");
    return $n->[0];
}

# the debit takes the account, then waits for its key's row (last_used_at);
# the session holds the key and asks for the account: a deadlock, which the
# debit finds if the session waits before the debit's deadlock_timeout (1 s)
# is up; else the session is the victim, and the scenario runs again
my ($ud, $victim);
for my $try (1 .. 3) {
    ($ud, my $kd) = Test::Monetize::account(credits => 10);
    my ($kd_id) = map { $_->[0] } Test::Monetize::psql(
        "SELECT id FROM api_keys WHERE user_id = \$1", $ud);

    $hold->query('BEGIN');
    $hold->query("SELECT 1 FROM api_keys WHERE id = '$kd_id' FOR UPDATE");
    my $d = call($ngx, $kd);
    Test::Monetize::wait_until(10, sub { waiting_now() == 1 });
    $hold->send("SELECT 1 FROM balances WHERE user_id = '$ud' FOR UPDATE");
    $hold->wait(timeout => 10, allow_error => 1);
    $victim = $hold->errors =~ /deadlock detected/ ? 'session' : 'debit';
    $hold->query('ROLLBACK');

    $res = $ngx->finish_request($d);
    last if $victim eq 'debit';
    diag 'PostgreSQL chose the session as the victim; once more';
}

is $victim, 'debit', 'a debit is chosen as the victim of a deadlock';
is $res->{status}, 200, '... sent again, it passes';
costs_what_it_says($ud, 10, $res, 'after a deadlock');
$ngx->stop;

# --- items 1 and 23: the connections cut while a debit waits ---------------

$ngx = start_nginx($tcp, 'pool=2 timeout=5s');
my ($ue, $ke) = Test::Monetize::account(credits => 10);
is $ngx->request('GET', '/api/x', headers => {'X-API-Key' => $ke})->{status},
    200, 'a call passes over TCP';

$hold->query('BEGIN');
$hold->query("SELECT 1 FROM balances WHERE user_id = '$ue' FOR UPDATE");
my $e = call($ngx, $ke);
Test::Monetize::wait_until(10, sub { waiting_on_lock() == 1 });

my $mark = $ngx->error_log_mark;
system("ss -K dst 127.0.0.1 dport = :$ENV{MONETIZE_PG_PORT}"
       . " >/dev/null 2>&1");
ok $ngx->wait_for_log('lost the connection to', since => $mark),
    "nginx's connections to PostgreSQL are cut";
ok Test::Monetize::wait_until(10, sub { waiting_on_lock() == 2 }),
    '... the batch is sent again and waits too; the first still runs';
$hold->query('COMMIT');

$res = $ngx->finish_request($e);
is $res->{status}, 200,
    'the first attempt commits, the retry finds it: the call passes';
costs_what_it_says($ue, 9, $res, 'cut connections');
$ngx->stop;

# --- item 2: a debit that waited in the pool's queue ------------------------

$ngx = start_nginx($socket, 'pool=1 timeout=2s');
my ($uf, $kf) = Test::Monetize::account(credits => 10);
my (undef, $kg) = Test::Monetize::account(credits => 10);
is $ngx->request('GET', '/api/x', headers => {'X-API-Key' => $kf})->{status},
    200, "a call passes; its key is cached";

my $plans = Test::Monetize::psql_session();
$plans->query('BEGIN');
$plans->query('LOCK TABLE plans IN ACCESS EXCLUSIVE MODE');
$hold->query('BEGIN');
$hold->query("SELECT 1 FROM balances WHERE user_id = '$uf' FOR UPDATE");

$mark = $ngx->error_log_mark;
my $g = call($ngx, $kg);        # its key's lookup holds the one connection
Test::Monetize::wait_until(10, sub { waiting_on_lock() == 1 });
my $f = call($ngx, $kf);        # its debit waits in the pool's queue

# the lookup times out on the server, the debit is sent and waits for the
# account; then either the gate gives up on it or it is sent a second time
Test::Monetize::wait_until(10, sub {
    $f->done || waiting_on_lock('%monetize_debit%') >= 2 });
$hold->query('COMMIT');
$plans->query('COMMIT');

$res = $ngx->finish_request($f);
$ngx->finish_request($g);
unlike $ngx->error_log_since($mark), qr/did not answer within/,
    "a query's timer runs from when it is sent, not from when it is queued";
costs_what_it_says($uf, 9, $res, 'a debit that waited in the queue');
$ngx->stop;

# --- item 26: a PostgreSQL that hangs ---------------------------------------

$ngx = start_nginx($socket, 'pool=1 timeout=2s');
my ($uh, $kh) = Test::Monetize::account(credits => 10);
is $ngx->request('GET', '/api/x', headers => {'X-API-Key' => $kh})->{status},
    200, 'a call passes; its key is cached';

my @backends = map { $_->[0] } Test::Monetize::psql(
    "SELECT pid FROM pg_stat_activity"
    . " WHERE application_name = 'nginx-monetize'");
my ($postmaster) = split /\n/, Test::Monetize::_slurp(
    "$ENV{MONETIZE_PG_DIR}/data/postmaster.pid");
my @stopped = (@backends, $postmaster);
END { kill 'CONT', @stopped if @stopped }
kill 'STOP', @stopped;

$t = time;
$res = $ngx->request('GET', '/api/x', headers => {'X-API-Key' => $kh},
                     timeout => 20);
my $waited = time - $t;
kill 'CONT', @stopped;
@stopped = ();

is $res->{status}, 503, 'PostgreSQL hangs: 503';
cmp_ok $waited, '<=', 3.5,
    'within the timeout (2 s) and its 1 s margin, whatever the retries'
    or diag sprintf 'waited %.1f s', $waited;
costs_what_it_says($uh, 9, $res, 'a hung PostgreSQL');
$ngx->stop;

$_->close for $hold, $plans, $watch;

Test::Monetize::reconcile(
    served => [map { $_->{headers}{'x-request-id'} } $be->requests]);

done_testing;
