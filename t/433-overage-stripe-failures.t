# Overage reporting while Stripe fails: its customers refused for a while,
# then its meter events answered 500, hung, dropped, and made but their
# answers lost; the gate keeps
# answering at once meanwhile; in the end the meter events sum to exactly
# the calls past the quota, each identifier once, every try of one event
# the same request. A job run again after it was done is answered Stripe's
# first answer (the idempotency key) and makes nothing new; an identifier
# Stripe has already (refused as a duplicate) counts as sent.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Time::HiRes ();

my $stripe = Test::Monetize::FakeStripe->start;

my $be = Test::Monetize::Backend->start(sub {
    return (200, {'Content-Type' => 'text/plain'}, "served\n");
});

# customers refused at first: the accounts' customer jobs, and the meter
# jobs' own attempts to get one, wait
$stripe->fail('/v1/customers', 500, 6);
$stripe->fail('/v1/billing/meter_events', 500, 4);
$stripe->fail('/v1/billing/meter_events', 'hang', 2);
$stripe->fail('/v1/billing/meter_events', 'drop', 3);
$stripe->fail('/v1/billing/meter_events', 'lost', 2);

my $ngx = Test::Monetize::Nginx->start(
    workers => 2,
    http_config => "monetize_stripe secret_key=" . $stripe->key
        . " api_base=" . $stripe->url . " timeout=1s tries=2;\n"
        . "monetize_overage_interval 1s;",
    config => <<"CONF");
    location /api/ {
        monetize_gate on;
        monetize_quota on;
        proxy_set_header X-Request-Id \$request_id;
        proxy_pass http://127.0.0.1:@{[ $be->port ]};
    }
CONF

Test::Monetize::psql(
    "INSERT INTO plans (id, name, price_cents, monthly_quota,"
    . "                  rate_limit_rps, rate_limit_burst, overage_price,"
    . "                  meter_event_name)"
    . " VALUES ('metered', 'Metered', 0, 10, 1000, 1000, 'price_metered',"
    . "         'api_calls')");

my @accounts = map { [Test::Monetize::account(plan => 'metered')] } 1 .. 2;

