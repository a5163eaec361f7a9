# The audit log: every admin action and every key change (create, rotate,
# revoke) is a row with who, what, target, when and the caller's address;
# GET /admin/users and GET /admin/audit page with a keyset (after=).

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

plan tests => 28;

my $ngx = Test::Monetize::Nginx->start(
    config => 'location /v1/ { monetize_api; }');

sub call {
    my ($method, $path, $key, $json) = @_;
    return $ngx->request($method, $path,
        $key ? (headers => [Authorization => "Bearer $key"]) : (),
        defined $json ? (json => $json) : ());
}

my ($root, $R) = Test::Monetize::account(email => 'root@example.com');
Test::Monetize::psql('UPDATE users SET is_admin = true WHERE id = $1', $root);
my ($kim, $K) = Test::Monetize::account(email => 'kim@example.com');

# Key changes by kim; admin actions by root.
my $new = call(POST => '/v1/keys', $K, {name => 'ci'})->{json};
my $rot = call(POST => "/v1/keys/$new->{id}/rotate", $K,
               {grace_seconds => 60})->{json};
is call(DELETE => "/v1/keys/$rot->{id}", $K)->{status}, 204, 'revoked';
is call(DELETE => "/v1/keys/$rot->{id}", $K)->{status}, 204,
    'revoked again (no change)';
is call(POST => '/v1/keys/00000000-0000-4000-8000-000000000000/rotate', $K)
    ->{status}, 404, 'a rotation of no key';
call(POST => '/v1/admin/credits', $R,
     {user_id => $kim, amount => 7, reason => 'welcome'});
call(POST => '/v1/admin/credits', $R,
     {user_id => $kim, amount => -9, reason => 'too much'});    # refused
call(PATCH => "/v1/admin/users/$kim", $R,
     {suspended => JSON::PP::true, plan => 'starter'});

is_deeply [Test::Monetize::psql(
        "SELECT actor_user_id, action, target, target_user_id, details,"
        . "     address, created_at > now() - interval '1 minute'"
        . "  FROM audit_log ORDER BY id")],
    [[$kim, 'key.create', "key:$new->{id}", $kim,
      qq({"name": "ci", "expires_at": null}), '127.0.0.1', 't'],
     [$kim, 'key.rotate', "key:$new->{id}", $kim,
      qq({"new_key_id": "$rot->{id}", "grace_seconds": 60}), '127.0.0.1',
      't'],
     [$kim, 'key.revoke', "key:$rot->{id}", $kim, undef, '127.0.0.1', 't'],
     [$root, 'credits.grant', "user:$kim", $kim,
      qq({"amount": 7, "reason": "welcome", "entry_id": 1,)
      . qq( "balance_after": 7}), '127.0.0.1', 't'],
     [$root, 'user.update', "user:$kim", $kim,
      qq({"plan": "starter", "suspended": true}), '127.0.0.1', 't']],
    'who, what, target, details, address, when: each key change and each'
    . ' admin change once; nothing for what changed nothing'
    or diag explain [Test::Monetize::psql('SELECT * FROM audit_log')];

# GET /admin/audit: newest first, by account, paged.
my $res = call(GET => '/v1/admin/audit?limit=2', $R);
is_deeply [$res->{status},
           [map { $_->{action} } @{$res->{json}{entries}}]],
    [200, ['user.update', 'credits.grant']], 'the newest two';
is Test::Monetize::json_match({actor => $root, target => "user:$kim",
                               target_user_id => $kim,
                               address => '127.0.0.1',
                               details => {plan => 'starter',
                                           suspended => JSON::PP::true},
                               created_at => 're:^\d{4}-\d\d-\d\dT.*Z$'},
                              $res->{json}{entries}[0]), undef,
    'an entry, as the API shows it';
my $next = $res->{json}{next};
ok $next, 'and where the next page starts';
$res = call(GET => "/v1/admin/audit?limit=2&after=$next", $R);
is_deeply [map { $_->{action} } @{$res->{json}{entries}}],
    ['key.revoke', 'key.rotate'], 'the next two';
$res = call(GET => "/v1/admin/audit?limit=2&after=$res->{json}{next}", $R);
is_deeply [[map { $_->{action} } @{$res->{json}{entries}}],
           $res->{json}{next}],
    [['key.create'], undef], 'the last page: no next';
$res = call(GET => "/v1/admin/audit?user_id=$root", $R);
is_deeply [map { $_->{action} } @{$res->{json}{entries}}],
    ['user.update', 'credits.grant'], 'user_id: as actor or target (root)';
$res = call(GET => "/v1/admin/audit?user_id=$kim&limit=100", $R);
is scalar @{$res->{json}{entries}}, 5, 'kim: all five';
for my $q ('limit=0', 'limit=101', 'limit=x', 'after=-1', 'after=x',
           'user_id=kim')
{
    is call(GET => "/v1/admin/audit?$q", $R)->{status}, 422, "audit?$q: 422";
}

# GET /admin/users: oldest first, by part of the email, paged.
for my $i (1 .. 5) {
    Test::Monetize::psql(
        "INSERT INTO users (email, password_hash, created_at)"
        . " VALUES (\$1, 'x', '2026-02-01 00:00:00+00')",
        "page$i+x\@example.org");
}
my (@seen, $after);
for (1 .. 4) {
    $res = call(GET => '/v1/admin/users?email=PAGE&limit=2'
                       . ($after ? "&after=$after" : ''), $R);
    push @seen, map { $_->{email} } @{$res->{json}{users}};
    $after = $res->{json}{next} or last;
}
is_deeply [sort @seen], [map { "page$_+x\@example.org" } 1 .. 5],
    'the pages of 2 hold each matching account once';
is $after, undef, 'and end';
$res = call(GET => '/v1/admin/users?email=%2Bx%40example.org&limit=100', $R);
is scalar @{$res->{json}{users}}, 5, 'an encoded "+" and "@" match';
$res = call(GET => '/v1/admin/users?email=%25', $R);
is_deeply $res->{json}{users}, [], 'a "%" matches itself, not everything';
for my $q ('email=%FF', 'email=a%00b', 'email=%zz', 'limit=0', 'after=x') {
    $res = call(GET => "/v1/admin/users?$q", $R);
    is_deeply [$res->{status}, $res->{json}{error}{code}],
        [422, 'validation_failed'], "users?$q: 422";
}
$res = call(GET => "/v1/admin/users?email=kim", $R);
is Test::Monetize::json_match({users => [{
        id => $kim, email => 'kim@example.com', suspended => JSON::PP::true,
        is_admin => JSON::PP::false, plan => 'starter', balance => 7,
        email_verified => JSON::PP::false}], next => undef},
    $res->{json}), undef, 'a user, as the API shows it'
    or diag explain $res->{json};

my $log = $ngx->error_log_since(0);
is $log =~ /\[(alert|crit|emerg|error)\]/ ? $1 : undef, undef,
    'no error in the error log' or diag $log;
