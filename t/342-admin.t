# The operators' endpoints: scripts/admin makes the first operator; POST
# /admin/credits (a grant, an adjustment, never below zero), PATCH
# /admin/users/{id} (suspended, is_admin, plan); a non-admin gets 403.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

plan tests => 45;

my $ngx = Test::Monetize::Nginx->start(
    config => 'location /v1/ { monetize_api; }'
              # "return" runs before the access phase: a backend
              . ' location /api/ { monetize_gate on; monetize_cost 1;'
              . '   add_header X-Plan $monetize_plan always;'
              . '   proxy_pass http://127.0.0.1:$server_port/backend/; }'
              . ' location /backend/ { return 200 "ok\n"; }',
    http_config => 'monetize_cache zone=keys:1m ttl=3600s;');

sub call {
    my ($method, $path, $key, $json) = @_;
    return $ngx->request($method, $path,
        $key ? (headers => [Authorization => "Bearer $key"]) : (),
        defined $json ? (json => $json) : ());
}

my ($root, $R) = Test::Monetize::account(email => 'root@example.com');
my ($bob, $B) = Test::Monetize::account(email => 'bob@example.com',
                                        credits => 100);

# A non-admin: 403 forbidden everywhere under /admin.
for my $c ([POST => '/v1/admin/credits', {user_id => $bob, amount => 5,
                                          reason => 'x'}],
           [PATCH => "/v1/admin/users/$bob", {suspended => JSON::PP::true}],
           [GET => '/v1/admin/users'], [GET => '/v1/admin/audit'])
{
    my $res = call($c->[0], $c->[1], $R, $c->[2]);
    is_deeply [$res->{status}, $res->{json}{error}{code}], [403, 'forbidden'],
        "a non-admin: $c->[0] $c->[1]: 403 forbidden";
}

# scripts/admin make-admin, by the email as typed.
my ($rc, $out, $err) = Test::Monetize::_run(
    ["$ENV{MONETIZE_REPO}/scripts/admin", 'make-admin', 'Root@Example.com'],
    env => {PGHOST => $ENV{MONETIZE_PG_HOST}, PGPORT => $ENV{MONETIZE_PG_PORT},
            PGUSER => $ENV{MONETIZE_PG_USER},
            PGPASSWORD => $ENV{MONETIZE_PG_PASSWORD},
            PGDATABASE => Test::Monetize::database()});
is_deeply [$rc, $out], [0, "Root\@Example.com ($root): is_admin = true\n"],
    'scripts/admin make-admin: done' or diag $err;
($rc) = Test::Monetize::_run(
    ["$ENV{MONETIZE_REPO}/scripts/admin", 'make-admin', 'nobody@example.com'],
    env => {PGHOST => $ENV{MONETIZE_PG_HOST}, PGPORT => $ENV{MONETIZE_PG_PORT},
            PGUSER => $ENV{MONETIZE_PG_USER},
            PGPASSWORD => $ENV{MONETIZE_PG_PASSWORD},
            PGDATABASE => Test::Monetize::database()});
is $rc, 1, 'an unknown email: exit 1';

# A grant: in the ledger and the balance.
my $res = call(POST => '/v1/admin/credits', $R,
               {user_id => $bob, amount => 500, reason => 'support #42'});
is $res->{status}, 201, 'a grant: 201';
is Test::Monetize::json_match({user_id => $bob, amount => 500,
                               kind => 'grant', reason => 'support #42',
                               balance_after => 600,
                               created_at => 're:^\d{4}-\d\d-\d\dT'},
                              $res->{json}), undef, 'the ledger entry'
    or diag explain $res->{json};
is call(GET => '/v1/verify_credits', $B)->{json}{balance}, 600,
    'the grant shows in the balance';
is_deeply [Test::Monetize::psql(
        "SELECT delta, kind, balance_after, metadata->>'reason',"
        . "     metadata->>'by'"
        . "  FROM credit_ledger WHERE user_id = \$1 ORDER BY id DESC LIMIT 1",
        $bob)],
    [[500, 'grant', 600, 'support #42', $root]], 'and in the ledger';

