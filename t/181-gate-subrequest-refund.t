# Refunds are for the call the client made: with log_subrequest on, a
# subrequest of a gated call (an SSI include here) that answers 5xx is
# logged, but refunds nothing; only the main request's own status does.
# (The log phase of a subrequest runs with the subrequest's location, so
# both directives are at server level, as an operator would put them.)

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my ($user, $key) = Test::Monetize::account(credits => 10);

my $ngx = Test::Monetize::Nginx->start(
    http_config => "monetize_cache zone=keys:1m;\n"
                   . "log_format uris '\$uri \$status';",
    config => <<'CONF');
    access_log logs/uris.log uris;
    log_subrequest on;
    monetize_refund_on 5xx;
    location /api/ {
        monetize_gate on;
        ssi on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend/;
    }
    location /backend/ {
        default_type text/html;
        return 200 'page <!--# include virtual="/part" --> end';
    }
    location = /backend/down { return 503; }
    location = /part { return 503; }
CONF

sub ledger {
    my ($kind) = @_;
    my ($n) = Test::Monetize::psql(
        "SELECT count(*) FROM credit_ledger WHERE user_id = \$1"
        . " AND kind = \$2", $user, $kind);
    return $n->[0];
}

my $res = $ngx->request('GET', '/api/page', headers => {'X-API-Key' => $key});
is $res->{status}, 200, 'the page is served (its include failed)';
like $res->{body}, qr/^page .* end$/s, '... with what SSI made of it';
ok Test::Monetize::wait_until(5, sub {
        Test::Monetize::_slurp($ngx->prefix . '/logs/uris.log')
            =~ m{^/part 503$}m }),
    'the subrequest was logged, with its 503';

# a call of the main request that fails: its refund comes, and is the only one
$res = $ngx->request('GET', '/api/down', headers => {'X-API-Key' => $key});
is $res->{status}, 503, 'a call whose upstream fails: 503';
my ($last) = Test::Monetize::psql(
    "SELECT reference FROM credit_ledger WHERE user_id = \$1"
    . " AND kind = 'debit' ORDER BY id DESC LIMIT 1", $user);
ok Test::Monetize::wait_until(10, sub {
        my ($n) = Test::Monetize::psql(
            "SELECT count(*) FROM credit_ledger WHERE reference = \$1",
            "refund:$last->[0]");
        $n->[0] == 1 }),
    '... and refunded';

is ledger('debit'), 2, 'two calls, two debits';
is ledger('refund'), 1,
    'one refund: the failed include did not refund the page that was served';

my ($balance) = Test::Monetize::psql(
    "SELECT balance FROM balances WHERE user_id = \$1", $user);
is $balance->[0], 9, 'the balance: 10, less the page served';

done_testing;
