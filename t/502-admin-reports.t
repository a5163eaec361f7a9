# The operators' reports: GET /admin/webhook_events (newest first, by
# state, paged), GET /admin/revenue (credits sold this month and ever,
# Stripe subscriptions by plan and status, MRR of the active ones) and GET
# /admin/top_accounts?days=N (by calls, from usage). A non-admin gets 403;
# the figures are checked against rows inserted here.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $ngx = Test::Monetize::Nginx->start(
    config => 'location /v1/ { monetize_api; }');

sub get {
    my ($path, $key) = @_;
    return $ngx->request('GET', $path,
                         headers => [Authorization => "Bearer $key"]);
}

my ($root, $R) = Test::Monetize::account(email => 'root@example.com');
Test::Monetize::psql('UPDATE users SET is_admin = true WHERE id = $1', $root);
my ($ada, $A) = Test::Monetize::account(email => 'ada@example.com');
my ($bob) = Test::Monetize::account(email => 'bob@example.com');
my ($cy) = Test::Monetize::account(email => 'cy@example.com');

for my $path ('/v1/admin/webhook_events', '/v1/admin/revenue',
              '/v1/admin/top_accounts?days=7')
{
    my $res = get($path, $A);
    is_deeply [$res->{status}, $res->{json}{error}{code}], [403, 'forbidden'],
        "a non-admin: GET $path: 403 forbidden";
}
is $ngx->request('GET', '/v1/admin/revenue')->{status}, 401,
    'no credential: 401';

# webhook events
Test::Monetize::psql(q{
    INSERT INTO webhook_events (id, type, payload, received_at, processed_at)
    VALUES ('evt_1', 'checkout.session.completed', '{}',
            now() - interval '3 hours', now() - interval '3 hours'),
           ('evt_2', 'invoice.paid', '{}',
            now() - interval '2 hours', NULL),
           ('evt_3', 'customer.subscription.updated', '{}',
            now() - interval '1 hour', now() - interval '1 hour'),
           ('evt_4', 'unknown.type', '{}', now(), now())});

