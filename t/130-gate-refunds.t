# "Charge only for what was served": with monetize_refund_on, a call whose
# upstream answered with one of the statuses is refunded, once, by a ledger
# entry that refers to its debit.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $be = Test::Monetize::Backend->start(sub {
    my ($req) = @_;
    my ($status) = $req->{path} =~ m{/(\d{3})\z};
    return ($status // 200, {'Content-Type' => 'text/plain'}, "answered\n");
});
my $upstream = '127.0.0.1:' . $be->port;

my ($user, $key) = Test::Monetize::account(credits => 100);

my $ngx = Test::Monetize::Nginx->start(
    workers => 2,
    http_config => 'monetize_cache zone=keys:1m;',
    config => <<"CONF");
    location /all/ {
        monetize_gate on;
        monetize_cost 5;
        monetize_refund_on 5xx;
        proxy_set_header X-Request-Id \$request_id;
        proxy_pass http://$upstream;
    }
    location /some/ {
        monetize_gate on;
        monetize_cost 5;
        monetize_refund_on 502 503;
        proxy_set_header X-Request-Id \$request_id;
        proxy_pass http://$upstream;
    }
    location /none/ {
        monetize_gate on;
        monetize_cost 5;
        proxy_set_header X-Request-Id \$request_id;
        proxy_pass http://$upstream;
    }
    location /down/ {
        monetize_gate on;
        monetize_cost 5;
        monetize_refund_on 5xx;
        proxy_pass http://127.0.0.1:1;
    }
CONF

sub call {
    my ($path) = @_;
    return $ngx->request('GET', $path, headers => {'X-API-Key' => $key});
}

sub ledger {
    my @rows = Test::Monetize::psql(
        "SELECT kind, count(*), sum(delta) FROM credit_ledger"
        . " WHERE user_id = \$1 GROUP BY kind ORDER BY kind", $user);
    return {map { $_->[0] => [$_->[1], $_->[2]] } @rows};
}

sub wait_for_refunds {
    my ($n) = @_;
    return Test::Monetize::wait_until(5, sub {
        my $l = ledger();
        ($l->{refund} // [0])->[0] == $n;
    });
}

is call('/all/503')->{status}, 503, 'the upstream fails a call';
ok wait_for_refunds(1), 'refunded';
is call('/all/200')->{status}, 200, 'a call served';
is call('/all/404')->{status}, 404, 'a call the upstream answered 404';
is call('/some/500')->{status}, 500, 'a 500 where only 502 and 503 refund';
is call('/some/502')->{status}, 502, 'a 502 where 502 refunds';
is call('/none/503')->{status}, 503, 'a 503 where nothing refunds';
is call('/down/x')->{status}, 502, 'the upstream is down: nginx answers 502';
ok wait_for_refunds(3), 'three refunds in all';

is_deeply ledger(),
    {admin => [1, 100], debit => [7, -35], refund => [3, 15]},
    'the ledger: 7 debits, 3 refunds';

my @pairs = Test::Monetize::psql(
    "SELECT r.reference = 'refund:' || d.reference,"
    . "       r.metadata->>'debit' = d.reference, r.delta = -d.delta,"
    . "       r.api_key_id = d.api_key_id"
    . "  FROM credit_ledger r"
    . "  JOIN credit_ledger d ON d.reference = r.metadata->>'debit'"
    . " WHERE r.kind = 'refund' AND r.user_id = \$1", $user);
is_deeply \@pairs, [map { [qw(t t t t)] } 1 .. 3],
    'each refund refers to its debit, with its amount and key';

my ($balance) = Test::Monetize::psql(
    "SELECT balance, (SELECT sum(delta) FROM credit_ledger WHERE user_id = \$1)"
    . "  FROM balances WHERE user_id = \$1", $user);
is_deeply $balance, [80, 80], 'the balance: 100 - 35 + 15, as the ledger says';

# a refund is applied once, however often it is asked for
my ($ref) = map { $_->[0] } Test::Monetize::psql(
    "SELECT metadata->>'debit' FROM credit_ledger"
    . " WHERE kind = 'refund' AND user_id = \$1 LIMIT 1", $user);
my @again = Test::Monetize::psql(
    "SELECT applied FROM monetize_refund(ARRAY[\$1, \$1])", $ref);
is_deeply \@again, [['f'], ['f']], 'asking again refunds nothing more';

# --- many refunds at once: batches of them follow each other -------------

my ($busy) = Test::Monetize::account(credits => 1000, keys => [
    'sk_live_' . ('B' x 32)]);
my @many = $ngx->parallel([map {
    [GET => "/all/503?$_", headers => {'X-API-Key' => 'sk_live_' . ('B' x 32)}]
} 1 .. 60], concurrency => 30);
is scalar(grep { $_->{status} == 503 } @many), 60,
    '60 concurrent calls the upstream fails';
ok Test::Monetize::wait_until(10, sub {
        my ($n) = Test::Monetize::psql(
            "SELECT count(*) FROM credit_ledger"
            . " WHERE user_id = \$1 AND kind = 'refund'", $busy);
        $n->[0] == 60 }),
    '... all refunded';
unlike $ngx->error_log_since(0), qr/AddressSanitizer|exited on signal/,
    'no memory error, no worker crash';

Test::Monetize::reconcile(
    served => [map { $_->{headers}{'x-request-id'} } $be->requests]);

done_testing;
