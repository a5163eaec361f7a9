# POST /use_credit when PostgreSQL's answer is lost after the statement was
# sent: the charge may have committed or not. The answer must let the
# client learn which without being charged twice: a 503 outcome_unknown
# that gives the idempotency key to retry with (derived from $request_id
# when the call gave none), and that retry replays a charge that was made,
# or makes the one that was not.
#
# The statement is held at the balance row by a psql session; nginx's
# connections to PostgreSQL (over TCP) are then cut with ss -K, or the
# backend running it is terminated.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

plan tests => 12;

my $port = $ENV{MONETIZE_PG_PORT};
my $ngx = Test::Monetize::Nginx->start(
    postgres => sprintf('monetize_postgres "host=127.0.0.1 port=%s dbname=%s'
                        . ' user=%s password=env:MONETIZE_PG_PASSWORD"'
                        . ' pool=2 timeout=5s;', $port,
                        Test::Monetize::database(), $ENV{MONETIZE_PG_USER}),
    config => 'location /v1/ { monetize_api; }');


# Holds the account's balance row, sends the charge, waits until it waits
# for the row, runs $cut; returns the answer and the session.
sub held_charge {
    my ($user, $key, $cut) = @_;
    my $hold = Test::Monetize::psql_session();
    $hold->query('BEGIN');
    $hold->query("SELECT 1 FROM balances WHERE user_id = '$user' FOR UPDATE");

    my $h = $ngx->start_request('POST', '/v1/use_credit',
        headers => [Authorization => "Bearer $key"], json => {amount => 3});
    my $pid = Test::Monetize::wait_until(10, sub {
        my ($row) = Test::Monetize::psql(
            q{SELECT pid FROM pg_stat_activity
               WHERE wait_event_type = 'Lock'
                 AND query LIKE '%monetize_use_credit%'});
        $row && $row->[0];
    });
    ok $pid, 'the charge waits for the balance row';
    $cut->($pid);
    return ($h->wait, $hold);
}


# The client does what the answer says: the same call again, with the
# idempotency key it was given, if any.
sub follow_advice {
    my ($key, $res) = @_;
    my %body = (amount => 3);
    $body{idempotency_key} = $res->{json}{error}{idempotency_key}
        if defined $res->{json}{error}{idempotency_key};
    return $ngx->request('POST', '/v1/use_credit',
        headers => [Authorization => "Bearer $key"], json => \%body);
}


sub charges {
    my ($user) = @_;
    return [map { @$_ } Test::Monetize::psql(
        q{SELECT count(*) FILTER (WHERE kind = 'use_credit'), sum(delta)
            FROM credit_ledger WHERE user_id = $1}, $user)];
}


# --- the answer is lost, the charge commits --------------------------------

my ($alice, $akey) = Test::Monetize::account(credits => 10);
my ($res, $hold) = held_charge($alice, $akey, sub {
    # (ss says "RTNETLINK answers: Invalid argument" of the families
    # it cannot close sockets of)
    system("ss -K dst 127.0.0.1 dport = :$port >/dev/null 2>&1") == 0
        or die "ss -K failed\n";
});
is $res->{status}, 503, 'lost answer: 503';
like $res->{json}{error}{idempotency_key} // '', qr/\Areq_[0-9a-f]{32}\z/,
    '... with the idempotency key to retry with'
    or diag $res->{body};
is $res->{json}{error}{code}, 'outcome_unknown', '... outcome_unknown';

$hold->query('COMMIT');
ok Test::Monetize::wait_until(10, sub { charges($alice)->[0] == 1 }),
    'the charge commits once its row is free';

my $again = follow_advice($akey, $res);
is_deeply [$again->{status}, $again->{json}{balance},
           $again->{headers}{'idempotent-replayed'}], [200, 7, 'true'],
    'the advised retry replays the charge: 200, balance 7';
is_deeply charges($alice), [1, 7], '... charged once';


# --- the answer is lost, the charge is rolled back ---------------------------

my ($bob, $bkey) = Test::Monetize::account(credits => 10);
($res, $hold) = held_charge($bob, $bkey, sub {
    Test::Monetize::psql('SELECT pg_terminate_backend($1)', $_[0]);
});
is_deeply [$res->{status}, $res->{json}{error}{code}], [503, 'outcome_unknown'],
    'the backend ended: 503 outcome_unknown';
$hold->query('COMMIT');
is_deeply charges($bob), [0, 10], 'nothing was charged';

$again = follow_advice($bkey, $res);
is_deeply [$again->{status}, $again->{json}{balance},
           $again->{headers}{'idempotent-replayed'}], [200, 7, undef],
    'the advised retry charges: 200, balance 7, no replay';
is_deeply charges($bob), [1, 7], '... once';

$ngx->stop;