my $res = get('/v1/admin/webhook_events', $R);
is $res->{status}, 200, 'webhook_events: 200';
is_deeply [map { $_->{id} } @{$res->{json}{events} // []}],
    [qw(evt_4 evt_3 evt_2 evt_1)], '... newest first';
my ($e2) = grep { $_->{id} eq 'evt_2' } @{$res->{json}{events} // []};
is_deeply [sort keys %{$e2 // {}}],
    [qw(id processed_at provider received_at status type)],
    '... each with its fields';
is_deeply [@{$e2 // {}}{qw(type status processed_at provider)}],
    ['invoice.paid', 'pending', undef, 'stripe'], '... a pending one';
like $e2->{received_at}, qr/\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\z/,
    '... received_at in ISO 8601';
is $res->{json}{next}, undef, '... no next page';

$res = get('/v1/admin/webhook_events?status=pending', $R);
is_deeply [map { $_->{id} } @{$res->{json}{events} // []}], ['evt_2'],
    'status=pending: the one not applied';
$res = get('/v1/admin/webhook_events?status=applied', $R);
is_deeply [map { $_->{id} } @{$res->{json}{events} // []}],
    [qw(evt_4 evt_3 evt_1)], 'status=applied: the others';

$res = get('/v1/admin/webhook_events?limit=2', $R);
is_deeply [[map { $_->{id} } @{$res->{json}{events} // []}],
           $res->{json}{next}], [[qw(evt_4 evt_3)], 'evt_3'],
    'limit=2: a page and where the next starts';
$res = get('/v1/admin/webhook_events?limit=2&before=evt_3', $R);
is_deeply [[map { $_->{id} } @{$res->{json}{events} // []}],
           $res->{json}{next}], [[qw(evt_2 evt_1)], undef],
    'before=evt_3: the next page, the last';

for my $bad ('status=lost', 'limit=0', 'limit=101', 'limit=x',
             'before=evt_nope')
{
    $res = get("/v1/admin/webhook_events?$bad", $R);
    is_deeply [$res->{status}, $res->{json}{error}{code}],
        [422, 'validation_failed'], "webhook_events?$bad: 422";
}

# revenue: purchases this month and before, Stripe subscriptions
Test::Monetize::psql(q{
    INSERT INTO credit_ledger (user_id, delta, kind, reference,
                               balance_after, created_at)
    VALUES ($1, 50, 'purchase', 'checkout:cs_old', 50,
            now() - interval '40 days')}, $ada);
Test::Monetize::psql(q{INSERT INTO balances (user_id, balance)
                        VALUES ($1, 50)}, $ada);
Test::Monetize::psql(q{SELECT monetize_credit($1, 100, 'purchase',
                                              'checkout:cs_new')}, $ada);
Test::Monetize::psql(q{SELECT monetize_credit($1, 30, 'purchase',
                                              'checkout:cs_bob')}, $bob);
Test::Monetize::psql(q{SELECT monetize_credit($1, 7, 'grant', 'admin:x')},
                     $bob);
Test::Monetize::psql(q{
    INSERT INTO plans (id, name, price_cents, interval, monthly_quota,
                       rate_limit_rps, rate_limit_burst)
    VALUES ('annual', 'Annual', 12000, 'year', 1000, 5, 10),
           ('euro', 'Euro', 1500, 'month', 1000, 5, 10)});
Test::Monetize::psql(q{UPDATE plans SET currency = 'eur' WHERE id = 'euro'});
Test::Monetize::psql(q{
    INSERT INTO subscriptions (user_id, plan_id, status,
                               stripe_subscription_id)
    VALUES ($1, 'starter', 'active', 'sub_1'),
           ($2, 'starter', 'active', 'sub_2'),
           ($3, 'professional', 'active', 'sub_3'),
           ($1, 'professional', 'past_due', 'sub_4'),
           ($2, 'starter', 'canceled', 'sub_5'),
           ($3, 'annual', 'active', 'sub_6'),
           ($3, 'euro', 'active', 'sub_7')}, $ada, $bob, $cy);
# a plan an operator set is no sale
Test::Monetize::psql(q{INSERT INTO subscriptions (user_id, plan_id, status)
                       VALUES ($1, 'enterprise', 'active')}, $root);

$res = get('/v1/admin/revenue', $R);
is $res->{status}, 200, 'revenue: 200' or diag $res->{body};
my $rev = $res->{json} // {};
is_deeply [@{$rev->{credits_sold} // {}}{qw(this_month all_time)}],
    [130, 180], 'credits sold (kind purchase): this month, all time';
like $rev->{credits_sold}{month_start} // '',
    qr/\A\d{4}-\d\d-01T00:00:00Z\z/, '... and when the month began';
is_deeply $rev->{subscriptions},
    [{plan => 'annual', status => 'active', count => 1},
     {plan => 'euro', status => 'active', count => 1},
     {plan => 'professional', status => 'active', count => 1},
     {plan => 'professional', status => 'past_due', count => 1},
     {plan => 'starter', status => 'active', count => 2},
     {plan => 'starter', status => 'canceled', count => 1}],
    'Stripe subscriptions by plan and status (not an operator\'s plan)';
is_deeply $rev->{mrr},
    [{currency => 'eur', amount_cents => 1500},
     {currency => 'usd', amount_cents => 2 * 2900 + 9900 + 12000 / 12}],
    'MRR of the active ones, per currency (a yearly price / 12)';

# top accounts by calls
Test::Monetize::psql(q{
    INSERT INTO usage (user_id, api_key_id, location, day, calls, credits)
    VALUES ($1, $3, '', current_date, 10, 10),
           ($1, gen_random_uuid(), '/api/', current_date - 5, 20, 40),
           ($1, $3, '', current_date - 40, 1000, 0),
           ($2, $3, '', current_date, 25, 0)}, $ada, $bob,
    '00000000-0000-0000-0000-000000000000');

sub top {
    my ($q) = @_;
    my $r = get("/v1/admin/top_accounts$q", $R);
    return [$r->{status},
            map { [$_->{email}, $_->{calls}, $_->{credits}] }
            @{$r->{json}{accounts} // []}];
}
is_deeply top('?days=1'),
    [200, ['bob@example.com', 25, 0], ['ada@example.com', 10, 10]],
    'top_accounts?days=1: today';
is_deeply top('?days=7'),
    [200, ['ada@example.com', 30, 50], ['bob@example.com', 25, 0]],
    '?days=7: the week, every key and location summed';
is_deeply top('?days=60'),
    [200, ['ada@example.com', 1030, 50], ['bob@example.com', 25, 0]],
    '?days=60';
is_deeply top('?days=60&limit=1'), [200, ['ada@example.com', 1030, 50]],
    '... limit=1';
$res = get('/v1/admin/top_accounts?days=7', $R);
is $res->{json}{days}, 7, '... the answer says its days';
is $res->{json}{accounts}[0]{user_id}, $ada, '... and each account\'s id';
is top('')->[0], 200, 'no days: the default (30)';
for my $bad ('days=0', 'days=367', 'days=x', 'limit=0') {
    $res = get("/v1/admin/top_accounts?$bad", $R);
    is_deeply [$res->{status}, $res->{json}{error}{code}],
        [422, 'validation_failed'], "top_accounts?$bad: 422";
}

Test::Monetize::reconcile();
$ngx->stop;

done_testing;
