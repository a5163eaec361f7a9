# A gated call is answered within one deadline, set when the gate starts on
# it: the pool's timeout and its 1 s grace. The key lookup (when the key is
# not cached) and the debit share it, whatever each waited for: a lookup
# that waited for a connection is cut at the call's deadline, and a debit
# after a slow lookup gets only what is left. A call never costs more than
# its answer says: one refused in time after its debit was sent is voided,
# one refused before it was sent costs nothing and leaves nothing to void.
#
# The waits are made to happen, not hoped for: with monetize.test_hold on
# (in the connection's options) a lookup takes advisory lock 60061 after it
# read its row (sql/006_keys.sql), held by a psql session; a debit waits
# for its account's balances row, held FOR UPDATE by another. Time passes
# between the two only as the point of the test: how long a call waits.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Time::HiRes qw(time);

my $be = Test::Monetize::Backend->start(sub {
    return (200, {'Content-Type' => 'text/plain'}, "served\n");
});

sub start_nginx {
    my ($options) = @_;
    return Test::Monetize::Nginx->start(
        workers => 1,
        http_config => 'monetize_cache zone=keys:1m ttl=3600s;',
        postgres => sprintf('monetize_postgres "host=%s port=%s dbname=%s '
                            . 'user=%s password=env:MONETIZE_PG_PASSWORD '
                            . q{options='-c monetize.test_hold=on'" %s;},
                            $ENV{MONETIZE_PG_HOST}, $ENV{MONETIZE_PG_PORT},
                            Test::Monetize::database(),
                            $ENV{MONETIZE_PG_USER}, $options),
        config => <<"CONF");
    location /api/ {
        monetize_gate on;
        monetize_cost 1;
        proxy_set_header X-Request-Id \$request_id;
        proxy_pass http://127.0.0.1:@{[ $be->port ]};
    }
CONF
}

sub call {
    my ($ngx, $key) = @_;
    return $ngx->start_request('GET', '/api/x',
                               headers => {'X-API-Key' => $key},
                               timeout => 15);
}

# lookups that wait for advisory lock 60061
sub lookups_held {
    my ($n) = Test::Monetize::psql(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        . " AND objid = 60061 AND NOT granted");
    return $n->[0];
}

sub debits_held {
    my ($n) = Test::Monetize::psql(
        "SELECT count(*) FROM pg_stat_activity"
        . " WHERE application_name = 'nginx-monetize'"
        . "   AND wait_event_type = 'Lock' AND query LIKE '%monetize_debit%'");
    return $n->[0];
}

# lets time pass while the calls in flight are read as they are answered,
# so that each answer's time is when it came
sub pause_until {
    my ($t) = @_;
    while ((my $left = $t - time) > 0) {
        Test::Monetize::HTTP::pump($left < 0.02 ? $left : 0.02);
        Time::HiRes::sleep(0.002);
    }
}

sub balance {
    my ($user) = @_;
    my ($b) = Test::Monetize::psql(
        "SELECT balance FROM balances WHERE user_id = \$1", $user);
    return $b->[0];
}

sub costs_what_it_says {
    my ($user, $before, $res, $name) = @_;
    my $cost = ($res->{status} // 0) == 200 ? 1 : 0;
    my $settled = Test::Monetize::wait_until(10, sub {
        $before - balance($user) == $cost });
    ok $settled, "$name: answered " . ($res->{status} // 'nothing')
                 . ", charged $cost"
        or diag 'charged ' . ($before - balance($user));
}

my $lock = Test::Monetize::psql_session();
my $row = Test::Monetize::psql_session();

# --- a slow lookup, then a debit held: one deadline for both ---------------

my $ngx = start_nginx('pool=1 timeout=2s');
my ($ua, $ka) = Test::Monetize::account(credits => 10);
my ($ub, $kb) = Test::Monetize::account(credits => 10);

$lock->query('SELECT pg_advisory_lock(60061)');
$row->query('BEGIN');
$row->query("SELECT 1 FROM balances WHERE user_id = '$ub' FOR UPDATE");

my $a = call($ngx, $ka);
ok Test::Monetize::wait_until(10, sub { lookups_held() == 1 }),
    "a lookup holds the pool's one connection";

my $mark = $ngx->error_log_mark;
my $t0 = time;
my $b = call($ngx, $kb);

# the server ends the first lookup at its statement_timeout (2 s); the
# second, which waited for the connection, is sent and held in turn
ok Test::Monetize::wait_until(10, sub { $a->done && lookups_held() == 1 }),
    'the first lookup ends, the second is sent and held';
is $a->result->{status}, 503, '... the first call: 503';

pause_until($t0 + 2.3);
$lock->query('SELECT pg_advisory_unlock(60061)');

my $res = $ngx->finish_request($b);
my $log = $ngx->error_log_since($mark);
$row->query('COMMIT');

is $res->{status}, 503, 'its key found after 2.3 s, the debit held: 503';
cmp_ok $res->{elapsed}, '<=', 3.4,
    '... within the timeout (2 s) and its 1 s grace of the call\'s start, '
    . 'not of the debit\'s'
    or diag sprintf 'answered after %.2f s', $res->{elapsed};
like $log, qr/debit batch of 1 calls has no known outcome/,
    '... its debit was sent in the time left, and is voided';
costs_what_it_says($ub, 10, $res, 'a slow lookup and a held debit');

# --- a lookup that waited for a connection is cut at the deadline ----------

my ($uc, $kc) = Test::Monetize::account(credits => 10);
my ($ud, $kd) = Test::Monetize::account(credits => 10);

$lock->query('SELECT pg_advisory_lock(60061)');
my $c = call($ngx, $kc);
ok Test::Monetize::wait_until(10, sub { lookups_held() == 1 }),
    "a lookup holds the pool's one connection";

$mark = $ngx->error_log_mark;
$t0 = time;
my $d = call($ngx, $kd);
ok Test::Monetize::wait_until(10, sub { $c->done && lookups_held() == 1 }),
    'the first lookup ends, the second is sent and held';

$res = $ngx->finish_request($d);
$log = $ngx->error_log_since($mark);
$lock->query('SELECT pg_advisory_unlock(60061)');

is $res->{status}, 503, 'a lookup still held at the deadline: 503';
cmp_ok $res->{elapsed}, '<=', 3.4,
    '... at the call\'s deadline, not 2 s after the lookup was sent'
    or diag sprintf 'answered after %.2f s', $res->{elapsed};
like $log, qr/had not answered by its caller's deadline/,
    '... and the log says why';
costs_what_it_says($ud, 10, $res, 'a lookup cut at the deadline');

# the connection it was cut from is used again
is $ngx->request('GET', '/api/x', headers => {'X-API-Key' => $kd})->{status},
    200, 'then the key passes';
costs_what_it_says($ud, 10, {status => 200}, 'once it passes');

# --- a slow lookup, then a debit in the time left --------------------------

my ($ue, $ke) = Test::Monetize::account(credits => 10);

$lock->query('SELECT pg_advisory_lock(60061)');
$t0 = time;
my $e = call($ngx, $ke);
ok Test::Monetize::wait_until(10, sub { lookups_held() == 1 }),
    'a lookup is held';
pause_until($t0 + 1.5);
$lock->query('SELECT pg_advisory_unlock(60061)');

$res = $ngx->finish_request($e);
is $res->{status}, 200, 'its key found after 1.5 s, the call passes';
cmp_ok $res->{elapsed}, '<=', 3.4, '... within its deadline'
    or diag sprintf 'answered after %.2f s', $res->{elapsed};
costs_what_it_says($ue, 10, $res, 'a slow lookup, then a debit');
$ngx->stop;

# --- a debit whose deadline passes while it waits behind the batches -----

# The call under test (g) starts first; its lookup is held. Then two
# debits (f, f2: a worker has two batches in flight) are sent and held on
# their accounts, and a cached call (h) waits behind them. Then g's key is
# found: its debit waits behind f and f2 too, after h, with an earlier
# deadline than all. It is refused at that deadline, never sent; h goes in
# the next batch.

$ngx = start_nginx('pool=3 timeout=3s');
my ($uf, $kf) = Test::Monetize::account(credits => 10);
my ($uf2, $kf2) = Test::Monetize::account(credits => 10);
my ($ug, $kg) = Test::Monetize::account(credits => 10);
my ($uh, $kh) = Test::Monetize::account(credits => 10);

is $ngx->request('GET', '/api/x', headers => {'X-API-Key' => $_})->{status},
    200, 'a call passes; its key is cached' for $kf, $kf2, $kh;

$lock->query('SELECT pg_advisory_lock(60061)');
$row->query('BEGIN');
$row->query("SELECT 1 FROM balances WHERE user_id IN ('$uf', '$uf2')"
            . " FOR UPDATE");

$mark = $ngx->error_log_mark;
$t0 = time;
my $g = call($ngx, $kg);
ok Test::Monetize::wait_until(10, sub { lookups_held() == 1 }),
    'the lookup of the call under test is held';

pause_until($t0 + 1.5);        # two debits to hold before 2.3
my $f = call($ngx, $kf);
ok Test::Monetize::wait_until(10, sub { debits_held() == 1 }),
    'a debit of another account is sent and held';
my $f2 = call($ngx, $kf2);
ok Test::Monetize::wait_until(10, sub { debits_held() == 2 }),
    '... and one of a third, in a second batch';
my $h = call($ngx, $kh);

pause_until($t0 + 2.3);
$lock->query('SELECT pg_advisory_unlock(60061)');

my $rg = $ngx->finish_request($g);
my $rh = $ngx->finish_request($h);
my $rf = $ngx->finish_request($f);
my $rf2 = $ngx->finish_request($f2);
$log = $ngx->error_log_since($mark);
$row->query('COMMIT');

is $rg->{status}, 503, 'the call under test: 503';
cmp_ok $rg->{elapsed}, '<=', 4.4,
    '... at its deadline (3 s + 1 s of its start), '
    . 'not when the batch ahead of it ends'
    or diag sprintf 'answered after %.2f s', $rg->{elapsed};
like $log, qr/not sent by their calls' deadline/,
    '... and the log says why';
is_deeply [Test::Monetize::psql(
    "SELECT count(*) FROM gate_calls WHERE user_id = \$1", $ug)], [[0]],
    '... never sent: no call recorded, nothing to void';
costs_what_it_says($ug, 10, $rg, 'refused before it was sent');
is $rf->{status}, 503, 'the held debit: 503 at the statement timeout';
costs_what_it_says($uf, 9, $rf, 'the held debit');
is $rf2->{status}, 503, 'the second held debit: 503 too';
costs_what_it_says($uf2, 9, $rf2, 'the second held debit');
is $rh->{status}, 200, 'the call queued behind it passes in the next batch';
costs_what_it_says($uh, 9, $rh, 'queued behind');
$ngx->stop;

$_->close for $lock, $row;

Test::Monetize::reconcile(
    served => [map { $_->{headers}{'x-request-id'} } $be->requests]);

done_testing;
