# The gate takes session tokens: a good one passes and is charged
# ($monetize_auth "jwt", recorded under the nil "session" key); tokens made
# by python3-jwt with a wrong key, alg none, an expired exp or typ refresh
# are refused with the API's codes; a suspended account's token stops at
# the next call, through the cache's notifications.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Sessions;

plan tests => 12;

my $be = Test::Monetize::Backend->start(sub {
    return (200, {'Content-Type' => 'text/plain'}, "served\n");
});
my $port = $be->port;

my $ngx = Test::Monetize::Nginx->start(
    http_config => $Sessions::HTTP . "\nmonetize_signup_credits 10;\n"
                   . 'monetize_cache zone=keys:1m ttl=3600s;',
    api_limit => $Sessions::NO_LIMIT,
    config => <<"CONF");
    location /v1/ { monetize_api; }
    location /api/ {
        monetize_gate on;
        monetize_cost 2;
        proxy_set_header X-Auth \$monetize_auth;
        proxy_set_header X-User \$monetize_user_id;
        proxy_set_header X-Key "[\$monetize_key_id]";
        proxy_pass http://127.0.0.1:$port;
    }
CONF

my $user = Sessions::register($ngx, 'ada@example.com')->{user}{id};
my $access = Sessions::login($ngx, 'ada@example.com')->{json}{access_token};

my $res = Sessions::bearer($ngx, GET => '/api/one', $access);
is_deeply [$res->{status}, $res->{headers}{'x-credits-remaining'}], [200, 8],
    'a call with our access token: 200, charged 2 credits';
my ($req) = $be->requests;
is_deeply [@{$req->{headers}}{qw(x-auth x-user x-key)}], ['jwt', $user, '[]'],
    '$monetize_auth "jwt", $monetize_user_id the account, no key id';
is_deeply [Test::Monetize::psql(
    q{SELECT delta, kind, api_key_id FROM credit_ledger
       WHERE user_id = $1 AND kind = 'debit'}, $user)],
    [[-2, 'debit', '00000000-0000-0000-0000-000000000000']],
    'the debit is in the ledger under the nil "session" key';

my %good = (sub => $user, typ => 'access', iat => 'now', exp => 'now+300');
is Sessions::bearer($ngx, GET => '/api/two',
                    Sessions::encode(\%good))->{status},
    200, 'a token python3-jwt made with the secret passes';

my %cases = (
    'a wrong key' => [Sessions::encode(\%good,
                          secret => 'not-the-secret-0123456789abcdef-xyz'),
                      'invalid_token'],
    'alg none' => [Sessions::encode(\%good, alg => 'none'), 'invalid_token'],
    'an expired exp' => [Sessions::encode({%good, exp => 'now-5'}),
                         'token_expired'],
    'typ refresh' => [Sessions::encode({%good, typ => 'refresh'}),
                      'invalid_token'],
);

for my $name (sort keys %cases) {
    my ($token, $code) = @{$cases{$name}};
    $res = Sessions::bearer($ngx, GET => '/api/x', $token);
    is_deeply [$res->{status}, $res->{json}{error}{code},
               ($res->{headers}{'www-authenticate'} // '')
                   =~ /\ABearer error="invalid_token"/ ? 1 : 0],
        [401, $code, 1], "gate, $name: 401 $code, WWW-Authenticate";
}

is scalar(() = $be->requests), 2, 'only the two good calls reached upstream';

# the account suspended: the cached account is stale at once
Test::Monetize::psql('UPDATE users SET suspended_at = now() WHERE id = $1',
                     $user);
$res = Test::Monetize::wait_until(5, sub {
    my $r = Sessions::bearer($ngx, GET => '/api/three', $access);
    return $r->{status} == 403 ? $r : undef;
});
is_deeply [$res && $res->{json}{error}{code}], ['account_suspended'],
    'suspended: the token is refused, 403 account_suspended';
Test::Monetize::psql('UPDATE users SET suspended_at = NULL WHERE id = $1',
                     $user);
ok Test::Monetize::wait_until(5, sub {
    Sessions::bearer($ngx, GET => '/api/four', $access)->{status} == 200
}), '... and passes again when the suspension is lifted';

is_deeply [Test::Monetize::psql(
    'SELECT b.balance, (SELECT sum(delta) FROM credit_ledger l'
    . '                  WHERE l.user_id = b.user_id)'
    . '  FROM balances b WHERE user_id = $1', $user)],
    [[4, 4]], 'three calls charged, the balance is its ledger';

$ngx->stop;
$be->stop;
