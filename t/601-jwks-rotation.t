# The provider's keys change without a reload: a token of a new kid makes
# the worker fetch the JWKS at once (at most once a minute), and the token
# waits for it; the keys are fetched again every "refresh"; while the
# provider is down, or serves no JWKS, the last good keys keep working.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Sessions;
use Idp;

plan tests => 13;

my $rot = Idp->start(issuer => 'https://rotating.example.test/');
my $flaky = Idp->start(issuer => 'https://flaky.example.test/');
$rot->key($_, 'RS256') for qw(k1 k2 k3);
$flaky->key('f1', 'ES256');
$rot->publish('k1');
$flaky->publish('f1');

my $be = Test::Monetize::Backend->start(sub { (200, {}, "served\n") });
my $port = $be->port;

my $ngx = Test::Monetize::Nginx->start(
    workers => 1,
    http_config => $Sessions::HTTP . "\nmonetize_signup_credits 100;\n"
                   . "monetize_jwt_autoprovision on;\n"
                   . $rot->http_config(refresh => '10m') . "\n"
                   . $flaky->http_config(refresh => '1s'),
    api_limit => $Sessions::NO_LIMIT,
    config => <<"CONF");
    location /v1/ { monetize_api; }
    location /api/ { monetize_gate on; proxy_pass http://127.0.0.1:$port; }
CONF

sub call {
    my ($idp, $kid, $alg) = @_;
    my $res = Sessions::bearer($ngx, GET => '/api/x',
                               $idp->token($kid, $alg // 'RS256'));
    return $res->{status};
}

is call($rot, 'k1'), 200, 'a token of the first key passes';
my $fetches = $rot->fetches;

# the provider rotates: k2 is published; no reload
$rot->publish('k1', 'k2');
my $mark = $ngx->error_log_mark;
is call($rot, 'k2'), 200, 'a token of the new kid passes at once';
is $rot->fetches, $fetches + 1, '... the JWKS was fetched again for it, once';
ok index($ngx->error_log_since($mark), 'kid "k2" of '
         . '"https://rotating.example.test/" is unknown') >= 0,
    '... and the log says why';
is call($rot, 'k1'), 200, 'the old key still passes';

# within the minute, an unknown kid is not worth another fetch
$rot->publish('k1', 'k2', 'k3');
my $res = Sessions::bearer($ngx, GET => '/api/x', $rot->token('k3', 'RS256'));
is_deeply [$res->{status}, $res->{json}{error}{code}, $rot->fetches],
    [401, 'invalid_token', $fetches + 1],
    'another unknown kid within the minute: 401, not fetched again';

# "refresh": fetched again on the timer, with no call at all
my $f = $flaky->fetches;
ok Test::Monetize::wait_until(10, sub { $flaky->fetches >= $f + 2 }),
    'refresh=1s: the keys are fetched every second';
is call($flaky, 'f1', 'ES256'), 200, 'a token of the flaky provider passes';

# the provider down: the last good keys are kept
$mark = $ngx->error_log_mark;
$flaky->mode('down');
ok $ngx->wait_for_log(qr/jwks of "https:\/\/flaky\.example\.test\/" not fetched from "[^"]+": HTTP 503; the keys known so far are kept/,
                      since => $mark, timeout => 10),
    'the provider answers 503: logged';
is call($flaky, 'f1', 'ES256'), 200, '... and its tokens still pass';

# up again, but with something that is no JWKS
$mark = $ngx->error_log_mark;
$flaky->serve('{"error": "maintenance"}');
$flaky->mode('ok');
ok $ngx->wait_for_log(qr/jwks of "https:\/\/flaky\.example\.test\/" is not a JWKS/,
                      since => $mark, timeout => 20),
    'an answer that is no JWKS: logged';
is call($flaky, 'f1', 'ES256'), 200, '... and the old keys still pass';

Test::Monetize::reconcile();

$ngx->stop;
$be->stop;
$rot->stop;
$flaky->stop;
