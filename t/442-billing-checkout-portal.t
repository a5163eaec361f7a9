# POST /billing/checkout {"plan"}: a Checkout Session in mode subscription
# for the plan's Stripe price, with metadata on the session and on the
# subscription it makes; POST /billing/portal: a billing portal session
# that returns to monetize_billing_return_url; GET /billing/status: the
# plan and subscription the account has now.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $fake = Test::Monetize::FakeStripe->start(key => 'sk_test_442');

my ($alice, $A) = Test::Monetize::account(email => 'alice@example.com');
# The registration's job would make the customer too (sql/012's trigger):
# these accounts' are marked done, so that Stripe sees only this test's.
Test::Monetize::psql('UPDATE jobs SET done_at = now()');

my $ngx = Test::Monetize::Nginx->start(
    config => 'location /v1/ { monetize_api; }',
    http_config => sprintf(
        "monetize_stripe secret_key=sk_test_442 api_base=http://127.0.0.1:%d"
        . " timeout=3s;\nmonetize_public_url https://shop.example;\n"
        . "monetize_billing_return_url https://app.example/account;",
        $fake->port));

Test::Monetize::psql("UPDATE plans SET stripe_price_id = 'price_starter'"
                     . " WHERE id = 'starter'");


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

my $res = call(POST => '/v1/billing/checkout', $A, {plan => 'starter'});
is $res->{status}, 201, 'POST /billing/checkout: 201' or diag explain $res;
like $res->{json}{session_id}, qr/\Acs_test_/, '... the session id';
like $res->{json}{checkout_url}, qr{/pay/\Q$res->{json}{session_id}\E\z},
    '... and its URL';

my @reqs = $fake->requests;
is_deeply [map { "$_->{method} $_->{path}" } @reqs],
    ['POST /v1/customers', 'POST /v1/checkout/sessions'],
    'Stripe saw the customer made, then the session';
my ($customer) = map { $_->[0] } Test::Monetize::psql(
    'SELECT stripe_customer_id FROM users WHERE id = $1', $alice);
is_deeply $reqs[1]{form}, {
    'mode' => 'subscription',
    'customer' => $customer,
    'client_reference_id' => $alice,
    'metadata[user_id]' => $alice,
    'metadata[plan]' => 'starter',
    'subscription_data[metadata][user_id]' => $alice,
    'subscription_data[metadata][plan]' => 'starter',
    'line_items[0][price]' => 'price_starter',
    'line_items[0][quantity]' => '1',
    'success_url' => 'https://app.example/account#billing?checkout=success'
                     . '&session_id={CHECKOUT_SESSION_ID}',
    'cancel_url' => 'https://app.example/account#billing?checkout=cancel',
}, 'the session\'s form: mode subscription, the plan\'s price, metadata';
like header($reqs[1], 'Idempotency-Key'),
    qr/\Aplan-\Q$alice\E-req_[0-9a-f]{32}\z/, '... its Idempotency-Key';

# The portal.
my $before = () = $fake->requests;
$res = call(POST => '/v1/billing/portal', $A);
is $res->{status}, 201, 'POST /billing/portal: 201' or diag explain $res;
ok $res->{json}{portal_url}, '... the portal URL';
is_deeply [keys %{$res->{json}}], ['portal_url'], '... and nothing else';
@reqs = $fake->requests;
splice @reqs, 0, $before;
is_deeply [map { "$_->{method} $_->{path}" } @reqs],
    ['POST /v1/billing_portal/sessions'],
    'Stripe saw one portal session, for the customer it has';
is_deeply $reqs[0]{form},
    {customer => $customer,
     return_url => 'https://app.example/account#billing'},
    '... with the customer and the return URL';
like header($reqs[0], 'Idempotency-Key'),
    qr/\Aportal-\Q$alice\E-req_[0-9a-f]{32}\z/, '... its Idempotency-Key';

# The status, as the webhooks leave the subscriptions.
Test::Monetize::psql(
    "INSERT INTO subscriptions (user_id, plan_id, status,"
    . " stripe_subscription_id, current_period_start, current_period_end,"
    . " cancel_at_period_end)"
    . " VALUES (\$1, 'starter', 'active', 'sub_1',"
    . " '2026-01-01 00:00:00+00', now() + interval '10 days', true)",
    $alice);
my ($end) = map { $_->[0] } Test::Monetize::psql(
    "SELECT monetize_iso8601(current_period_end) FROM subscriptions"
    . " WHERE stripe_subscription_id = 'sub_1'");
$res = call(GET => '/v1/billing/status', $A);
is_deeply $res->{json},
    {plan => 'starter', status => 'active', current_period_end => $end,
     current_period_start => '2026-01-01T00:00:00Z',
     cancel_at_period_end => JSON::PP::true},
    'GET /billing/status: the subscription\'s plan, period and cancellation';

# A second subscription would be billed beside the first: 409, and Stripe
# is not asked.
Test::Monetize::psql("UPDATE plans SET stripe_price_id = 'price_pro'"
                     . " WHERE id = 'professional'");
$before = () = $fake->requests;
$res = call(POST => '/v1/billing/checkout', $A, {plan => 'professional'});
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [409, 'subscription_exists'],
    'subscribed already: POST /billing/checkout is 409 subscription_exists'
    or diag explain $res;
like $res->{json}{error}{message}, qr{"starter".*billing/portal},
    '... naming the plan it has and the billing portal';
is scalar(() = $fake->requests), $before, '... and Stripe was not asked';

Test::Monetize::psql("UPDATE subscriptions SET status = 'past_due'");
is call(GET => '/v1/billing/status', $A)->{json}{status}, 'past_due',
    '... past_due keeps the plan';

Test::Monetize::psql("UPDATE subscriptions SET status = 'canceled',"
                     . " updated_at = now()");
$res = call(GET => '/v1/billing/status', $A);
is_deeply [@{$res->{json}}{qw(plan status)}],
    ['starter', 'canceled'],
    '... canceled: its plan until the period ends, status canceled';

Test::Monetize::psql("UPDATE subscriptions"
                     . " SET current_period_end = now() - interval '1 second'");
$res = call(GET => '/v1/billing/status', $A);
is_deeply [@{$res->{json}}{qw(plan status)}], ['free', 'canceled'],
    '... and once the period has ended, the free plan';
is call(POST => '/v1/billing/checkout', $A, {plan => 'professional'})
       ->{status}, 201,
    '... when a checkout for a plan is open again';

unlike Test::Monetize::_slurp($ngx->error_log_file),
    qr/\[(?:alert|crit)\]|exited on signal/, 'no worker crashed, nothing alerted';
$ngx->stop;
$fake->stop;
done_testing;
