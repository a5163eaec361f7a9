# Forgotten passwords: POST /auth/forgot-password answers 202 whoever asks
# and queues, for an account, a mail with a one-use token (its keyed hash
# in email_tokens, purpose 'reset', valid one hour; one mail a minute per
# address) whose link lands on the portal; POST /auth/reset-password sets
# the password (bcrypt), spends the token and revokes every session of the
# account. With monetize_portal_url, the verification mail's link lands on
# the portal too.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Sessions;
use Digest::SHA qw(hmac_sha256_hex);

my $smtp = Test::Monetize::Smtp->start;
my $port = $smtp->port;

my $ngx = Test::Monetize::Nginx->start(
    http_config => "$Sessions::HTTP\n"
        . "monetize_smtp smtp://127.0.0.1:$port from=noreply\@example.com"
        . " timeout=5s;\n"
        . "monetize_public_url https://api.example.com/;",
    api_limit => $Sessions::NO_LIMIT,
    config => $Sessions::API);
my $mark = $ngx->error_log_mark;

sub forgot {
    my ($email) = @_;
    return $ngx->request('POST', '/v1/auth/forgot-password',
                         json => {email => $email});
}

sub reset_password {
    my ($token, $password) = @_;
    return $ngx->request('POST', '/v1/auth/reset-password',
                         json => {token => $token, password => $password});
}

my $user = Sessions::register($ngx, 'ada@example.com')->{user}{id};
my @mails = $smtp->wait_mails(1, 15);
is scalar(@mails), 1, 'the verification mail of the registration';

my $session = Sessions::login($ngx, 'ada@example.com')->{json};
ok $session->{refresh_token}, 'a session before the reset';

# 202 for everyone, a mail only for an account
for my $who ('nobody@example.com', 'Ada@Example.com') {
    my $res = forgot($who);
    is $res->{status}, 202, "forgot-password for $who: 202";
    ok $res->{json}{status}, '... with a status that says nothing more';
}
my $res = forgot('ada@example.com');
is $res->{status}, 202, 'again at once: 202';

@mails = $smtp->wait_mails(2, 15);
is scalar(@mails), 2, 'one reset mail arrives';
is_deeply [Test::Monetize::psql(
    q{SELECT count(*) FROM mail_outbox WHERE kind = 'reset'})], [[1]],
    '... and only one queued: a mail a minute per address';
