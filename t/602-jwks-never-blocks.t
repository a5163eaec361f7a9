# The JWKS URL hanging never blocks a worker: with one worker, while the
# provider answers nothing, a token that waits for the keys waits alone;
# a plain location and a call with an API key on the same worker are
# answered first. The fetch ends at its timeout (the token is refused,
# 401), and once the provider answers, its tokens pass again.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Sessions;
use Idp;

plan tests => 9;

my $idp = Idp->start;
$idp->key('k1', 'RS256');
$idp->publish('k1');
$idp->mode('hang');

my $be = Test::Monetize::Backend->start(sub { (200, {}, "served\n") });
my $port = $be->port;

my $ngx = Test::Monetize::Nginx->start(
    workers => 1,
    http_config => $Sessions::HTTP . "\nmonetize_jwt_autoprovision on;\n"
                   . "monetize_signup_credits 10;\n"
                   . $idp->http_config(timeout => '3s'),
    api_limit => $Sessions::NO_LIMIT,
    config => <<"CONF");
    location /v1/ { monetize_api; }
    location = /ping { return 200 "pong\\n"; }
    location /api/ { monetize_gate on; proxy_pass http://127.0.0.1:$port; }
CONF

my (undef, $key) = Test::Monetize::account(credits => 10, keys => 1);
my $token = $idp->token('k1', 'RS256');

ok Test::Monetize::wait_until(5, sub { $idp->fetches >= 1 }),
    'the worker asked the provider, which hangs';

my $h = $ngx->start_request('GET', '/api/jwt',
                            headers => {Authorization => "Bearer $token"},
                            timeout => 30);

is $ngx->request('GET', '/ping')->{status}, 200,
    'a plain location answers while the token waits for the keys';
is $ngx->request('GET', '/api/key', headers => {'X-API-Key' => $key})
       ->{status},
    200, '... so does a call with an API key, through the gate';
ok !$h->done, '... and the token still waits';

my $res = $ngx->finish_request($h);
is_deeply [$res->{status}, $res->{json}{error}{code}], [401, 'invalid_token'],
    'the fetch timed out: the token is refused';
ok index(Test::Monetize::_slurp($ngx->error_log_file),
         'not fetched from "' . $idp->url . '": Operation timed out') >= 0
   || Test::Monetize::_slurp($ngx->error_log_file)
      =~ /not fetched from "\Q${\$idp->url}\E": .*timed out/i,
    '... and the log says the provider timed out';

# a fetch that failed is tried again within 10 s (an unknown kid forces
# one only once a minute)
$idp->mode('ok');
ok Test::Monetize::wait_until(30, sub {
    Sessions::bearer($ngx, GET => '/api/again', $token)->{status} == 200
}), 'the provider back: its tokens pass again, without a reload';

Test::Monetize::reconcile();

$ngx->stop;
ok 1, 'nginx stopped with the provider hung before';

$be->stop;
$idp->stop;
