# Overage at the gate: where a location enforces the quota, an account on a
# plan with an overage price passes past its quota, with X-Overage: true,
# paid with no credits, under concurrency on two workers, counted exactly;
# a plan without one is refused past its quota as before; GET /me shows
# the overage so far; a call past the quota answered 503 is not counted.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $be = Test::Monetize::Backend->start(sub {
    return (200, {'Content-Type' => 'text/plain'}, "served\n");
});

my $ngx = Test::Monetize::Nginx->start(
    workers => 2,
    http_config => 'monetize_cache zone=keys:1m;',
    config => <<"CONF");
    location /api/ {
        monetize_gate on;
        monetize_quota on;
        monetize_cost \$arg_cost;
        proxy_set_header X-Request-Id \$request_id;
        proxy_pass http://127.0.0.1:@{[ $be->port ]};
    }
    location /plain/ {
        monetize_gate on;
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
    . " VALUES ('metered', 'Metered', 0, 20, 1000, 1000, 'price_metered',"
    . "         'api_calls'),"
    . "        ('capped', 'Capped', 0, 20, 1000, 1000, NULL, NULL)");

sub calls {
    my ($key, $count, $cost, $from) = @_;
    return $ngx->parallel([map {
        [GET => "/api/c$_?cost=$cost", headers => {'X-API-Key' => $key}]
    } 1 .. $count], concurrency => 20);
}

sub tally {
    my %n;
    for my $r (@_) {
        my $k = $r->{status} . (($r->{headers}{'x-overage'} // '') eq 'true'
                                ? '+overage' : '');
        $n{$k}++;
    }
    return \%n;
}

# --- an overage plan: past the quota, calls pass ----------------------------

my ($user, $key) = Test::Monetize::account(credits => 5, plan => 'metered');
my @res = calls($key, 50, 1);
is_deeply tally(@res), {200 => 20, '200+overage' => 30},
    '50 calls, quota 20: 20 included, 30 pass past it with X-Overage: true';

my ($over) = grep { ($_->{headers}{'x-overage'} // '') eq 'true' } @res;
is_deeply [$over->{headers}{'x-quota-remaining'},
           $over->{headers}{'x-credits-remaining'}], [0, 5],
    '... with no quota left, and no credits taken';

my ($row) = Test::Monetize::psql(
    "SELECT calls, overage FROM quota_usage WHERE user_id = \$1", $user);
is_deeply $row, [50, 30], 'the period counts 50 calls, 30 past the quota';
($row) = Test::Monetize::psql(
    "SELECT (SELECT count(*) FROM credit_ledger"
    . "       WHERE user_id = \$1 AND kind = 'debit'),"
    . "     (SELECT count(*) FROM gate_calls"
    . "       WHERE user_id = \$1 AND outcome = 'overage')", $user);
is_deeply $row, [0, 30], 'no debit; 30 overage calls recorded';

@res = calls($key, 10, 0);
is_deeply tally(@res), {'200+overage' => 10},
    'free calls past the quota pass too (no 429)';

my $r = $ngx->request('GET', '/plain/x', headers => {'X-API-Key' => $key});
is_deeply [$r->{status}, $r->{headers}{'x-overage'},
           $r->{headers}{'x-credits-remaining'}], [200, undef, 4],
    'where the quota is not enforced: credits pay, no X-Overage';

my $me = $ngx->request('GET', '/v1/me', headers => {'X-API-Key' => $key});
is_deeply [$me->{status}, $me->{json}{overage}],
    [200, {billed => JSON::PP::true(), calls => 40, reported => 0}],
    'GET /me: 40 calls past the quota this period, none reported yet';
is $me->{json}{quota}{used}, 60, '... and the quota used counts them';

# --- a plan without overage: refused past its quota, as ever ---------------

my ($user2, $key2) = Test::Monetize::account(credits => 5, plan => 'capped');
@res = calls($key2, 30, 1);
is_deeply tally(@res), {200 => 25, 402 => 5},
    'a plan without overage: 20 included, 5 paid with credits, then 402';
@res = calls($key2, 5, 0);
is_deeply tally(@res), {429 => 5}, '... free calls past it: 429';
is $res[0]{json}{error}{code}, 'quota_exceeded', '... quota_exceeded';

$me = $ngx->request('GET', '/v1/me', headers => {'X-API-Key' => $key2});
is_deeply $me->{json}{overage},
    {billed => JSON::PP::false(), calls => 0, reported => 0},
    'GET /me: not billed, no overage';

# --- a call past the quota answered 503 is not counted --------------------

my $count = sub {
    my ($row) = Test::Monetize::psql(
        "SELECT q.calls, q.overage,"
        . "     (SELECT count(*) FROM gate_calls c"
        . "       WHERE c.user_id = \$1 AND c.outcome = 'overage'"
        . "         AND c.voided_at IS NULL)"
        . "  FROM quota_usage q WHERE q.user_id = \$1", $user);
    return $row;
};
my $before = $count->();
my $hold = Test::Monetize::psql_session();
$hold->query('BEGIN');
$hold->query("SELECT 1 FROM balances WHERE user_id = '$user' FOR UPDATE");
$r = $ngx->request('GET', '/api/held?cost=1', headers => {'X-API-Key' => $key},
                   timeout => 20);
$hold->query('COMMIT');
$hold->close;
is_deeply [$r->{status}, $r->{json}{error}{code}],
    [503, 'backend_unavailable'],
    'the account held past the debit\'s bound: 503 backend_unavailable'
    or diag explain $r;
ok Test::Monetize::wait_until(10, sub {
        !defined Test::Monetize::json_match($before, $count->()) }),
    '... and the call is not counted past the quota'
    or diag explain [$before, $count->()];
$r = $ngx->request('GET', '/api/after?cost=1', headers => {'X-API-Key' => $key});
is_deeply [$r->{status}, $r->{headers}{'x-overage'}, $count->()->[1]],
    [200, 'true', $before->[1] + 1], 'the next call is, once'
    or diag explain [$r->{status}, $count->()];

my @served = map { $_->{headers}{'x-request-id'} } $be->requests;
Test::Monetize::reconcile(served => \@served);

done_testing;
