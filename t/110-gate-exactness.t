# Exactness: concurrent calls against a balance admit exactly what the
# balance pays for; what the client, the upstream and the ledger count
# agree, and the ledger sums to the balance.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $be = Test::Monetize::Backend->start(sub {
    return (200, {'Content-Type' => 'text/plain'}, "served\n");
});

my $ngx = Test::Monetize::Nginx->start(
    workers => 2,
    http_config => 'monetize_cache zone=keys:1m;',
    config => <<"CONF");
    location /api/ {
        monetize_gate on;
        monetize_cost \$arg_cost;
        proxy_set_header X-Request-Id \$request_id;
        proxy_pass http://127.0.0.1:@{[ $be->port ]};
    }
CONF

sub ledger {
    my ($user) = @_;
    my ($row) = Test::Monetize::psql(
        "SELECT b.balance,"
        . " (SELECT sum(delta) FROM credit_ledger l WHERE l.user_id = \$1),"
        . " (SELECT count(*) FROM credit_ledger l"
        . "   WHERE l.user_id = \$1 AND l.kind = 'debit'),"
        . " (SELECT -sum(delta) FROM credit_ledger l"
        . "   WHERE l.user_id = \$1 AND l.kind = 'debit')"
        . " FROM balances b WHERE b.user_id = \$1", $user);
    return @$row;
}

# --- 1,000 calls from 50 clients against 500 credits at cost 1 -----------

my ($user, $key) = Test::Monetize::account(credits => 500);

my @res = $ngx->parallel([map {
    {method => 'GET', path => "/api/call$_?cost=1",
     headers => {'X-API-Key' => $key}}
} 1 .. 1000], concurrency => 50);

my %status;
$status{$_->{status} // 'none'}++ for @res;

is_deeply \%status, {200 => 500, 402 => 500}, '500 calls pass, 500 get 402';
is scalar(@{[ $be->requests ]}), 500, 'exactly 500 reached the upstream';

my ($balance, $sum, $debits) = ledger($user);
is $balance, 0, 'the balance ends at 0';
is $debits, 500, 'the ledger has 500 debits';
is $sum, $balance, "the ledger's entries sum to the balance";

my %seen;
my @served = map { $_->{headers}{'x-request-id'} } $be->requests;
my @debited = map { $_->[0] } Test::Monetize::psql(
    "SELECT substr(reference, 6) FROM credit_ledger"
    . " WHERE user_id = \$1 AND kind = 'debit'", $user);
is_deeply [sort @served], [sort @debited],
    'the calls served are exactly the calls debited, by request id';

# --- mixed costs over several keys of one account -------------------------

my ($user2, @keys) = Test::Monetize::account(credits => 1000, keys => 4);
my @costs = map { 1 + $_ % 5 } 1 .. 600;        # 1..5, 3 on average
my $before = scalar(@{[ $be->requests ]});

@res = $ngx->parallel([map {
    {method => 'GET', path => "/api/mixed$_?cost=$costs[$_]",
     headers => {'X-API-Key' => $keys[$_ % 4]}}
} 0 .. $#costs], concurrency => 50);

my ($paid, $passed, $refused, $other) = (0, 0, 0, 0);
for my $i (0 .. $#res) {
    if ($res[$i]{status} == 200) { $passed++; $paid += $costs[$i] }
    elsif ($res[$i]{status} == 402) { $refused++ }
    else { $other++ }
}

is $other, 0, 'every mixed call is 200 or 402';
is scalar(@{[ $be->requests ]}) - $before, $passed,
    'the upstream saw exactly the calls that passed';

($balance, $sum, $debits, my $debited) = ledger($user2);
is $debited, $paid, 'the ledger debited exactly what the passed calls cost';
is $debits, $passed, 'one debit per passed call';
is $balance, 1000 - $paid, 'the balance is the grant less the debits';
is $sum, $balance, "the ledger's entries sum to the balance";
cmp_ok $balance, '<', 5, 'the balance was spent down to what no call fits';

my ($keys_used) = Test::Monetize::psql(
    "SELECT count(DISTINCT api_key_id) FROM credit_ledger"
    . " WHERE user_id = \$1 AND kind = 'debit'", $user2);
is $keys_used->[0], 4, 'the debits carry each of the 4 keys';

# --- a batch sent again, its first answer lost ----------------------------

my ($user3, $key3) = Test::Monetize::account(credits => 10);
my ($key_id) = map { $_->[0] } Test::Monetize::psql(
    "SELECT id FROM api_keys WHERE user_id = \$1", $user3);
my $batch = "SELECT idx, outcome, balance FROM monetize_debit("
    . " ARRAY[\$1, \$1]::uuid[], ARRAY[\$2, \$2]::uuid[], '{3,4}',"
    . " '{call:lost-1,call:lost-2}', '{f,f}', \$3)";
my @first = Test::Monetize::psql($batch, $user3, $key_id, 'f');
my @again = Test::Monetize::psql($batch, $user3, $key_id, 't');
is_deeply \@first, [[1, 'credits', 7], [2, 'credits', 3]], 'a batch debits';
is_deeply [map { [$_->[0], $_->[1]] } @again], [[1, 'credits'], [2, 'credits']],
    'sent again: its calls are reported admitted';
my ($after) = Test::Monetize::psql(
    "SELECT balance, (SELECT count(*) FROM credit_ledger"
    . "                WHERE user_id = \$1 AND kind = 'debit')"
    . "  FROM balances WHERE user_id = \$1", $user3);
is_deeply $after, [3, 2], '... and nothing was debited twice';

Test::Monetize::reconcile(
    served => [map { $_->{headers}{'x-request-id'} } $be->requests]);

done_testing;
