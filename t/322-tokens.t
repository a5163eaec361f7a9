# Session tokens on the API: where an API key is taken, a session token is
# too. Tokens made by an independent implementation (python3-jwt): a good
# one passes; a wrong key, alg none, another alg, an expired exp, a nbf to
# come, typ refresh, no typ, a sub that is not ours: 401 invalid_token or
# token_expired, with WWW-Authenticate. A suspended account's tokens stop
# at the next call.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Sessions;

plan tests => 18;

my $ngx = Test::Monetize::Nginx->start(
    http_config => $Sessions::HTTP . "\nmonetize_signup_credits 40;",
    api_limit => $Sessions::NO_LIMIT, config => $Sessions::API);

my $user = Sessions::register($ngx, 'ada@example.com')->{user}{id};
my $access = Sessions::login($ngx, 'ada@example.com')->{json}{access_token};

my $res = Sessions::bearer($ngx, GET => '/v1/credits', $access);
is_deeply [$res->{status}, $res->{json}{balance}], [200, 40],
    'GET /credits with our access token: 200, the balance';

$res = Sessions::bearer($ngx, GET => '/v1/keys', $access);
is_deeply [$res->{status}, scalar @{$res->{json}{keys} // []}], [200, 1],
    'GET /keys with it: the account\'s key';

my %good = (sub => $user, typ => 'access', iat => 'now', exp => 'now+300',
            jti => 'j1');
$res = Sessions::bearer($ngx, GET => '/v1/credits', Sessions::encode(\%good));
is $res->{status}, 200, 'a token python3-jwt made with the secret: 200';

my %cases = (
    'a wrong key' => [Sessions::encode(\%good,
                          secret => 'not-the-secret-0123456789abcdef-xyz'),
                      'invalid_token'],
    'alg none' => [Sessions::encode(\%good, alg => 'none'), 'invalid_token'],
    'alg HS512 with the right key' =>
        [Sessions::encode(\%good, alg => 'HS512'), 'invalid_token'],
    'an expired exp' => [Sessions::encode({%good, exp => 'now-5'}),
                         'token_expired'],
    'a nbf to come' => [Sessions::encode({%good, nbf => 'now+120'}),
                        'invalid_token'],
    'typ refresh' => [Sessions::encode({%good, typ => 'refresh'}),
                      'invalid_token'],
    'no typ' => [Sessions::encode({map { $_ => $good{$_} }
                                   grep { $_ ne 'typ' } keys %good}),
                 'invalid_token'],
    'no exp' => [Sessions::encode({map { $_ => $good{$_} }
                                   grep { $_ ne 'exp' } keys %good}),
                 'invalid_token'],
    'a sub of no account' =>
        [Sessions::encode({%good,
                           sub => '00000000-0000-4000-8000-000000000000'}),
         'invalid_token'],
);

for my $name (sort keys %cases) {
    my ($token, $code) = @{$cases{$name}};
    $res = Sessions::bearer($ngx, GET => '/v1/credits', $token);
    is_deeply [$res->{status}, $res->{json}{error}{code},
               ($res->{headers}{"www-authenticate"} // "")
                   =~ /\ABearer error="invalid_token"/ ? 1 : 0],
        [401, $code, 1], "$name: 401 $code, WWW-Authenticate";
}

# a token whose signature was made for other claims
my ($h, $p, $s) = split /\./, $access;
my ($h2, $p2) = split /\./, Sessions::encode({%good, exp => 'now+99999'});
$res = Sessions::bearer($ngx, GET => '/v1/credits', "$h.$p2.$s");
is $res->{json}{error}{code}, 'invalid_token',
    'claims changed under a good signature: invalid_token';

# the account suspended: its tokens stop at the next call
Test::Monetize::psql('UPDATE users SET suspended_at = now() WHERE id = $1',
                     $user);
$res = Sessions::bearer($ngx, GET => '/v1/credits', $access);
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [403, 'account_suspended'], 'suspended: the token stops at once, 403';
Test::Monetize::psql('UPDATE users SET suspended_at = NULL WHERE id = $1',
                     $user);
is Sessions::bearer($ngx, GET => '/v1/credits', $access)->{status}, 200,
    '... and works again when the suspension is lifted';

# a charge through the API with a token: recorded under the "session" key
$res = Sessions::bearer($ngx, POST => '/v1/use_credit', $access,
                        json => {amount => 3});
is_deeply [$res->{status}, $res->{json}{balance}], [200, 37],
    'POST /use_credit with a token: 200, charged';
is_deeply [Test::Monetize::psql(
    q{SELECT l.api_key_id, u.api_key_id, u.calls, u.credits
        FROM credit_ledger l JOIN usage u USING (user_id)
       WHERE l.kind = 'use_credit' AND u.location = 'use_credit'})],
    [[('00000000-0000-0000-0000-000000000000') x 2, 1, 3]],
    '... in the ledger and the usage under the nil "session" key';

# logout-all needs a caller: a token or a key
is Sessions::bearer($ngx, POST => '/v1/auth/logout-all',
                    Sessions::encode({%good, typ => 'refresh'}))->{status},
    401, 'POST /auth/logout-all with a bad token: 401';

$ngx->stop;
