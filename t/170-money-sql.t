# The money statements themselves, raced from psql sessions: a retried
# batch reads what was done after the account's lock; every admitted call
# is recorded, whatever paid for it; a void recorded first wins over a late
# debit, and a write-off undoes a debit that came first; refunds lock
# accounts in the debits' order; the debit itself refuses a revoked or
# expired key and a suspended account; the quota is enforced for free calls.

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
    return "SELECT idx, outcome, balance, quota_remaining,"
         . "       period_end IS NOT NULL"
         . "  FROM monetize_debit(" . $arr->(0, 'uuid') . ", "
         . $arr->(1, 'uuid') . ", " . $arr->(2, 'bigint') . ", "
         . $arr->(3, 'text') . ", " . $arr->(4, 'boolean') . ", "
         . ($retry ? 'true' : 'false') . ")";
}

sub money {
    my ($user) = @_;
    my ($row) = Test::Monetize::psql(
        "SELECT b.balance,"
        . " (SELECT count(*) FROM credit_ledger l"
        . "   WHERE l.user_id = \$1 AND l.kind = 'debit'),"
        . " coalesce((SELECT sum(calls) FROM quota_usage q"
        . "            WHERE q.user_id = \$1), 0)"
        . "  FROM balances b WHERE b.user_id = \$1", $user);
    return $row;
}

sub waiting_on_lock {
    my ($like) = @_;
    my ($n) = Test::Monetize::psql(
        "SELECT count(*) FROM pg_stat_activity"
        . " WHERE wait_event_type = 'Lock' AND query LIKE \$1", $like);
    return $n->[0];
}

# a psql statement that must not fail: its rows, or the error as a row
sub try_psql {
    my ($sql, @bind) = @_;
    my @rows = eval { Test::Monetize::psql($sql, @bind) };
    return @rows ? @rows : $@ ? [error => $@] : ();
}

Test::Monetize::psql(
    "INSERT INTO plans (id, name, price_cents, monthly_quota,"
    . "                  rate_limit_rps, rate_limit_burst)"
    . " VALUES ('tiny', 'Tiny', 0, 1, 100, 100)");

# --- item 1: a retry that waited for the first attempt's lock --------------

my ($u1) = Test::Monetize::account(credits => 10);
my $k1 = key_of($u1);
my $call = [$u1, $k1, 3, 'call:race-1', 'f'];

my $first = Test::Monetize::psql_session();
$first->query('BEGIN');
$first->query(debit_sql(0, $call));

my $retry = Test::Monetize::psql_session();
$retry->send(debit_sql(1, $call));
ok Test::Monetize::wait_until(10, sub {
        waiting_on_lock('%monetize_debit%') == 1 }),
    'the retry waits for the first attempt, which holds the account';
$first->query('COMMIT');

my @rows = $retry->wait(allow_error => 1);
is $retry->errors, '', 'the retry does not fail on the reference';
is_deeply [map { [@$_[0 .. 2]] } @rows], [[1, 'credits', 7]],
    '... it reports the call admitted, with the balance after it';
is_deeply money($u1), [7, 1, 0], '... and nothing was debited twice';

# --- item 4: calls covered by the quota, sent again -------------------------

my ($uq) = Test::Monetize::account(credits => 10, plan => 'tiny');
my $kq = key_of($uq);
$call = [$uq, $kq, 2, 'call:quota-1', 't'];

is_deeply [try_psql(debit_sql(0, $call))], [[1, 'quota', 10, 0, 't']],
    'a call covered by the plan (quota 1)';
is_deeply [try_psql(debit_sql(1, $call))], [[1, 'quota', 10, 0, 't']],
    'sent again: the same answer';
is_deeply money($uq), [10, 0, 1],
    '... counted once, no credits charged';

# --- item 5: a free call past the quota -------------------------------------

is_deeply [try_psql(debit_sql(0, [$uq, $kq, 0, 'call:free-1', 't']))],
    [[1, 'quota_exceeded', 10, 0, 't']],
    'a free call past the quota: quota_exceeded';
is_deeply money($uq), [10, 0, 1], '... nothing counted, nothing charged';

# --- item 17: a paid call past the quota with no credits --------------------

my ($uz) = Test::Monetize::account(plan => 'tiny');
my $kz = key_of($uz);
is_deeply [try_psql(debit_sql(0, [$uz, $kz, 1, 'call:z-1', 't'],
                                 [$uz, $kz, 1, 'call:z-2', 't']))],
    [[1, 'quota', 0, 0, 't'], [2, 'insufficient_credits', 0, 0, 't']],
    'past the quota, no credits: insufficient_credits, with the quota used '
    . 'up and its end';

# --- item 3: a void recorded before the debit it voids ----------------------

my ($uv) = Test::Monetize::account(credits => 10);
my $kv = key_of($uv);

is_deeply [try_psql("SELECT * FROM monetize_void(ARRAY[\$1]::uuid[],"
                    . " '{call:void-1}')", $uv)],
    [['call:void-1', 'voided']], 'a void of a call not debited (yet)';
is_deeply [map { [@$_[0 .. 2]] }
           try_psql(debit_sql(0, [$uv, $kv, 3, 'call:void-1', 'f']))],
    [[1, 'void', 10]], 'the late debit of it finds the void and debits not';
