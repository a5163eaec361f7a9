# Never two customers for one user: two workers run the jobs outbox (each
# row claimed by one, SKIP LOCKED), Stripe loses answers after doing the
# work (the retry's same Idempotency-Key answers the first customer), a
# job run again finds the customer stored and calls nobody, and a worker
# that dies mid-call leaves its claim to come back when the lease ends.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $stripe = Test::Monetize::FakeStripe->start(key => 'sk_test_403');

my $ngx = Test::Monetize::Nginx->start(
    workers => 2,
    http_config => "monetize_bcrypt_cost 4;\n"
        . 'monetize_stripe secret_key=sk_test_403 api_base=' . $stripe->url
        . ' timeout=2s tries=2;',
    config => 'location /v1/ { monetize_api; }');

sub customers {
    return { map { $_->[0] => $_->[1] } Test::Monetize::psql(
        'SELECT id, stripe_customer_id FROM users') };
}

# answers lost after the work, and connections dropped before it
$stripe->fail('/v1/customers', 'lost', 6);
$stripe->fail('/v1/customers', 'drop', 3);
$stripe->fail('/v1/customers', 500, 3);

my @res = $ngx->parallel([map {
    [POST => '/v1/register',
     json => {email => "user$_\@example.com", password => 'correct horse'}]
} 1 .. 12], concurrency => 4);
is_deeply [map { $_->{status} } @res], [(201) x 12], '12 registered';
my @users = map { $_->{json}{user}{id} } @res;

ok Test::Monetize::wait_until(60, sub {
    my $c = customers();
    !grep { !defined $c->{$_} } @users }), 'each has its customer';

my $c = customers();
my @made = $stripe->objects('customers');
is scalar(@made), 12, 'Stripe made 12 customers, not one more';
my %by = map { $_->{metadata}{user_id} => $_->{id} } @made;
is_deeply { map { $_ => $by{$_} } @users }, { map { $_ => $c->{$_} } @users },
    'each account stores the one Stripe made for it';

my @req = $stripe->requests;
cmp_ok scalar(@req), '>', 12, 'some were sent again (lost, dropped, 500)';
my %keys;
$keys{$_->{headers}{'Idempotency-Key'}}{$_->{body}}++ for @req;
is_deeply [sort keys %keys], [sort map { "customer-$_" } @users],
    'every request carried its user\'s key';
ok !(grep { keys %{$keys{$_}} != 1 } keys %keys),
    '... and one body per key';
ok scalar(grep { $_->{replayed} } @req), 'lost answers were replayed';

my ($rows) = Test::Monetize::psql(
    q{SELECT count(*), count(*) FILTER (WHERE done_at IS NOT NULL)
        FROM jobs WHERE kind = 'stripe_customer'});
is_deeply $rows, [12, 12], 'one job per account, all done';

# a job run again (a redelivery, a second path) finds the customer stored
$stripe->reset;
Test::Monetize::psql(
    q{UPDATE jobs SET done_at = NULL, next_attempt_at = now()
       WHERE user_id = $1}, $users[0]);
ok Test::Monetize::wait_until(10, sub {
    my ($r) = Test::Monetize::psql(
        'SELECT done_at IS NOT NULL, attempts FROM jobs WHERE user_id = $1',
        $users[0]);
    $r->[0] eq 't' }), 'a job run again is done';
is scalar($stripe->requests), 0, '... without calling Stripe';
is customers()->{$users[0]}, $c->{$users[0]}, '... the customer unchanged';

unlike $ngx->error_log_since(0), qr/\[(alert|crit|emerg)\]|sk_test_403/,
    'no alert, no key in the log';

# a worker dies while Stripe holds its call: the row stays claimed (leased)
# and undone; when the lease ends another worker makes the customer, with
# the same key
$stripe->reset;
$stripe->fail('/v1/customers', 'hang', 1);
my $res = $ngx->request('POST', '/v1/register',
    json => {email => 'dies@example.com', password => 'correct horse'});
my $user = $res->{json}{user}{id};

ok Test::Monetize::wait_until(10, sub { scalar $stripe->requests }),
    'the job\'s call is held by Stripe';
my @workers = $ngx->worker_pids;
kill 'KILL', @workers;
ok Test::Monetize::wait_until(10, sub {
    my @now = $ngx->worker_pids;
    @now == 2 && !grep { my $p = $_; grep { $_ == $p } @workers } @now }),
    'the workers died and were replaced';

my ($j) = Test::Monetize::psql(
    q{SELECT done_at IS NULL, next_attempt_at > now() + interval '200 s'
        FROM jobs WHERE user_id = $1}, $user);
is_deeply $j, ['t', 't'], 'the job is undone, leased for minutes';
ok !Test::Monetize::wait_until(3, sub { customers()->{$user} }),
    '... and no one runs it meanwhile';

# the lease ends
Test::Monetize::psql(
    q{UPDATE jobs SET next_attempt_at = now() WHERE user_id = $1}, $user);
ok Test::Monetize::wait_until(10, sub { customers()->{$user} }),
    'when the lease ends, a new worker makes the customer';
@req = $stripe->requests;
is scalar(@req), 2, '... in a second request';
is_deeply [map { $_->{headers}{'Idempotency-Key'} } @req],
    [("customer-$user") x 2], '... with the same key';
is scalar($stripe->objects('customers')), 1, '... one customer';

done_testing;
