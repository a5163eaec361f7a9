# The Redis store: monetize_redis fails "nginx -t" on bad values; /health
# reports Redis beside PostgreSQL; a Redis that stops, hangs, or never
# answers is reported down within the timeout, logged once, and found
# again without a restart. Every Redis but the first block's is a private
# one: the shared Redis is never stopped here.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use IO::Socket::INET;
use Time::HiRes ();

# the private servers: Test::Monetize::Redis
sub redis_start {
    my $redis = Test::Monetize::Redis->start(@_);
    return ($redis->dir, $redis->port, $redis);
}

sub health {
    my ($ngx) = @_;
    my $t = Time::HiRes::time();
    my $res = $ngx->request('GET', '/v1/health', timeout => 5);
    $res->{took} = Time::HiRes::time() - $t;
    return $res;
}

# A gated location that refuses calls without Redis: only then is Redis
# down a 503 of /health (t/077 shows the 200 "degraded" otherwise).
my $api = <<'CONF';
    location /v1/ { monetize_api; }
    location /closed/ {
        monetize_gate on;
        monetize_rate_limit redis;
        monetize_fail_mode closed;
        return 204;
    }
CONF

# The first answer once the workers have connected to Redis (they connect
# as they start; with a gated location they first talk to PostgreSQL).
sub health_up {
    my ($ngx) = @_;
    return Test::Monetize::wait_until(5, sub {
        my $r = health($ngx);
        $r->{status} == 200 && $r;
    }) || health($ngx);
}

sub count {
    my ($text, $re) = @_;
    return scalar(() = $text =~ /$re/g);
}


run_tests();


# ---------------------------------------------------------------------------
# A Redis that stops, then starts again on the same port

my ($dir, $port, $redis) = redis_start();

my $ngx = Test::Monetize::Nginx->start(
    workers => 2,
    http_config => "monetize_redis 127.0.0.1:$port timeout=100ms "
                 . "prefix=t090:;",
    config => $api);
my ($master) = $ngx->pids;

my $res = health_up($ngx);
is $res->{status}, 200, 'up: 200';
is_deeply $res->{json}, {status => 'ok', postgres => 'ok', redis => 'ok'},
    '... with "redis":"ok"';

like $redis->cli('INFO', 'memory'), qr/number_of_cached_scripts:1\b/,
     'the rate limit script was loaded on connecting';

my $mark = $ngx->error_log_mark;
$redis->stop;

