# GET /plans: the active plans and credit packs, as the contract shows them,
# kept by each worker and refreshed when the plans table changes. And the
# public endpoints' limit per client address.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $ngx = Test::Monetize::Nginx->start(
    workers => 1,
    http_config => "monetize_cache zone=keys:1m;\nmonetize_bcrypt_cost 4;",
    api_limit => 'monetize_api_limit 10r/m burst=3;',
    config => 'location /v1/ { monetize_api; }');

my $res = $ngx->request('GET', '/v1/plans');
is $res->{status}, 200, 'GET /plans: 200';
is_deeply [map { $_->{id} } @{$res->{json}{plans}}],
    [qw(free starter professional enterprise)], 'the four plans, in order';
is_deeply $res->{json}{plans}[0],
    {id => 'free', name => 'Free', price_cents => 0, currency => 'usd',
     interval => 'month', monthly_quota => 100,
     rate_limit => {requests_per_second => 2, burst => 5},
     buyable => JSON::PP::false},
    'a plan as the contract shows it (not buyable: no Stripe)';
is $res->{json}{plans}[3]{monthly_quota}, undef, 'enterprise: no quota (null)';
is_deeply [map { [$_->{id}, $_->{credits}] } @{$res->{json}{credit_packs}}],
    [[small => 1000], [medium => 10000], [large => 100000]],
    'and the credit packs';

ok $ngx->wait_for_log('listening for changes on postgres'),
    'the worker listens for changes';
$ngx->request('GET', '/v1/plans');

Test::Monetize::psql("UPDATE plans SET price_cents = 3900 WHERE id = 'starter'");
Test::Monetize::psql("UPDATE plans SET active = false WHERE id = 'professional'");

my $fresh = Test::Monetize::wait_until(2, sub {
    my $r = $ngx->request('GET', '/v1/plans');
    my %by_id = map { $_->{id} => $_ } @{$r->{json}{plans}};
    ($by_id{starter}{price_cents} == 3900 && !$by_id{professional}) ? $r : undef;
});
ok $fresh, 'a change of the plans table shows in the next answers';

# --- the limit per client address --------------------------------------------

my @res = map {
    $ngx->request('POST', '/v1/register',
                  json => {email => "limit$_\@example.com", password => 'x'})
} 1 .. 4;
is_deeply [map { $_->{status} } @res], [422, 422, 422, 429],
    '/register from one address: 3 at once (even failing ones), then 429';
is $res[3]{json}{error}{code}, 'rate_limited', '... rate_limited';
cmp_ok $res[3]{headers}{'retry-after'}, '>=', 5, '... Retry-After of a 10r/m';
is $res[3]{headers}{'ratelimit-limit'}, 3, '... RateLimit-Limit: the burst';
is $ngx->request('GET', '/v1/plans')->{status}, 200,
    'other endpoints are not limited by address';

done_testing;
