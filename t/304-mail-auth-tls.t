# monetize_smtp's login and STARTTLS: a server that requires AUTH gets the
# configured user and password (never logged); a wrong password is refused
# and retried later; starttls=on never falls back to plain text with a
# server that offers no STARTTLS.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $smtp = Test::Monetize::Smtp->start(auth => 'mailer:s3cret-Pa55');
my $port = $smtp->port;

sub nginx {
    my ($options) = @_;
    return Test::Monetize::Nginx->start(
        http_config => "monetize_bcrypt_cost 4;\n"
            . "monetize_smtp smtp://127.0.0.1:$port from=noreply\@example.com"
            . " timeout=5s $options;\n"
            . "monetize_public_url http://localhost:8080;",
        api_limit => 'monetize_api_limit off;',
        config => 'location /v1/ { monetize_api; }');
}

sub register {
    my ($ngx, $email) = @_;
    my $res = $ngx->request('POST', '/v1/register',
        json => {email => $email, password => 'correct horse'});
    return $res->{status};
}

sub outbox {
    my ($email) = @_;
    my ($r) = Test::Monetize::psql(
        'SELECT sent_at IS NOT NULL, attempts, last_error FROM mail_outbox'
        . ' WHERE to_addr = $1', $email);
    return $r // [];
}

# the right login
my $ngx = nginx('user=mailer password=s3cret-Pa55');
my $mark = $ngx->error_log_mark;
is register($ngx, 'one@example.com'), 201, 'register: 201';
my @mails = $smtp->wait_mails(1, 15);
is scalar(@mails), 1, 'the server that requires AUTH took the mail';
ok Test::Monetize::wait_until(10, sub { outbox('one@example.com')->[0] eq 't' }),
    '... and it is marked sent';
$ngx->stop;

# a wrong password
$ngx = nginx('user=mailer password=wrong-Pa55');
$mark = $ngx->error_log_mark;
is register($ngx, 'two@example.com'), 201, 'register with a wrong SMTP '
    . 'password: still 201';
my $line = $ngx->wait_for_log(qr/mail #\d+ not sent \(attempt 1\)/,
                              since => $mark, timeout => 15);
ok $line, 'the mail is refused, in the log';
like $ngx->error_log_since($mark), qr/not sent \(attempt 1\).*[Ll]ogin denied/,
    '... as a login denied';
my $row = outbox('two@example.com');
is_deeply [$row->[0], defined $row->[2]], ['f', 1],
    '... not sent, its error recorded, due again later';
unlike $ngx->error_log_since($mark), qr/wrong-Pa55/,
    'the password is never in the log';
is scalar(grep { /^X-Envelope-To: two\@/m } $smtp->mails), 0,
    'no mail to two@ at the server';
$ngx->stop;

# starttls=on with a server that offers no STARTTLS: no plain-text fallback
$ngx = nginx('user=mailer password=s3cret-Pa55 starttls=on');
$mark = $ngx->error_log_mark;
is register($ngx, 'three@example.com'), 201, 'register: 201';
$line = $ngx->wait_for_log(qr/mail #\d+ not sent \(attempt 1\)/,
                           since => $mark, timeout => 15);
ok $line, 'starttls=on and no STARTTLS: the mail is not sent';
like $ngx->error_log_since($mark), qr/not sent \(attempt 1\).*(STARTTLS|SSL)/i,
    '... because of the missing STARTTLS';
is scalar(grep { /^X-Envelope-To: three\@/m } $smtp->mails), 0,
    '... and nothing reached the server in clear';
$ngx->stop;

done_testing;
