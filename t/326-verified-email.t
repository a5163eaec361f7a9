# monetize_require_verified_email on: login, and the gate for an account
# whose address is not verified (by API key or by session token), answer
# 403 email_not_verified; UPDATE users SET email_verified = true lets them
# through (the gate's cache is told, as of a suspension). Off (the
# default): nothing is asked of the address.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Sessions;

plan tests => 11;

my $be = Test::Monetize::Backend->start(sub {
    return (200, {'Content-Type' => 'text/plain'}, "served\n");
});
my $port = $be->port;

my $config = <<"CONF";
    location /v1/ { monetize_api; }
    location /api/ {
        monetize_gate on;
        monetize_cost 0;
        proxy_pass http://127.0.0.1:$port;
    }
CONF

my %conf = (
    http_config => $Sessions::HTTP . "\nmonetize_require_verified_email on;\n"
                   . 'monetize_cache zone=keys:1m ttl=3600s;',
    api_limit => $Sessions::NO_LIMIT, config => $config);
my $ngx = Test::Monetize::Nginx->start(%conf);

my $reg = Sessions::register($ngx, 'ada@example.com');
my ($user, $key) = ($reg->{user}{id}, $reg->{api_key});

my $res = Sessions::login($ngx, 'ada@example.com');
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [403, 'email_not_verified'], 'login, not verified: 403 email_not_verified';
is Sessions::login($ngx, 'ada@example.com', 'wrong password')->{status}, 401,
    '... a wrong password is still 401 (the state is told only to the owner)';

$res = $ngx->request(GET => '/api/a', headers => {'X-API-Key' => $key});
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [403, 'email_not_verified'], 'the gate, by API key: 403 email_not_verified';

# a token made before verification was required: the gate asks too
my $token = Sessions::encode({sub => $user, typ => 'access', iat => 'now',
                              exp => 'now+300'});
$res = Sessions::bearer($ngx, GET => '/api/b', $token);
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [403, 'email_not_verified'], 'the gate, by session token: 403 too';
is scalar(() = $be->requests), 0, '... nothing reached upstream';

Test::Monetize::psql('UPDATE users SET email_verified = true WHERE id = $1',
                     $user);

ok Test::Monetize::wait_until(5, sub {
    $ngx->request(GET => '/api/c',
                  headers => {'X-API-Key' => $key})->{status} == 200
}), 'verified: the gate lets the key through (the cached account is stale)';
is Sessions::bearer($ngx, GET => '/api/d', $token)->{status}, 200,
    '... and the token';
$res = Sessions::login($ngx, 'ada@example.com');
is $res->{status}, 200, '... and login answers the tokens';
is Sessions::bearer($ngx, GET => '/api/e',
                    $res->{json}{access_token})->{status}, 200,
    '... whose access token passes the gate';
$ngx->stop;

# off: an unverified account logs in and calls
$conf{http_config} =~ s/monetize_require_verified_email on;//;
$ngx = Test::Monetize::Nginx->start(%conf);
my $bob = Sessions::register($ngx, 'bob@example.com');
is Sessions::login($ngx, 'bob@example.com')->{status}, 200,
    'off (the default): an unverified account logs in';
is $ngx->request(GET => '/api/f',
                 headers => {'X-API-Key' => $bob->{api_key}})->{status}, 200,
    '... and its key passes the gate';
$ngx->stop;
$be->stop;
