# The worker never blocks on mail: with one worker, while its mail waits on
# a server that accepts the connection and never says a word, another
# location answers; the transfer ends at its timeout, and the mail is due
# again. The test asserts states and the order of events, never a time.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use IO::Socket::INET;

# the kernel completes connections into the backlog; nobody ever accepts
my $silent = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                   Listen => 16, ReuseAddr => 1)
    or die "listen: $!";
my $port = $silent->sockport;

my $ngx = Test::Monetize::Nginx->start(
    workers => 1,
    http_config => "monetize_bcrypt_cost 4;\n"
        . "monetize_smtp smtp://127.0.0.1:$port from=noreply\@example.com"
        . " timeout=4s;\n"
        . "monetize_public_url http://localhost:8080;",
    config => <<'CONF');
    location /v1/ { monetize_api; }
    location = /ping { return 200 "pong\n"; }
CONF
my $mark = $ngx->error_log_mark;

my $res = $ngx->request('POST', '/v1/register',
    json => {email => 'ada@example.com', password => 'correct horse'});
is $res->{status}, 201, 'register: 201';

sub in_flight {
    my ($r) = Test::Monetize::psql(
        'SELECT attempts = 1 AND sent_at IS NULL AND last_error IS NULL'
        . '   AND next_attempt_at > now() FROM mail_outbox');
    return $r && $r->[0] eq 't';
}

ok Test::Monetize::wait_until(10, \&in_flight),
    'the mail is claimed and being sent';

my $ss = Test::Monetize::wait_until(10, sub {
    scalar grep { /ESTAB.*127\.0\.0\.1:$port\b/ } `ss -tn 2>/dev/null` });
ok $ss, '... on a connection the server accepted';

my @pings = map { $ngx->request('GET', '/ping') } 1 .. 3;
is_deeply [map { $_->{status} } @pings], [200, 200, 200],
    'a plain location answers meanwhile';
ok in_flight(), '... while the mail is still in flight';

$res = $ngx->request('GET', '/v1/health');
is $res->{status}, 200, 'and so does the API';
ok in_flight(), '... still in flight';

my $line = $ngx->wait_for_log(qr/monetize: mail #\d+ not sent \(attempt 1\)/,
                              since => $mark, timeout => 20);
ok $line, 'the transfer ends at its timeout, in the log';
like $ngx->error_log_since($mark), qr/not sent \(attempt 1\).*timed out/,
    '... as a timeout';

my $due = Test::Monetize::wait_until(5, sub {
    my ($r) = Test::Monetize::psql(
        'SELECT sent_at IS NULL AND last_error IS NOT NULL FROM mail_outbox');
    $r && $r->[0] eq 't';
});
ok $due, 'the mail is not sent, and due again';

is $ngx->request('GET', '/ping')->{status}, 200, 'the worker still answers';

# a reload while a mail is in flight: the old worker drops it (its lease
# makes it due again later) and leaves no socket open
Test::Monetize::psql(
    'UPDATE mail_outbox SET next_attempt_at = now(), attempts = 0,'
    . ' last_error = NULL');
ok Test::Monetize::wait_until(10, \&in_flight), 'a mail in flight again';
$mark = $ngx->error_log_mark;
$ngx->reload;
is $ngx->request('GET', '/ping')->{status}, 200,
    'after a reload with a mail in flight, the new worker answers';
unlike $ngx->error_log_since($mark),
    qr/open socket|exited on signal|\[alert\]/,
    '... and the old one exited cleanly, no socket left open';

$ngx->stop;
close $silent;

done_testing;
