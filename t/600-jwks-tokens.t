# Tokens of an identity provider (monetize_jwks), made by an independent
# implementation (python3-jwt, python3-cryptography) and checked against
# the JWKS of a fake provider on loopback: RS256, ES256 and EdDSA pass, in
# the gate and in the API; each bad token is refused with its code, and
# the log says why.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Sessions;
use Idp;

plan tests => 24;

my $idp = Idp->start;
$idp->key('rsa-1', 'RS256');
$idp->key('ec-1', 'ES256');
$idp->key('ed-1', 'EdDSA');
$idp->key('enc-1', 'RS256');
$idp->key('rs512-1', 'RS256');
$idp->key('gone-1', 'RS256');
$idp->publish('rsa-1:RS256:sig', 'ec-1', 'ed-1:EdDSA', 'enc-1:RS256:enc',
              'rs512-1:RS512:sig');

my $be = Test::Monetize::Backend->start(sub {
    return (200, {'Content-Type' => 'text/plain'}, "served\n");
});
my $port = $be->port;

my $ngx = Test::Monetize::Nginx->start(
    http_config => $Sessions::HTTP . "\nmonetize_signup_credits 10;\n"
                   . "monetize_jwt_autoprovision on;\n"
                   . $idp->http_config,
    api_limit => $Sessions::NO_LIMIT,
    config => <<"CONF");
    location /v1/ { monetize_api; }
    location /api/ {
        monetize_gate on;
        proxy_set_header X-Auth \$monetize_auth;
        proxy_set_header X-User \$monetize_user_id;
        proxy_set_header X-Email \$monetize_jwt_claim_email;
        proxy_set_header X-Groups \$monetize_jwt_claim_groups;
        proxy_pass http://127.0.0.1:$port;
    }
CONF

my $rs = $idp->token('rsa-1', 'RS256', {sub => 'ada', email => 'Ada@Example.com',
                                        email_verified => JSON::PP::true,
                                        groups => ['a', 'b']});
my $res = Sessions::bearer($ngx, GET => '/api/one', $rs);
is_deeply [$res->{status}, $res->{headers}{'x-credits-remaining'}], [200, 9],
    'RS256: 200, a new account with its 10 signup credits, charged 1';

my ($req) = $be->requests;
my ($ada) = Test::Monetize::psql(
    q{SELECT u.id, u.email, u.email_verified FROM identities i
        JOIN users u ON u.id = i.user_id
       WHERE i.issuer = $1 AND i.subject = 'ada'}, $Idp::ISSUER);
is_deeply [@{$req->{headers}}{qw(x-auth x-user x-email x-groups)}],
    ['jwt', $ada->[0], 'Ada@Example.com', '["a","b"]'],
    '$monetize_auth "jwt", the account, $monetize_jwt_claim_NAME';
is_deeply [@$ada[1, 2]], ['ada@example.com', 't'],
    'the account has the verified address of the email claim';

is Sessions::bearer($ngx, GET => '/api/two', $rs)->{status}, 200,
    'the same token again: the same account';
is_deeply [Test::Monetize::psql('SELECT count(*) FROM identities')], [[1]],
    '... one identity';

$res = Sessions::bearer($ngx, GET => '/api/three',
                        $idp->token('ec-1', 'ES256', {sub => 'bob'}));
is $res->{status}, 200, 'ES256 (a key without alg nor use): 200';
$res = Sessions::bearer($ngx, GET => '/api/four',
                        $idp->token('ed-1', 'EdDSA', {sub => 'cy'}));
is $res->{status}, 200, 'EdDSA: 200';
is_deeply [Test::Monetize::psql(
    q{SELECT i.subject, u.email_verified, u.email LIKE '%@identities.invalid'
        FROM identities i JOIN users u ON u.id = i.user_id
       WHERE i.subject <> 'ada' ORDER BY 1})],
    [['bob', 'f', 't'], ['cy', 'f', 't']],
    'without a verified email claim: a placeholder address, not verified';

# the API takes them where it takes keys
$res = Sessions::bearer($ngx, GET => '/v1/me', $rs);
is_deeply [$res->{status}, $res->{json}{user}{id} // $res->{json}{id}],
    [200, $ada->[0]], 'GET /v1/me with the RS256 token: the account';

my ($body, $sig) = $rs =~ /\A[^.]+\.([^.]+)\.(.+)\z/;
my $other = $idp->token('rsa-1', 'RS256', {sub => 'mallory'});
my ($hdr2, $body2) = $other =~ /\A([^.]+)\.([^.]+)\./;

my %cases = (
    'a wrong issuer' => [$idp->token('rsa-1', 'RS256',
                             {iss => 'https://other.example.test/'}),
                         'invalid_token', undef],
    'a wrong audience' => [$idp->token('rsa-1', 'RS256',
                               {aud => ['someone-else', 'x']}),
                           'invalid_token', 'not for our audience'],
    'expired' => [$idp->token('rsa-1', 'RS256', {exp => 'now-120'}),
                  'token_expired', 'expired'],
    'not yet valid' => [$idp->token('rsa-1', 'RS256', {nbf => 'now+600'}),
                        'invalid_token', 'not valid yet'],
    'issued in the future' => [$idp->token('rsa-1', 'RS256',
                                           {iat => 'now+600'}),
                               'invalid_token', 'issued in the future'],
    'alg none' => [$idp->token('rsa-1', 'none', {}, {kid => 'rsa-1'}),
                   'invalid_token', 'a bad header'],
    'HS256 keyed with the RSA public key' =>
        [$idp->token('rsa-1', 'HS256-pub', {}), 'invalid_token',
         'a bad header'],
    'a kid not in the set' => [$idp->token('gone-1', 'RS256', {}),
                               'invalid_token', 'its kid is not in'],
    'a tampered payload' => ["$hdr2.$body2.$sig", 'invalid_token',
                             'a bad signature'],
    'a key for encryption (use enc)' => [$idp->token('enc-1', 'RS256', {}),
                                         'invalid_token', 'its key\'s "use"'],
    'an alg its key does not allow' => [$idp->token('rs512-1', 'RS256', {}),
                                        'invalid_token',
                                        'its alg is not the one'],
);

for my $name (sort keys %cases) {
    my ($token, $code, $why) = @{$cases{$name}};
    my $mark = $ngx->error_log_mark;
    $res = Sessions::bearer($ngx, GET => '/api/x', $token);
    my $log = $ngx->error_log_since($mark);
    is_deeply [$res->{status}, $res->{json}{error}{code},
               !defined $why || index($log, "refused: $why") >= 0 ? 1 : 0],
        [401, $code, 1], "$name: 401 $code" . ($why ? ", logged" : '');
}

is scalar(() = $be->requests), 4, 'only the four good calls reached upstream';
is_deeply [Test::Monetize::psql('SELECT count(*) FROM identities')], [[3]],
    'no account was made for a refused token';

$res = Sessions::bearer($ngx, GET => '/v1/me',
                        $idp->token('rsa-1', 'RS256', {exp => 'now-120'}));
is_deeply [$res->{status}, $res->{json}{error}{code}], [401, 'token_expired'],
    'the API: an expired token, 401 token_expired';

Test::Monetize::reconcile();

$ngx->stop;
$be->stop;
$idp->stop;
