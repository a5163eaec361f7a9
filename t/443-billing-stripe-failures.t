# The billing endpoints when Stripe fails: a 500 then an answer is one
# session (the retry carries the same Idempotency-Key); 429 or 5xx until
# the tries run out, and a dropped connection, are 503 backend_unavailable;
# Stripe refusing what we sent (a 4xx: here the key it does not know) is
# 502 upstream_error, logged without the secret; a Stripe that hangs is 503
# within the timeout while the worker serves other calls. Two purchases
# that race for an account without a customer make one customer.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Time::HiRes qw(time);

my $fake = Test::Monetize::FakeStripe->start;

sub conf {
    my ($key) = @_;
    return (
        config => 'location /v1/ { monetize_api; }',
        http_config => sprintf(
            "monetize_stripe secret_key=%s api_base=http://127.0.0.1:%d"
            . " timeout=1s;\nmonetize_public_url https://shop.example;",
            $key, $fake->port));
}

my $ngx = Test::Monetize::Nginx->start(conf('sk_test_443'), workers => 1);

sub call {
    my ($method, $path, $key, $json, @h) = @_;
    return $ngx->request($method, $path,
        headers => [($key ? (Authorization => "Bearer $key") : ()), @h],
        defined $json ? (json => $json) : ());
}

sub header {
    my ($req, $name) = @_;
    my ($k) = grep { lc $_ eq lc $name } keys %{$req->{headers}};
    return defined $k ? $req->{headers}{$k} : undef;
}

sub sessions { [grep { $_->{path} eq '/v1/checkout/sessions' }
                @{$fake->requests}] }

my ($alice, $A) = Test::Monetize::account(email => 'alice@example.com');

# Made once, so that the cases below are about the session alone.
is call(POST => '/v1/billing/portal', $A)->{status}, 201,
    'the customer is made (a portal session)';

# 500, then an answer: one session.
$fake->reset;
$fake->fail(path => '/v1/checkout/sessions', mode => '500', times => 1);
my $res = call(POST => '/v1/purchase_credits', $A, {pack => 'small'});
is $res->{status}, 201, 'Stripe answers 500, then 201: 201'
    or diag explain $res;
my @s = @{sessions()};
is scalar(@s), 2, '... after two tries';
is header($s[0], 'Idempotency-Key'), header($s[1], 'Idempotency-Key'),
    '... with the same Idempotency-Key';
my $again = call(POST => '/v1/purchase_credits', $A, {pack => 'small'},
                 'Idempotency-Key' => 'x');
isnt $again->{json}{session_id}, $res->{json}{session_id},
    '(another intent is another session)';

# 429 every time, and a dropped connection every time: 503.
for my $mode ('429', '500', 'drop') {
    $fake->reset;
    $fake->fail(path => '/v1/checkout/sessions', mode => $mode,
                times => 100);
    $res = call(POST => '/v1/purchase_credits', $A, {pack => 'small'});
    is_deeply [$res->{status}, $res->{json}{error}{code},
               $res->{headers}{'retry-after'}],
        [503, 'backend_unavailable', 1],
        "Stripe answers $mode to every try: 503 backend_unavailable";
    cmp_ok scalar(@{sessions()}), '>', 1, '... after retrying';
    $fake->fail(path => '/v1/checkout/sessions', mode => $mode, times => 0);
}

# The portal and the plan's checkout fail the same way.
$fake->fail(path => '/v1/billing_portal/sessions', mode => '500',
            times => 100);
$res = call(POST => '/v1/billing/portal', $A);
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [503, 'backend_unavailable'], 'the portal: 503 too';
$fake->fail(path => '/v1/billing_portal/sessions', mode => '500',
            times => 0);

# A hang: 503 within the timeout's tries, and the worker serves others.
$fake->reset;
$fake->fail(path => '/v1/checkout/sessions', mode => 'hang', times => 100);
my $t0 = time;
my $slow = $ngx->start_request('POST', '/v1/purchase_credits',
    headers => [Authorization => "Bearer $A"], json => {pack => 'small'},
    timeout => 30);
Test::Monetize::wait_until(5, sub { @{sessions()} >= 1 });
my $t1 = time;
my $health = $ngx->request('GET', '/v1/health');
is $health->{status}, 200, 'while Stripe hangs, the worker answers others';
cmp_ok time - $t1, '<', 0.5, '... at once';
ok !$slow->done, '... the purchase still waiting' if $slow->can('done');
$res = $slow->wait;
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [503, 'backend_unavailable'], 'the hung purchase: 503';
cmp_ok time - $t0, '<', 15, '... within the timeout\'s tries';
$fake->fail(path => '/v1/checkout/sessions', mode => 'hang', times => 0);

unlike Test::Monetize::_slurp($ngx->error_log_file), qr/sk_test_443/,
    'the secret key is never logged';
$ngx->stop;

# Stripe refusing what we sent: a key it does not know (401).
$ngx = Test::Monetize::Nginx->start(conf('sk_test_wrong'), workers => 1);
$fake->reset;
$res = call(POST => '/v1/purchase_credits', $A, {pack => 'small'});
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [502, 'upstream_error'], 'Stripe refuses the request (401): 502';
is scalar(@{sessions()}), 1, '... asked once, never retried';
like Test::Monetize::_slurp($ngx->error_log_file), qr/monetize: .*Stripe/i,
    '... and the log says why';
unlike Test::Monetize::_slurp($ngx->error_log_file), qr/sk_test_wrong/,
    '... without the secret key';
$ngx->stop;

# Two purchases race for an account without a customer: one customer.
$ngx = Test::Monetize::Nginx->start(conf('sk_test_443'), workers => 2);
my ($bob, $B) = Test::Monetize::account(email => 'bob@example.com');
$fake->reset;
my $lock = Test::Monetize::psql_session();
$lock->query('BEGIN');
$lock->query("SELECT 1 FROM users WHERE id = '$bob' FOR UPDATE");
my @h = map { $ngx->start_request('POST', '/v1/purchase_credits',
                  headers => [Authorization => "Bearer $B"],
                  json => {pack => 'small'}, timeout => 20) } 1 .. 2;
ok Test::Monetize::wait_until(10, sub {
        (grep { $_->{path} eq '/v1/customers' } @{$fake->requests}) >= 2 }),
    'both purchases asked Stripe for the customer';
$lock->query('COMMIT');
my @r = map { $_->wait } @h;
is_deeply [map { $_->{status} } @r], [201, 201], 'both: 201';
my ($cus) = map { $_->[0] } Test::Monetize::psql(
    'SELECT stripe_customer_id FROM users WHERE id = $1', $bob);
is_deeply [map { $_->{form}{customer} } @{sessions()}], [$cus, $cus],
    '... both sessions for the one customer stored';
my %keys = map { header($_, 'Idempotency-Key') => 1 }
           grep { $_->{path} eq '/v1/customers' } @{$fake->requests};
is_deeply [keys %keys], ["customer-$bob"],
    '... made under one Idempotency-Key: one customer at Stripe';
$ngx->stop;

$fake->stop;
done_testing;
