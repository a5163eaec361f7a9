# The mail server is down while accounts register: registration answers 201
# at once, the outbox retries with backoff, and once the server is back each
# mail arrives exactly once, though two workers send (FOR UPDATE SKIP
# LOCKED).

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $smtp = Test::Monetize::Smtp->start;
my $port = $smtp->port;
$smtp->stop;

my $ngx = Test::Monetize::Nginx->start(
    workers => 2,
    http_config => "monetize_bcrypt_cost 4;\n"
        . "monetize_smtp smtp://127.0.0.1:$port from=noreply\@example.com"
        . " timeout=5s;\n"
        . "monetize_public_url http://localhost:8080;",
    api_limit => 'monetize_api_limit off;',
    config => 'location /v1/ { monetize_api; }');
my $mark = $ngx->error_log_mark;

my @res = map {
    $ngx->request('POST', '/v1/register',
        json => {email => "user$_\@example.com", password => 'correct horse'})
} 1 .. 5;
is_deeply [map { $_->{status} } @res], [(201) x 5],
    'registrations succeed while the mail server is down';
cmp_ok $_->{elapsed}, '<', 2, '... each at once (no wait on the mail)'
    for @res;

# every mail failed at least twice: the sender retries
my $retried = Test::Monetize::wait_until(20, sub {
    my ($r) = Test::Monetize::psql(
        'SELECT count(*) FROM mail_outbox'
        . ' WHERE attempts >= 2 AND sent_at IS NULL'
        . '   AND last_error IS NOT NULL');
    $r->[0] == 5;
});
ok $retried, 'each mail was tried at least twice, and is not sent';
like $ngx->error_log_since($mark),
    qr/\[error\].*monetize: mail #\d+ not sent \(attempt 1\)/,
    'the failures are in the log';

my ($later) = Test::Monetize::psql(
    'SELECT bool_and(next_attempt_at > now()) FROM mail_outbox');
is $later->[0], 't', 'each is due again later (backoff)';

# the next attempts come after their backoff (seconds at this point)
$smtp->restart;

my @mails = $smtp->wait_mails(5, 30);
is scalar(@mails), 5, 'after the server is back, the 5 mails arrive';

my $sent = Test::Monetize::wait_until(10, sub {
    my ($r) = Test::Monetize::psql(
        'SELECT count(*) FROM mail_outbox WHERE sent_at IS NOT NULL');
    $r->[0] == 5;
});
ok $sent, 'all 5 are marked sent';

# a sent row is never claimed again: a few more polls bring nothing
my $more = Test::Monetize::wait_until(5, sub { scalar($smtp->mails) > 5 });
ok !$more, 'no mail arrives twice';
my @to = sort map { /^X-Envelope-To: (\S+)\r$/m ? $1 : '' } $smtp->mails;
is_deeply \@to, [map { "user$_\@example.com" } 1 .. 5],
    'one mail to each address';

unlike $ngx->error_log_since($mark), qr/\[(alert|crit|emerg)\]/,
    'no alert in the log';

# old sent mails and spent tokens go at the cleanup (each worker's first
# run is a second after it starts)
Test::Monetize::psql(
    q{UPDATE mail_outbox SET sent_at = now() - interval '8 days'
       WHERE to_addr = 'user1@example.com'});
Test::Monetize::psql(
    q{UPDATE email_tokens SET expires_at = now() - interval '2 days'
       WHERE user_id = (SELECT id FROM users
                         WHERE email = 'user2@example.com')});
$mark = $ngx->error_log_mark;
$ngx->reload;
my $cleaned = Test::Monetize::wait_until(10, sub {
    my ($r) = Test::Monetize::psql(
        q{SELECT (SELECT count(*) FROM mail_outbox),
                 (SELECT count(*) FROM email_tokens)});
    $r->[0] == 4 && $r->[1] == 4;
});
ok $cleaned, 'cleanup: the old sent mail and the expired token are gone';

$ngx->stop;

done_testing;
