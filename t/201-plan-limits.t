# A plan's rate limit has bounds: the plans table refuses a rate or a burst
# below 1 or above 1,000,000; and should a row pass anyway (the CHECK
# dropped, as here), the local limiter refuses its calls with 500 and a log
# line instead of dividing by zero in every worker.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

sub insert_plan {
    my ($id, $rps, $burst) = @_;
    return eval {
        Test::Monetize::psql(
            "INSERT INTO plans (id, name, price_cents, rate_limit_rps,"
            . "                 rate_limit_burst)"
            . " VALUES (\$1, \$1, 0, \$2, \$3)", $id, $rps, $burst);
        1;
    } ? 'accepted' : 'refused';
}

# --- the CHECK ----------------------------------------------------------------

is_deeply [map { insert_plan(@$_) } ['zero', 0, 5], ['negative', -1, 5],
                                    ['fast', 1000001, 5], ['no_burst', 10, 0],
                                    ['huge_burst', 10, 1000001]],
    [('refused') x 5],
    'the plans table refuses a rate or burst below 1 or above 1000000';
is_deeply [map { insert_plan(@$_) } ['slowest', 1, 1],
                                    ['fastest', 1000000, 1000000]],
    [('accepted') x 2], '... and takes the bounds themselves';
is_deeply [Test::Monetize::psql(
    "SELECT convalidated FROM pg_constraint"
    . " WHERE conname = 'plans_rate_limit_bounds'")], [['t']],
    '... for every row (the constraint is validated)';

# --- the limiter's own guard ------------------------------------------------

Test::Monetize::psql(
    "ALTER TABLE plans DROP CONSTRAINT IF EXISTS plans_rate_limit_bounds");
is insert_plan('too_fast', 2000000, 5), 'accepted',
    'without the CHECK, a plan of 2000000 calls a second goes in';

my $ngx = Test::Monetize::Nginx->start(
    workers => 2,
    http_config => 'monetize_cache zone=keys:1m;',
    config => <<'CONF');
    location /api/ {
        monetize_gate on;
        monetize_cost 0;
        monetize_rate_limit local;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /backend/ { return 200 "ok\n"; }
CONF

my ($user, $key) = Test::Monetize::account(plan => 'too_fast');
my ($user2, $fine) = Test::Monetize::account(plan => 'fastest');
my $mark = $ngx->error_log_mark;

my @res = $ngx->parallel([map { [GET => "/api/$_",
                                 headers => {'X-API-Key' => $key}] } 1 .. 20],
                         concurrency => 10);
is_deeply [map { $_->{status} // $_->{error} } @res], [(500) x 20],
    'its calls are refused with 500, on both workers';
is $res[0]{json}{error}{code}, 'internal_error', '... internal_error';
ok $ngx->wait_for_log(qr/monetize: the rate limit of "k:[-0-9a-f]{36}" .*cannot be kept/,
                      since => $mark),
    '... and the log says why';
unlike $ngx->error_log_since($mark), qr/exited on signal|SIGFPE/,
    'no worker crashed';

my $ok = $ngx->request('GET', '/api/y', headers => {'X-API-Key' => $fine});
is $ok->{status}, 200, 'a plan at the bound, 1000000 a second, works';

done_testing;
