# Monthly quotas, where a location enforces them (monetize_quota on): the
# plan's included calls first, then prepaid credits, then 402
# insufficient_credits (paying lets the call through; the answer says when
# the quota renews), never a 429 with a Retry-After of days. Counted in
# PostgreSQL, in the transaction of the debits: exact under concurrency, on
# every node.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $ngx = Test::Monetize::Nginx->start(
    workers => 2,
    http_config => 'monetize_cache zone=keys:1m;',
    config => <<'CONF');
    location /api/ {
        monetize_gate on;
        monetize_quota on;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /limited/ {
        monetize_gate on;
        monetize_quota on;
        monetize_rate_limit local;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /backend/ { return 200 "ok\n"; }
CONF

sub calls {
    my ($key, $count) = @_;
    return $ngx->parallel([map {
        [GET => "/api/$_", headers => {'X-API-Key' => $key}]
    } 1 .. $count], concurrency => 30);
}

# --- a free account: 100 calls a month, no credits --------------------------

my ($user, $key) = Test::Monetize::account();
my @res = calls($key, 150);
my %status;
$status{$_->{status}}++ for @res;
is_deeply \%status, {200 => 100, 402 => 50},
    'a free account: exactly 100 calls pass under concurrency, then 402';

my ($over) = grep { $_->{status} == 402 } @res;
is $over->{json}{error}{code}, 'insufficient_credits',
    '... insufficient_credits: credits would let the call through';
like $over->{json}{error}{top_up_url}, qr{^https?://},
    '... with where to buy them';
my ($month_end) = Test::Monetize::psql(
    "SELECT to_char(date_trunc('month', now() AT TIME ZONE 'UTC')"
    . "               + interval '1 month', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')");
is $over->{json}{error}{quota_resets_at}, $month_end->[0],
    '... and when the quota renews, in ISO 8601 (the calendar month\'s end)';
ok !defined $over->{headers}{'retry-after'},
    '... and no Retry-After: waiting is not the only way';
is $over->{headers}{'x-quota-remaining'}, 0, '... X-Quota-Remaining: 0';
is $over->{json}{error}{balance}, 0, '... and the balance, 0';
is $over->{headers}{'x-credits-remaining'}, 0, '... X-Credits-Remaining: 0';

my @left = sort { $a <=> $b } map { $_->{headers}{'x-quota-remaining'} }
           grep { $_->{status} == 200 } @res;
is_deeply \@left, [0 .. 99], 'each call that passed saw what was left';

my ($counted) = Test::Monetize::psql(
    "SELECT calls FROM quota_usage WHERE user_id = \$1", $user);
is $counted->[0], 100, 'the period counts 100 calls';
my ($debits) = Test::Monetize::psql(
    "SELECT count(*) FROM credit_ledger WHERE user_id = \$1", $user);
is $debits->[0], 0, 'included calls charge no credits';

# --- a plan change takes effect on the next call -----------------------------

Test::Monetize::psql(
    "INSERT INTO subscriptions (user_id, plan_id, status,"
    . "                         current_period_start, current_period_end)"
    . " VALUES (\$1, 'starter', 'active', now(), now() + interval '30 days')",
    $user);
my $next = $ngx->request('GET', '/api/next', headers => {'X-API-Key' => $key});
is_deeply [$next->{status}, $next->{headers}{'x-quota-remaining'}],
    [200, 9999], 'after upgrading to starter: the next call passes, 9,999 left';

# --- the plan's calls first, then credits -----------------------------------

my ($user2, $key2) = Test::Monetize::account(credits => 30);
@res = calls($key2, 150);
%status = ();
$status{$_->{status}}++ for @res;
is_deeply \%status, {200 => 130, 402 => 20},
    '100 included calls, 30 paid with credits, then 402';

my ($ledger) = Test::Monetize::psql(
    "SELECT count(*) FILTER (WHERE kind = 'debit'), sum(delta),"
    . "       (SELECT balance FROM balances WHERE user_id = \$1)"
    . "  FROM credit_ledger WHERE user_id = \$1", $user2);
is_deeply $ledger, [30, 0, 0],
    'the ledger: 30 debits; its entries sum to the balance, 0';

# --- RateLimit-Remaining tells no calls are left when none pass ---------

my $call = sub {
    $ngx->request('GET', '/limited/x', headers => {'X-API-Key' => $_[0]});
};
my $r = $call->($key2);
is_deeply [$r->{status}, $r->{json}{error}{code},
           $r->{headers}{'ratelimit-remaining'}],
    [402, 'insufficient_credits', 0],
    'quota and credits spent: 402, and RateLimit-Remaining: 0';

Test::Monetize::psql("SELECT monetize_credit(\$1, 1, 'admin', 'one more')",
                     $user2);
$r = $call->($key2);
is_deeply [$r->{status}, $r->{headers}{'x-credits-remaining'},
           $r->{headers}{'x-quota-remaining'},
           $r->{headers}{'ratelimit-remaining'}],
    [200, 0, 0, 0],
    'the last credit pays one call, whose answer says none is left';

my ($user4, $key4) = Test::Monetize::account(credits => 2);
$r = $call->($key4);
is_deeply [$r->{status}, $r->{headers}{'x-quota-remaining'}],
    [200, 99], 'a fresh account: 99 calls of the quota left';
cmp_ok $r->{headers}{'ratelimit-remaining'}, '>', 0,
    '... and the rate limit still tells what it allows';

# --- an unlimited plan -------------------------------------------------------

my ($user3, $key3) = Test::Monetize::account();
Test::Monetize::psql(
    "INSERT INTO subscriptions (user_id, plan_id, status)"
    . " VALUES (\$1, 'enterprise', 'active')", $user3);
@res = calls($key3, 50);
is scalar(grep { $_->{status} == 200 } @res), 50,
    'enterprise: unlimited calls included';
ok !defined $res[0]{headers}{'x-quota-remaining'},
    '... and no X-Quota-Remaining, there being no number to tell';

Test::Monetize::reconcile();

done_testing;
