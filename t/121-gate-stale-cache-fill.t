# A lookup of a key that read the key's row before a revocation committed
# must not put that row into the cache after the revocation's notification
# dropped it: the revoked key is refused at once, not for the cache's ttl.
#
# The race is made to happen, not hoped for: with monetize.test_hold on
# (in the connection's options), the gate's lookup (monetize_gate_key in sql/006_keys.sql) takes advisory
# lock 60061 after it read the row; a psql session holds that lock while the
# key is revoked and the notification is heard, then lets the lookup answer.
# The locations cost 0 and count no quota, so no debit happens: only the
# cache decides.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Digest::SHA ();

# monetize.test_hold on, for this nginx's sessions only (a non-superuser
# may not ALTER DATABASE ... SET a parameter that no module defines)
my $ngx = Test::Monetize::Nginx->start(
    workers => 2,
    postgres => sprintf('monetize_postgres "host=%s port=%s dbname=%s '
                        . 'user=%s password=env:MONETIZE_PG_PASSWORD '
                        . q{options='-c monetize.test_hold=on'" }
                        . 'pool=4 timeout=5s;',
                        $ENV{MONETIZE_PG_HOST}, $ENV{MONETIZE_PG_PORT},
                        Test::Monetize::database(), $ENV{MONETIZE_PG_USER}),
    log_level => 'debug',
    http_config => 'monetize_cache zone=keys:1m ttl=3600s;',
    config => <<'CONF');
    location /v1/ { monetize_api; }
    location /api/ {
        monetize_gate on;
        monetize_cost 0;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /paid/ {
        monetize_gate on;
        monetize_cost 1;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /backend/ { return 200 "served\n"; }
CONF

ok $ngx->wait_for_log(qr/listening for changes on postgres(?s:.*)listening for changes on postgres/),
    'both workers listen for changes';

sub hash_of { Digest::SHA::hmac_sha256_hex($_[0], $ENV{MONETIZE_KEY_SECRET}) }

# Holds the next lookup after it read its row; returns the psql session
sub hold {
    my $s = Test::Monetize::psql_session();
    $s->query('SELECT pg_advisory_lock(60061)');
    return $s;
}

sub lookup_waits {
    Test::Monetize::wait_until(10, sub {
        my ($n) = map { $_->[0] } Test::Monetize::psql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            . " AND objid = 60061 AND NOT granted");
        $n == 1;
    });
}

sub heard_twice {
    my ($needle, $mark) = @_;
    Test::Monetize::wait_until(5, sub {
        my @n = $ngx->error_log_since($mark) =~ /\Q$needle\E/g;
        @n >= 2;
    });
}

sub call {
    my ($key) = @_;
    return $ngx->request('GET', '/api/x', headers => {'X-API-Key' => $key});
}

# --- DELETE /keys/{id} while a lookup of that key is held ------------------

my ($user, $key, $victim) = Test::Monetize::account(keys => 2);
my ($victim_id) = map { $_->[0] } Test::Monetize::psql(
    "SELECT id FROM api_keys WHERE key_hash = \$1", hash_of($victim));

my $s = hold();
my $held = $ngx->start_request('GET', '/api/held',
                               headers => {'X-API-Key' => $victim});
ok lookup_waits(), 'a lookup of the key read its row and is held';

my $mark = $ngx->error_log_mark;
my $del = $ngx->request('DELETE', "/v1/keys/$victim_id",
                        headers => {'X-API-Key' => $key});
is $del->{status}, 204, 'meanwhile DELETE /keys/{id}: 204';
ok heard_twice('monetize keystore: monetize_keys changed: ' . hash_of($victim),
               $mark),
    '... and both workers heard of it';

$s->query('SELECT pg_advisory_unlock(60061)');
my $res = $ngx->finish_request($held);
like $res->{status}, qr/^(200|403)$/,
    'the held call is decided on what its lookup read (200) or refused';

my @after = map { call($victim) } 1 .. 6;
is_deeply [map { $_->{status} } @after], [(403) x 6],
    'the revoked key is refused at once, on every call';
is $after[0]{json}{error}{code}, 'key_revoked', '... as key_revoked';

# --- the same on a location that charges ----------------------------------

my ($user4, $key4, $victim4) = Test::Monetize::account(keys => 2,
                                                       credits => 100);
my ($victim4_id) = map { $_->[0] } Test::Monetize::psql(
    "SELECT id FROM api_keys WHERE key_hash = \$1", hash_of($victim4));

$s->query('SELECT pg_advisory_lock(60061)');
$held = $ngx->start_request('GET', '/api/held',
                            headers => {'X-API-Key' => $victim4});
ok lookup_waits(), 'a lookup of a key of a funded account is held';

$mark = $ngx->error_log_mark;
is $ngx->request('DELETE', "/v1/keys/$victim4_id",
                 headers => {'X-API-Key' => $key4})->{status}, 204,
    'meanwhile DELETE /keys/{id}: 204';
ok heard_twice('monetize keystore: monetize_keys changed: '
               . hash_of($victim4), $mark),
    '... and both workers heard of it';
$s->query('SELECT pg_advisory_unlock(60061)');
$ngx->finish_request($held);

@after = map { $ngx->request('GET', '/paid/x',
                             headers => {'X-API-Key' => $victim4}) } 1 .. 6;
is_deeply [map { $_->{status} } @after], [(403) x 6],
    'a location that charges refuses the revoked key at once';
is_deeply [Test::Monetize::psql(
    "SELECT count(*) FROM credit_ledger WHERE user_id = \$1 AND delta < 0",
    $user4)], [[0]], '... and charges nothing';

# --- an account suspended while a lookup of its key is held ----------------

my ($user2, $key2) = Test::Monetize::account();

$s->query('SELECT pg_advisory_lock(60061)');
$held = $ngx->start_request('GET', '/api/held',
                            headers => {'X-API-Key' => $key2});
ok lookup_waits(), 'a lookup of a key of another account is held';

$mark = $ngx->error_log_mark;
Test::Monetize::psql("UPDATE users SET suspended_at = now() WHERE id = \$1",
                     $user2);
ok heard_twice("monetize keystore: monetize_users changed: $user2", $mark),
    'meanwhile the account is suspended, and both workers heard of it';

$s->query('SELECT pg_advisory_unlock(60061)');
$ngx->finish_request($held);

@after = map { call($key2) } 1 .. 6;
is_deeply [map { $_->{status} } @after], [(403) x 6],
    'the suspended account is refused at once, on every call';
is $after[0]{json}{error}{code}, 'account_suspended', '... as account_suspended';

# --- a lookup that nothing invalidated still fills the cache ---------------

my ($user3, $key3) = Test::Monetize::account();
is call($key3)->{status}, 200, 'a key of a third account works';

$s->query('SELECT pg_advisory_lock(60061)');
my $cached = $ngx->start_request('GET', '/api/cached',
                                 headers => {'X-API-Key' => $key3});
ok Test::Monetize::wait_until(5, sub { $cached->done }),
    '... and is answered from the cache while lookups are held';
is $ngx->finish_request($cached)->{status}, 200, '... 200';
$s->query('SELECT pg_advisory_unlock(60061)');

done_testing;
