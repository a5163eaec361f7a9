# Email verification over SMTP through the outbox: registration commits the
# mail with the account; a worker sends it to a real SMTP server on loopback
# (aiosmtpd) with a text and an HTML part; the link in it verifies the
# address once; only the token's keyed hash is stored, and a sent mail's
# bodies are dropped.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Digest::SHA qw(hmac_sha256_hex);

my $smtp = Test::Monetize::Smtp->start;
my $port = $smtp->port;

my $ngx = Test::Monetize::Nginx->start(
    http_config => "monetize_bcrypt_cost 4;\n"
        . "monetize_smtp smtp://127.0.0.1:$port from=noreply\@example.com"
        . " timeout=5s;\n"
        . "monetize_public_url https://api.example.com/;",
    api_limit => 'monetize_api_limit off;',
    config => 'location /v1/ { monetize_api; }');
my $mark = $ngx->error_log_mark;

my $res = $ngx->request('POST', '/v1/register',
    json => {email => 'Ada@Example.com', password => 'correct horse'});
is $res->{status}, 201, 'register: 201';
is $res->{json}{user}{email_verified}, JSON::PP::false(), '... not verified';
my $user = $res->{json}{user}{id};

my @mails = $smtp->wait_mails(1, 15);
is scalar(@mails), 1, 'one mail arrives';
my $mail = $mails[0] // '';

like $mail, qr/^X-Envelope-From: noreply\@example\.com\r$/m,
    'envelope: from the configured address';
like $mail, qr/^X-Envelope-To: ada\@example\.com\r$/m,
    '... to the account\'s (lowercased) address';

my ($head, $body) = split /\r\n\r\n/, $mail, 2;
$body //= '';
$head .= "\r\n";
like $head, qr/^Date:\ (Mon|Tue|Wed|Thu|Fri|Sat|Sun),\ \d\d\ [A-Z][a-z]{2}
               \ \d{4}\ \d\d:\d\d:\d\d\ \+0000\r$/mx, 'Date header (RFC 5322)';
like $head, qr/^From: <noreply\@example\.com>\r$/m, 'From header';
like $head, qr/^To: <ada\@example\.com>\r$/m, 'To header';
like $head, qr/^Subject: Confirm your email address\r$/m, 'Subject header';
like $head, qr/^Message-ID: <[0-9a-f]{32}\@example\.com>\r$/m,
    'Message-ID header';
like $head, qr/^MIME-Version: 1\.0\r$/m, 'MIME-Version header';
my ($boundary) = $head =~
    /^Content-Type: multipart\/alternative; boundary="([^"]+)"\r$/m;
ok $boundary, 'multipart/alternative with a boundary';
$boundary //= 'none';

my @parts = split /\r\n--\Q$boundary\E(?:--)?\r\n/, "\r\n$body";
shift @parts;
is scalar(@parts), 2, 'two parts';
my ($text, $html) = @parts;
$text //= ''; $html //= '';
like $text, qr/\AContent-Type: text\/plain; charset=utf-8\r\n/,
    'the first part is text/plain';
like $html, qr/\AContent-Type: text\/html; charset=utf-8\r\n/,
    'the second part is text/html';