# An adjustment, down to zero, and not below.
$res = call(POST => '/v1/admin/credits', $R,
            {user_id => $bob, amount => -600, reason => 'chargeback'});
is_deeply [$res->{status}, $res->{json}{kind}, $res->{json}{balance_after}],
    [201, 'adjustment', 0], 'a negative adjustment to zero: 201';
$res = call(POST => '/v1/admin/credits', $R,
            {user_id => $bob, amount => -1, reason => 'one more'});
is_deeply [$res->{status}, $res->{json}{error}{code},
           $res->{json}{error}{balance}],
    [409, 'negative_balance', 0], 'below zero: 409 negative_balance';
is_deeply [Test::Monetize::psql(
        'SELECT count(*), sum(delta) FROM credit_ledger WHERE user_id = $1',
        $bob)], [[3, 0]], 'nothing written';

# The same grant sent again with its idempotency key: granted once. The
# key once used for another amount or account: 409, nothing written.
my $grant = {user_id => $bob, amount => 25, reason => 'retried',
             idempotency_key => 'ticket-77'};
$res = call(POST => '/v1/admin/credits', $R, $grant);
is_deeply [$res->{status}, $res->{json}{amount}, $res->{json}{balance_after}],
    [201, 25, 25], 'a grant with an idempotency key: 201';
my $first = $res->{json}{id};
$res = call(POST => '/v1/admin/credits', $R, $grant);
is_deeply [$res->{status}, $res->{json}{id},
           $res->{headers}{'idempotent-replayed'}],
    [200, $first, 'true'], '... sent again: 200, the first entry, replayed';
$res = call(POST => '/v1/admin/credits', $R, {%$grant, amount => 26});
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [409, 'idempotency_conflict'], '... for another amount: 409';
is_deeply [Test::Monetize::psql(
        "SELECT count(*), sum(delta) FROM credit_ledger"
        . " WHERE user_id = \$1 AND reference = 'admin:key:ticket-77'",
        $bob)], [[1, 25]], '... one entry in the ledger';
is call(GET => '/v1/verify_credits', $B)->{json}{balance}, 25,
    '... and the balance has it once';
$res = call(POST => '/v1/admin/credits', $R,
            {user_id => $bob, amount => -25, reason => 'undo the test'});
is $res->{status}, 201, '(taken back)';

# What the body must be.
for my $bad ([{amount => 5, reason => 'r'}, user_id => 'is required'],
             [{user_id => 'bob', amount => 5, reason => 'r'},
              user_id => 'must be a user\'s id (a UUID)'],
             [{user_id => 'c0000000-0000-4000-8000-000000000000',
               amount => 5, reason => 'r'}, user_id => 'no such account'],
             [{user_id => $bob, amount => 0, reason => 'r'},
              amount => 'is required, and not 0'],
             [{user_id => $bob, amount => '5', reason => 'r'},
              amount => 're:integer'],
             [{user_id => $bob, amount => 5}, reason => 'is required'])
{
    my ($body, $field, $why) = @$bad;
    $res = call(POST => '/v1/admin/credits', $R, $body);
    my $got = $res->{json}{error}{fields}{$field} // '';
    ok $res->{status} == 422
       && ($why =~ /^re:(.*)/ ? $got =~ /$1/ : $got eq $why),
        "credits: $field: 422 ($why)" or diag explain $res->{json};
}
$res = call(POST => '/v1/admin/credits', $R, {user_id => $bob});
ok $res->{status} == 422 && $res->{json}{error}{fields}{amount}
   && $res->{json}{error}{fields}{reason}, 'no amount: 422';

# PATCH /admin/users/{id}
$res = call(PATCH => "/v1/admin/users/$bob", $R,
            {suspended => JSON::PP::true});
is_deeply [$res->{status}, $res->{json}{id}, $res->{json}{suspended}],
    [200, $bob, JSON::PP::true], 'suspend: 200';
$res = call(GET => '/v1/verify_credits', $B);
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [403, 'account_suspended'], 'the account is suspended';
$res = Test::Monetize::wait_until(5, sub {
    my $r = $ngx->request(GET => '/api/x',
                          headers => [Authorization => "Bearer $B"]);
    $r->{status} == 403 ? $r : undef });