is_deeply money($uv), [10, 0, 0], '... the balance is whole';

is_deeply [map { [@$_[0 .. 2]] }
           try_psql(debit_sql(0, [$uv, $kv, 3, 'call:void-2', 'f']))],
    [[1, 'credits', 7]], 'a debit';
is_deeply [try_psql("SELECT * FROM monetize_void(ARRAY[\$1, \$1]::uuid[],"
                    . " '{call:void-2,call:void-2}')", $uv)],
    [['call:void-2', 'written_off'], ['call:void-2', 'already']],
    'voided after it: written off, once';
my ($wo) = try_psql("SELECT kind, delta, metadata->>'debit'"
                    . "  FROM credit_ledger WHERE reference = \$1",
                    'write_off:call:void-2');
is_deeply $wo, ['write_off', 3, 'call:void-2'],
    '... by a write_off entry that refers to the debit';
is_deeply [try_psql("SELECT applied FROM monetize_refund('{call:void-2}')")],
    [['f']], 'a written-off debit is not refunded as well';
is_deeply [map { [@$_[0 .. 1]] }
           try_psql(debit_sql(1, [$uv, $kv, 3, 'call:void-2', 'f']))],
    [[1, 'void']], 'sent again, a written-off call stays voided';

# the race: the void waits for the debit's lock, then writes it off
$first->query('BEGIN');
$first->query(debit_sql(0, [$uv, $kv, 4, 'call:void-3', 'f']));
my $void = Test::Monetize::psql_session();
$void->send("SELECT * FROM monetize_void(ARRAY['$uv']::uuid[],"
            . " '{call:void-3}')");
my $waited = Test::Monetize::wait_until(10, sub {
    waiting_on_lock('%monetize_void%') == 1 });
$first->query('COMMIT');
@rows = $void->wait(allow_error => 1);
ok $waited, 'a void waits for the debit that holds the account';
is_deeply \@rows, [['call:void-3', 'written_off']],
    '... then writes it off';
is_deeply money($uv), [10, 2, 0], '... the balance is whole again';

# --- item 6: the debit checks the key and the account ----------------------

my ($ur) = Test::Monetize::account(credits => 10);
my $kr = key_of($ur);
Test::Monetize::psql("UPDATE api_keys SET revoked_at = now() WHERE id = \$1",
                     $kr);
my ($ue) = Test::Monetize::account(credits => 10, expires_in => -1);
my $ke = key_of($ue);
my ($us) = Test::Monetize::account(credits => 10, suspended => 1);
my $ks = key_of($us);

is_deeply [map { $_->[1] } try_psql(debit_sql(0,
        [$ur, $kr, 1, 'call:revoked', 'f'],
        [$ue, $ke, 1, 'call:expired', 'f'],
        [$us, $ks, 1, 'call:suspended', 'f'],
        [$u1, $kr, 1, 'call:not-its-key', 'f']))],
    [qw(key_revoked key_expired account_suspended key_revoked)],
    'a revoked key, an expired one, a suspended account, a key of another '
    . 'account: refused by the debit';
is_deeply [map { money($_)->[1] } $ur, $ue, $us], [0, 0, 0],
    '... and nothing debited';

# --- item 8: a refund and a debit of two accounts, raced --------------------

my ($ua) = Test::Monetize::account(
    id => '00000000-0000-4000-8000-0000000000a1', credits => 10);
my ($ub) = Test::Monetize::account(
    id => '00000000-0000-4000-8000-0000000000b2', credits => 10);
my ($ka, $kb) = (key_of($ua), key_of($ub));
try_psql(debit_sql(0, [$ua, $ka, 1, 'call:ra', 'f'],
                      [$ub, $kb, 1, 'call:rb', 'f']));

# b's account held, a refund (b's call first) and a debit of a and b wait:
# locked in the order of its calls, the refund would hold b and wait for a,
# which the debit holds while it waits for b
my $hold = Test::Monetize::psql_session();
$hold->query('BEGIN');
$hold->query("SELECT 1 FROM balances WHERE user_id = '$ub' FOR UPDATE");

my $refund = Test::Monetize::psql_session();
$refund->send("SELECT reference, applied FROM monetize_refund("
              . "'{call:rb,call:ra}')");
Test::Monetize::wait_until(10, sub {
    waiting_on_lock('%monetize_refund%') == 1 });

my $debit = Test::Monetize::psql_session();
$debit->send(debit_sql(0, [$ua, $ka, 1, 'call:rc', 'f'],
                          [$ub, $kb, 1, 'call:rd', 'f']));
Test::Monetize::wait_until(10, sub {
    waiting_on_lock('%monetize_debit%') == 1 });

$hold->query('COMMIT');

my @refunded = $refund->wait(allow_error => 1, timeout => 20);
my $refund_err = $refund->errors;
my @debited = $debit->wait(allow_error => 1, timeout => 20);
my $debit_err = $debit->errors;

is $refund_err . $debit_err, '', 'no deadlock between a refund and a debit';
is_deeply [@refunded, map { [@$_[0 .. 1]] } @debited],
    [['call:rb', 't'], ['call:ra', 't'], [1, 'credits'], [2, 'credits']],
    '... both applied';

$_->close for $first, $retry, $void, $hold, $refund, $debit;

Test::Monetize::reconcile();

done_testing;