my $mail = $mails[1] // '';
like $mail, qr/^X-Envelope-To: ada\@example\.com\r$/m, '... to ada';
like $mail, qr/^Subject: Reset your password\r$/m, '... its subject';
my ($link, $token) = $mail =~
    m{^(https://api\.example\.com/portal/\#reset\?token=([A-Za-z0-9_-]{43}))\r$}m;
ok $link, 'the link lands on the portal: <public_url>/portal/#reset?token='
    or diag $mail;
$token //= 'x' x 43;
like $mail, qr/<a href="\Q$link\E">/, '... in the HTML part too';

my @rows = Test::Monetize::psql(
    'SELECT token_hash, purpose, used_at IS NULL,'
    . ' expires_at BETWEEN now() + interval \'59 minutes\''
    . '                AND now() + interval \'60 minutes\''
    . '  FROM email_tokens WHERE user_id = $1 AND purpose = \'reset\'',
    $user);
is_deeply \@rows, [[hmac_sha256_hex($token, $ENV{MONETIZE_KEY_SECRET}),
                    'reset', 't', 't']],
    'email_tokens: the keyed hash, purpose reset, one hour, unused';
is_deeply [Test::Monetize::psql(
    q{SELECT count(*) FROM mail_outbox WHERE to_addr = 'nobody@example.com'})],
    [[0]], 'no mail for an address without an account';

# mistakes: a weak password (the token is not spent), bad tokens
$res = reset_password($token, 'short');
is_deeply [$res->{status}, $res->{json}{error}{code},
           $res->{json}{error}{fields}{password}],
    [422, 'validation_failed', 'must have at least 8 characters'],
    'a weak password: 422 like /register';
$res = reset_password($token, 'x' x 73);
is $res->{status}, 422, 'a password longer than bcrypt reads: 422';
for my $bad ('', 'short', ('A' x 42) . '!', 'A' x 43) {
    $res = reset_password($bad, 'new password 1');
    is "$res->{status} " . ($res->{json}{error}{code} // ''),
        '400 invalid_token', "token \"$bad\": 400 invalid_token";
}
$res = $ngx->request('POST', '/v1/auth/reset-password',
                     json => {password => 'new password 1'});
is "$res->{status} " . ($res->{json}{error}{code} // ''),
    '400 invalid_token', 'no token: 400 invalid_token';

# a verification token is not a reset token
my ($vtoken) = ($mails[0] // '') =~ /token=([A-Za-z0-9_-]{43})\r$/m;
$res = reset_password($vtoken // '', 'new password 1');
is "$res->{status} " . ($res->{json}{error}{code} // ''),
    '400 invalid_token', 'the verification token: 400 invalid_token';

# the reset
$res = reset_password($token, 'new password 1');
is $res->{status}, 200, 'reset-password: 200' or diag $res->{body};
is_deeply $res->{json}, {password_reset => JSON::PP::true()}, '... its body';

my ($hash) = Test::Monetize::psql(
    'SELECT password_hash, email_verified FROM users WHERE id = $1', $user);
like $hash->[0], qr/^\$2b\$04\$/, 'the new password is a bcrypt hash';
is $hash->[1], 't', '... and the address, which the mail reached, verified';
is Sessions::login($ngx, 'ada@example.com')->{status}, 401,
    'the old password no longer logs in';
my $new = Sessions::login($ngx, 'ada@example.com', 'new password 1');
is $new->{status}, 200, 'the new one does';

$res = $ngx->request('POST', '/v1/auth/refresh',
                     json => {refresh_token => $session->{refresh_token}});
is "$res->{status} $res->{json}{error}{code}", '401 invalid_token',
    'the refresh token of before the reset is refused';

$res = reset_password($token, 'new password 2');
is "$res->{status} " . ($res->{json}{error}{code} // ''),
    '400 invalid_token', 'the token again: 400 invalid_token';
is Sessions::login($ngx, 'ada@example.com', 'new password 1')->{status}, 200,
    '... and the password is still the one set';

my ($audit) = Test::Monetize::psql(
    q{SELECT count(*) FROM audit_log
       WHERE action = 'password.reset' AND target_user_id = $1}, $user);
is $audit->[0], 1, 'the reset is in the audit log';

# expiry, and a minute later a new mail
Test::Monetize::psql(
    q{UPDATE mail_outbox SET created_at = now() - interval '61 seconds'});
is forgot('ada@example.com')->{status}, 202, 'a minute later: 202';
@mails = $smtp->wait_mails(3, 15);
is scalar(@mails), 3, '... and a new mail';
my ($token2) = ($mails[2] // '') =~ /token=([A-Za-z0-9_-]{43})\r$/m;
ok $token2 && $token2 ne $token, '... with a new token';
Test::Monetize::psql(
    q{UPDATE email_tokens SET expires_at = now() - interval '1 second'
       WHERE user_id = $1 AND purpose = 'reset' AND used_at IS NULL}, $user);
$res = reset_password($token2 // '', 'new password 3');
is "$res->{status} " . ($res->{json}{error}{code} // ''),
    '400 invalid_token', 'an expired token: 400 invalid_token';

$res = forgot(17);
is $res->{status}, 422, 'an email that is not a string: 422';

my $log = $ngx->error_log_since($mark);
unlike $log, qr/\Q$token\E/, 'the token is never in the log';
unlike $log, qr/new password/, '... nor the password';
unlike $log, qr/\[(alert|crit|emerg)\]/, 'no alert in the log';
$ngx->stop;

# monetize_portal_url: the verification mail's link lands on the portal
$ngx = Test::Monetize::Nginx->start(
    http_config => "$Sessions::HTTP\n"
        . "monetize_smtp smtp://127.0.0.1:$port from=noreply\@example.com"
        . " timeout=5s;\n"
        . "monetize_public_url https://api.example.com/;\n"
        . "monetize_portal_url https://app.example.com/portal/;",
    api_limit => $Sessions::NO_LIMIT,
    config => $Sessions::API);
Sessions::register($ngx, 'bob@example.com');
@mails = $smtp->wait_mails(4, 15);
my ($vlink, $vtok) = ($mails[3] // '') =~
    m{^(https://app\.example\.com/portal/\#verify\?token=([A-Za-z0-9_-]{43}))\r$}m;
ok $vlink, 'with monetize_portal_url the verification link is the portal\'s'
    or diag $mails[3];
$res = $ngx->request('POST', '/v1/auth/verify-email',
                     json => {token => $vtok // ''});
is $res->{status}, 200, '... and its token verifies by POST';
is forgot('bob@example.com')->{status}, 202, 'forgot-password for bob';
@mails = $smtp->wait_mails(5, 15);
like $mails[4] // '',
    qr{^https://app\.example\.com/portal/\#reset\?token=[A-Za-z0-9_-]{43}\r$}m,
    '... its reset link is the portal\'s too';
$ngx->stop;

# the directive's mistakes
for my $case (['monetize_portal_url ftp://example.com/;',
               qr/monetize_portal_url: invalid URL "ftp:\/\/example.com\/"/],
              ['monetize_portal_url "http://example.com/<x>";',
               qr/monetize_portal_url: invalid URL/])
{
    my ($rc, $out) = Test::Monetize::nginx_t(
        http_config => $case->[0], config => $Sessions::API);
    isnt $rc, 0, "refused: $case->[0]";
    like $out, qr/\[emerg\].*$case->[1]/, '... with an EMERG naming it';
}

done_testing;
