# Overage in the money statements, from psql: a plan with an overage price
# and a meter event name lets calls past its quota through as "overage",
# counted in quota_usage and paid with no credits; a plan without one
# behaves as before (quota_exceeded, or credits then insufficient_credits);
# the two columns come together or not at all; a batch sent again answers
# the recorded outcome and counts nothing twice; a void gives an overage
# call back; and reporting takes what is unreported once, in order, with
# identifiers that never repeat.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

sub key_of {
    my ($user) = @_;
    my ($id) = Test::Monetize::psql(
        "SELECT id FROM api_keys WHERE user_id = \$1", $user);
    return $id->[0];
}

sub debit_sql {
    my ($retry, @calls) = @_;       # [user, key, cost, ref, quota]
    my $arr = sub {
        my ($i, $type) = @_;
        return "ARRAY[" . join(',', map { "'$_->[$i]'" } @calls)
               . "]::$type\[]";
    };
    return "SELECT idx, outcome, balance, quota_remaining"
         . "  FROM monetize_debit(" . $arr->(0, 'uuid') . ", "
         . $arr->(1, 'uuid') . ", " . $arr->(2, 'bigint') . ", "
         . $arr->(3, 'text') . ", " . $arr->(4, 'boolean') . ", "
         . ($retry ? 'true' : 'false') . ")";
}

sub try_psql {
    my ($sql, @bind) = @_;
    my @rows = eval { Test::Monetize::psql($sql, @bind) };
    return @rows ? @rows : $@ ? [error => $@] : ();
}

sub usage {
    my ($user) = @_;
    my ($row) = Test::Monetize::psql(
        "SELECT q.calls, q.overage, q.overage_reported,"
        . "     (SELECT count(*) FROM credit_ledger l"
        . "       WHERE l.user_id = \$1 AND l.kind = 'debit'),"
        . "     (SELECT balance FROM balances b WHERE b.user_id = \$1)"
        . "  FROM quota_usage q WHERE q.user_id = \$1", $user);
    return $row;
}

# --- the plan's columns ---------------------------------------------------

my @bad = try_psql(
    "INSERT INTO plans (id, name, price_cents, monthly_quota,"
    . "                  rate_limit_rps, rate_limit_burst, overage_price)"
    . " VALUES ('half', 'Half', 0, 2, 100, 100, 'price_metered')");
like $bad[0][1] // '', qr/check/i,
    'an overage price without a meter event name is refused';

Test::Monetize::psql(
    "INSERT INTO plans (id, name, price_cents, monthly_quota,"
    . "                  rate_limit_rps, rate_limit_burst, overage_price,"
    . "                  meter_event_name)"
    . " VALUES ('metered', 'Metered', 0, 2, 100, 100, 'price_metered',"
    . "         'api_calls'),"
    . "        ('tiny', 'Tiny', 0, 2, 100, 100, NULL, NULL)");

# --- past the quota: overage, whatever the call costs and the balance -------

my ($um) = Test::Monetize::account(credits => 10, plan => 'metered');
my $km = key_of($um);
is_deeply [try_psql(debit_sql(0, map { [$um, $km, $_ % 2, "call:m-$_", 't'] }
                                     1 .. 5))],
    [[1, 'quota', 10, 1], [2, 'quota', 10, 0], [3, 'overage', 10, 0],
     [4, 'overage', 10, 0], [5, 'overage', 10, 0]],
    'an overage plan: two calls of its quota, then overage, paid and free '
    . 'alike';
is_deeply usage($um), [5, 3, 0, 0, 10],
    '... all five counted, three past the quota, no credits charged';

is_deeply [try_psql(debit_sql(1, [$um, $km, 1, 'call:m-4', 't'],
                                 [$um, $km, 1, 'call:m-6', 't']))],
    [[1, 'overage', 10, 0], [2, 'overage', 10, 0]],
    'a batch sent again: the recorded outcome, and one new call';
is_deeply usage($um), [6, 4, 0, 0, 10], '... counted once each';

my ($calls) = try_psql(
    "SELECT count(*), sum(cost), min(period_start) IS NOT NULL"
    . "  FROM gate_calls WHERE user_id = \$1 AND outcome = 'overage'", $um);
is_deeply $calls, [4, 0, 't'],
    'each overage call recorded in gate_calls, at no cost, in its period';

