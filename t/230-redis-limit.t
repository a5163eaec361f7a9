# Cluster-wide rate limits: two nginx instances sharing one Redis obey one
# limit. With Redis stopped during a load, no call hangs; the node-local
# fallback holds the limit per node (monetize_fail_mode local), or calls are
# refused (closed); once Redis is back, the shared limit is back, without a
# reload.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use POSIX qw(floor ceil);
use Time::HiRes qw(time sleep);

my $redis = Test::Monetize::Redis->start;

Test::Monetize::psql(
    "INSERT INTO plans (id, name, price_cents, monthly_quota,"
    . "                 rate_limit_rps, rate_limit_burst)"
    . " VALUES ('ten', 'Ten', 100, NULL, 10, 5)");

# a key of a new account of the plan 'ten'
sub new_key {
    my (undef, $key) = Test::Monetize::account(plan => 'ten',
                                               credits => 100000);
    return $key;
}

my %conf = (
    workers => 2,
    http_config => "monetize_cache zone=keys:1m;\n"
                 . "monetize_redis 127.0.0.1:" . $redis->port
                 . " prefix=t230: timeout=500ms;",
    config => <<'CONF');
    add_header X-Decided $msec always;
    location /v1/ { monetize_api; }
    location /api/ {
        monetize_gate on;
        monetize_rate_limit redis;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /closed/ {
        monetize_gate on;
        monetize_rate_limit redis;
        monetize_fail_mode closed;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /backend/ { return 200 "ok\n"; }
CONF
my @nodes = (Test::Monetize::Nginx->start(%conf),
             Test::Monetize::Nginx->start(%conf));

# 20 clients, a call every 100ms each for a second, spread over both nodes;
# the time that elapsed is nginx's, from the first decision to the last
sub paced {
    my ($key, $path) = @_;
    my @h;
    my $start = time;
    for my $round (0 .. 9) {
        my $at = $start + $round * 0.1;
        sleep($at - time) if $at > time;
        push @h, map {
            $nodes[$_ % 2]->start_request('GET', ($path // '/api/') . "$round-$_",
                headers => {'X-API-Key' => $key}, timeout => 5)
        } 1 .. 20;
    }
    my @res = map { $_->{ngx} = 1; $_ } map { $nodes[0]->finish_request($_) } @h;
    my @at = sort { $a <=> $b }
             map { (split /, /, $_->{headers}{'x-decided'} // '0')[0] } @res;
    return (\@res, $at[-1] - $at[0]);
}

sub statuses {
    my ($res) = @_;
    my %s;
    $s{$_->{status} // 'none'}++ for @$res;
    return \%s;
}

sub within_one_limit {
    my ($res, $elapsed, $nodes, $what) = @_;
    my $ok = grep { ($_->{status} // 0) == 200 } @$res;
    my $lo = $nodes * (5 + floor(10 * $elapsed) - 1);
    my $hi = $nodes * (5 + ceil(10 * $elapsed) + 1);
    ok $ok >= $lo && $ok <= $hi,
        sprintf '%s: %d admitted over %.2fs (expected %d to %d)',
                $what, $ok, $elapsed, $lo, $hi;
}

# --- two nodes, one limit ----------------------------------------------------

my ($res, $elapsed) = paced(new_key());
is_deeply [sort keys %{statuses($res)}], [200, 429], 'calls pass, then 429';
within_one_limit($res, $elapsed, 1, 'two nodes sharing Redis obey one limit');
like $redis->cli('--scan', '--pattern', 't230:*'), qr/^t230:k:/m,
    'the limit lives in Redis, under the prefix';

# --- Redis stops during a load ------------------------------------------------

my $key = new_key();
my $mark = $nodes[0]->error_log_mark;
my $load = fork // die "fork: $!";
if ($load == 0) {
    sleep 0.3;
    $redis->stop;
    POSIX::_exit(0);
}
($res, $elapsed) = paced($key);
waitpid $load, 0;

my $s = statuses($res);
is_deeply [sort keys %$s], [200, 429],
    'Redis stopped mid-load: every call answered 200 or 429, none hung';
my @slow = grep { $_->{elapsed} > 2 } @$res;
is scalar(@slow), 0, 'no call waited much past the timeout (500ms)';
ok $nodes[0]->wait_for_log(qr/monetize: redis 127\.0\.0\.1:\d+ is unreachable/,
                           since => $mark), 'the loss is logged';

($res, $elapsed) = paced(new_key());
within_one_limit($res, $elapsed, 2,
                 'while Redis is down, each node holds the limit on its own');

my $closed = $nodes[0]->request('GET', '/closed/x',
                                headers => {'X-API-Key' => $key});
is_deeply [$closed->{status}, $closed->{json}{error}{code}],
    [503, 'backend_unavailable'],
    'with monetize_fail_mode closed, calls are refused meanwhile';

# --- Redis is back ------------------------------------------------------------

$redis->restart;
ok Test::Monetize::wait_until(10, sub {
    !grep { $_->request('GET', '/v1/health')->{status} != 200 } @nodes
}), 'both nodes find Redis again, without a reload';

($res, $elapsed) = paced(new_key());
within_one_limit($res, $elapsed, 1, 'the shared limit is back');

done_testing;
