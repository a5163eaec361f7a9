# POST /auth/reset-password raced with itself: two resets with one token,
# held on the token's row by a psql session, set the password once (one
# 200, one 400 invalid_token). With PostgreSQL down, both endpoints answer
# 503 backend_unavailable, never a 500, and no mail is lost to a 202 that
# queued nothing: the client is told to try again.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Sessions;

my $smtp = Test::Monetize::Smtp->start;
my $port = $smtp->port;

my $ngx = Test::Monetize::Nginx->start(
    http_config => "$Sessions::HTTP\n"
        . "monetize_smtp smtp://127.0.0.1:$port from=noreply\@example.com"
        . " timeout=5s;\n"
        . "monetize_public_url https://api.example.com;",
    api_limit => $Sessions::NO_LIMIT,
    config => $Sessions::API);

my $user = Sessions::register($ngx, 'ada@example.com')->{user}{id};
is $ngx->request('POST', '/v1/auth/forgot-password',
                 json => {email => 'ada@example.com'})->{status}, 202,
    'forgot-password: 202';
my @mails = $smtp->wait_mails(2, 15);
my ($token) = ($mails[1] // '') =~ /#reset\?token=([A-Za-z0-9_-]{43})\r$/m;
ok $token, 'the reset mail and its token';
$token //= 'x' x 43;

my $s = Test::Monetize::psql_session();
$s->query('BEGIN');
$s->query(q{SELECT 1 FROM email_tokens WHERE purpose = 'reset' FOR UPDATE});
my @h = map {
    $ngx->start_request('POST', '/v1/auth/reset-password',
                        json => {token => $token,
                                 password => "racing password $_"})
} 1 .. 2;
ok Test::Monetize::wait_until(10, sub {
    my ($n) = map { $_->[0] } Test::Monetize::psql(
        q{SELECT count(*) FROM pg_stat_activity
           WHERE wait_event_type = 'Lock'
             AND query LIKE '%monetize_reset_password%'});
    $n == 2
}), 'both resets checked the token, hashed, and wait on its row';
$s->query('COMMIT');
$s->close;
my @res = map { $ngx->finish_request($_) } @h;
is_deeply [sort map { $_->{status} } @res], [200, 400],
    'released: one sets the password, the other is refused';
my ($winner) = grep { $res[$_ - 1]{status} == 200 } 1 .. 2;
is Sessions::login($ngx, 'ada@example.com',
                   "racing password " . ($winner // 0))->{status}, 200,
    '... and the password is the winner\'s';
is_deeply [Test::Monetize::psql(
    q{SELECT count(*) FROM audit_log WHERE action = 'password.reset'})],
    [[1]], '... one reset in the audit log';

Test::Monetize::pg_stop();
my $res = $ngx->request('POST', '/v1/auth/forgot-password',
                        json => {email => 'ada@example.com'});
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [503, 'backend_unavailable'], 'PostgreSQL down: forgot-password 503';
$res = $ngx->request('POST', '/v1/auth/reset-password',
                     json => {token => $token, password => 'another one'});
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [503, 'backend_unavailable'], '... reset-password 503';
Test::Monetize::pg_start();

$ngx->stop;

done_testing;