is_deeply [map { $_->[1] }
           try_psql(debit_sql(0, [$um, $km, 1, 'call:m-7', 'f']))],
    ['credits'], 'where the location does not enforce the quota: credits';

# --- plans without overage: exactly as before --------------------------------

my ($ut) = Test::Monetize::account(credits => 1, plan => 'tiny');
my $kt = key_of($ut);
is_deeply [map { $_->[1] } try_psql(debit_sql(0,
        map { [$ut, $kt, $_ == 4 ? 0 : 1, "call:t-$_", 't'] } 1 .. 5))],
    [qw(quota quota credits quota_exceeded insufficient_credits)],
    'a plan without overage: quota, credits, then refused';
is_deeply usage($ut), [2, 0, 0, 1, 0], '... nothing counted past the quota';

# --- voids --------------------------------------------------------------------

is_deeply [try_psql("SELECT * FROM monetize_void(ARRAY[\$1, \$1]::uuid[],"
                    . " '{call:m-5,call:m-5}')", $um)],
    [['call:m-5', 'overage_returned'], ['call:m-5', 'already']],
    'a void of an overage call gives it back, once';
is_deeply usage($um), [5, 3, 0, 1, 9], '... to the calls and the overage';

# --- reporting ---------------------------------------------------------------

sub report {
    return try_psql("SELECT * FROM monetize_overage_report(\$1, 100)",
                    $_[0] // 60);
}

sub jobs {
    return try_psql(
        "SELECT dedup_key, payload->>'event_name', payload->>'value',"
        . "     payload->>'identifier' = dedup_key,"
        . "     (payload->>'timestamp')::bigint > 0"
        . "  FROM jobs WHERE kind = 'meter_event' ORDER BY id");
}

my ($start) = Test::Monetize::psql(
    "SELECT extract(epoch FROM period_start)::bigint FROM quota_usage"
    . " WHERE user_id = \$1", $um);
$start = $start->[0];

is_deeply [report()], [[1]], 'a report: one account with unreported overage';
is_deeply [jobs()], [["$um:$start:1-3", 'api_calls', 3, 't', 't']],
    '... one meter_event job: the three calls, identified by their range';
is_deeply usage($um), [5, 3, 3, 1, 9], '... recorded as reported';

is_deeply [report()], [[0]], 'nothing new: nothing reported';

try_psql(debit_sql(0, map { [$um, $km, 1, "call:m2-$_", 't'] } 1 .. 4));
is_deeply [report()], [[0]],
    'new overage within the minute: it waits for the minute';
is_deeply [report(0)], [[1]], '... and is reported once it is over';
is_deeply [(jobs())[1]], [["$um:$start:4-7", 'api_calls', 4, 't', 't']],
    '... from where the last report ended';

# a void after its call was reported: the next report is net of it
try_psql("SELECT * FROM monetize_void(ARRAY[\$1, \$1]::uuid[],"
         . " '{call:m2-1,call:m2-2}')", $um);
is_deeply usage($um), [7, 5, 7, 1, 9],
    'two reported calls voided: fewer calls past the quota than reported';
is_deeply [report(0)], [[0]], '... nothing is reported';
try_psql(debit_sql(0, map { [$um, $km, 1, "call:m3-$_", 't'] } 1 .. 3));
is_deeply [report(0)], [[1]], 'three more calls: ...';
is_deeply [(jobs())[2]], [["$um:$start:8-8", 'api_calls', 1, 't', 't']],
    '... only what exceeds what was reported, under a new identifier';

# --- a report racing a debit of the same account --------------------------

my $hold = Test::Monetize::psql_session();
$hold->query('BEGIN');
$hold->query(debit_sql(0, [$um, $km, 1, 'call:m4-1', 't']));
is_deeply [report(0)], [[0]],
    'a report skips the account whose debit holds it (no wait)';
$hold->query('COMMIT');
is_deeply [report(0)], [[1]], '... and takes it next time';
$hold->close;

my ($sum) = Test::Monetize::psql(
    "SELECT sum((payload->>'value')::bigint), count(DISTINCT dedup_key),"
    . "     count(*) FROM jobs WHERE kind = 'meter_event'");
my $u = usage($um);
is_deeply $sum, [$u->[2], 4, 4],
    'the reported values sum to what is recorded as reported';

Test::Monetize::reconcile();

done_testing;
