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

my $fake = Test::Monetize::FakeStripe->start(key => 'sk_test_443');

sub conf {
    my ($key) = @_;
    return (
        config => 'location /v1/ { monetize_api; }',
        http_config => sprintf(
            "monetize_stripe secret_key=%s api_base=http://127.0.0.1:%d"
            . " timeout=1s tries=3;\nmonetize_public_url https://shop.example;",
            $key, $fake->port));
}

my ($alice, $A) = Test::Monetize::account(email => 'alice@example.com');
my ($bob, $B) = Test::Monetize::account(email => 'bob@example.com');
# The registration's job would make the customer too (sql/012's trigger):
# these accounts' are marked done, so that Stripe sees only this test's.
Test::Monetize::psql('UPDATE jobs SET done_at = now()');

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

# what Stripe was sent since the last look
my $seen = 0;
sub sent {
    my @all = $fake->requests;
    my @new = @all[$seen .. $#all];
    $seen = @all;
    return @new;
}

sub sessions { [grep { $_->{path} eq '/v1/checkout/sessions' } @_] }

Test::Monetize::psql("UPDATE plans SET stripe_price_id = 'price_starter'"
                     . " WHERE id = 'starter'");

# Made once, so that the cases below are about the session alone.
is call(POST => '/v1/billing/portal', $A)->{status}, 201,
    'the customer is made (a portal session)';

# 500, then an answer: one session.
sent();
$fake->fail('/v1/checkout/sessions', '500', 1);
my $res = call(POST => '/v1/purchase_credits', $A, {pack => 'small'});
is $res->{status}, 201, 'Stripe answers 500, then 201: 201'
    or diag explain $res;
my @s = @{sessions(sent())};
is scalar(@s), 2, '... after two tries';
is header($s[0], 'Idempotency-Key'), header($s[1], 'Idempotency-Key'),
    '... with the same Idempotency-Key';
is_deeply [map { $_->{id} } $fake->objects('checkout_sessions')],
    [$res->{json}{session_id}], '... and Stripe made one session';

# 429 every time, and a dropped connection every time: 503.
for my $mode ('429', '500', '409', 'drop') {
    $fake->fail('/v1/checkout/sessions', $mode, 3);
    $res = call(POST => '/v1/purchase_credits', $A, {pack => 'small'});
    is_deeply [$res->{status}, $res->{json}{error}{code},
               $res->{headers}{'retry-after'}],
        [503, 'backend_unavailable', 1],
        "Stripe answers $mode to every try: 503 backend_unavailable";
    is scalar(@{sessions(sent())}), 3, '... after its 3 tries';
}

# The portal and the plan's checkout fail the same way.
$fake->fail('/v1/billing_portal/sessions', '500', 3);
$res = call(POST => '/v1/billing/portal', $A);
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [503, 'backend_unavailable'], 'the portal: 503 too';
$fake->fail('/v1/checkout/sessions', '400', 1);
$res = call(POST => '/v1/billing/checkout', $A, {plan => 'starter'});
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [502, 'upstream_error'], 'Stripe refuses a plan\'s session (400): 502';
sent();

# A hang: 503 within the timeout's tries, and the worker serves others.
$fake->fail('/v1/checkout/sessions', 'hang', 3);
my $t0 = time;
my $slow = $ngx->start_request('POST', '/v1/purchase_credits',
    headers => [Authorization => "Bearer $A"], json => {pack => 'small'},
    timeout => 30);
Test::Monetize::wait_until(5, sub {
    grep { $_->{path} eq '/v1/checkout/sessions' } $fake->requests });
my $t1 = time;
my $health = $ngx->request('GET', '/v1/health');
is $health->{status}, 200, 'while Stripe hangs, the worker answers others';
cmp_ok time - $t1, '<', 0.5, '... at once';
ok !$slow->done, '... the purchase still waiting';
$res = $slow->wait;
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [503, 'backend_unavailable'], 'the hung purchase: 503';
cmp_ok time - $t0, '<', 10, '... within its 3 tries of 1s and backoff';
is scalar(@{sessions(sent())}), 3, '... 3 tries';

# A client that goes away while Stripe hangs: nothing breaks.
$fake->fail('/v1/checkout/sessions', 'hang', 3);
$slow = $ngx->start_request('POST', '/v1/purchase_credits',
    headers => [Authorization => "Bearer $A"], json => {pack => 'small'});
my @got;
Test::Monetize::wait_until(5, sub { push @got, sent(); @{sessions(@got)} });
$slow->_finish('closed by the test');
ok Test::Monetize::wait_until(10, sub {
        push @got, sent(); @{sessions(@got)} >= 3 }),
    'a client gone while Stripe hangs: its tries run out';
$res = call(POST => '/v1/purchase_credits', $A, {pack => 'small'});
is $res->{status}, 201, '... and the next purchase is served';
sent();

unlike Test::Monetize::_slurp($ngx->error_log_file), qr/sk_test_443/,
    'the secret key is never logged';
unlike Test::Monetize::_slurp($ngx->error_log_file),
    qr/\[(?:alert|crit)\]|exited on signal/, 'no worker crashed, nothing alerted';
$ngx->stop;

# Stripe refusing what we sent: a key it does not know (401).
$ngx = Test::Monetize::Nginx->start(conf('sk_test_wrong'), workers => 1);
$res = call(POST => '/v1/purchase_credits', $A, {pack => 'small'});
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [502, 'upstream_error'], 'Stripe refuses the request (401): 502';
is scalar(@{sessions(sent())}), 1, '... asked once, never retried';
like Test::Monetize::_slurp($ngx->error_log_file),
    qr{\[warn\].*stripe POST /v1/checkout/sessions: 401 .*invalid_request},
    '... and the log says why (Stripe\'s error)';
unlike Test::Monetize::_slurp($ngx->error_log_file), qr/sk_test_wrong/,
    '... without the secret key';
unlike Test::Monetize::_slurp($ngx->error_log_file),
    qr/\[(?:alert|crit)\]|exited on signal/, 'no worker crashed, nothing alerted';
$ngx->stop;

# Two purchases race for an account without a customer: one customer.
$ngx = Test::Monetize::Nginx->start(conf('sk_test_443'), workers => 2);
sent();
my $lock = Test::Monetize::psql_session();
$lock->query('BEGIN');
$lock->query("SELECT 1 FROM users WHERE id = '$bob' FOR UPDATE");
my @h = map { $ngx->start_request('POST', '/v1/purchase_credits',
                  headers => [Authorization => "Bearer $B"],
                  json => {pack => 'small'}, timeout => 20) } 1 .. 2;
ok Test::Monetize::wait_until(10, sub {
        (grep { $_->{path} eq '/v1/customers' } $fake->requests) >= 2 }),
    'both purchases asked Stripe for the customer';
$lock->query('COMMIT');
my @r = map { $_->wait } @h;
is_deeply [map { $_->{status} } @r], [201, 201], 'both: 201';
my ($cus) = map { $_->[0] } Test::Monetize::psql(
    'SELECT stripe_customer_id FROM users WHERE id = $1', $bob);
my @new = sent();
is_deeply [map { $_->{form}{customer} } @{sessions(@new)}], [$cus, $cus],
    '... both sessions for the one customer stored';
my %keys = map { header($_, 'Idempotency-Key') => 1 }
           grep { $_->{path} eq '/v1/customers' } @new;
is_deeply [keys %keys], ["customer-$bob"],
    '... asked for under one Idempotency-Key';
is_deeply [map { $_->{id} } grep { ($_->{metadata}{user_id} // '') eq $bob }
           $fake->objects('customers')], [$cus],
    '... one customer at Stripe';
unlike Test::Monetize::_slurp($ngx->error_log_file),
    qr/\[(?:alert|crit)\]|exited on signal/, 'no worker crashed, nothing alerted';
$ngx->stop;

$fake->stop;
done_testing;
