# monetize_past_due allow|deny: an account whose subscription's payment
# failed (invoice.payment_failed: past_due) is refused at a deny location
# (402 payment_past_due, with where to pay) and served at an allow one (the
# default) on its plan; invoice.paid lets it through again, at once on
# every worker (the subscriptions NOTIFY drops the cached key).

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use StripeWebhook;

plan tests => 17;

my $secret = 'whsec_' . join '', map { ('a' .. 'z')[rand 26] } 1 .. 32;

my $ngx = Test::Monetize::Nginx->start(
    workers => 2,
    http_config => "monetize_stripe_webhook_secret $secret;"
                   . ' monetize_cache zone=keys:1m ttl=3600s;'
                   . ' monetize_top_up_url https://shop.example.com/pay;',
    config => <<'CONF');
    location /v1/ { monetize_api; }
    location /deny/ {
        monetize_gate on;
        monetize_cost 0;
        monetize_past_due deny;
        add_header X-Plan $monetize_plan always;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /allow/ {
        monetize_gate on;
        monetize_cost 0;
        monetize_past_due allow;
        add_header X-Plan $monetize_plan always;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /default/ {
        monetize_gate on;
        monetize_cost 0;
        add_header X-Plan $monetize_plan always;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /backend/ { return 200 "ok\n"; }
CONF

ok $ngx->wait_for_log(
       qr/listening for changes on postgres(?s:.*)listening for changes/),
    'both workers listen for changes';

my ($ann, $A) = Test::Monetize::account(email => 'ann@example.com');
Test::Monetize::psql("UPDATE plans SET stripe_price_id = 'price_starter'"
                     . " WHERE id = 'starter'");

my $t0 = time - 100;

sub event {
    my ($type, $obj, $created) = @_;
    my $res = StripeWebhook::send($ngx, StripeWebhook::event(
        $type, $obj, created => $created), $secret);
    die "$type: $res->{status} $res->{body}" unless $res->{status} == 200;
}

# every worker: several calls, the connections spread over both
sub statuses {
    my ($path) = @_;
    my %seen;
    $seen{$_->{status} . ' ' . ($_->{headers}{'x-plan'} // '-')}++
        for $ngx->parallel([map { [GET => $path,
                                   headers => [Authorization => "Bearer $A"]]
                                } 1 .. 6], concurrency => 6);
    return join ',', sort keys %seen;
}

event('customer.subscription.created',
      {id => 'sub_pd', object => 'subscription', status => 'active',
       metadata => {user_id => $ann}, cancel_at_period_end => JSON::PP::false,
       current_period_start => time - 60, current_period_end => time + 86400,
       items => {data => [{price => {id => 'price_starter'}}]}}, $t0);

is statuses('/deny/x'), '200 starter', 'active, deny: served on its plan';
is statuses('/allow/x'), '200 starter', 'active, allow: served';

event('invoice.payment_failed',
      {id => 'in_pd_1', object => 'invoice', subscription => 'sub_pd'},
      $t0 + 10);

is statuses('/deny/x'), '402 -',
    'past_due, deny: 402 on every worker, at once';
my $res = $ngx->request('GET', '/deny/x',
                        headers => [Authorization => "Bearer $A"]);
is_deeply [$res->{json}{error}{code}, $res->{json}{error}{top_up_url}],
    ['payment_past_due', 'https://shop.example.com/pay'],
    '... payment_past_due, with where to pay';
like $res->{json}{error}{message}, qr{billing/portal},
    '... and the billing portal';
is statuses('/allow/x'), '200 starter', 'past_due, allow: served on its plan';
is statuses('/default/x'), '200 starter', 'past_due, by default: served';
is_deeply [Test::Monetize::psql(
        'SELECT past_due FROM monetize_gate_session($1)', $ann)], [['t']],
    'session tokens see it too';

event('invoice.paid',
      {id => 'in_pd_2', object => 'invoice', subscription => 'sub_pd',
       lines => {data => [{period => {start => time,
                                      end => time + 86400}}]}},
      $t0 + 20);

is statuses('/deny/x'), '200 starter', 'paid again, deny: served at once';
is statuses('/allow/x'), '200 starter', 'paid again, allow: served';
is_deeply [Test::Monetize::psql(
        'SELECT past_due FROM monetize_gate_session($1)', $ann)], [['f']],
    'session tokens too';

# An account without a subscription is never past due.
my ($bob, $B) = Test::Monetize::account(email => 'bob@example.com');
$res = $ngx->request('GET', '/deny/x',
                     headers => [Authorization => "Bearer $B"]);
is_deeply [$res->{status}, $res->{headers}{'x-plan'}], [200, 'free'],
    'no subscription, deny: served on free';

# The directive.
my ($rc, $out) = Test::Monetize::nginx_t(
    config => 'location /a/ { monetize_gate on; monetize_past_due maybe;'
              . ' return 200; }');
ok $rc != 0 && $out =~ /\[emerg\].*monetize_past_due: invalid value "maybe"/,
    'monetize_past_due maybe: [emerg]' or diag $out;
($rc, $out) = Test::Monetize::nginx_t(
    http_config => 'monetize_past_due deny;',
    config => 'location /a/ { monetize_gate on; return 200; }');
is $rc, 0, 'at http level: taken' or diag $out;

is_deeply [Test::Monetize::psql(
        "SELECT count(*) FROM webhook_events WHERE outcome LIKE 'ignored%'")],
    [[0]], 'every event applied';
Test::Monetize::reconcile();
