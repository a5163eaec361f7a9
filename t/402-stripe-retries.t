# The Stripe client retries what may pass (500, 429, 409, a dropped
# connection, no answer within the timeout) with a backoff and the SAME
# Idempotency-Key, honours Retry-After, never retries another 4xx (400,
# 402, 404), and gives up after `tries`: for a job, it is due again later.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $stripe = Test::Monetize::FakeStripe->start(key => 'sk_test_402');

my $ngx = Test::Monetize::Nginx->start(
    http_config => "monetize_bcrypt_cost 4;\n"
        . 'monetize_stripe secret_key=sk_test_402 api_base=' . $stripe->url
        . ' timeout=1s tries=3;',
    config => 'location /v1/ { monetize_api; }');

my $n = 0;

sub re { my $s = join '', @_; return qr/$s/ }

sub register {
    $n++;
    my $res = $ngx->request('POST', '/v1/register',
        json => {email => "user$n\@example.com", password => 'correct horse'});
    die "register: $res->{status}\n" unless $res->{status} == 201;
    return $res->{json}{user}{id};
}

sub customer_of {
    my ($user) = @_;
    my ($r) = Test::Monetize::psql(
        'SELECT stripe_customer_id FROM users WHERE id = $1', $user);
    return $r->[0];
}

sub job_of {
    my ($user) = @_;
    my ($r) = Test::Monetize::psql(
        q{SELECT attempts, done_at IS NOT NULL, failed_at IS NOT NULL,
                 last_error,
                 done_at IS NULL AND next_attempt_at > now()
            FROM jobs WHERE user_id = $1}, $user);
    return $r;
}

for my $mode (qw(500 429 409 drop hang lost)) {
    $stripe->reset;
    $stripe->fail('/v1/customers', $mode, 2);
    my $mark = $ngx->error_log_mark;
    my $user = register();

    my $cus = Test::Monetize::wait_until(20, sub { customer_of($user) });
    ok $cus, "$mode twice: the customer is made at the third try";

    my @req = $stripe->requests;
    is scalar(@req), 3, '... in three requests';
    is_deeply [map { $_->{headers}{'Idempotency-Key'} } @req],
        [("customer-$user") x 3], '... all with the same Idempotency-Key';
    is_deeply [map { $_->{body} } @req], [($req[0]{body}) x 3],
        '... and the same body';
    cmp_ok $req[1]{at} - $req[0]{at}, '>=', 0.2, '... after a backoff';
    my @made = $stripe->objects('customers');
    is scalar(@made), 1, '... one customer at Stripe';
    is $made[0]{id}, $cus, '... the one stored';
    is_deeply job_of($user), [1, 't', 'f', undef, 'f'],
        '... the job done in its first attempt';

    my $log = $ngx->error_log_since($mark);
    if ($mode =~ /\A\d+\z/) {
        like $log, re(qr/\[warn\].*monetize: stripe POST \/v1\/customers: $mode/
                      . qr/ \(try 1 of 3\) type="\w+" code="[^"]*"/
                      . qr/ message="[^"]+"/),
            "... Stripe's error logged";
    } else {
        like $log, re(qr/\[warn\].*monetize: stripe POST \/v1\/customers: no/
                      . qr/ answer \(try 1 of 3\)/),
            '... the failure logged';
    }
    unlike $log, qr/sk_test_402/, '... without the key';
}

# Retry-After: the next try waits as long as Stripe asks
$stripe->reset;
$stripe->fail('/v1/customers', 429, 1, retry_after => 2);
my $user = register();
ok Test::Monetize::wait_until(20, sub { customer_of($user) }),
    '429 with Retry-After: 2, then made';
my @req = $stripe->requests;
is scalar(@req), 2, '... in two requests';
cmp_ok $req[1]{at} - $req[0]{at}, '>=', 1.9, '... two seconds apart';

# never retried: another 4xx is Stripe's final word
for my $mode (qw(400 402 404)) {
    $stripe->reset;
    $stripe->fail('/v1/customers', $mode, 1);
    my $mark = $ngx->error_log_mark;
    my $user = register();

    ok Test::Monetize::wait_until(10, sub { job_of($user)->[2] eq 't' }),
        "$mode: the job failed for good";
    my @req = $stripe->requests;
    is scalar(@req), 1, '... after one request, not retried';
    is customer_of($user), undef, '... no customer';
    like job_of($user)->[3], qr/Stripe refused/, '... last_error says why';
    like $ngx->error_log_since($mark),
        re(qr/\[warn\].*monetize: stripe POST \/v1\/customers: $mode .*/
           . qr/type="\w+" code="\w+" message="[^"]+"/),
        "... Stripe's error logged";
    ok !Test::Monetize::wait_until(3, sub { $stripe->requests > 1 }),
        '... and never sent again';
}

# all tries fail: the job is due again later, and then done, with the
# same key all along
$stripe->reset;
$stripe->fail('/v1/customers', 500, 3);
my $mark = $ngx->error_log_mark;
$user = register();

ok Test::Monetize::wait_until(20, sub {
    my $j = job_of($user);
    $j->[0] == 1 && defined $j->[3] && $j->[4] eq 't' }),
    'three 500s: the job is due again later';
like $ngx->error_log_since($mark),
    re(qr/\[error\].*monetize: stripe POST \/v1\/customers: unavailable/
       . qr/ after 3 tries/), '... the client gave up after 3 tries';
ok Test::Monetize::wait_until(20, sub { customer_of($user) }),
    '... and at its next attempt the customer is made';
@req = $stripe->requests;
is scalar(@req), 4, '... in a fourth request';
is_deeply [map { $_->{headers}{'Idempotency-Key'} } @req],
    [("customer-$user") x 4], '... with the same Idempotency-Key';
is_deeply job_of($user), [2, 't', 'f', undef, 'f'],
    '... done in its second attempt';

unlike $ngx->error_log_since(0), qr/\[(alert|crit|emerg)\]|sk_test_402/,
    'no alert, no key in the log';

done_testing;
