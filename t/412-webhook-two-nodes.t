# The same event delivered to two nodes (two nginx on one database) at
# once is applied once: the second transaction's insert of the event's id
# waits for the first's commit, then finds it. Both answer 200 after their
# commit; Stripe may send to either.
#
# Held, then free-running: with monetize.test_hold on, monetize_stripe_event
# (sql/013) takes advisory lock 60130 after it recorded the event; a psql
# session holds it while the other node's delivery arrives and waits.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use StripeWebhook;

plan tests => 12;

my $secret = 'whsec_' . join '', map { ('a' .. 'z')[rand 26] } 1 .. 32;

my %conf = (
    workers => 2,
    postgres => sprintf('monetize_postgres "host=%s port=%s dbname=%s '
                        . 'user=%s password=env:MONETIZE_PG_PASSWORD '
                        . q{options='-c monetize.test_hold=on'" }
                        . 'pool=4 timeout=5s;',
                        $ENV{MONETIZE_PG_HOST}, $ENV{MONETIZE_PG_PORT},
                        Test::Monetize::database(), $ENV{MONETIZE_PG_USER}),
    http_config => "monetize_stripe_webhook_secret $secret;",
    config => 'location /v1/ { monetize_api; }');

my $one = Test::Monetize::Nginx->start(%conf);
my $two = Test::Monetize::Nginx->start(%conf);

my ($ann) = Test::Monetize::account(email => 'ann@example.com');

sub completed {
    my ($n) = @_;
    return StripeWebhook::event('checkout.session.completed',
        {id => "cs_race_$n", object => 'checkout.session',
         mode => 'payment', payment_status => 'paid',
         client_reference_id => $ann, payment_intent => "pi_race_$n",
         metadata => {user_id => $ann, pack => 'small', credits => '1000'}},
        id => "evt_race_$n");
}

sub waiting {
    my ($type) = @_;
    return Test::Monetize::wait_until(10, sub {
        (Test::Monetize::psql(
            'SELECT count(*) FROM pg_locks WHERE locktype = $1'
            . ' AND NOT granted', $type))[0][0] > 0 });
}

# Held: node one has recorded the event and waits before it commits; node
# two's delivery of the same event waits on node one's row.
my $body = completed(0);
my $sig = StripeWebhook::sign($body, $secret);
my $hold = Test::Monetize::psql_session();
$hold->query('SELECT pg_advisory_lock(60130)');
my $h1 = StripeWebhook::start($one, $body, $sig);
ok waiting('advisory'), 'node one recorded the event and is held';
my $h2 = StripeWebhook::start($two, $body, $sig);
ok waiting('transactionid'), "node two waits on node one's row";
ok !$h1->done && !$h2->done, 'neither has answered';
$hold->query('SELECT pg_advisory_unlock(60130)');
my ($r1, $r2) = ($h1->wait, $h2->wait);
is_deeply [$r1->{status}, $r2->{status}], [200, 200], 'both answer 200';
is_deeply [sort map { $_->{json}{duplicate} ? 'duplicate' : 'applied' }
           $r1, $r2], ['applied', 'duplicate'],
    'one applied it, the other found it applied';
is_deeply [Test::Monetize::psql(
        "SELECT count(*), sum(delta) FROM credit_ledger"
        . " WHERE reference = 'stripe:checkout:cs_race_0'")], [[1, 1000]],
    'granted once';
$hold->close;

# Free-running: 30 events, each sent to both nodes at the same moment.
my (@bodies, @handles);
for my $n (1 .. 30) {
    my $b = completed($n);
    push @bodies, [$b, StripeWebhook::sign($b, $secret)];
}
for my $b (@bodies) {
    push @handles, StripeWebhook::start($one, @$b),
                   StripeWebhook::start($two, @$b);
}
my @res = map { $_->wait } @handles;
is scalar(grep { $_->{status} == 200 } @res), 60, 'all 60 deliveries: 200'
    or diag explain [grep { $_->{status} != 200 } @res];
my $applied = 0;
for my $i (0 .. 29) {
    my @pair = @res[2 * $i, 2 * $i + 1];
    $applied++ if 1 == grep { !$_->{json}{duplicate} } @pair;
}
is $applied, 30, 'for each event, exactly one delivery applied it';
is_deeply [Test::Monetize::psql(
        "SELECT count(*), sum(delta) FROM credit_ledger"
        . " WHERE kind = 'purchase'")], [[31, 31000]],
    'each purchase granted once';
is_deeply [Test::Monetize::psql(
        "SELECT count(*) FROM webhook_events")], [[31]],
    'each event recorded once';
is_deeply [Test::Monetize::psql(
        'SELECT balance FROM balances WHERE user_id = $1', $ann)],
    [[31000]], 'the balance';

Test::Monetize::reconcile();
