# What the debit itself decides, seen at the gate: a key revoked or expired
# and an account suspended are refused by the debit even when the gate's
# cache still holds the key as it was (its notification lost, or a lookup
# that raced the change); and a location that only counts the quota
# (monetize_cost 0) refuses calls past it.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $be = Test::Monetize::Backend->start(sub {
    return (200, {'Content-Type' => 'text/plain'}, "served\n");
});

Test::Monetize::psql(
    "INSERT INTO plans (id, name, price_cents, monthly_quota,"
    . "                  rate_limit_rps, rate_limit_burst)"
    . " VALUES ('two', 'Two', 0, 2, 100, 100)");

my $ngx = Test::Monetize::Nginx->start(
    workers => 1,
    http_config => 'monetize_cache zone=keys:1m;',
    config => <<"CONF");
    location /api/ {
        monetize_gate on;
        monetize_cost 1;
        proxy_set_header X-Request-Id \$request_id;
        proxy_pass http://127.0.0.1:@{[ $be->port ]};
    }
    location /quota/ {
        monetize_gate on;
        monetize_quota on;
        monetize_cost 0;
        proxy_set_header X-Request-Id \$request_id;
        proxy_pass http://127.0.0.1:@{[ $be->port ]};
    }
CONF

sub call {
    my ($path, $key) = @_;
    return $ngx->request('GET', $path, headers => {'X-API-Key' => $key});
}

sub debits {
    my ($user) = @_;
    my ($n) = Test::Monetize::psql(
        "SELECT count(*) FROM credit_ledger"
        . " WHERE user_id = \$1 AND kind = 'debit'", $user);
    return $n->[0];
}

# --- item 5: a quota-only location -----------------------------------------

my ($uq, $kq) = Test::Monetize::account(plan => 'two');
my @res = map { call("/quota/$_", $kq) } 1 .. 3;
is_deeply [map { $_->{status} } @res], [200, 200, 429],
    'monetize_cost 0 under monetize_quota: 2 included calls, then 429';
is $res[2]{json}{error}{code}, 'quota_exceeded', '... quota_exceeded';
my ($counted) = Test::Monetize::psql(
    "SELECT calls FROM quota_usage WHERE user_id = \$1", $uq);
is $counted->[0], 2, '... the period counts the 2 calls that passed';

# --- item 6: the cache still holds the key as it was -----------------------

# the notifications that would drop the cached entries are lost
Test::Monetize::psql('ALTER TABLE api_keys DISABLE TRIGGER api_keys_notify');
Test::Monetize::psql('ALTER TABLE users DISABLE TRIGGER users_notify');

my ($ur, $kr) = Test::Monetize::account(credits => 10);
my ($ue, $ke) = Test::Monetize::account(credits => 10);
my ($us, $ks) = Test::Monetize::account(credits => 10);
is call('/api/x', $_)->{status}, 200, 'a call passes; its key is cached'
    for $kr, $ke, $ks;

Test::Monetize::psql("UPDATE api_keys SET revoked_at = now()"
                     . " WHERE user_id = \$1", $ur);
Test::Monetize::psql("UPDATE api_keys SET expires_at = now()"
                     . " WHERE user_id = \$1", $ue);
Test::Monetize::psql("UPDATE users SET suspended_at = now() WHERE id = \$1",
                     $us);

my @denied = map { call('/api/x', $_) } $kr, $ke, $ks;
is_deeply [map { [$_->{status}, $_->{json}{error}{code}] } @denied],
    [[403, 'key_revoked'], [403, 'key_expired'],
     [403, 'account_suspended']],
    'revoked, expired, suspended since: the debit refuses them';
is_deeply [map { debits($_) } $ur, $ue, $us], [1, 1, 1],
    '... and charges nothing more';

Test::Monetize::psql('ALTER TABLE api_keys ENABLE TRIGGER api_keys_notify');
Test::Monetize::psql('ALTER TABLE users ENABLE TRIGGER users_notify');

Test::Monetize::reconcile(
    served => [map { $_->{headers}{'x-request-id'} } $be->requests]);

done_testing;
