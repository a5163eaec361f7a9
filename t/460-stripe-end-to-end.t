# Issue 9 end to end, through every piece at once: the fake Stripe of
# t/lib/fake_stripe.py, the checkout endpoints, webhooks signed by Stripe's
# own library, the ledger and the gate.
#
# A credit pack: register -> POST /purchase_credits -> the checkout URL the
# fake Stripe made -> checkout.session.completed -> the balance shows the
# pack once (the event delivered twice) -> the gate admits calls against it.
#
# A subscription: POST /billing/checkout -> checkout.session.completed and
# customer.subscription.created -> the plan's quota and rate limit apply at
# the next gated call -> invoice.payment_failed with monetize_past_due deny
# -> 402 payment_past_due at the gate -> invoice.paid -> served again.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use StripeWebhook;

plan tests => 21;

my $whsec = 'whsec_end_to_end_0123456789';
my $fake = Test::Monetize::FakeStripe->start(key => 'sk_test_460');
my $be = Test::Monetize::Backend->start(sub {
    return (200, {'Content-Type' => 'text/plain'}, "served\n");
});

my $ngx = Test::Monetize::Nginx->start(
    workers => 2,
    http_config => sprintf(<<'HTTP', $fake->port, $whsec),
monetize_stripe secret_key=sk_test_460 api_base=http://127.0.0.1:%d
                timeout=3s;
monetize_stripe_webhook_secret %s;
monetize_public_url https://shop.example;
monetize_cache zone=keys:1m;
monetize_bcrypt_cost 4;
HTTP
    config => sprintf(<<'CONF', $be->port, $be->port));
    location /v1/ { monetize_api; }
    location /api/ {
        monetize_gate on;
        monetize_cost 10;
        monetize_past_due deny;
        proxy_pass http://127.0.0.1:%d;
    }
    location /quota/ {
        monetize_gate on;
        monetize_cost 0;
        monetize_quota on;
        monetize_rate_limit local;
        monetize_past_due deny;
        proxy_pass http://127.0.0.1:%d;
    }
CONF

sub api {
    my ($method, $path, $key, $json) = @_;
    return $ngx->request($method, $path,
        headers => [Authorization => "Bearer $key"],
        defined $json ? (json => $json) : ());
}

sub gated {
    my ($path, $key) = @_;
    return $ngx->request(GET => $path, headers => ['X-API-Key' => $key]);
}

sub balance {
    my ($user) = @_;
    my ($row) = Test::Monetize::psql(
        'SELECT balance FROM balances WHERE user_id = $1', $user);
    return $row->[0];
}

# --- a credit pack ----------------------------------------------------------

my $reg = $ngx->request(POST => '/v1/register',
    json => {email => 'payer@example.com', password => 'correct horse'});
is $reg->{status}, 201, 'registered';
my ($user, $key) = ($reg->{json}{user}{id}, $reg->{json}{api_key});

is gated('/api/one', $key)->{status}, 402,
    'no credits yet: the gate answers 402';

my $buy = api(POST => '/v1/purchase_credits', $key, {pack => 'small'});
is $buy->{status}, 201, 'POST /purchase_credits: 201';
my $cs = $buy->{json}{session_id};
my ($pay) = $buy->{json}{checkout_url} =~ m{\Ahttp://127\.0\.0\.1:\d+(/pay/\S+)\z};
my $page = Test::Monetize::HTTP->new(port => $fake->port, timeout => 10,
    raw => Test::Monetize::_build_request(method => 'GET',
                                          path => $pay // '/'))->wait;
is $page->{status}, 200, 'the checkout URL is the fake Stripe\'s page';

my $event = $fake->event_json('checkout.session.completed', $cs);
my $res = StripeWebhook::send($ngx, $event, $whsec);
is $res->{status}, 200, 'checkout.session.completed: 200';
is balance($user), 1000, 'the balance shows the pack';
is StripeWebhook::send($ngx, $event, $whsec)->{status}, 200,
    'the same event again: 200';
is balance($user), 1000, '... and the pack was granted once';
is_deeply [Test::Monetize::psql(
    q{SELECT kind, delta, reference FROM credit_ledger
       WHERE user_id = $1 AND kind = 'purchase'}, $user)],
    [['purchase', 1000, "stripe:checkout:$cs"]],
    'one purchase row in the ledger, named by the checkout session';

$res = gated('/api/two', $key);
is_deeply [$res->{status}, $res->{headers}{'x-credits-remaining'}],
    [200, 990], 'the gate admits a call against the pack, charged 10';

# --- a subscription ---------------------------------------------------------

Test::Monetize::psql(q{UPDATE plans SET stripe_price_id = 'price_starter'
                        WHERE id = 'starter'});

my $sub = api(POST => '/v1/billing/checkout', $key, {plan => 'starter'});
is $sub->{status}, 201, 'POST /billing/checkout: 201';
$cs = $sub->{json}{session_id};

for my $type ('checkout.session.completed',
              'customer.subscription.created') {
    is StripeWebhook::send($ngx, $fake->event_json($type, $cs),
                           $whsec)->{status},
        200, "$type: 200";
}

my ($plan) = Test::Monetize::psql(
    q{SELECT plan_id, status FROM subscriptions
       WHERE user_id = $1 AND stripe_subscription_id IS NOT NULL}, $user);
is_deeply $plan, ['starter', 'active'], 'the account is on starter, active';

$res = gated('/quota/one', $key);
is_deeply [$res->{status}, $res->{headers}{'x-quota-remaining'}],
    [200, 9999], 'the next gated call counts against starter\'s quota';
is $res->{headers}{'ratelimit-limit'}, 20,
    '... and starter\'s rate limit (burst 20) applies';

my ($sub_id) = map { $_->{id} } $fake->objects('subscriptions');
is StripeWebhook::send($ngx,
        $fake->event_json('invoice.payment_failed', $sub_id),
        $whsec)->{status}, 200, 'invoice.payment_failed: 200';
$res = gated('/quota/two', $key);
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [402, 'payment_past_due'],
    'past due with monetize_past_due deny: the gate answers 402';

is StripeWebhook::send($ngx, $fake->event_json('invoice.paid', $sub_id),
                       $whsec)->{status}, 200, 'invoice.paid: 200';
is gated('/quota/three', $key)->{status}, 200, 'paid: served again';

Test::Monetize::reconcile();