sub round {
    my ($n) = @_;
    my @calls = map { my $i = $_; map {
        [GET => "/api/$i", headers => {'X-API-Key' => $_->[1]}]
    } @accounts } 1 .. $n;
    my @res = $ngx->parallel(\@calls, concurrency => 10);
    return scalar grep { $_->{status} == 200 } @res;
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

is round(25), 50, '50 calls of two accounts pass (30 past the quota)';

# while a meter event hangs, the gate answers at once
my $hung = Test::Monetize::wait_until(30, sub {
    grep { $_->{path} eq '/v1/billing/meter_events'
           && !defined $_->{status} } $stripe->requests });
my $t0 = Time::HiRes::time();
my $r = $ngx->request('GET', '/api/x', headers => {'X-API-Key' =>
                                                   $accounts[0][1]});
my $took = Time::HiRes::time() - $t0;
ok $hung, 'a meter event hangs (or was dropped) at the fake Stripe';
ok $r->{status} == 200 && $took < 0.5,
    sprintf('... and a gated call is answered meanwhile (%.3fs)', $took);

is round(10), 20, 'more calls meanwhile: 20 more pass';

my %want = map { $_->[0] => $_->[1] } Test::Monetize::psql(
    "SELECT user_id, overage FROM quota_usage");
is_deeply [map { $want{$_->[0]} } @accounts], [26, 25],
    'past the quota: 26 and 25 calls';

ok Test::Monetize::wait_until(90, sub {
        my $e = events();
        my ($undone) = Test::Monetize::psql(
            "SELECT count(*) FROM jobs WHERE done_at IS NULL");
        $undone->[0] == 0
            && 2 == grep { ($e->{$_->[0]} // 0) == $want{$_->[0]} }
                    @accounts }),
    'after the failures, every job is done, and the meter events sum to '
    . 'exactly the calls past the quota' or diag explain events();

my @failed = grep { $_->{path} eq '/v1/billing/meter_events'
                    && ($_->{status} // 0) != 200 } $stripe->requests;
ok @failed >= 11,
    scalar(@failed) . ' meter event requests failed on the way';
ok scalar(grep { $_->{replayed} } $stripe->requests) >= 2,
    '... those whose answer was lost were answered again from their '
    . 'idempotency key'
    or diag explain [map { [@$_{qw(status replayed)}, $_->{form}{identifier}] }
                     grep { $_->{path} =~ /meter/ } $stripe->requests];

my @events = $stripe->objects('meter_events');
my %ids;
$ids{$_->{identifier}}++ for @events;
is scalar(grep { $_ > 1 } values %ids), 0, 'each identifier once';

my %bodies;
for my $q (grep { $_->{path} eq '/v1/billing/meter_events' }
           $stripe->requests) {
    $bodies{$q->{headers}{'Idempotency-Key'} // ''}{$q->{body}}++;
}
is scalar(grep { keys %{$bodies{$_}} != 1 } keys %bodies), 0,
    'every try of one event is the same request, with the same key';
is scalar(keys %bodies), scalar(@events),
    '... and each event became one object';

# --- a job run again: Stripe's first answer, nothing new -------------------

my $before = scalar @events;
my $replayed = scalar grep { $_->{replayed} } $stripe->requests;
my ($job) = Test::Monetize::psql(
    "UPDATE jobs SET done_at = NULL, next_attempt_at = now()"
    . " WHERE id = (SELECT min(id) FROM jobs WHERE kind = 'meter_event')"
    . " RETURNING id");
ok Test::Monetize::wait_until(20, sub {
        my ($d) = Test::Monetize::psql(
            "SELECT done_at IS NOT NULL FROM jobs WHERE id = \$1", $job->[0]);
        $d->[0] eq 't' }),
    'a done job made due again is done again';
is scalar(grep { $_->{replayed} } $stripe->requests), $replayed + 1,
    '... answered from the idempotency key';
is scalar($stripe->objects('meter_events')), $before, '... nothing new';

# --- an identifier Stripe has already -------------------------------------

my ($dup_user) = Test::Monetize::account(plan => 'metered');
my $body = 'event_name=api_calls&payload%5Bstripe_customer_id%5D=cus_other'
         . '&payload%5Bvalue%5D=1&identifier=known-1';
my $res = Test::Monetize::HTTP->new(
    port => $stripe->port, timeout => 5,
    raw => Test::Monetize::_build_request(
        method => 'POST', path => '/v1/billing/meter_events',
        headers => {Authorization => 'Bearer ' . $stripe->key,
                    'Content-Type' => 'application/x-www-form-urlencoded',
                    'Idempotency-Key' => 'another-key'},
        body => $body))->wait;
is $res->{status}, 200, 'Stripe has a meter event "known-1"';

Test::Monetize::psql(
    "SELECT monetize_job_enqueue('meter_event', \$1,"
    . " '{\"identifier\": \"known-1\", \"event_name\": \"api_calls\","
    . "   \"value\": 1, \"timestamp\": 1700000000}', 'known-1')", $dup_user);
ok Test::Monetize::wait_until(20, sub {
        my ($d) = Test::Monetize::psql(
            "SELECT done_at IS NOT NULL FROM jobs WHERE dedup_key = 'known-1'");
        $d->[0] eq 't' }),
    'a job of that identifier is done';
my @dup = grep { ($_->{form}{identifier} // '') eq 'known-1' }
          $stripe->requests;
is_deeply [map { $_->{status} } @dup], [200, 400],
    '... Stripe refused it as a duplicate, which counts as sent';
is scalar(grep { $_->{identifier} eq 'known-1' }
          $stripe->objects('meter_events')), 1, '... once there';

my @served = map { $_->{headers}{'x-request-id'} } $be->requests;
Test::Monetize::reconcile(served => \@served);

done_testing;
