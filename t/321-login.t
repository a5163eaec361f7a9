# POST /auth/login: a pair of tokens for the right password, the access
# token a JWT that an independent implementation (python3-jwt) reads with
# the right claims; one answer for a wrong password and an unknown address;
# a suspended account; ten failures in fifteen minutes and the address is
# refused with Retry-After; /auth/register is /register.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Sessions;
use Digest::SHA qw(hmac_sha256_hex);

plan tests => 26;

my $ngx = Test::Monetize::Nginx->start(
    http_config => $Sessions::HTTP . "\nmonetize_jwt_ttl access=10m;",
    api_limit => $Sessions::NO_LIMIT, config => $Sessions::API);

my $reg = $ngx->request('POST', '/v1/auth/register',
    json => {email => 'ada@example.com', password => 'analytical engine'});
is $reg->{status}, 201, '/auth/register is /register: 201';
my $user = $reg->{json}{user}{id};

my $res = Sessions::login($ngx, 'ADA@example.com', 'analytical engine');
is $res->{status}, 200, 'login (address in any case): 200';
my $b = $res->{json};
is $b->{token_type}, 'bearer', 'token_type bearer';
is $b->{expires_in}, 600, 'expires_in: monetize_jwt_ttl access=10m';
like $b->{refresh_token}, qr/\Art_[0-9A-Za-z]{32}\z/,
    'the refresh token: rt_ and 32 base62 characters';

my $jwt = Sessions::decode($b->{access_token});
ok $jwt, 'python3-jwt verifies the access token with the secret';
is $jwt->{header}{alg}, 'HS256', '... alg HS256';
is_deeply [@{$jwt->{claims}}{qw(sub typ)}], [$user, 'access'],
    '... sub is the user id, typ access';
my $c = $jwt->{claims};
ok abs($c->{iat} - time) < 30 && $c->{exp} - $c->{iat} == 600,
    '... iat is now, exp 10 minutes later';
like $c->{jti}, qr/\A[0-9a-f]{32}\z/, '... and a random jti';
ok !Sessions::decode($b->{access_token}, 'another-secret-0123456789abcdef-x'),
    '... and python3-jwt refuses it under another secret';

is_deeply [Test::Monetize::psql(
    'SELECT count(*), bool_and(token_hash = $2), bool_and(expires_at'
    . "  BETWEEN now() + interval '29 days' AND now() + interval '31 days')"
    . '  FROM refresh_tokens WHERE user_id = $1', $user,
    hmac_sha256_hex($b->{refresh_token}, $ENV{MONETIZE_KEY_SECRET}))],
    [[1, 't', 't']], 'only the keyed hash of the refresh token is stored';

my $wrong = Sessions::login($ngx, 'ada@example.com', 'difference engine');
my $unknown = Sessions::login($ngx, 'nobody@example.com', 'analytical engine');
is_deeply [$wrong->{status}, $wrong->{json}],
    [401, {error => {code => 'invalid_credentials',
                     message => 'the email or the password is wrong'}}],
    'a wrong password: 401 invalid_credentials';
is_deeply [$unknown->{status}, $unknown->{json}],
    [$wrong->{status}, $wrong->{json}],
    'an unknown address: the very same answer';

$res = $ngx->request('POST', '/v1/auth/login', json => {email => 'a@b.c'});
is_deeply [$res->{status}, $res->{json}{error}{code},
           $res->{json}{error}{fields}],
    [422, 'validation_failed', {password => 'is required'}],
    'no password: 422 naming the field';

# a password longer than bcrypt reads: wrong, even if its start is right
$res = Sessions::login($ngx, 'ada@example.com',
                       'analytical engine' . ('x' x 100));
is $res->{status}, 401, 'a password of more than 72 bytes is a wrong one';

# suspended: only who knows the password learns it
Test::Monetize::psql(
    q{INSERT INTO users (email, password_hash, suspended_at)
      SELECT 'sus@example.com', password_hash, now() FROM users
       WHERE id = $1}, $user);
$res = Sessions::login($ngx, 'sus@example.com', 'analytical engine');
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [403, 'account_suspended'], 'a suspended account: 403';
is Sessions::login($ngx, 'sus@example.com', 'nope nope')->{status}, 401,
    '... but 401 with a wrong password';

# ten failures in fifteen minutes: the address is refused, known or not
Sessions::register($ngx, 'bob@example.com');
my @st = map { Sessions::login($ngx, 'bob@example.com', "guess $_")->{status} }
         1 .. 10;
is_deeply \@st, [(401) x 10], 'ten wrong passwords: 401 each';
$res = Sessions::login($ngx, 'bob@example.com', 'correct horse');
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [429, 'rate_limited'], 'the eleventh, even right: 429 rate_limited';
ok $res->{headers}{'retry-after'} > 850
   && $res->{headers}{'retry-after'} <= 900,
    '... with Retry-After to the end of the 15 minutes';
Sessions::login($ngx, 'ghost@example.com', "guess $_") for 1 .. 10;
is Sessions::login($ngx, 'ghost@example.com', 'x')->{status}, 429,
    'an unknown address is limited the same (no enumeration)';

# the oldest failures age out
Test::Monetize::psql(
    q{UPDATE login_failures SET at = now() - interval '16 minutes'
       WHERE email = 'bob@example.com'});
is Sessions::login($ngx, 'bob@example.com', 'correct horse')->{status}, 200,
    'failures older than 15 minutes count no more: 200';
is_deeply [Test::Monetize::psql(
    q{SELECT count(*) FROM login_failures WHERE email = 'bob@example.com'})],
    [[0]], '... and a login clears them';

# old failures of addresses never tried again go, ten at each failure
Test::Monetize::psql(
    q{UPDATE login_failures SET at = now() - interval '16 minutes'});
my ($old) = map { $_->[0] } Test::Monetize::psql(
    'SELECT count(*) FROM login_failures');
Sessions::login($ngx, 'someone@example.com', 'x');
is_deeply [Test::Monetize::psql(
    q{SELECT count(*) FILTER (WHERE at < now() - interval '15 minutes'),
             count(*) FILTER (WHERE email = 'someone@example.com')
        FROM login_failures})],
    [[$old - 10, 1]],
    "a failure clears ten old ones of other addresses (of $old)";

$ngx->stop;

# the address limit of /register holds for /auth/login
$ngx = Test::Monetize::Nginx->start(
    http_config => $Sessions::HTTP,
    api_limit => 'monetize_api_limit 10r/m burst=2;',
    config => $Sessions::API);
is_deeply [map { Sessions::login($ngx, 'ada@example.com', "guess $_")
                     ->{json}{error}{code} } 1 .. 4],
    [('invalid_credentials') x 2, ('rate_limited') x 2],
    'monetize_api_limit: logins from one address past it are 429';
$ngx->stop;
