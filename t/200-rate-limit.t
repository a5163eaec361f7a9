# Rate limits: a key of a plan at 10 calls a second with a burst of 5, hit by
# 200 calls spread over one second from 20 clients, passes 5 plus 10 a
# second of what elapsed; the rest get 429 with Retry-After and the
# RateLimit-* headers. Per key or per account; never charged when refused;
# a client's garbage cannot spend another key's limit; a plan row that
# cannot be enforced is refused with a clear log line.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use POSIX qw(floor ceil);
use Time::HiRes qw(time sleep);

# the plans table refuses a rate of 0 (sql/006_keys.sql); a row made before
# that rule may still have one
Test::Monetize::psql(
    "ALTER TABLE plans DROP CONSTRAINT plans_rate_limit_bounds");
Test::Monetize::psql(
    "INSERT INTO plans (id, name, price_cents, monthly_quota,"
    . "                 rate_limit_rps, rate_limit_burst)"
    . " VALUES ('ten', 'Ten', 100, NULL, 10, 5),"
    . "        ('broken', 'Broken', 100, NULL, 0, 5)");

my $ngx = Test::Monetize::Nginx->start(
    workers => 2,
    http_config => 'monetize_cache zone=keys:1m;',
    config => <<'CONF');
    add_header X-Decided $msec always;
    location /api/ {
        monetize_gate on;
        monetize_rate_limit local;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /shared/ {
        monetize_gate on;
        monetize_rate_limit local;
        monetize_rate_limit_key account;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /backend/ { return 200 "ok\n"; }
CONF

# 20 clients, each a call every 100ms for a second; the time that elapsed
# is nginx's, between the first call it decided and the last
sub paced {
    my ($path, @keys) = @_;
    my @h;
    my $start = time;
    for my $round (0 .. 9) {
        my $at = $start + $round * 0.1;
        sleep($at - time) if $at > time;
        push @h, map {
            $ngx->start_request('GET', "$path$round-$_",
                headers => {'X-API-Key' => $keys[$_ % @keys]}, timeout => 10)
        } 1 .. 20;
    }
    my @res = map { $ngx->finish_request($_) } @h;
    my @at = sort { $a <=> $b }
             map { (split /, /, $_->{headers}{'x-decided'})[0] } @res;
    return (\@res, $at[-1] - $at[0]);
}

sub expect_admitted {
    my ($res, $elapsed, $what) = @_;
    my $ok = grep { $_->{status} == 200 } @$res;
    my $limited = grep { $_->{status} == 429 } @$res;
    my ($lo, $hi) = (5 + floor(10 * $elapsed) - 1, 5 + ceil(10 * $elapsed) + 1);
    ok $ok >= $lo && $ok <= $hi,
        "$what: $ok admitted over ${\ sprintf '%.2f', $elapsed}s"
        . " (5 at once and 10 a second: $lo to $hi)";
    is $ok + $limited, 200, "$what: the rest are 429";
    return $ok;
}

# --- one key ----------------------------------------------------------------

my ($user, $key) = Test::Monetize::account(plan => 'ten',
    credits => 100000);
my ($res, $elapsed) = paced('/api/', $key);
expect_admitted($res, $elapsed, 'one key');

my ($denied) = grep { $_->{status} == 429 } @$res;
is $denied->{json}{error}{code}, 'rate_limited', '429 rate_limited';
cmp_ok $denied->{headers}{'retry-after'}, '>=', 1, 'with Retry-After';
is $denied->{headers}{'ratelimit-limit'}, 5, 'RateLimit-Limit: the burst';
is $denied->{headers}{'ratelimit-remaining'}, 0, 'RateLimit-Remaining: 0';
like $denied->{headers}{'ratelimit-reset'}, qr/^\d+$/, 'RateLimit-Reset';

my ($passed) = grep { $_->{status} == 200 } @$res;
like $passed->{headers}{'ratelimit-remaining'}, qr/^[0-4]$/,
    'a call that passed says how many more may come now';

my @debits = Test::Monetize::psql(
    "SELECT count(*) FROM credit_ledger WHERE user_id = \$1 AND kind = 'debit'",
    $user);
is $debits[0][0], scalar(grep { $_->{status} == 200 } @$res),
    'only the calls that passed were charged';

# --- per account: two keys share one limit -----------------------------------

my ($user2, @two) = Test::Monetize::account(plan => 'ten',
    credits => 100000, keys => 2);
($res, $elapsed) = paced('/shared/', @two);
expect_admitted($res, $elapsed, 'two keys of one account, limited by account');

my ($user3, @two_more) = Test::Monetize::account(plan => 'ten',
    credits => 100000, keys => 2);
($res, $elapsed) = paced('/api/', @two_more);
my $ok = grep { $_->{status} == 200 } @$res;
cmp_ok $ok, '>=', 2 * (5 + floor(10 * $elapsed) - 1),
    'limited by key, two keys pass twice as many';

# --- garbage cannot spend another key's limit --------------------------------

my ($user4, $victim) = Test::Monetize::account(plan => 'ten',
    credits => 100000);
my $forged = substr($victim, 0, -1) . ($victim =~ /0\z/ ? '1' : '0');
my @junk = $ngx->parallel([map {
    [GET => "/api/junk$_", headers => [
        'X-API-Key' => $_ % 2 ? $forged : "sk_live_\x01$victim",
        'X-Forwarded-For' => '127.0.0.1',
        'X-Rate-Limit-Key' => $victim]]
} 1 .. 50], concurrency => 10);
is scalar(grep { $_->{status} == 429 } @junk), 0,
    'calls with wrong keys are refused as such, never counted as limited';
my $fresh = $ngx->request('GET', '/api/fresh', headers => {'X-API-Key' => $victim});
is_deeply [$fresh->{status}, $fresh->{headers}{'ratelimit-remaining'}], [200, 4],
    "the victim's key still has its whole burst";

# --- a plan that cannot be enforced -------------------------------------------

my ($user5, $broken) = Test::Monetize::account(plan => 'broken',
    credits => 100000);
my $mark = $ngx->error_log_mark;
$res = $ngx->request('GET', '/api/x', headers => {'X-API-Key' => $broken});
is_deeply [$res->{status}, $res->{json}{error}{code}], [500, 'internal_error'],
    'a plan with rate 0: refused, 500';
ok $ngx->wait_for_log('monetize: plan "broken" has rate_limit_rps 0 and '
                      . 'rate_limit_burst 5', since => $mark),
    '... and the log says which plan and why';

done_testing;
