# monetize_session_cookie: /auth/login and /auth/refresh also set the
# refresh token as a cookie (HttpOnly, Secure unless "insecure",
# SameSite=Strict, Path=<location>/auth); /auth/refresh and /auth/logout
# take it from the cookie when the body has none, only with the CSRF header
# and an Origin, if any, of the API's own; a stolen cookie presented again
# revokes its family.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Sessions;
use Digest::SHA qw(hmac_sha256_hex);

my $ngx = Test::Monetize::Nginx->start(
    http_config => $Sessions::HTTP, api_limit => $Sessions::NO_LIMIT,
    config => 'location /v1/ { monetize_api;'
              . ' monetize_session_cookie on insecure; }'
              . ' location /secure/v1/ { monetize_api;'
              . ' monetize_session_cookie on; }'
              . ' location /plain/ { monetize_api; }');

my $user = Sessions::register($ngx, 'ada@example.com')->{user}{id};

sub cookie_of {
    my ($res) = @_;
    my @c = map { $_->[1] } grep { lc $_->[0] eq 'set-cookie' }
            @{$res->{header_list} // []};
    return @c;
}

sub token_of {
    my ($cookie) = @_;
    return ($cookie // '') =~ /\Amonetize_refresh=(rt_[A-Za-z0-9]+);/ ? $1
                                                                    : undef;
}

sub by_cookie {
    my ($path, $token, %h) = @_;
    return $ngx->request('POST', $path,
        headers => [Cookie => "theme=dark; monetize_refresh=$token",
                    map { ($_ => $h{$_}) } sort keys %h]);
}

sub live {
    my ($token) = @_;
    my ($r) = Test::Monetize::psql(
        'SELECT spent_at IS NULL AND revoked_at IS NULL FROM refresh_tokens'
        . ' WHERE token_hash = $1',
        hmac_sha256_hex($token, $ENV{MONETIZE_KEY_SECRET}));
    return $r && $r->[0] eq 't';
}

# off by default
my $res = $ngx->request('POST', '/plain/auth/login',
    json => {email => 'ada@example.com', password => 'correct horse'});
is $res->{status}, 200, 'a login where the directive is off: 200';
is_deeply [cookie_of($res)], [], '... and no cookie';

# the login's cookie
$res = Sessions::login($ngx, 'ada@example.com');
is $res->{status}, 200, 'a login: 200';
my @c = cookie_of($res);
is scalar(@c), 1, '... with one Set-Cookie';
my $token = token_of($c[0]);
is $token, $res->{json}{refresh_token},
    '... the refresh token, also in the body';
my %attr = map { lc($_) => 1 } map { s/=.*//r } split /;\s*/, $c[0] // '';
ok $attr{httponly}, '... HttpOnly';
ok !$attr{secure}, '... not Secure ("insecure", for plain http)';
like $c[0] // '', qr/;\s*SameSite=Strict(;|\z)/, '... SameSite=Strict';
like $c[0] // '', qr/;\s*Path=\/v1\/auth(;|\z)/, '... Path=/v1/auth';
like $c[0] // '', qr/;\s*Max-Age=\d+(;|\z)/, '... a Max-Age';

$res = $ngx->request('POST', '/secure/v1/auth/login',
    json => {email => 'ada@example.com', password => 'correct horse'});
@c = cookie_of($res);
like $c[0] // '', qr/;\s*Secure(;|\z)/, 'without "insecure": Secure';
like $c[0] // '', qr/;\s*Path=\/secure\/v1\/auth(;|\z)/,
    '... and the path of its location';

# CSRF: the cookie alone is refused, and nothing is spent
$res = by_cookie('/v1/auth/refresh', $token);
is_deeply [$res->{status}, $res->{json}{error}{code}], [403, 'csrf_failed'],
    'refresh by cookie without X-Monetize-CSRF: 403 csrf_failed';
$res = by_cookie('/v1/auth/refresh', $token, 'X-Monetize-CSRF' => '1',
                 Origin => 'https://evil.example');
is_deeply [$res->{status}, $res->{json}{error}{code}], [403, 'csrf_failed'],
    '... with the header but a foreign Origin: 403 csrf_failed';
$res = by_cookie('/v1/auth/refresh', $token, 'X-Monetize-CSRF' => '1',
                 Origin => 'null');
is $res->{status}, 403, '... an opaque Origin ("null"): 403';
ok live($token), '... and the token is not spent';

# a refresh by cookie
$res = by_cookie('/v1/auth/refresh', $token, 'X-Monetize-CSRF' => '1',
                 Origin => 'http://localhost');
is $res->{status}, 200, 'refresh by cookie, header and own Origin: 200'
    or diag $res->{body};
my $next = token_of((cookie_of($res))[0]);
ok $next && $next ne $token, '... a new token in a new cookie';
is $next, $res->{json}{refresh_token}, '... the same as the body\'s';
ok $res->{json}{access_token}, '... and an access token';
ok !live($token), '... the old one is spent';

$res = by_cookie('/v1/auth/refresh', $next, 'X-Monetize-CSRF' => '1');
is $res->{status}, 200, 'without an Origin (not every browser sends it): 200';
my $third = token_of((cookie_of($res))[0]);

# the stolen cookie, presented again
$res = by_cookie('/v1/auth/refresh', $token, 'X-Monetize-CSRF' => '1');
is_deeply [$res->{status}, $res->{json}{error}{code}], [401, 'invalid_token'],
    'a spent cookie presented again: 401 invalid_token';
like join(' ', cookie_of($res)), qr/monetize_refresh=;.*Max-Age=0/,
    '... and the cookie is cleared';
$res = by_cookie('/v1/auth/refresh', $third, 'X-Monetize-CSRF' => '1');
is $res->{status}, 401, '... the family is revoked: its newest is refused';
is_deeply [Test::Monetize::psql(
    'SELECT count(*) FILTER (WHERE revoked_at IS NULL) FROM refresh_tokens'
    . ' WHERE family = (SELECT family FROM refresh_tokens'
    . '                  WHERE token_hash = $1)',
    hmac_sha256_hex($token, $ENV{MONETIZE_KEY_SECRET}))], [[0]],
    '... every token of it revoked';

# the body wins over the cookie, and needs no header
my $a = token_of((cookie_of(Sessions::login($ngx, 'ada@example.com')))[0]);
my $b = token_of((cookie_of(Sessions::login($ngx, 'ada@example.com')))[0]);
$res = $ngx->request('POST', '/v1/auth/refresh',
    headers => [Cookie => "monetize_refresh=$a"],
    json => {refresh_token => $b});
is $res->{status}, 200, 'a token in the body: 200 without the header';
ok live($a) && !live($b), '... the body\'s was spent, not the cookie\'s';

# logout by cookie
$res = by_cookie('/v1/auth/logout', $a);
is $res->{status}, 403, 'logout by cookie without the header: 403';
$res = by_cookie('/v1/auth/logout', $a, 'X-Monetize-CSRF' => '1');
is $res->{status}, 204, 'logout by cookie with the header: 204';
like join(' ', cookie_of($res)), qr/monetize_refresh=;.*Max-Age=0/,
    '... the cookie is cleared';
ok !live($a), '... and its family revoked';

# neither body nor cookie: as before
$res = $ngx->request('POST', '/v1/auth/refresh', json => {},
                     headers => ['X-Monetize-CSRF' => '1']);
is_deeply [$res->{status}, $res->{json}{error}{fields}],
    [422, {refresh_token => 'is required'}], 'no token anywhere: 422';

# where the directive is off, the cookie is not read
$res = by_cookie('/plain/auth/refresh', $b, 'X-Monetize-CSRF' => '1');
is $res->{status}, 422, 'a cookie where the directive is off: not read (422)';

$ngx->stop;

# with monetize_public_url, the API's own origin is its; the origins of
# monetize_cors_origins are trusted too
$ngx = Test::Monetize::Nginx->start(
    http_config => "$Sessions::HTTP\n"
        . 'monetize_public_url https://api.example.com:8443/base/;',
    api_limit => $Sessions::NO_LIMIT,
    config => 'location /v1/ { monetize_api;'
              . ' monetize_session_cookie on insecure;'
              . ' monetize_cors_origins https://app.example.com; }');
my @t = map { token_of((cookie_of(Sessions::login($ngx,
                                                  'ada@example.com')))[0]) }
        1 .. 4;
my @st = map {
    by_cookie('/v1/auth/refresh', $t[$_->[0]], 'X-Monetize-CSRF' => '1',
              Origin => $_->[1])->{status}
} [0, 'https://api.example.com:8443'], [1, 'https://APP.example.com'],
  [2, 'http://localhost'], [3, 'https://api.example.com'];
is_deeply \@st, [200, 200, 403, 403],
    'origins: monetize_public_url\'s and a CORS one pass; Host\'s and'
    . ' another port do not';
$ngx->stop;

for my $case (['monetize_session_cookie maybe;',
               qr/monetize_session_cookie: invalid value "maybe"/],
              ['monetize_session_cookie on loose;',
               qr/monetize_session_cookie: invalid value "loose"/])
{
    my ($rc, $out) = Test::Monetize::nginx_t(
        http_config => $Sessions::HTTP,
        config => "location /v1/ { monetize_api; $case->[0] }");
    isnt $rc, 0, "refused: $case->[0]";
    like $out, qr/\[emerg\].*$case->[1]/, '... with an EMERG naming it';
}

done_testing;