my @down = map { health($ngx) } 1 .. 20;
is_deeply [map { $_->{status} } @down], [(503) x 20], 'down: 503, every time';
is_deeply [map { $_->{json}{redis} // '' } @down], [('down') x 20],
    '... with "redis":"down"';
is $down[0]{json}{postgres}, 'ok', '... "postgres":"ok"';
is $down[0]{json}{error}{code}, 'backend_unavailable',
    '... backend_unavailable';
is $down[0]{headers}{'retry-after'}, '1', '... and Retry-After';
cmp_ok((sort { $b <=> $a } map { $_->{took} } @down)[0], '<', 1,
       '... each answered at once, none waits');

# two seconds more of requests: reconnect attempts, still one line a worker
my $until = Time::HiRes::time() + 2.2;
health($ngx) while Time::HiRes::time() < $until;

my $log = $ngx->error_log_since($mark);
my $lost = count($log, qr/monetize: redis 127\.0\.0\.1:$port is unreachable/);
cmp_ok $lost, '>=', 1, 'the loss is logged';
cmp_ok $lost, '<=', 2, '... once per worker, not per request nor attempt';
unlike $log, qr/\[(alert|crit|emerg)\]/, 'no alert while down';

$mark = $ngx->error_log_mark;
$redis->restart;

ok(Test::Monetize::wait_until(10, sub { health($ngx)->{status} == 200 }),
   'back up: 200 again');
my @after = map { health($ngx) } 1 .. 10;
is_deeply [map { $_->{status} } @after], [(200) x 10],
    'and every request after';
is $after[0]{json}{redis}, 'ok', '... "redis":"ok"';
ok $ngx->wait_for_log(qr/monetize: redis 127\.0\.0\.1:$port is reachable again/,
                      since => $mark),
   'the return is logged';
is(($ngx->pids)[0], $master, 'the same nginx master: no restart');


# ---------------------------------------------------------------------------
# A Redis that hangs (SIGSTOP) while connected: each worker's command times
# out, the connection is dropped, and until Redis answers again /health
# does not wait

$mark = $ngx->error_log_mark;
my $pid = $redis->pid;
kill 'STOP', $pid;

my @hung = map { health($ngx) } 1 .. 10;
is_deeply [map { $_->{status} } @hung], [(503) x 10], 'hung: 503';
is $hung[0]{json}{redis}, 'down', '... "redis":"down"';
cmp_ok((sort { $b <=> $a } map { $_->{took} } @hung)[0], '<', 1,
       '... within the timeout (100ms), no hang');
ok $ngx->wait_for_log(
       qr/redis 127\.0\.0\.1:$port is unreachable: no answer within 100ms/,
       since => $mark),
   'the timeout is logged';

kill 'CONT', $pid;
ok(Test::Monetize::wait_until(10, sub { health($ngx)->{status} == 200 }),
   'woken up: 200 again');

# the new workers connect when first asked, which a loaded machine (or a
# sanitizer build) may not finish within the 100ms timeout
$ngx->reload;
is health_up($ngx)->{status}, 200, 'after a reload: 200';
$ngx->stop;
unlike $ngx->error_log_since(0), qr/\[(alert|crit|emerg)\]|exited on signal/,
    'no alert, no crash';


# ---------------------------------------------------------------------------
# A server that accepts the connection and never answers

my $silent = IO::Socket::INET->new(Listen => 128, LocalAddr => '127.0.0.1',
                                   LocalPort => 0, Proto => 'tcp')
    or die "cannot listen: $!\n";
my $sport = $silent->sockport;

$ngx = Test::Monetize::Nginx->start(
    http_config => "monetize_redis 127.0.0.1:$sport timeout=100ms;",
    config => $api);

my @silent = map { health($ngx) } 1 .. 5;
is_deeply [map { $_->{status} } @silent], [(503) x 5], 'silent: 503';
is $silent[0]{json}{redis}, 'down', '... "redis":"down"';
cmp_ok((sort { $b <=> $a } map { $_->{took} } @silent)[0], '<', 1,
       '... within about the timeout, no hang');
ok $ngx->wait_for_log(
       qr/redis 127\.0\.0\.1:$sport is unreachable: no answer within 100ms/),
   'logged: no answer within the timeout';
$ngx->stop;
close $silent;


# ---------------------------------------------------------------------------
# AUTH and SELECT, sent first on each connection; a unix socket

my $adir = Test::Monetize::new_dir('redis');
(undef, my $aport, my $aredis) = redis_start(
    dir => $adir,
    args => ['--requirepass', 't090-secret',
             '--unixsocket', "$adir/redis.sock", '--unixsocketperm', '777'],
    auth => ['-a', 't090-secret', '--no-auth-warning']);

$ENV{T090_REDIS_PASSWORD} = 't090-secret';
$ngx = Test::Monetize::Nginx->start(
    main_config => 'env T090_REDIS_PASSWORD;',
    http_config => "monetize_redis unix:$adir/redis.sock "
                 . "password=env:T090_REDIS_PASSWORD db=3;",
    config => $api);

is health_up($ngx)->{status}, 200,
    'over a unix socket, with password=env:NAME and db=3: 200';
like $aredis->cli('-a', 't090-secret', '--no-auth-warning',
               'CLIENT', 'LIST'),
     qr/db=3 .*cmd=ping/, '... the worker selected database 3';
$ngx->stop;

# a timeout a loaded machine cannot overrun: what is shown is the refusal
$ngx = Test::Monetize::Nginx->start(
    http_config => "monetize_redis 127.0.0.1:$aport password=wrong "
                 . "timeout=2s;",
    config => $api);
$res = health($ngx);
is $res->{status}, 503, 'a wrong password: 503';
is $res->{json}{redis}, 'down', '... "redis":"down"';
ok $ngx->wait_for_log(
       qr/redis 127\.0\.0\.1:$aport is unreachable: AUTH: WRONGPASS/),
   '... and Redis\'s refusal is logged';
$ngx->stop;

done_testing;

__DATA__

=== TEST 1: the shared Redis: /health says "redis":"ok"
--- http_config
    monetize_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=2s
                   prefix=t090: db=0;
--- config
    location /v1/ { monetize_api; }
--- request
GET /v1/health
--- error_code: 200
--- response_json
{"status": "ok", "postgres": "ok", "redis": "ok"}

=== TEST 2: without monetize_redis, /health says nothing of Redis
--- config
    location /v1/ { monetize_api; }
--- request
GET /v1/health
--- error_code: 200
--- response_body_like: \A\{"status":"ok","postgres":"ok"\}\n\z

=== TEST 3: no port
--- http_config
    monetize_redis 127.0.0.1;
--- must_die
--- error_log
monetize_redis: no port in "127.0.0.1", give host:port

=== TEST 4: a port out of range
--- http_config
    monetize_redis 127.0.0.1:65536;
--- must_die
--- error_log
monetize_redis: invalid port in "127.0.0.1:65536"

=== TEST 5: a port that is not a number
--- http_config
    monetize_redis localhost:redis;
--- must_die
--- error_log
monetize_redis: invalid port in "localhost:redis"

=== TEST 6: a timeout that is not a time
--- http_config
    monetize_redis 127.0.0.1:6379 timeout=abc;
--- must_die
--- error_log
monetize_redis: invalid "timeout=abc", give a time such as timeout=100ms

=== TEST 7: a negative database
--- http_config
    monetize_redis 127.0.0.1:6379 db=-1;
--- must_die
--- error_log
monetize_redis: invalid "db=-1", give a database number from 0

=== TEST 8: an unknown parameter
--- http_config
    monetize_redis 127.0.0.1:6379 pool=4;
--- must_die
--- error_log
monetize_redis: invalid parameter "pool=4"

=== TEST 9: a host name that does not resolve
--- http_config
    monetize_redis no-such-host.invalid:6379;
--- must_die
--- error_log
monetize_redis: host not found in "no-such-host.invalid:6379"

=== TEST 10: a password from an environment variable that is not set
--- http_config
    monetize_redis 127.0.0.1:6379 password=env:T090_NO_SUCH_VAR;
--- must_die
--- error_log
monetize_redis: the environment variable "T090_NO_SUCH_VAR" is not set

=== TEST 11: an empty password
--- http_config
    monetize_redis 127.0.0.1:6379 password=;
--- must_die
--- error_log
monetize_redis: invalid "password=", give password=SECRET or password=env:NAME

=== TEST 12: monetize_redis given twice
--- http_config
    monetize_redis 127.0.0.1:6379;
    monetize_redis 127.0.0.1:6380;
--- must_die
--- error_log
"monetize_redis" directive is duplicate

=== TEST 13: a host name is resolved once, when the configuration is read
--- http_config
    monetize_redis localhost:$TEST_NGINX_REDIS_PORT timeout=1s;
--- config
    location /v1/ { monetize_api; }
--- request
GET /v1/health
--- error_code: 200
--- response_json
{"status": "ok", "postgres": "ok", "redis": "ok"}

=== TEST 14: a batch bound of 0
--- http_config
    monetize_redis 127.0.0.1:6379 batch=0;
--- must_die
--- error_log
monetize_redis: invalid "batch=0", give batch=N from 1 to 1000 calls

=== TEST 15: a batch bound over 1000
--- http_config
    monetize_redis 127.0.0.1:6379 batch=1001;
--- must_die
--- error_log
monetize_redis: invalid "batch=1001", give batch=N from 1 to 1000 calls

=== TEST 16: a batch bound that is not a number
--- http_config
    monetize_redis 127.0.0.1:6379 batch=many;
--- must_die
--- error_log
monetize_redis: invalid "batch=many", give batch=N from 1 to 1000 calls
