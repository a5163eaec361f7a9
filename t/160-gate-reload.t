# Reloads under load: the shared zones are kept, new workers open their own
# pools and listeners, old ones finish their calls; nothing is lost, nothing
# crashes, and the ledger still sums to the balance.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use POSIX ();

my ($user, $key) = Test::Monetize::account(credits => 1_000_000,
                                           plan => 'enterprise');
my %conf = (
    workers => 2,
    http_config => 'monetize_cache zone=keys:1m;',
    config => <<'CONF');
    location /api/ {
        monetize_gate on;
        monetize_rate_limit local;
        monetize_quota on;
        monetize_cost 2;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /backend/ { return 200 "ok\n"; }
CONF

my $ngx = Test::Monetize::Nginx->start(%conf);
my $out = Test::Monetize::new_dir('load') . '/statuses';

my $load = fork // die "fork: $!";
if ($load == 0) {
    open my $fh, '>', $out or POSIX::_exit(1);
    for (1 .. 30) {
        my @r = $ngx->parallel([map {
            [GET => "/api/$_", headers => {'X-API-Key' => $key}]
        } 1 .. 40], concurrency => 20);
        print $fh map { ($_->{status} // 'none') . "\n" } @r;
    }
    close $fh;
    POSIX::_exit(0);
}

for (1 .. 3) {
    select undef, undef, undef, 0.3;
    $ngx->reload(%conf, wait_old => 0);
}
waitpid $load, 0;

open my $fh, '<', $out or die $!;
my %status;
$status{$_}++ for map { chomp; $_ } <$fh>;
is_deeply \%status, {200 => 1200}, 'all 1200 calls answered 200 across 3 reloads';

unlike $ngx->error_log_since(0), qr/\[(alert|crit|emerg)\]|exited on signal/,
    'no alert, no crash';

my ($ledger) = Test::Monetize::psql(
    "SELECT b.balance, (SELECT sum(delta) FROM credit_ledger l"
    . "                  WHERE l.user_id = b.user_id),"
    . "       (SELECT calls FROM quota_usage q WHERE q.user_id = b.user_id)"
    . "  FROM balances b WHERE b.user_id = \$1", $user);
is $ledger->[0], $ledger->[1], 'the ledger sums to the balance';
is $ledger->[2], 1200, 'and the quota counted each call once';

Test::Monetize::reconcile();

done_testing;
