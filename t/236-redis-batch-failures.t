# The batched Redis limiter when Redis fails: a batch that Redis does not
# answer within its timeout gives every one of its calls the fail mode's
# answer (local: the node's own limiter; closed: 503), none waiting much
# past the timeout; a Redis that is down is not waited for at all; and
# requests that go away while their calls are in a batch (a worker's
# shutdown ending them, a batch that then meets NOSCRIPT) are detached
# safely (run it with MONETIZE_SANITIZE=1).

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use POSIX ();

my $redis = Test::Monetize::Redis->start;

Test::Monetize::psql(
    "INSERT INTO plans (id, name, price_cents, monthly_quota,"
    . "                 rate_limit_rps, rate_limit_burst)"
    . " VALUES ('ten', 'Ten', 100, NULL, 10, 5)");

sub new_key {
    my (undef, $key) = Test::Monetize::account(plan => 'ten',
                                               credits => 100000);
    return $key;
}

sub statuses {
    my %s;
    $s{$_->{status} // 'none'}++ for @_;
    return \%s;
}

# the node's own limiter (rate 10, burst 5) over the time its decisions took
sub within_local_limit {
    my ($s, @res) = @_;
    my @at = sort { $a <=> $b }
             map { (split /, /, $_->{headers}{'x-decided'} // '0')[0] } @res;
    my $hi = 5 + POSIX::ceil(10 * ($at[-1] - $at[0])) + 1;
    return ($s->{200} // 0) >= 5 && ($s->{200} // 0) <= $hi
           && ($s->{200} // 0) + ($s->{429} // 0) == @res;
}

sub slowest {
    return (sort { $b <=> $a } map { $_->{elapsed} } @_)[0];
}

my $locations = <<'CONF';
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

my $ngx = Test::Monetize::Nginx->start(
    workers => 2,
    http_config => "monetize_cache zone=keys:1m;\n"
                 . "monetize_redis 127.0.0.1:" . $redis->port
                 . " prefix=t236: timeout=300ms batch=8;",
    config => $locations);

sub calls {
    my ($path, $key, $n) = @_;
    return $ngx->parallel([map { [GET => "$path$_",
                                  headers => {'X-API-Key' => $key},
                                  timeout => 10] } 1 .. $n],
                          concurrency => $n);
}

# nginx has read the requests of $n connections: with the key in the cache,
# their calls are in batches then
sub read_by_nginx {
    my ($n) = @_;
    my $port = sprintf '%04X', $ngx->port;
    my @c = grep { (split ' ')[1] =~ /:$port\z/ && (split ' ')[3] eq '01' }
            split /\n/, Test::Monetize::_slurp('/proc/net/tcp');
    return @c >= $n && !grep { (split /:/, (split ' ')[4])[1] !~ /\A0+\z/ }
                       @c;
}

sub redis_back {
    return Test::Monetize::wait_until(10, sub {
        $ngx->request('GET', '/v1/health')->{status} == 200 });
}

my $key = new_key();
is $ngx->request('GET', '/api/warm', headers => {'X-API-Key' => $key})
        ->{status}, 200, 'a call decided by Redis';
ok redis_back(), 'both workers are connected';

# --- Redis slow: held (SIGSTOP) past the timeout ---------------------------

my $mark = $ngx->error_log_mark;
kill 'STOP', $redis->pid;
my @res = calls('/closed/', $key, 20);
is_deeply statuses(@res), {503 => 20},
    'Redis held, fail mode closed: every call of the lost batches is 503';
is_deeply [sort keys %{{map { ($_->{json}{error}{code} // '') => 1 } @res}}],
    ['backend_unavailable'], '... backend_unavailable';
cmp_ok slowest(@res), '<', 1.5, '... within about the timeout (300ms)';
ok $ngx->wait_for_log(qr/redis 127\.0\.0\.1:\d+ is unreachable: no answer within 300ms/,
                      since => $mark), '... and the log says why';
kill 'CONT', $redis->pid;
ok redis_back(), 'Redis answers again';

$key = new_key();
kill 'STOP', $redis->pid;
@res = calls('/api/', $key, 20);
my $s = statuses(@res);
is_deeply [sort keys %$s], [200, 429],
    'Redis held, fail mode local: the node\'s own limiter decides (200, 429)';
ok within_local_limit($s, @res),
    "... holding the limit ($s->{200} passed of a burst of 5 at 10/s)";
is_deeply [grep { !defined $_->{headers}{'ratelimit-limit'} } @res], [],
    '... each with its RateLimit headers';
cmp_ok slowest(@res), '<', 1.5, '... within about the timeout';
kill 'CONT', $redis->pid;
ok redis_back(), 'Redis answers again';

# --- Redis down ---------------------------------------------------------------

$redis->stop;
$key = new_key();
@res = calls('/closed/', $key, 10);
is_deeply statuses(@res), {503 => 10}, 'Redis down: fail mode closed refuses';
my @local = calls('/api/', $key, 10);
$s = statuses(@local);
ok within_local_limit($s, @local),
    "... local limits on its own ($s->{200} passed of a burst of 5 at 10/s)";
cmp_ok slowest(@res, @local), '<', 1, '... none waits';
$redis->restart;
ok redis_back(), 'Redis is found again';
like $redis->cli('INFO', 'memory'), qr/number_of_cached_scripts:1\b/,
     '... its script loaded';
$ngx->stop;
unlike $ngx->error_log_since(0), qr/\[(alert|crit|emerg)\]|exited on signal/,
    'no alert, no crash';

# --- callers that go away mid-batch -----------------------------------------

# The old workers of a reload end the requests still waiting after
# worker_shutdown_timeout: their calls are in batches (in flight, or
# gathering behind them). Redis then answers NOSCRIPT: the batch goes again
# without the calls no one waits for, here none.
$ngx = Test::Monetize::Nginx->start(
    workers => 2,
    main_config => 'worker_shutdown_timeout 300ms;',
    http_config => "monetize_cache zone=keys:1m;\n"
                 . "monetize_redis 127.0.0.1:" . $redis->port
                 . " prefix=t236: timeout=10s batch=8;",
    config => $locations);

$key = new_key();
is $ngx->request('GET', '/api/warm', headers => {'X-API-Key' => $key})
        ->{status}, 200, 'a key, in the cache';
my @old = $ngx->worker_pids;

$redis->cli('SCRIPT', 'FLUSH');
kill 'STOP', $redis->pid;
my @h = map { $ngx->start_request('GET', "/api/gone-$_",
                  headers => {'X-API-Key' => $key}, timeout => 20) } 1 .. 20;
ok Test::Monetize::wait_until(10, sub {
        Test::Monetize::HTTP::pump(0.05); read_by_nginx(20) }),
    '20 calls wait in batches, Redis held';
$ngx->reload(wait_old => 0);
ok Test::Monetize::wait_until(15, sub { !grep { !$_->done } @h }),
    'the old workers end the waiting requests';
is_deeply [grep { defined $_->result->{status} } @h], [],
    '... no answer to them';
kill 'CONT', $redis->pid;
ok Test::Monetize::wait_until(15, sub { !grep { kill 0, $_ } @old }),
    'the old workers exit once Redis answers';

@res = calls('/api/', new_key(), 3);
is_deeply statuses(@res), {200 => 3}, 'the new workers decide calls by Redis';
like $redis->cli('INFO', 'memory'), qr/number_of_cached_scripts:1\b/,
     '... with the script loaded again';
$ngx->stop;
unlike $ngx->error_log_since(0), qr/\[(alert|crit|emerg)\]|exited on signal/,
    'no alert, no crash';

done_testing;
