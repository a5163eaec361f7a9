# monetize_gate on scope=NAME: a provider's token passes only with NAME in
# its scope (space-separated) or scp (an array), an API key only if it was
# created with it (POST /keys {"scopes": [...]}); anything else is 403
# forbidden. A location without scope= takes them all.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Sessions;
use Idp;

plan tests => 14;

my $idp = Idp->start;
$idp->key('k1', 'RS256');
$idp->publish('k1');

my $be = Test::Monetize::Backend->start(sub { (200, {}, "served\n") });
my $port = $be->port;

my $ngx = Test::Monetize::Nginx->start(
    http_config => $Sessions::HTTP . "\nmonetize_signup_credits 50;\n"
                   . "monetize_jwt_autoprovision on;\n" . $idp->http_config,
    api_limit => $Sessions::NO_LIMIT,
    config => <<"CONF");
    location /v1/ { monetize_api; }
    location /scoped/ {
        monetize_gate on scope=transcribe;
        proxy_pass http://127.0.0.1:$port;
    }
    location /open/ { monetize_gate on; proxy_pass http://127.0.0.1:$port; }
CONF

sub scoped {
    my ($token, $path) = @_;
    my $res = Sessions::bearer($ngx, GET => $path // '/scoped/x', $token);
    return [$res->{status}, $res->{json} && $res->{json}{error}{code}];
}

is_deeply scoped($idp->token('k1', 'RS256', {scope => 'openid transcribe'})),
    [200, undef], 'a JWT with the scope in "scope": 200';
is_deeply scoped($idp->token('k1', 'RS256', {scp => ['read', 'transcribe']})),
    [200, undef], 'a JWT with the scope in "scp": 200';
is_deeply scoped($idp->token('k1', 'RS256', {scope => 'openid transcribed'})),
    [403, 'forbidden'], 'a JWT without it: 403 forbidden';
is_deeply scoped($idp->token('k1', 'RS256', {})), [403, 'forbidden'],
    'a JWT with no scope at all: 403 forbidden';
is_deeply scoped($idp->token('k1', 'RS256', {}), '/open/x'), [200, undef],
    '... which passes where no scope is asked';

# keys, made through the API
my $reg = Sessions::register($ngx, 'scopes@example.com');
my $plain = $reg->{api_key};

my $res = $ngx->request('POST', '/v1/keys', json => {scopes => ['transcribe']},
                        headers => {'X-API-Key' => $plain});
is $res->{status}, 201, 'POST /keys {"scopes":["transcribe"]}: 201';
my $scoped_key = $res->{json}{key};
is_deeply [Test::Monetize::psql('SELECT scopes FROM api_keys WHERE id = $1',
                                $res->{json}{id})],
    [['{transcribe}']], '... stored with the key';

is_deeply scoped($scoped_key), [200, undef], 'the key with the scope: 200';
$res = $ngx->request('POST', "/v1/keys/$res->{json}{id}/rotate", json => {},
                     headers => {'X-API-Key' => $plain});
is_deeply [$res->{status}, scoped($res->{json}{key})], [201, [200, undef]],
    'its rotation keeps the scope';
is_deeply scoped($plain), [403, 'forbidden'],
    'a key created without it: 403 forbidden';
is_deeply scoped($plain, '/open/y'), [200, undef],
    '... which passes where no scope is asked';

my $access = Sessions::login($ngx, 'scopes@example.com')->{json}{access_token};
is_deeply scoped($access), [403, 'forbidden'],
    'our own session token (no scopes): 403 forbidden';

my @bad = map {
    $ngx->request('POST', '/v1/keys', json => {scopes => $_},
                  headers => {'X-API-Key' => $plain})->{status}
} 'transcribe', ['has space'], [('s') x 21], [''];
is_deeply \@bad, [422, 422, 422, 422],
    'scopes not an array of names, or too many: 422';

Test::Monetize::reconcile();

$ngx->stop;
$be->stop;
$idp->stop;
