# A change of an account (suspended, another plan) or of the plans table
# makes what the cache holds of it stale in one step: each worker that
# hears the notification moves a generation counter in the zone, and walks
# no entries. The account's keys are refused at once on every worker; every
# other key stays cached.
#
# "Cached" is seen, not assumed: with monetize.test_hold on (in the
# connection's options) and advisory lock 60061 held by a psql session,
# every lookup in PostgreSQL waits (sql/006_keys.sql), so a call that is
# answered came from the cache.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Digest::SHA ();

my $ngx = Test::Monetize::Nginx->start(
    workers => 2,
    log_level => 'debug',
    postgres => sprintf('monetize_postgres "host=%s port=%s dbname=%s '
                        . 'user=%s password=env:MONETIZE_PG_PASSWORD '
                        . q{options='-c monetize.test_hold=on'" }
                        . 'pool=8 timeout=5s;',
                        $ENV{MONETIZE_PG_HOST}, $ENV{MONETIZE_PG_PORT},
                        Test::Monetize::database(), $ENV{MONETIZE_PG_USER}),
    http_config => 'monetize_cache zone=keys:1m ttl=3600s;',
    config => <<'CONF');
    location /api/ {
        monetize_gate on;
        monetize_cost 0;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /backend/ { return 200 "served\n"; }
CONF

ok $ngx->wait_for_log(qr/listening for changes on postgres(?s:.*)listening for changes on postgres/),
    'both workers listen for changes';

my ($user, @own) = Test::Monetize::account(keys => 3);

# 10 more accounts of 10 keys each, in one statement
my (@others, @rows);
for my $a (1 .. 10) {
    for my $k (1 .. 10) {
        my $key = sprintf 'sk_live_%08d%08d%016d', $$, 9000 + $a, $k;
        push @others, $key;
        push @rows, sprintf "('00000000-0000-4000-8000-%012d'::uuid, '%s', 'sk_live_%s')",
            $a, Digest::SHA::hmac_sha256_hex($key, $ENV{MONETIZE_KEY_SECRET}),
            substr($key, 8, 4);
    }
}
Test::Monetize::psql(
    "INSERT INTO users (id, email, password_hash)"
    . " SELECT ('00000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid,"
    . "        'other' || i || '\@example.com', 'x'"
    . "   FROM generate_series(1, 10) AS i;"
    . " INSERT INTO api_keys (user_id, key_hash, prefix) VALUES "
    . join(', ', @rows));

sub statuses {
    my @keys = @_;
    my @res = $ngx->parallel([map { [GET => '/api/x', headers => {'X-API-Key' => $_}] } @keys],
                             concurrency => 10, timeout => 3);
    my %n;
    $n{$_->{status} // 'no answer'}++ for @res;
    return \%n;
}

# twice each, so both workers have asked or found them
is_deeply statuses((@own, @others) x 2), {200 => 2 * 103},
    '103 keys of 11 accounts work, and are cached';

my $s = Test::Monetize::psql_session();
$s->query('SELECT pg_advisory_lock(60061)');

is_deeply statuses(@own, @others), {200 => 103},
    'with every lookup in PostgreSQL held, all 103 answer from the cache';

# The account suspended is one of the ten made above, so every account id
# here is fixed and so is the slot each falls in: the other nine accounts'
# keys share none with it (a random id could, once in about a hundred runs,
# and would then only cost its keys a lookup).
my $suspended = '00000000-0000-4000-8000-000000000001';
my @gone = @others[0 .. 9];
my @kept = @others[10 .. $#others];

my $mark = $ngx->error_log_mark;
Test::Monetize::psql("UPDATE users SET suspended_at = now() WHERE id = \$1",
                     $suspended);

my $heard = Test::Monetize::wait_until(5, sub {
    my @n = $ngx->error_log_since($mark)
            =~ /monetize cache: account \Q$suspended\E changed: stale below generation \d+/g;
    @n == 2;
});
ok $heard, 'each worker marks the account stale in one step (one line each)';

$s->query('SELECT pg_advisory_unlock(60061)');
is_deeply statuses(@gone), {403 => 10},
    "the account's keys are refused at once";
$s->query('SELECT pg_advisory_lock(60061)');
is_deeply statuses(@kept), {200 => 90},
    'the 90 keys of the other accounts still answer from the cache';

# --- the plans table --------------------------------------------------------

$mark = $ngx->error_log_mark;
Test::Monetize::psql("UPDATE plans SET rate_limit_burst = 6 WHERE id = 'free'");

$heard = Test::Monetize::wait_until(5, sub {
    my @n = $ngx->error_log_since($mark)
            =~ /monetize cache: every entry stale below generation \d+/g;
    @n == 2;
});
ok $heard, 'a change of the plans table marks every entry stale in one step';

my $held = $ngx->start_request('GET', '/api/x',
                               headers => {'X-API-Key' => $others[10]});
ok !Test::Monetize::wait_until(0.5, sub { $held->done }),
    '... so a key is looked up again (and waits for the held lookup)';
$s->query('SELECT pg_advisory_unlock(60061)');
is $ngx->finish_request($held)->{status}, 200, '... then passes';

done_testing;
