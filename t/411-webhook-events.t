# What each Stripe event does, checked in the database: purchases granted
# once (whichever event, however often), refunds taken back in proportion
# and never below zero, the subscription's plan, status and period, events
# out of order, unknown types; and a plan change reaches the gate at once.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use StripeWebhook;

plan tests => 62;

my $secret = 'whsec_' . join '', map { ('a' .. 'z')[rand 26] } 1 .. 32;

my $ngx = Test::Monetize::Nginx->start(
    http_config => "monetize_stripe_webhook_secret $secret;"
                   . ' monetize_cache zone=keys:1m ttl=3600s;',
    config => <<'CONF');
    location /v1/ { monetize_api; }
    location /api/ {
        monetize_gate on;
        monetize_cost 0;
        add_header X-Plan $monetize_plan always;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /backend/ { return 200 "ok\n"; }
CONF

ok $ngx->wait_for_log('listening for changes on postgres'),
    'the worker listens for changes';

my ($ann, $A) = Test::Monetize::account(email => 'ann@example.com');
my ($bob, $B) = Test::Monetize::account(email => 'bob@example.com');
Test::Monetize::psql("UPDATE users SET stripe_customer_id = 'cus_ann'"
                     . " WHERE id = \$1", $ann);
Test::Monetize::psql("UPDATE plans SET stripe_price_id = 'price_' || id"
                     . " WHERE id IN ('starter', 'professional')");

sub event {
    my ($type, $obj, %o) = @_;
    my $res = StripeWebhook::send($ngx, StripeWebhook::event($type, $obj,
                                                             %o), $secret);
    is $res->{status}, 200, "$type ($obj->{id}): 200"
        or diag explain $res;
    return $res->{json} // {};
}

sub balance {
    return (Test::Monetize::psql(
        'SELECT balance FROM balances WHERE user_id = $1', $_[0]))[0][0];
}

sub session {
    my ($id, %o) = @_;
    return {id => $id, object => 'checkout.session', mode => 'payment',
            payment_status => 'paid', client_reference_id => $ann,
            customer => 'cus_ann', payment_intent => "pi_$id",
            metadata => {user_id => $ann, pack => 'small',
                         credits => '1000'},
            %o};
}

# ---- purchases --------------------------------------------------------

my $j = event('checkout.session.completed', session('cs_1'),
              id => 'evt_cs_1');
is $j->{outcome}, 'granted 1000', 'a paid session grants its credits';
is balance($ann), 1000, 'the balance has them';
is_deeply [Test::Monetize::psql(
        "SELECT delta, kind, metadata->>'payment_intent',"
        . "     metadata->>'pack' FROM credit_ledger"
        . " WHERE reference = 'stripe:checkout:cs_1'")],
    [[1000, 'purchase', 'pi_cs_1', 'small']], 'one purchase in the ledger';

$j = event('checkout.session.completed', session('cs_1'), id => 'evt_cs_1');
is_deeply [$j->{duplicate}, balance($ann)], [JSON::PP::true, 1000],
    'the same event again: a duplicate, nothing granted';
$j = event('checkout.session.async_payment_succeeded', session('cs_1'));
is_deeply [$j->{outcome}, balance($ann)], ['already granted', 1000],
    'another event for the same session: granted once';

$j = event('checkout.session.completed',
           session('cs_2', payment_status => 'unpaid'));
is_deeply [$j->{outcome}, balance($ann)], ['awaiting payment', 1000],
    'an unpaid session (a delayed method) grants nothing yet';
$j = event('checkout.session.async_payment_succeeded', session('cs_2'));
is_deeply [$j->{outcome}, balance($ann)], ['granted 1000', 2000],
    'its async_payment_succeeded grants';

$j = event('checkout.session.async_payment_failed',
           session('cs_3', payment_status => 'unpaid'));
is_deeply [$j->{outcome}, balance($ann)], ['payment failed', 2000],
    'async_payment_failed: recorded, nothing granted';
is_deeply [Test::Monetize::psql(
        "SELECT target_user_id FROM audit_log"
        . " WHERE action = 'stripe.payment_failed'")], [[$ann]],
    '... in the audit log';

# The account through the customer alone; the pack's credits from its row.
$j = event('checkout.session.completed',
           session('cs_4', client_reference_id => undef,
                   metadata => {pack => 'medium'}));
is_deeply [$j->{outcome}, balance($ann)], ['granted 10000', 12000],
    'found by its customer; the pack (medium) says the credits';

# ---- refunds ----------------------------------------------------------

sub charge {
    my ($pi, $amount, $refunded) = @_;
    return {id => "ch_$pi", object => 'charge', payment_intent => $pi,
            amount => $amount, amount_refunded => $refunded,
            refunded => $refunded == $amount ? JSON::PP::true
                                             : JSON::PP::false};
}

$j = event('charge.refunded', charge('pi_cs_1', 1000, 250));
is_deeply [$j->{outcome}, balance($ann)], ['took back 250 of 250', 11750],
    'a quarter refunded: a quarter of the credits taken back';
$j = event('charge.refunded', charge('pi_cs_1', 1000, 1000));
is_deeply [$j->{outcome}, balance($ann)], ['took back 750 of 750', 11000],
    'then the rest: the rest taken back';
$j = event('charge.refunded', charge('pi_cs_1', 1000, 1000));
is_deeply [$j->{outcome}, balance($ann)],
    ['nothing more to take back', 11000],
    'another event of the same total takes nothing more';
is_deeply [Test::Monetize::psql(
        "SELECT sum(delta), count(*) FROM credit_ledger"
        . " WHERE kind = 'purchase_refund'"
        . "   AND metadata->>'purchase' = 'stripe:checkout:cs_1'")],
    [[-1000, 2]], 'the purchase of cs_1 taken back in full, exactly';

# Spent first: the balance goes to zero, never below; the shortfall is
# written down.
my $res = $ngx->request('POST', '/v1/use_credit',
                        headers => [Authorization => "Bearer $A"],
                        json => {amount => 10700});
is_deeply [$res->{status}, balance($ann)], [200, 300], '(10700 spent)';
$j = event('charge.refunded', charge('pi_cs_2', 1000, 1000));
is_deeply [$j->{outcome}, balance($ann)], ['took back 300 of 1000', 0],
    'a refund beyond the balance takes it to zero';
is_deeply [Test::Monetize::psql(
        "SELECT delta, metadata->>'shortfall', metadata->>'wanted'"
        . "  FROM credit_ledger WHERE kind = 'purchase_refund'"
        . "   AND metadata->>'charge' = 'ch_pi_cs_2'")],
    [[-300, 700, 1000]], 'the shortfall in the ledger row';
is_deeply [Test::Monetize::psql(
        "SELECT details->>'shortfall', target FROM audit_log"
        . " WHERE action = 'stripe.refund_shortfall'")],
    [[700, 'charge:ch_pi_cs_2']], 'and in the audit log';
$j = event('charge.refunded', charge('pi_unknown', 1000, 1000));
like $j->{outcome}, qr/^ignored/, 'a charge that bought nothing: ignored';

# ---- subscriptions ----------------------------------------------------

my $t0 = time - 1000;
my $day = 86400;

sub sub_obj {
    my ($id, %o) = @_;
    return {id => $id, object => 'subscription', customer => 'cus_ann',
            status => 'active', cancel_at_period_end => JSON::PP::false,
            current_period_start => time - $day,
            current_period_end => time + 29 * $day,
            metadata => {user_id => $ann},
            items => {object => 'list',
                      data => [{price => {id => 'price_starter'}}]},
            %o};
}

sub sub_row {
    return [Test::Monetize::psql(
        "SELECT plan_id, status, cancel_at_period_end,"
        . "     extract(epoch FROM current_period_end)::bigint,"
        . "     stripe_event_created"
        . "  FROM subscriptions WHERE stripe_subscription_id = \$1",
        $_[0])]->[0];
}

sub plan_now {
    return (Test::Monetize::psql(
        'SELECT plan_id FROM monetize_plan_of($1)', $_[0]))[0][0];
}

sub gate_plan {
    return $ngx->request('GET', '/api/x',
        headers => [Authorization => "Bearer $_[0]"])->{headers}{'x-plan'};
}

is gate_plan($A), 'free', 'the gate: free';

my $end = time + 29 * $day;
event('customer.subscription.created',
      sub_obj('sub_1', current_period_end => $end), created => $t0);
is_deeply sub_row('sub_1'), ['starter', 'active', 'f', $end, $t0],
    'created: the plan from the price, the status and period';
is gate_plan($A), 'starter', 'the gate sees the plan at once';

event('customer.subscription.updated',
      sub_obj('sub_1', current_period_end => $end,
              cancel_at_period_end => JSON::PP::true,
              items => {data => [{price => {id => 'price_professional'}}]}),
      created => $t0 + 10);
is_deeply sub_row('sub_1'), ['professional', 'active', 't', $end, $t0 + 10],
    'updated: a new plan, cancel_at_period_end';
is gate_plan($A), 'professional', 'the gate sees the upgrade at once';

$j = event('customer.subscription.updated',
           sub_obj('sub_1', status => 'unpaid'), created => $t0 + 5);
is_deeply [$j->{outcome}, sub_row('sub_1')],
    ['stale: a newer event was applied',
     ['professional', 'active', 't', $end, $t0 + 10]],
    'an older update that arrives late changes nothing';

$j = event('invoice.payment_failed',
           {id => 'in_1', object => 'invoice', subscription => 'sub_1',
            customer => 'cus_ann'}, created => $t0 + 20);
is sub_row('sub_1')->[1], 'past_due', 'invoice.payment_failed: past_due';

my ($start2, $end2) = (time - 60, time + 30 * $day);
$j = event('invoice.paid',
           {id => 'in_2', object => 'invoice', subscription => 'sub_1',
            customer => 'cus_ann',
            lines => {data => [{period => {start => $start2,
                                           end => $end2}}]}},
           created => $t0 + 30);
is_deeply sub_row('sub_1'), ['professional', 'active', 't', $end2, $t0 + 30],
    'invoice.paid: active, the new period';
is_deeply [Test::Monetize::psql(
        'SELECT extract(epoch FROM period_start)::bigint'
        . '  FROM monetize_plan_of($1)', $ann)], [[$start2]],
    '... whose quota starts now';

$j = event('invoice.payment_failed',
           {id => 'in_1b', object => 'invoice', subscription => 'sub_1'},
           created => $t0 + 25);
is_deeply [$j->{outcome}, sub_row('sub_1')->[1]],
    ['stale: a newer event was applied', 'active'],
    'a payment failure older than the payment: changes nothing';

event('customer.subscription.deleted',
      sub_obj('sub_1', status => 'canceled', current_period_end => $end2,
              items => {data => [{price => {id => 'price_professional'}}]}),
      created => $t0 + 40);
is_deeply [sub_row('sub_1')->[1], plan_now($ann)],
    ['canceled', 'professional'],
    'deleted: canceled, on its plan until the period ends';
Test::Monetize::psql("UPDATE subscriptions SET current_period_end = now()"
                     . " WHERE stripe_subscription_id = 'sub_1'");
is_deeply [plan_now($ann), gate_plan($A)], ['free', 'free'],
    '... and free once it has';

# Subscription mode: the session links the subscription, whose own
# (earlier) event then fills in the period.
$j = event('checkout.session.completed',
           {id => 'cs_sub', object => 'checkout.session',
            mode => 'subscription', payment_status => 'paid',
            client_reference_id => $bob, customer => 'cus_bob',
            subscription => 'sub_2',
            metadata => {user_id => $bob, plan => 'starter'}},
           created => $t0 + 100);
is_deeply [$j->{outcome}, @{sub_row('sub_2')}[0 .. 1], plan_now($bob)],
    ['subscription linked', 'starter', 'active', 'starter'],
    'a subscription checkout links the subscription to the account';
is_deeply [Test::Monetize::psql(
        'SELECT stripe_customer_id FROM users WHERE id = $1', $bob)],
    [['cus_bob']], '... and the customer';
event('customer.subscription.created',
      sub_obj('sub_2', customer => 'cus_bob', metadata => {},
              current_period_end => $end), created => $t0 + 90);
is_deeply sub_row('sub_2'), ['starter', 'active', 'f', $end, $t0 + 90],
    'its created event, older than the session, still sets the period';
is gate_plan($B), 'starter', 'the gate sees it';

# ---- the rest ---------------------------------------------------------

$j = event('customer.tax_id.created', {id => 'txi_1', object => 'tax_id'},
           id => 'evt_unknown');
like $j->{outcome}, qr/^ignored/, 'an unknown type: 200, ignored';
is_deeply [Test::Monetize::psql(
        "SELECT type, outcome IS NOT NULL FROM webhook_events"
        . " WHERE id = 'evt_unknown'")],
    [['customer.tax_id.created', 't']], '... and recorded';

is_deeply [Test::Monetize::psql(
        "SELECT count(*) FROM webhook_events WHERE processed_at IS NULL")],
    [[0]], 'every event recorded was processed';

Test::Monetize::reconcile();
