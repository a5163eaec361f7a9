# The billing endpoints' refusals: without monetize_stripe the POSTs are not
# served here (404, Stripe is not configured) while GET /billing/status
# is; with Stripe, an unknown, missing or inactive pack or plan, the free
# plan and a plan without a Stripe price are 422, an Idempotency-Key Stripe
# would refuse is 422, every endpoint wants the caller's credential, and
# none of these refusals sends anything to Stripe. A bad configuration
# fails nginx -t.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $fake = Test::Monetize::FakeStripe->start(key => 'sk_test_440');
my $stripe = sprintf 'monetize_stripe secret_key=sk_test_440 '
                     . 'api_base=http://127.0.0.1:%d timeout=2s;', $fake->port;

my ($alice, $A) = Test::Monetize::account(email => 'alice@example.com');
# The registration's job would make the customer too (sql/012's trigger):
# these accounts' are marked done, so that Stripe sees only this test's.
Test::Monetize::psql('UPDATE jobs SET done_at = now()');

sub call {
    my ($ngx, $method, $path, $key, $json, @h) = @_;
    return $ngx->request($method, $path,
        headers => [($key ? (Authorization => "Bearer $key") : ()), @h],
        defined $json ? (json => $json) : ());
}

sub error_of {
    my ($res) = @_;
    return [$res->{status}, $res->{json}{error}{code},
            $res->{json}{error}{fields}];
}

# --- without Stripe -------------------------------------------------------

my $ngx = Test::Monetize::Nginx->start(
    config => 'location /v1/ { monetize_api; }');

for my $c (['/v1/purchase_credits', {pack => 'small'}],
           ['/v1/billing/checkout', {plan => 'starter'}],
           ['/v1/billing/portal', {}])
{
    my $res = call($ngx, POST => $c->[0], $A, $c->[1]);
    is_deeply [$res->{status}, $res->{json}{error}{code}],
        [404, 'not_found'], "no Stripe: POST $c->[0]: 404 not_found";
    like $res->{json}{error}{message}, qr/Stripe is not configured/,
        '... saying why';
}

my $res = call($ngx, GET => '/v1/billing/status', $A);
is $res->{status}, 200, 'no Stripe: GET /billing/status: 200';
my ($end) = Test::Monetize::psql(
    "SELECT to_char(date_trunc('month', now() AT TIME ZONE 'UTC')"
    . " + interval '1 month', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')");
is_deeply $res->{json},
    {plan => 'free', status => 'none', cancel_at_period_end => JSON::PP::false,
     current_period_end => $end->[0],
     current_period_start => $res->{json}{current_period_start}},
    '... the free plan, no subscription, to the end of the month';

$res = call($ngx, GET => '/v1/plans');
is_deeply [grep { $_->{buyable} } @{$res->{json}{plans}},
                                  @{$res->{json}{credit_packs}}],
    [], 'no Stripe: GET /plans: nothing is buyable';
ok exists $res->{json}{credit_packs}[0]{buyable}, '... and says so';
unlike Test::Monetize::_slurp($ngx->error_log_file),
    qr/\[(?:alert|crit)\]|exited on signal/, 'no worker crashed, nothing alerted';
$ngx->stop;

# --- with Stripe -----------------------------------------------------------

Test::Monetize::psql("UPDATE plans SET stripe_price_id = 'price_pro'"
                     . " WHERE id = 'professional'");
Test::Monetize::psql("UPDATE plans SET stripe_price_id = 'price_free'"
                     . " WHERE id = 'free'");
Test::Monetize::psql("INSERT INTO credit_packs (id, name, credits,"
                     . " price_cents, active) VALUES ('gone', 'Gone', 5, 5,"
                     . " false)");
Test::Monetize::psql("INSERT INTO plans (id, name, price_cents,"
                     . " rate_limit_rps, rate_limit_burst, stripe_price_id,"
                     . " active) VALUES ('old', 'Old', 5, 1, 1, 'price_old',"
                     . " false)");

$ngx = Test::Monetize::Nginx->start(
    config => 'location /v1/ { monetize_api; }',
    http_config => "$stripe\nmonetize_public_url http://shop.example;");

