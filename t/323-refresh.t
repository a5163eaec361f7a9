# Refresh tokens: spent once for a new pair of the same family; a spent one
# presented again revokes the whole family (theft detection); logout
# revokes the family of the token given; logout-all every family of the
# account.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Sessions;
use Digest::SHA qw(hmac_sha256_hex);

plan tests => 20;

my $ngx = Test::Monetize::Nginx->start(
    http_config => $Sessions::HTTP, api_limit => $Sessions::NO_LIMIT,
    config => $Sessions::API);

my $user = Sessions::register($ngx, 'ada@example.com')->{user}{id};

sub refresh {
    my ($token) = @_;
    return $ngx->request('POST', '/v1/auth/refresh',
                         json => {refresh_token => $token});
}

my $first = Sessions::login($ngx, 'ada@example.com')->{json};
my $res = refresh($first->{refresh_token});
is $res->{status}, 200, 'a refresh token spent: 200';
my $second = $res->{json};
isnt $second->{refresh_token}, $first->{refresh_token}, '... a new one';
is_deeply Sessions::decode($second->{access_token})->{claims}{sub}, $user,
    '... and a new access token of the account';
is_deeply [Test::Monetize::psql(
    'SELECT count(DISTINCT family), count(*), count(spent_at)'
    . '  FROM refresh_tokens WHERE user_id = $1', $user)],
    [[1, 2, 1]], 'both in one family, the first spent';

$res = refresh($second->{refresh_token});
is $res->{status}, 200, 'the new one is spent in turn';
my $third = $res->{json};

# the first token again: someone kept a copy
$res = refresh($first->{refresh_token});
is_deeply [$res->{status}, $res->{json}{error}{code}], [401, 'invalid_token'],
    'a spent token presented again: 401 invalid_token';
is refresh($third->{refresh_token})->{status}, 401,
    '... and the family is revoked: its newest token is refused too';
is_deeply [Test::Monetize::psql(
    'SELECT count(*) FILTER (WHERE revoked_at IS NULL) FROM refresh_tokens'
    . ' WHERE user_id = $1', $user)], [[0]], '... every token of it revoked';

# a new login is a new family, untouched by the old one's revocation
my $a = Sessions::login($ngx, 'ada@example.com')->{json};
my $b = Sessions::login($ngx, 'ada@example.com')->{json};
is refresh($a->{refresh_token})->{status}, 200, 'a new login refreshes';

$res = $ngx->request('POST', '/v1/auth/logout',
                     json => {refresh_token => $b->{refresh_token}});
is_deeply [$res->{status}, $res->{body}], [204, ''], 'logout: 204, no body';
is refresh($b->{refresh_token})->{status}, 401, '... its family is revoked';

# a is still good: logout touched b's family only
my $a2 = Sessions::login($ngx, 'ada@example.com')->{json};
$res = Sessions::bearer($ngx, POST => '/v1/auth/logout-all',
                        $a2->{access_token});
is $res->{status}, 204, 'logout-all with an access token: 204';
is_deeply [map { refresh($_)->{status} } $a2->{refresh_token}],
    [401], '... every family of the account is revoked';
is_deeply [Test::Monetize::psql(
    'SELECT count(*) FILTER (WHERE revoked_at IS NULL) FROM refresh_tokens'
    . ' WHERE user_id = $1', $user)], [[0]], '... not one token left';

# mistakes
is_deeply [map { my $r = refresh($_); [$r->{status}, $r->{json}{error}{code}] }
           'rt_' . ('A' x 32), 'sk_live_' . ('A' x 32)],
    [[401, 'invalid_token'], [401, 'invalid_token']],
    'an unknown token, an API key: 401 invalid_token';
$res = $ngx->request('POST', '/v1/auth/refresh', json => {});
is_deeply [$res->{status}, $res->{json}{error}{fields}],
    [422, {refresh_token => 'is required'}], 'no token: 422';

# an expired one
my $old = Sessions::login($ngx, 'ada@example.com')->{json};
Test::Monetize::psql(q{UPDATE refresh_tokens SET expires_at = now()
                        WHERE spent_at IS NULL AND revoked_at IS NULL});
is refresh($old->{refresh_token})->{status}, 401, 'an expired token: 401';

# a race: the same token sent twice at once. A psql session holds the
# token's row, so both refreshes wait on it; released, one spends it and
# the other finds it spent: a reuse, the family revoked.
my $race = Sessions::login($ngx, 'ada@example.com')->{json};
my $s = Test::Monetize::psql_session();
$s->query('BEGIN');
$s->query('SELECT id FROM refresh_tokens WHERE revoked_at IS NULL'
          . ' AND spent_at IS NULL FOR UPDATE');
my @h = map {
    $ngx->start_request('POST', '/v1/auth/refresh',
                        json => {refresh_token => $race->{refresh_token}})
} 1 .. 2;
ok Test::Monetize::wait_until(5, sub {
    my ($n) = map { $_->[0] } Test::Monetize::psql(
        q{SELECT count(*) FROM pg_stat_activity
           WHERE wait_event_type = 'Lock'
             AND query LIKE '%monetize_session_refresh%'});
    $n == 2
}), 'both refreshes wait on the token\'s row';
$s->query('COMMIT');
my @st = sort map { $ngx->finish_request($_)->{status} } @h;
is_deeply \@st, [200, 401], 'released: one spends it, the other is a reuse';
is_deeply [Test::Monetize::psql(
    'SELECT count(*), count(revoked_at) FROM refresh_tokens'
    . ' WHERE family = (SELECT family FROM refresh_tokens'
    . '                  WHERE token_hash = $1)',
    hmac_sha256_hex($race->{refresh_token}, $ENV{MONETIZE_KEY_SECRET}))],
    [[2, 2]], '... and the family is revoked, the new token with it';
$s->close;

$ngx->stop;
