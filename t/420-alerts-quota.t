# Quota alerts: an account that crosses 80% and then 100% of its monthly
# quota through the gate gets one mail for each (to the SMTP sink), and the
# operator one signed webhook for each (monetize_notify), retried until the
# receiver answers 2xx; more calls send nothing again, a new period does;
# two workers send nothing twice.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Digest::SHA qw(hmac_sha256_hex);
use Fcntl qw(:flock);
use JSON::PP ();

my $secret = 'whsec_' . ('s3cr3t' x 4);
my $smtp = Test::Monetize::Smtp->start;

# the receiver fails its first $fail_first requests with 500, then says 200
my $fail_first = 2;
my $counter = Test::Monetize::new_dir('receiver') . '/count';
open my $fh, '>', $counter or die; print $fh "0"; close $fh;

my $hook = Test::Monetize::Backend->start(sub {
    open my $c, '+<', $counter or die;
    flock $c, LOCK_EX;
    my $n = <$c> // 0;
    seek $c, 0, 0; truncate $c, 0; print $c $n + 1; close $c;
    return $n < $fail_first ? (500, {}, "not now\n") : (200, {}, "ok\n");
});

my $ngx = Test::Monetize::Nginx->start(
    workers => 2,
    http_config => "monetize_cache zone=keys:1m;\n"
        . "monetize_smtp smtp://127.0.0.1:" . $smtp->port
        . " from=noreply\@example.com timeout=5s;\n"
        . "monetize_public_url https://api.example.com;\n"
        . "monetize_notify url=http://127.0.0.1:" . $hook->port
        . "/hooks/monetize secret=$secret timeout=5s;",
    config => <<'CONF');
    location /api/ {
        monetize_gate on;
        monetize_quota on;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /backend/ { return 200 "ok\n"; }
CONF

sub calls {
    my ($key, $count) = @_;
    my @res = $ngx->parallel([map {
        [GET => "/api/$_", headers => {'X-API-Key' => $key}]
    } 1 .. $count], concurrency => 10);
    my %status;
    $status{$_->{status}}++ for @res;
    return \%status;
}

# a sweep run here, as a worker runs it: it finds what a worker would
sub sweep {
    my ($r) = Test::Monetize::psql(
        "SELECT mails, jobs FROM monetize_alerts_sweep(NULL, true, true,"
        . " 'https://api.example.com')");
    return $r;
}

sub alerts {
    my ($user) = @_;
    return Test::Monetize::psql(
        "SELECT kind, period, notified FROM alerts WHERE user_id = \$1"
        . " ORDER BY id", $user);
}

sub hooks {
    my @ok;
    for my $req ($hook->requests) {
        my $sig = $req->{headers}{'monetize-signature'} // '';
        my ($t, @v1);
        for (split /,/, $sig) {
            $t = $1 if /^t=(\d+)$/;
            push @v1, $1 if /^v1=([0-9a-f]{64})$/;
        }
        push @ok, {req => $req, t => $t,
                   valid => (defined $t && @v1 == 1
                             && $v1[0] eq hmac_sha256_hex("$t.$req->{body}",
                                                          $secret)),
                   event => eval { JSON::PP::decode_json($req->{body}) }};
    }
    return @ok;
}

my ($user, $key) = Test::Monetize::account(email => 'quota@example.com');
my ($idle) = Test::Monetize::account(email => 'idle@example.com');

# --- 79 calls: nothing -------------------------------------------------------

is_deeply calls($key, 79), {200 => 79}, '79 calls of the free plan\'s 100';
is_deeply sweep(), [0, 0], 'a sweep finds no crossing at 79%';
is_deeply [alerts($user)], [], '... and records no alert';

# --- the 80th call: one mail, one webhook ------------------------------------

my $mark = $ngx->error_log_mark;
is_deeply calls($key, 1), {200 => 1}, 'the 80th call';

my @mails = $smtp->wait_mails(1, 15);
is scalar(@mails), 1, 'one mail arrives';
my $mail = $mails[0] // '';
like $mail, qr/^X-Envelope-To: quota\@example\.com\r$/m, '... to the account';
like $mail, qr/^Subject: You have used 80% of your monthly calls\r$/m,
    '... saying 80%';
like $mail, qr/used 80 of the 100 calls its Free plan includes/,
    '... with the numbers';
like $mail, qr{https://api\.example\.com/v1/plans}, '... and where to buy';
like $mail, qr{^Content-Type: text/html}m, '... with an HTML part too';

ok Test::Monetize::wait_until(20, sub { hooks() >= 3 }),
    'the webhook is tried until the receiver answers 2xx (2 refusals)';
my @hooks = hooks();
is scalar(@hooks), 3, '... three tries in all';
is scalar(grep { $_->{valid} } @hooks), 3,
    '... each signed: Monetize-Signature t=,v1= HMAC-SHA256 of "t.body"';
is_deeply [map { $_->{req}{method} . ' ' . $_->{req}{path} } @hooks],
    [('POST /hooks/monetize') x 3], '... POSTed to the configured URL';
is $hooks[0]{req}{headers}{'content-type'}, 'application/json',
    '... as JSON';
my %ids = map { $_->{event}{id} => 1 } @hooks;
is scalar(keys %ids), 1, '... one event id in every try (to dedupe)';
like $hooks[0]{event}{id}, qr/^evt_[0-9a-f]{32}$/, '... evt_...';
my $ev = $hooks[2]{event};
is $ev->{type}, 'quota.80', 'the event: type quota.80';
cmp_ok abs($ev->{created} - time), '<', 60, '... created, in unix seconds';
is_deeply [@{$ev->{data}}{qw(user_id email plan used quota balance)}],
    [$user, 'quota@example.com', 'free', 80, 100, 0],
    '... data: user_id, email, plan, used, quota, balance';
like $ev->{data}{period_start}, qr/^\d{4}-\d\d-01T00:00:00Z$/,
    '... period_start';
like $ev->{data}{period_end}, qr/^\d{4}-\d\d-01T00:00:00Z$/, '... period_end';
my ($job) = Test::Monetize::psql(
    "SELECT count(*), min(attempts), bool_and(done_at IS NOT NULL)"
    . "  FROM jobs WHERE kind = 'notify'");
is_deeply $job, [1, 3, 't'], 'its job: done after 3 attempts';
ok abs($hooks[2]{t} - time) < 60, '... the last try signed with its own time';

# --- more calls below 100%: nothing new --------------------------------------

is_deeply calls($key, 15), {200 => 15}, '15 more calls (95%)';
is_deeply sweep(), [0, 0], 'a sweep finds nothing new to say';

# --- 100%: one more mail and webhook; the calls beyond are refused -----------

is_deeply calls($key, 10), {200 => 5, 402 => 5},
    'the last 5 included calls, then 402';
@mails = $smtp->wait_mails(2, 15);
is scalar(@mails), 2, 'a second mail arrives';
like $mails[1] // '', qr/^Subject: You have used all of your monthly calls\r$/m,
    '... saying 100%';
ok Test::Monetize::wait_until(15, sub {
        grep { ($_->{event}{type} // '') eq 'quota.100' } hooks() }),
    'a quota.100 webhook';
my ($h100) = grep { ($_->{event}{type} // '') eq 'quota.100' } hooks();
ok $h100->{valid}, '... signed';
is $h100->{event}{data}{used}, 100, '... used 100';
isnt $h100->{event}{id}, $ev->{id}, '... an event of its own';

is_deeply calls($key, 5), {402 => 5}, 'more calls, refused';
is_deeply sweep(), [0, 0], 'a sweep: nothing new';
is_deeply [map { $_->[0] } alerts($user)], ['quota.80', 'quota.100'],
    'two alerts recorded for the account, once each';
is_deeply [alerts($idle)], [], 'none for an account that made no calls';

# --- a new period sends again -------------------------------------------------

Test::Monetize::psql(
    "INSERT INTO plans (id, name, price_cents, monthly_quota, rate_limit_rps,"
    . "                 rate_limit_burst) VALUES ('tiny', 'Tiny', 100, 10,"
    . "                 100, 100)");
Test::Monetize::psql(
    "INSERT INTO subscriptions (user_id, plan_id, status,"
    . "                         current_period_start, current_period_end)"
    . " VALUES (\$1, 'tiny', 'active', now() - interval '1 minute',"
    . "         now() + interval '30 days')", $user);

# the calls land between two sweeps: a sweep waits while this lock is held
my $hold = Test::Monetize::psql_session();
$hold->query('SELECT pg_advisory_lock(1836933452)');
is_deeply calls($key, 10), {200 => 10},
    'a new period (a new subscription): 10 included calls';
$hold->query('SELECT pg_advisory_unlock(1836933452)');
@mails = $smtp->wait_mails(3, 15);
is scalar(@mails), 3, 'a new period: a mail again';
like $mails[2] // '', qr/^Subject: You have used all of your monthly calls\r$/m,
    '... 100% (80% and 100% crossed between two sweeps say it once)';
like $mails[2] // '', qr/all 10 calls its Tiny plan/, '... of the new plan';
is_deeply [map { "$_->[0] $_->[2]" } grep { $_->[1] !~ /-01T00/ }
           alerts($user)], ['quota.80 f', 'quota.100 t'],
    '... 80% recorded without a mail of its own';
ok Test::Monetize::wait_until(15, sub {
        (grep { ($_->{event}{type} // '') eq 'quota.100' } hooks()) == 2 }),
    '... and a webhook';

# --- nothing twice: the two workers swept all along --------------------------

Test::Monetize::wait_until(5, sub { 0 });     # a few more sweeps by both
is scalar($smtp->mails), 3, 'three mails in all, none twice';
my %events;
$events{$_->{event}{id}}++ for hooks();
is scalar(keys %events), 3, 'three events in all';
my ($jobs) = Test::Monetize::psql(
    "SELECT count(*), count(*) FILTER (WHERE done_at IS NOT NULL)"
    . "  FROM jobs WHERE kind = 'notify'");
is_deeply $jobs, [3, 3], 'three notify jobs, all done';
my ($outbox) = Test::Monetize::psql(
    "SELECT count(*), count(*) FILTER (WHERE sent_at IS NOT NULL)"
    . "  FROM mail_outbox WHERE kind LIKE 'alert.%'");
is_deeply $outbox, [3, 3], 'three alert mails in the outbox, all sent';
unlike $ngx->error_log_since($mark), qr/\Q$secret\E/,
    'the secret is never logged';

Test::Monetize::reconcile();

done_testing;
