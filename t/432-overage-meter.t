# Overage reported to Stripe's meters, end to end against the fake Stripe:
# many calls past the quota, from several clients of several accounts, on
# two workers, in two rounds; the fake receives meter events whose values
# sum, per customer, to exactly the calls past the quota, each identifier
# once, each sent with its identifier as Idempotency-Key, batched (a few
# events, not one per call), and GET /me says all of them are reported.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $stripe = Test::Monetize::FakeStripe->start;

my $be = Test::Monetize::Backend->start(sub {
    return (200, {'Content-Type' => 'text/plain'}, "served\n");
});

my $ngx = Test::Monetize::Nginx->start(
    workers => 2,
    http_config => "monetize_cache zone=keys:1m;\n"
        . "monetize_stripe secret_key=" . $stripe->key
        . " api_base=" . $stripe->url . " timeout=2s tries=2;\n"
        . "monetize_overage_interval 1s;",
    config => <<"CONF");
    location /api/ {
        monetize_gate on;
        monetize_quota on;
        proxy_set_header X-Request-Id \$request_id;
        proxy_pass http://127.0.0.1:@{[ $be->port ]};
    }
    location /v1/ {
        monetize_api;
    }
CONF

Test::Monetize::psql(
    "INSERT INTO plans (id, name, price_cents, monthly_quota,"
    . "                  rate_limit_rps, rate_limit_burst, overage_price,"
    . "                  meter_event_name)"
    . " VALUES ('metered', 'Metered', 0, 10, 1000, 1000, 'price_metered',"
    . "         'api_calls')");

my @accounts = map { [Test::Monetize::account(plan => 'metered',
                                              credits => 3, keys => 2)] }
               1 .. 3;

sub round {
    my ($n) = @_;
    my @calls;
    for my $i (1 .. $n) {
        for my $a (@accounts) {
            push @calls, [GET => "/api/r$i",
                          headers => {'X-API-Key' => $a->[1 + $i % 2]}];
        }
    }
    return $ngx->parallel(\@calls, concurrency => 24);
}

sub overage {
    my %n = map { $_->[0] => $_->[1] } Test::Monetize::psql(
        "SELECT user_id, overage FROM quota_usage");
    return \%n;
}

sub events {
    my %sum;
    my %customer = map { $_->[1] => $_->[0] } Test::Monetize::psql(
        "SELECT id, stripe_customer_id FROM users"
        . " WHERE stripe_customer_id IS NOT NULL");
    for my $e ($stripe->objects('meter_events')) {
        $sum{$customer{$e->{payload}{stripe_customer_id}} // 'unknown'}
            += $e->{payload}{value};
    }
    return \%sum;
}

my @res = round(40);
my %status;
$status{$_->{status}}++ for @res;
is_deeply \%status, {200 => 120}, '120 calls of three accounts, quota 10: '
    . 'all pass';
is scalar(grep { ($_->{headers}{'x-overage'} // '') eq 'true' } @res), 90,
    '... 90 of them past the quota, with X-Overage: true';

ok Test::Monetize::wait_until(20, sub {
        my $e = events();
        3 == grep { ($e->{$_->[0]} // 0) == 30 } @accounts }),
    'the fake Stripe receives meter events worth 30 calls per account'
    or diag explain events();

@res = round(25);
%status = ();
$status{$_->{status}}++ for @res;
is_deeply \%status, {200 => 75}, 'a second round: 75 more calls pass';

my $want = overage();
is_deeply [map { $want->{$_->[0]} } @accounts], [55, 55, 55],
    '... 55 calls past the quota per account, as counted';

ok Test::Monetize::wait_until(20, sub {
        my $e = events();
        3 == grep { ($e->{$_->[0]} // 0) == 55 } @accounts }),
    'the meter events sum to exactly the calls past the quota, per account'
    or diag explain events();

sleep 3;        # nothing more comes: no report is sent twice
is_deeply events(), {map { $_->[0] => 55 } @accounts},
    '... and stay so';

my @events = $stripe->objects('meter_events');
my %ids;
$ids{$_->{identifier}}++ for @events;
is scalar(grep { $_ > 1 } values %ids), 0, 'each identifier once';
ok @events >= 6 && @events < 90,
    'batched: ' . scalar(@events) . ' events for 165 calls';
my ($gap) = Test::Monetize::psql(
    "SELECT min(gap) FROM (SELECT created_at - lag(created_at)"
    . "       OVER (PARTITION BY user_id ORDER BY id) AS gap"
    . "  FROM jobs WHERE kind = 'meter_event') AS g");
ok $gap->[0] ge '00:00:01',
    "... at most one an interval (1s) per account: $gap->[0] at least";
is scalar(grep { $_->{event_name} ne 'api_calls' } @events), 0,
    "each for the plan's meter";

my @posts = grep { $_->{path} eq '/v1/billing/meter_events' }
            $stripe->requests;
is scalar(grep { ($_->{headers}{'Idempotency-Key'} // '') ne
                 ($_->{form}{identifier} // 'none') } @posts), 0,
    'each sent with its identifier as its Idempotency-Key';
is scalar(grep { !$_->{form}{timestamp} || $_->{form}{timestamp} > time
                 || $_->{form}{timestamp} < time - 600 } @posts), 0,
    '... and the time of its calls';

my ($customers) = Test::Monetize::psql(
    "SELECT count(DISTINCT stripe_customer_id) FROM users");
is_deeply [$customers->[0], scalar $stripe->objects('customers')], [3, 3],
    'one Stripe customer per account, whichever job made it';

my ($jobs) = Test::Monetize::psql(
    "SELECT count(*), count(done_at), sum((payload->>'value')::int)"
    . "  FROM jobs WHERE kind = 'meter_event'");
is_deeply $jobs, [scalar @events, scalar @events, 165],
    'one job per event, all done';

my $me = $ngx->request('GET', '/v1/me',
                       headers => {'X-API-Key' => $accounts[0][1]});
is_deeply $me->{json}{overage},
    {billed => JSON::PP::true(), calls => 55, reported => 55},
    'GET /me: 55 calls past the quota, 55 reported';

my @served = map { $_->{headers}{'x-request-id'} } $be->requests;
Test::Monetize::reconcile(served => \@served);
is_deeply [map { [Test::Monetize::psql(
        "SELECT balance FROM balances WHERE user_id = \$1", $_->[0])] }
           @accounts], [map { [[3]] } @accounts],
    'no credit moved for the overage calls';

done_testing;
