# Each account gets one Stripe customer, made through the jobs outbox after
# registration: the request Stripe receives is form-encoded as Stripe's
# libraries send it, with the key as a Bearer token, the pinned
# Stripe-Version and the Idempotency-Key "customer-<user id>"; the
# customer's id is stored once in users.stripe_customer_id. Stripe down
# during /register: 201 at once, and the customer appears once Stripe is
# back.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $stripe = Test::Monetize::FakeStripe->start(key => 'sk_test_401');

sub nginx {
    my (%o) = @_;
    return Test::Monetize::Nginx->start(
        workers => $o{workers} // 1,
        http_config => "monetize_bcrypt_cost 4;\n"
            . 'monetize_stripe secret_key=sk_test_401'
            . ' api_base=' . $stripe->url . ' timeout=' . ($o{timeout} // '3s')
            . ' tries=' . ($o{tries} // 3)
            . ($o{version} ? " api_version=$o{version}" : '') . ';',
        config => 'location /v1/ { monetize_api; }');
}

sub customer_of {
    my ($user) = @_;
    my ($r) = Test::Monetize::psql(
        'SELECT stripe_customer_id FROM users WHERE id = $1', $user);
    return $r->[0];
}

my $ngx = nginx();
my $mark = $ngx->error_log_mark;

my $res = $ngx->request('POST', '/v1/register',
    json => {email => 'ann+stripe@example.com', password => 'correct horse',
             name => "Ann & Bob M\x{fc}ller=1"});
is $res->{status}, 201, 'registered';
my $user = $res->{json}{user}{id};

my $cus = Test::Monetize::wait_until(10, sub { customer_of($user) });
like $cus, qr/\Acus_test_/, 'the account has its Stripe customer';

my @req = $stripe->requests;
is scalar(@req), 1, 'one request to Stripe';
my $r = $req[0];
is $r->{method}, 'POST', 'a POST';
is $r->{path}, '/v1/customers', 'to /v1/customers';
is $r->{headers}{Authorization}, 'Bearer sk_test_401', 'the key as Bearer';
is $r->{headers}{'Stripe-Version'}, '2024-06-20', 'the pinned version';
is $r->{headers}{'Idempotency-Key'}, "customer-$user",
    'the idempotency key names the intent';
is $r->{headers}{'Content-Type'}, 'application/x-www-form-urlencoded',
    'form-encoded';
is $r->{body}, 'email=ann%2Bstripe%40example.com'
    . '&name=Ann%20%26%20Bob%20M%C3%BCller%3D1'
    . "&metadata[user_id]=$user",
    'the body as Stripe expects (percent-encoded, nested names)';
is_deeply $r->{form}, {email => 'ann+stripe@example.com',
                       name => "Ann & Bob M\x{fc}ller=1",
                       'metadata[user_id]' => $user},
    'which decodes to the fields';

my ($c) = $stripe->objects('customers');
is $c->{id}, $cus, 'the customer stored is the one made';
is_deeply $c->{metadata}, {user_id => $user}, '... with metadata[user_id]';

my ($job) = Test::Monetize::psql(
    q{SELECT kind, dedup_key, attempts, done_at IS NOT NULL, last_error
        FROM jobs WHERE user_id = $1}, $user);
is_deeply $job, ['stripe_customer', "customer-$user", 1, 't', undef],
    'the job is done, after one attempt';

unlike $ngx->error_log_since($mark), qr/sk_test_401/,
    'the key is never logged';

# a second enqueue of the same intent is a no-op
my ($again) = Test::Monetize::psql(
    q{SELECT monetize_job_enqueue('stripe_customer', $1, '{}',
                                  'customer-' || $1)}, $user);
is $again->[0], undef, 'the same dedup_key again: no second job';

# stored once: a second id never replaces the first
my ($set) = Test::Monetize::psql(
    q{SELECT monetize_stripe_customer_set($1, 'cus_other')}, $user);
is $set->[0], $cus, 'monetize_stripe_customer_set keeps the first';

# Stripe is down while accounts register
$stripe->stop;
$mark = $ngx->error_log_mark;

my @users;
for my $i (1 .. 3) {
    my $res = $ngx->request('POST', '/v1/register',
        json => {email => "down$i\@example.com",
                 password => 'correct horse'});
    is $res->{status}, 201, "registered $i while Stripe is down";
    cmp_ok $res->{elapsed}, '<', 2, '... at once';
    push @users, $res->{json}{user}{id};
}

ok Test::Monetize::wait_until(20, sub {
    my ($r) = Test::Monetize::psql(
        q{SELECT count(*) FROM jobs
           WHERE user_id = ANY ($1::uuid[]) AND done_at IS NULL
             AND attempts >= 1 AND last_error IS NOT NULL
             AND next_attempt_at > now()},
        '{' . join(',', @users) . '}');
    $r->[0] == 3 }), 'each job failed and is due again later';
like $ngx->error_log_since($mark),
    qr/monetize: job #\d+ stripe_customer not done \(attempt 1\)/,
    'the failure is logged';
is customer_of($_), undef, 'no customer yet' for @users;

$stripe->restart;

ok Test::Monetize::wait_until(30, sub {
    !grep { !defined customer_of($_) } @users }),
    'once Stripe is back, each account gets its customer';
my @made = $stripe->objects('customers');    # since it restarted
is scalar(@made), 3, 'one customer each';
my %by = map { $_->{metadata}{user_id} => $_->{id} } @made;
is $by{$_}, customer_of($_), '... the one stored' for @users;

unlike $ngx->error_log_since($mark), qr/\[(alert|crit|emerg)\]|sk_test_401/,
    'no alert, no key in the log';

done_testing;
