# POST /me/password {"current","new"}: the current password is checked and
# the new one hashed in the thread pool; the stored hash changes, every
# refresh family of the account is revoked, the change is audited.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

plan tests => 20;

my $ngx = Test::Monetize::Nginx->start(
    http_config => 'monetize_bcrypt_cost 4;',
    config => 'location /v1/ { monetize_api; }');

sub call {
    my ($method, $path, $key, $json) = @_;
    return $ngx->request($method, $path,
        $key ? (headers => [Authorization => "Bearer $key"]) : (),
        defined $json ? (json => $json) : ());
}

my $res = call(POST => '/v1/register', undef,
               {email => 'pat@example.com', password => 'first password'});
is $res->{status}, 201, 'registered';
my ($pat, $P) = ($res->{json}{user}{id}, $res->{json}{api_key});

# Refresh families: two live ones, one revoked long ago; another account's.
my ($other) = Test::Monetize::account();
Test::Monetize::psql(
    "INSERT INTO refresh_tokens (user_id, token_hash, family, expires_at,"
    . "                          revoked_at)"
    . " VALUES (\$1, 'h1', gen_random_uuid(), now() + interval '1 day', NULL),"
    . "        (\$1, 'h2', gen_random_uuid(), now() + interval '1 day', NULL),"
    . "        (\$1, 'h3', gen_random_uuid(), now() + interval '1 day',"
    . "         '2026-01-01 00:00:00+00'),"
    . "        (\$2, 'h4', gen_random_uuid(), now() + interval '1 day', NULL)",
    $pat, $other);

my $hash = sub {
    (Test::Monetize::psql('SELECT password_hash FROM users WHERE id = $1',
                          $pat))[0][0];
};
my $first = $hash->();

$res = call(POST => '/v1/me/password', $P,
            {current => 'wrong password', new => 'second password'});
is_deeply [$res->{status}, $res->{json}{error}{code},
           $res->{json}{error}{fields}{current}],
    [422, 'validation_failed', "is not the account's password"],
    'a wrong current password: 422';
is $hash->(), $first, 'and the hash is unchanged';

$res = call(POST => '/v1/me/password', $P,
            {current => 'first password', new => 'short'});
is_deeply [$res->{status}, $res->{json}{error}{fields}{new}],
    [422, 'must have at least 8 characters'], 'a short new password: 422';
$res = call(POST => '/v1/me/password', $P, {new => 'second password'});
is_deeply [$res->{status}, $res->{json}{error}{fields}{current}],
    [422, 'is required'], 'no current password: 422';

$res = call(POST => '/v1/me/password', $P,
            {current => 'first password', new => 'second password'});
is_deeply [$res->{status}, $res->{body}], [204, ''], 'the change: 204';
my $second = $hash->();
isnt $second, $first, 'the stored hash changed';
like $second, qr/\A\$2b\$04\$[.\/A-Za-z0-9]{53}\z/,
    'to a bcrypt hash (of the configured cost)';
unlike $second, qr/second password/, 'never the password itself';

is_deeply [Test::Monetize::psql(
        "SELECT token_hash, revoked_at IS NOT NULL,"
        . "     revoked_at = '2026-01-01 00:00:00+00'"
        . " FROM refresh_tokens ORDER BY token_hash")],
    [['h1', 't', 'f'], ['h2', 't', 'f'], ['h3', 't', 't'], ['h4', 'f', undef]],
    'every refresh family of the account is revoked (one revoked before'
    . ' keeps its time); another account\'s is not';

# The old password no longer verifies; the new one does.
$res = call(POST => '/v1/me/password', $P,
            {current => 'first password', new => 'third password'});
is_deeply [$res->{status}, $res->{json}{error}{fields}{current}],
    [422, "is not the account's password"],
    'the old password is refused now';
is $hash->(), $second, 'nothing changed';
$res = call(POST => '/v1/me/password', $P,
            {current => 'second password', new => 'third password'});
is $res->{status}, 204, 'the new password is the current one';

# A change that commits while this one runs: the stored hash is no longer
# the one checked, so nothing is written (a psql session holds the row,
# changed, until the call waits for it).
my $s = Test::Monetize::psql_session();
$s->query('BEGIN');
$s->query("UPDATE users SET password_hash = 'changed elsewhere'"
          . " WHERE id = '$pat'");
my $h = $ngx->start_request(POST => '/v1/me/password',
    headers => [Authorization => "Bearer $P"],
    json => {current => 'third password', new => 'fourth password'});
ok Test::Monetize::wait_until(10, sub {
        (Test::Monetize::psql(
            "SELECT count(*) FROM pg_stat_activity"
            . " WHERE wait_event_type = 'Lock'"
            . "   AND query LIKE '%monetize_change_password%'"))[0][0] == 1 }),
    'the change waits for the row';
$s->query('COMMIT');
$res = $ngx->finish_request($h);
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [409, 'password_changed'], 'changed meanwhile: 409 password_changed';
is $hash->(), 'changed elsewhere', 'and the other change stands';
$s->close;

is_deeply [Test::Monetize::psql(
        "SELECT action, actor_user_id, target, target_user_id, address"
        . "  FROM audit_log WHERE action = 'password.change' ORDER BY id")],
    [map { ['password.change', $pat, "user:$pat", $pat, '127.0.0.1'] } 1, 2],
    'each change is in the audit log, with the address';

# An account without a bcrypt hash (made by hand): no password matches.
my (undef, $X) = Test::Monetize::account();
$res = call(POST => '/v1/me/password', $X,
            {current => 'anything at all', new => 'third password'});
is $res->{status}, 422, 'an account without a bcrypt hash: 422';

# ... which the log reports, as a stored value bcrypt cannot read is the
# operator's to fix; nothing else is logged
my $log = $ngx->error_log_since(0);
like $log, qr/\[error\] .*monetize: bcrypt failed on a stored hash/,
    '... and the log says why';
$log =~ s/^.*monetize: bcrypt failed on a stored hash.*\n//mg;
is $log =~ /\[(alert|crit|emerg|error)\]|password/ ? $1 // 'password' : undef,
    undef, 'no error in the log, and no password'
    or diag $log;
