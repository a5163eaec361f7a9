# Durability: during a load, kill -9 an nginx worker, later the master and
# every worker; start again; reconcile. Every call the upstream served was
# debited, once; the calls debited but never served are those cut off by the
# kills (counted here, explained in the README); the ledger sums to the
# balance; refunds answer the upstream's 503s, once each.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use POSIX ();
use Time::HiRes qw(time sleep);
use feature qw(state);

my $GRANT = 1_000_000;

# the upstream: slow enough that calls are in flight when nginx dies; it
# fails the calls whose request id ends in "0" (one in sixteen), but for
# the one that checks nginx after the restart
my $be = Test::Monetize::Backend->start(sub {
    my ($req) = @_;
    sleep 0.02;
    my $id = $req->{headers}{'x-request-id'} // '';
    my $fail = $id =~ /0\z/ && $req->{path} ne '/api/after';
    return ($fail ? 503 : 200, {'Content-Type' => 'text/plain'},
            "answered\n");
});

my ($user, $key) = Test::Monetize::account(credits => $GRANT);

my %conf = (
    workers => 2,
    http_config => 'monetize_cache zone=keys:1m;',
    config => <<"CONF");
    location /api/ {
        monetize_gate on;
        monetize_cost 1;
        monetize_refund_on 5xx;
        proxy_set_header X-Request-Id \$request_id;
        proxy_pass http://127.0.0.1:@{[ $be->port ]};
    }
CONF

my $ngx = Test::Monetize::Nginx->start(%conf);
my $port = $ngx->port;
my $dir = Test::Monetize::new_dir('load');
my $log = "$dir/statuses";
my $stop = "$dir/stop";

# the load: 20 calls at a time, from a process of its own, until the test
# has restarted nginx and says stop (bounded: 120 s at most), so that a slow
# machine slows the test down instead of ending the load before the kills
my $load = fork // die "fork: $!";

if ($load == 0) {
    my $deadline = time + 120;
    open my $out, '>>', $log or POSIX::_exit(1);
    $out->autoflush(1);
    while (time < $deadline && !-e $stop) {
        my @r = $ngx->parallel([map {
            [GET => "/api/$_", headers => {'X-API-Key' => $key}, timeout => 5]
        } 1 .. 20], concurrency => 20);
        print $out join("\n", map { $_->{status} // 'error' } @r), "\n";
    }
    POSIX::_exit(0);    # no END blocks: the parent owns nginx
}

sub served { scalar(@{[ $be->requests ]}) }

ok Test::Monetize::wait_until(40, sub { served() >= 100 }), 'under load';

my ($master, @workers) = $ngx->pids;
kill 'KILL', $workers[0];
diag "killed worker $workers[0]";

my $mark = served();
ok Test::Monetize::wait_until(40, sub { served() >= $mark + 100 }),
    'the load goes on after a worker died';

($master, @workers) = $ngx->pids;
kill 'KILL', $master, @workers;
diag "killed master $master and workers @workers";
Test::Monetize::wait_until(5, sub { !kill 0, $master, @workers });

$ngx = Test::Monetize::Nginx->start(%conf, port => $port);
diag "started again";

$mark = served();
ok Test::Monetize::wait_until(10, sub { served() >= $mark + 20 }),
    'the load goes on after the restart';

open my $flag, '>', $stop or die "$stop: $!";
close $flag;

waitpid $load, 0;
is $?, 0, 'the load ran to its end';

my $res = $ngx->request('GET', '/api/after', headers => {'X-API-Key' => $key});
is $res->{status}, 200, 'calls pass after the restart';

# --- reconcile -------------------------------------------------------------

# refunds are written after the answers: let them settle
my $settled = Test::Monetize::wait_until(10, sub {
    my ($n) = Test::Monetize::psql(
        "SELECT count(*) FROM credit_ledger WHERE kind = 'refund'");
    state $last = -1;
    my $same = $n->[0] == $last;
    $last = $n->[0];
    sleep 0.5 unless $same;
    $same;
});

my %debited = map { $_->[0] => 1 } Test::Monetize::psql(
    "SELECT substr(reference, 6) FROM credit_ledger"
    . " WHERE user_id = \$1 AND kind = 'debit'", $user);
my %refunded = map { $_->[0] => 1 } Test::Monetize::psql(
    "SELECT substr(metadata->>'debit', 6) FROM credit_ledger"
    . " WHERE user_id = \$1 AND kind = 'refund'", $user);

my (%served, %failed);
for my $req ($be->requests) {
    my $id = $req->{headers}{'x-request-id'};
    $served{$id}++;
    $failed{$id} = 1 if $id =~ /0\z/ && $req->{path} ne '/api/after';
}

my @served_twice = grep { $served{$_} > 1 } keys %served;
my @not_debited = grep { !$debited{$_} } keys %served;
my @cut_off = grep { !$served{$_} } keys %debited;
my @failed_not_refunded = grep { !$refunded{$_} } keys %failed;
my @refunded_not_failed = grep { !$failed{$_} } keys %refunded;

open my $in, '<', $log or die $!;
my %client;
$client{$_}++ for map { chomp; $_ } <$in>;

diag sprintf 'client saw: %s',
    join ', ', map { "$_ x $client{$_}" } sort keys %client;
diag sprintf 'upstream served %d calls (%d failed with 503); '
             . 'the ledger has %d debits and %d refunds',
    scalar(keys %served), scalar(keys %failed),
    scalar(keys %debited), scalar(keys %refunded);
diag sprintf 'charged but cut off before the upstream: %d; '
             . '503s not refunded (their worker died first): %d',
    scalar(@cut_off), scalar(@failed_not_refunded);

is scalar(@served_twice), 0, 'no call reached the upstream twice';
is scalar(@not_debited), 0, 'every call the upstream served was debited';
cmp_ok scalar(@cut_off), '<=', 60,
    'the calls debited but not served are few: those in flight at the kills';
is scalar(@refunded_not_failed), 0,
    'every refund answers a call the upstream failed';
cmp_ok scalar(@failed_not_refunded), '<=', 20,
    'every 503 is refunded but those whose worker was killed';

my ($balance) = Test::Monetize::psql(
    "SELECT b.balance, (SELECT sum(delta) FROM credit_ledger l"
    . "                  WHERE l.user_id = b.user_id)"
    . "  FROM balances b WHERE b.user_id = \$1", $user);
is $balance->[0], $balance->[1], 'the ledger sums to the balance';
is $balance->[0],
    $GRANT - scalar(keys %debited) + scalar(keys %refunded),
    'the balance: the grant, less the debits, plus the refunds';

Test::Monetize::reconcile(served => [keys %served]);

done_testing;