is_deeply [$res && $res->{json}{error}{code}], ['account_suspended'],
    'at the gate too' or diag explain $ngx->request(GET => '/api/x',
                          headers => [Authorization => "Bearer $B"]);

$res = call(PATCH => "/v1/admin/users/$bob", $R,
            {suspended => JSON::PP::false, plan => 'professional'});
is_deeply [$res->{status}, $res->{json}{suspended}, $res->{json}{plan}],
    [200, JSON::PP::false, 'professional'], 'unsuspend and set a plan: 200';
is call(GET => '/v1/me', $B)->{json}{plan}{id}, 'professional',
    '/me shows the plan';
is_deeply [Test::Monetize::psql(
        "SELECT plan_id, status, stripe_subscription_id"
        . "  FROM subscriptions WHERE user_id = \$1", $bob)],
    [['professional', 'active', undef]],
    'as a subscription row without Stripe';
call(POST => '/v1/admin/credits', $R,
     {user_id => $bob, amount => 5, reason => 'calls'});
is Test::Monetize::wait_until(5, sub {
        my $r = $ngx->request(GET => '/api/x',
                              headers => [Authorization => "Bearer $B"]);
        $r->{status} == 200 ? $r : undef })->{status}, 200,
    'the gate lets the account in again';
is $ngx->request(GET => '/api/x', headers => [Authorization => "Bearer $B"])
    ->{headers}{'x-plan'}, 'professional', 'with the plan the operator set';

$res = call(PATCH => "/v1/admin/users/$bob", $R, {plan => 'starter'});
is_deeply [Test::Monetize::psql(
        "SELECT plan_id, status FROM subscriptions WHERE user_id = \$1"
        . " ORDER BY created_at, status", $bob)],
    [['professional', 'canceled'], ['starter', 'active']],
    'a new plan replaces the operator\'s former one';
$res = call(PATCH => "/v1/admin/users/$bob", $R, {plan => 'free'});
is_deeply [$res->{json}{plan}, Test::Monetize::psql(
        "SELECT count(*) FROM subscriptions WHERE user_id = \$1"
        . "   AND status = 'active'", $bob)],
    ['free', [0]], 'plan "free" ends it';

$res = call(PATCH => "/v1/admin/users/$bob", $R, {plan => 'platinum'});
is_deeply [$res->{status}, $res->{json}{error}{fields}{plan}],
    [422, 'no such plan'], 'an unknown plan: 422';
$res = call(PATCH => "/v1/admin/users/$bob", $R, {suspended => 'yes'});
is_deeply [$res->{status}, $res->{json}{error}{fields}{suspended}],
    [422, 'must be true or false'], 'suspended not a boolean: 422';
$res = call(PATCH => "/v1/admin/users/$bob", $R, {});
is $res->{status}, 422, 'nothing to change: 422';
$res = call(PATCH => '/v1/admin/users/c0000000-0000-4000-8000-000000000000',
            $R, {is_admin => JSON::PP::true});
is_deeply [$res->{status}, $res->{json}{error}{code}], [404, 'not_found'],
    'an unknown account: 404';
$res = call(PATCH => '/v1/admin/users/nope', $R, {is_admin => JSON::PP::true});
is $res->{status}, 404, 'not a uuid: 404';

# is_admin: bob becomes an operator, then stops being one.
call(PATCH => "/v1/admin/users/$bob", $R, {is_admin => JSON::PP::true});
is call(GET => '/v1/admin/users', $B)->{status}, 200,
    'made admin: bob may list users';
call(PATCH => "/v1/admin/users/$bob", $R, {is_admin => JSON::PP::false});
is call(GET => '/v1/admin/users', $B)->{status}, 403, 'and then not';

Test::Monetize::reconcile();

my $log = $ngx->error_log_since(0);
is $log =~ /\[(alert|crit|emerg|error)\]/ ? $1 : undef, undef,
    'no error in the error log' or diag $log;
