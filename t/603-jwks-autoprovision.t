# monetize_jwt_autoprovision off: a provider's user with no account is
# refused (401 invalid_token) and no account is made; an identity linked
# to an account (identities, sql/020) passes as that account. On: a
# verified address already taken by another account is not joined to it.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Sessions;
use Idp;

plan tests => 7;

my $idp = Idp->start;
$idp->key('k1', 'ES256');
$idp->publish('k1');

my $be = Test::Monetize::Backend->start(sub { (200, {}, "served\n") });
my $port = $be->port;

my %conf = (
    http_config => $Sessions::HTTP . "\nmonetize_signup_credits 5;\n"
                   . $idp->http_config,
    api_limit => $Sessions::NO_LIMIT,
    config => <<"CONF");
    location /v1/ { monetize_api; }
    location /api/ {
        monetize_gate on;
        proxy_set_header X-User \$monetize_user_id;
        proxy_pass http://127.0.0.1:$port;
    }
CONF
my $ngx = Test::Monetize::Nginx->start(%conf);

my $res = Sessions::bearer($ngx, GET => '/api/x',
                           $idp->token('k1', 'ES256', {sub => 'stranger'}));
is_deeply [$res->{status}, $res->{json}{error}{code}], [401, 'invalid_token'],
    'off: an unknown user of the provider is refused in the gate';
$res = Sessions::bearer($ngx, GET => '/v1/me',
                        $idp->token('k1', 'ES256', {sub => 'stranger'}));
is_deeply [$res->{status}, $res->{json}{error}{code}], [401, 'invalid_token'],
    '... and in the API';
is_deeply [Test::Monetize::psql(
    "SELECT count(*) FROM users WHERE email LIKE '%identities.invalid'")],
    [[0]], '... and no account was made';

my ($user) = Test::Monetize::account(email => 'linked@example.com',
                                     credits => 3);
Test::Monetize::psql('INSERT INTO identities (issuer, subject, user_id)'
                     . ' VALUES ($1, $2, $3)', $Idp::ISSUER, 'linked', $user);
$res = Sessions::bearer($ngx, GET => '/api/y',
                        $idp->token('k1', 'ES256', {sub => 'linked'}));
my ($req) = grep { $_->{path} eq '/api/y' } $be->requests;
is_deeply [$res->{status}, $res->{headers}{'x-credits-remaining'},
           $req && $req->{headers}{'x-user'}], [200, 2, $user],
    'an identity linked to an account passes as that account';

# on: an address taken by another account stays that account's
$ngx->reload(http_config => $conf{http_config}
                            . "\nmonetize_jwt_autoprovision on;");
$res = Sessions::bearer($ngx, GET => '/api/z',
    $idp->token('k1', 'ES256', {sub => 'impostor',
                                email => 'linked@example.com',
                                email_verified => JSON::PP::true}));
is $res->{status}, 200, 'on: a new user of the provider passes';
is_deeply [Test::Monetize::psql(
    q{SELECT u.id <> $1, u.email LIKE '%@identities.invalid',
             u.email_verified
        FROM identities i JOIN users u ON u.id = i.user_id
       WHERE i.subject = 'impostor'}, $user)], [['t', 't', 'f']],
    '... with an account of its own: the address of another account is '
    . 'not joined';

Test::Monetize::reconcile();

$ngx->stop;
$be->stop;
$idp->stop;