my ($link, $token) = $text =~
    m{^(https://api\.example\.com/v1/auth/verify-email\?token=([A-Za-z0-9_-]{43}))\r$}m;
ok $link, 'the text has the link, on the public URL (no double slash)';
$token //= 'x' x 43;
like $text, qr/^\Q$token\E\r$/m, '... and the token itself';
like $html, qr/<a href="\Q$link\E">/, 'the HTML part has the same link';

my @rows = Test::Monetize::psql(
    'SELECT token_hash, purpose, used_at IS NULL,'
    . ' expires_at BETWEEN now() + interval \'23 hours 59 minutes\''
    . '                AND now() + interval \'24 hours\''
    . '  FROM email_tokens WHERE user_id = $1', $user);
is_deeply \@rows, [[hmac_sha256_hex($token, $ENV{MONETIZE_KEY_SECRET}),
                    'verify', 't', 't']],
    'email_tokens holds the keyed hash of the token, 24 h, unused';

my ($sent) = Test::Monetize::wait_until(10, sub {
    my ($r) = Test::Monetize::psql(
        'SELECT sent_at IS NOT NULL, attempts, body_text IS NULL,'
        . ' body_html IS NULL, kind FROM mail_outbox WHERE user_id = $1',
        $user);
    $r && $r->[0] eq 't' ? $r : undef;
});
is_deeply $sent, ['t', 1, 't', 't', 'verify'],
    'the outbox row: sent after one attempt, its bodies dropped';

unlike $ngx->error_log_since($mark), qr/\Q$token\E/,
    'the token is never in the log';

# the link, as a mail client opens it
(my $path = $link) =~ s{\Ahttps://api\.example\.com}{};
$res = $ngx->request('GET', $path);
is $res->{status}, 200, 'GET the link: 200';
like $res->{headers}{'content-type'}, qr{\Atext/html}, '... an HTML page';
like $res->{body}, qr/verified/, '... saying the address is verified';

my ($verified) = Test::Monetize::psql(
    'SELECT email_verified FROM users WHERE id = $1', $user);
is $verified->[0], 't', 'the address is verified';

$res = $ngx->request('POST', '/v1/auth/verify-email',
                     json => {token => $token});
is $res->{status}, 400, 'the token again (POST): 400';
is $res->{json}{error}{code}, 'invalid_token', '... invalid_token';

$res = $ngx->request('GET', $path);
is $res->{status}, 400, 'the link again: 400';
like $res->{body}, qr/<h1>Invalid link<\/h1>/, '... an HTML page';

for my $bad ('', 'short', ('A' x 42) . '!', 'A' x 43) {
    $res = $ngx->request('POST', '/v1/auth/verify-email',
                         json => {token => $bad});
    is "$res->{status} " . ($res->{json}{error}{code} // ''),
        '400 invalid_token', "token \"$bad\": 400 invalid_token";
}

$res = $ngx->request('POST', '/v1/auth/verify-email', json => {token => 5});
is $res->{status}, 400, 'a token that is not a string: 400';
$res = $ngx->request('GET', '/v1/auth/verify-email');
is $res->{status}, 400, 'GET without a token: 400';

# a second account: POST verifies it, and an expired token does not
$res = $ngx->request('POST', '/v1/register',
    json => {email => 'bob@example.com', password => 'correct horse'});
is $res->{status}, 201, 'a second registration';
my $bob = $res->{json}{user}{id};
@mails = $smtp->wait_mails(2, 15);
my ($token2) = ($mails[1] // '') =~ /token=([A-Za-z0-9_-]{43})\r$/m;
ok $token2 && $token2 ne $token, 'its mail has a token of its own';

Test::Monetize::psql(
    q{UPDATE email_tokens SET expires_at = now() - interval '1 second'
       WHERE user_id = $1}, $bob);
$res = $ngx->request('POST', '/v1/auth/verify-email',
                     json => {token => $token2});
is "$res->{status} $res->{json}{error}{code}", '400 invalid_token',
    'an expired token: 400 invalid_token';

# resend: 202 always; one mail a minute per address
for my $who ('nobody@example.com', 'ada@example.com', 'BOB@example.com') {
    $res = $ngx->request('POST', '/v1/auth/resend-verification',
                         json => {email => $who});
    is $res->{status}, 202, "resend for $who: 202";
}
my ($rows) = Test::Monetize::psql(
    'SELECT count(*) FROM mail_outbox');
is $rows->[0], 2,
    '... but no mail: unknown, verified, and one queued within the minute';

Test::Monetize::psql(
    q{UPDATE mail_outbox SET created_at = now() - interval '61 seconds'});
$res = $ngx->request('POST', '/v1/auth/resend-verification',
                     json => {email => 'bob@example.com'});
is $res->{status}, 202, 'a resend a minute later: 202';
$res = $ngx->request('POST', '/v1/auth/resend-verification',
                     json => {email => 'bob@example.com'});
is $res->{status}, 202, '... and another at once: 202';
@mails = $smtp->wait_mails(3, 15);
is scalar(@mails), 3, 'one new mail';
my ($token3) = ($mails[2] // '') =~ /token=([A-Za-z0-9_-]{43})\r$/m;
like $mails[2] // '', qr/^X-Envelope-To: bob\@example\.com\r$/m,
    '... to bob';
$res = $ngx->request('POST', '/v1/auth/verify-email',
                     json => {token => $token3 // ''});
is_deeply [$res->{status}, $res->{json}],
    [200, {email_verified => JSON::PP::true()}],
    'its token verifies the address (POST): 200';

$res = $ngx->request('POST', '/v1/auth/resend-verification',
                     json => {email => 17});
is $res->{status}, 422, 'resend with an email that is not a string: 422';

unlike $ngx->error_log_since($mark), qr/\[(alert|crit|emerg)\]/,
    'no alert in the log';

$ngx->stop;

done_testing;
