# GET /health when only Redis is down: the gate keeps serving where it falls
# back to the node's own limiter (monetize_fail_mode local, the default), so
# the node is healthy, "degraded", 200; it answers 503 only when a gated
# location refuses calls without Redis (monetize_fail_mode closed).

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

plan tests => 10;

my $redis = Test::Monetize::Redis->start;
my ($user, $key) = Test::Monetize::account(plan => 'free', credits => 100);

sub node {
    my ($gated) = @_;
    return Test::Monetize::Nginx->start(
        http_config => 'monetize_redis 127.0.0.1:' . $redis->port
                     . ' prefix=t077: timeout=100ms;',
        config => "location /v1/ { monetize_api; }\n"
                . "location /backend/ { return 200 \"ok\\n\"; }\n$gated");
}

my $local = <<'CONF';
    location /api/ {
        monetize_gate on;
        monetize_rate_limit redis;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
CONF
my $closed = <<'CONF';
    location /closed/ {
        monetize_gate on;
        monetize_rate_limit redis;
        monetize_fail_mode closed;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
CONF

my $ngx = node($local);
# (the worker connects to Redis as it starts)
my $res = Test::Monetize::wait_until(5, sub {
    my $r = $ngx->request('GET', '/v1/health');
    ($r->{json}{status} // '') eq 'ok' && $r;
}) || $ngx->request('GET', '/v1/health');
is_deeply [$res->{status}, $res->{json}],
    [200, {status => 'ok', postgres => 'ok', redis => 'ok'}],
    'Redis up: 200 ok';

$redis->stop;
my @auth = (headers => [Authorization => "Bearer $key"]);
is $ngx->request('GET', '/api/x', @auth)->{status}, 200,
    'Redis down: the gate serves with the local limiter';
$res = $ngx->request('GET', '/v1/health');
is_deeply [$res->{status}, $res->{json}],
    [200, {status => 'degraded', postgres => 'ok', redis => 'down'}],
    '... and /health says 200 "degraded", "redis":"down"';
ok !exists $res->{headers}{'retry-after'}, '... with no Retry-After';
$ngx->stop;

$ngx = node($closed);
is $ngx->request('GET', '/closed/x', @auth)->{status}, 503,
    'a location that fails closed refuses calls without Redis';
$res = $ngx->request('GET', '/v1/health');
is_deeply [$res->{status}, $res->{json}{status}, $res->{json}{redis},
           $res->{json}{error}{code}],
    [503, 'unavailable', 'down', 'backend_unavailable'],
    '... and /health says 503 unavailable';
$ngx->stop;

$ngx = node($local . $closed);
$res = $ngx->request('GET', '/v1/health');
is_deeply [$res->{status}, $res->{json}{redis}], [503, 'down'],
    'one location closed among others: 503';
$ngx->stop;

# monetize_redis with no gated location that uses it
$ngx = node('');
$res = $ngx->request('GET', '/v1/health');
is_deeply [$res->{status}, $res->{json}{status}], [200, 'degraded'],
    'no location limited through Redis: 200 degraded';

Test::Monetize::pg_stop();
$res = $ngx->request('GET', '/v1/health');
is_deeply [$res->{status}, $res->{json}{postgres}, $res->{json}{redis}],
    [503, 'down', 'down'], 'PostgreSQL down too: 503';
Test::Monetize::pg_start();
ok Test::Monetize::wait_until(10, sub {
        $ngx->request('GET', '/v1/health')->{status} == 200 }),
    'PostgreSQL back: 200 again';
$ngx->stop;