for my $c ([{}, 'is required'], [{pack => 5}, 'must be a string'],
           [{pack => ''}, 'must have 1 to 100 bytes'],
           [{pack => 'nope'}, 'no such credit pack'],
           [{pack => 'gone'}, 'no such credit pack'])
{
    $res = call($ngx, POST => '/v1/purchase_credits', $A, $c->[0]);
    is_deeply error_of($res), [422, 'validation_failed', {pack => $c->[1]}],
        'POST /purchase_credits ' . JSON::PP->new->canonical->encode($c->[0])
        . ": 422 ($c->[1])";
}

for my $c ([{}, 'is required'], [{plan => 'nope'}, 'no such plan'],
           [{plan => 'old'}, 'no such plan'],
           [{plan => 'free'}, qr/the free plan needs no checkout/],
           [{plan => 'starter'}, qr/has no Stripe price/])
{
    $res = call($ngx, POST => '/v1/billing/checkout', $A, $c->[0]);
    my $why = $res->{json}{error}{fields}{plan} // '';
    is_deeply [$res->{status}, $res->{json}{error}{code},
               ref $c->[1] ? $why =~ $c->[1] : $why eq $c->[1]],
        [422, 'validation_failed', 1],
        'POST /billing/checkout '
        . JSON::PP->new->canonical->encode($c->[0]) . ": 422 ($why)";
}

for my $k ('x' x 201, "a b") {
    $res = call($ngx, POST => '/v1/purchase_credits', $A, {pack => 'small'},
                'Idempotency-Key' => $k);
    is_deeply [$res->{status}, keys %{$res->{json}{error}{fields} // {}}],
        [422, 'Idempotency-Key'],
        'an Idempotency-Key Stripe would refuse: 422 (' . length($k)
        . ' bytes)';
}

for my $c ([POST => '/v1/purchase_credits', {pack => 'small'}],
           [POST => '/v1/billing/checkout', {plan => 'professional'}],
           [POST => '/v1/billing/portal', {}],
           [GET => '/v1/billing/status'])
{
    $res = call($ngx, $c->[0], $c->[1], undef, $c->[2]);
    is_deeply [$res->{status}, $res->{json}{error}{code}],
        [401, 'missing_credentials'], "$c->[0] $c->[1] without a key: 401";
    $res = call($ngx, $c->[0], $c->[1], 'sk_live_' . ('Z' x 32), $c->[2]);
    is $res->{status}, 401, '... with an unknown key: 401';
}

is_deeply [map { "$_->{method} $_->{path}" } $fake->requests], [],
    'no refusal asked Stripe anything';

$res = call($ngx, GET => '/v1/plans');
is_deeply {map { $_->{id} => $_->{buyable} ? 1 : 0 } @{$res->{json}{plans}}},
    {free => 0, starter => 0, professional => 1, enterprise => 0},
    'GET /plans: a plan is buyable with a Stripe price, never the free one';
is_deeply [map { $_->{buyable} ? 1 : 0 } @{$res->{json}{credit_packs}}],
    [1, 1, 1], '... every pack is';
unlike Test::Monetize::_slurp($ngx->error_log_file),
    qr/\[(?:alert|crit)\]|exited on signal/, 'no worker crashed, nothing alerted';
$ngx->stop;

# --- the configuration -----------------------------------------------------

my ($rc, $err) = Test::Monetize::nginx_t(
    config => 'location /v1/ { monetize_api; }', http_config => $stripe);
isnt $rc, 0, 'monetize_stripe without a return URL: nginx -t fails';
my $needs = '"monetize_stripe" needs "monetize_public_url" or '
          . '"monetize_billing_return_url"';
like $err, qr/\[emerg\].*\Q$needs\E/,
    '... naming what is missing';

($rc, $err) = Test::Monetize::nginx_t(
    config => 'location /v1/ { monetize_api; }',
    http_config => "$stripe\nmonetize_billing_return_url http://x/#y;");
like $err,
    qr{\[emerg\].*monetize_billing_return_url: invalid URL "http://x/#y"},
    'a return URL with a fragment: EMERG naming it';

($rc, $err) = Test::Monetize::nginx_t(
    config => 'location /v1/ { monetize_api; }',
    http_config => "$stripe\nmonetize_billing_return_url https://shop/back;");
is $rc, 0, 'monetize_billing_return_url instead of monetize_public_url: ok'
    or diag $err;

$fake->stop;
done_testing;
