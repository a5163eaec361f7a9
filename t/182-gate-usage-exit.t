# Usage counts survive a graceful exit: a worker that a reload or a quit
# retires writes what it counted before it goes (nginx keeps it while the
# flush timer is pending), and still goes, after a bounded number of
# tries, when PostgreSQL does not take the counts.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Time::HiRes ();

my ($user, $key) = Test::Monetize::account(credits => 1000);

my $db = Test::Monetize::database();
my $pg = "host=$ENV{MONETIZE_PG_HOST} port=$ENV{MONETIZE_PG_PORT} "
       . "dbname=$db user=$ENV{MONETIZE_PG_USER} "
       . "password=env:MONETIZE_PG_PASSWORD";

my %conf = (
    workers => 2,
    postgres => qq{monetize_postgres "$pg" pool=4 timeout=1s;},
    http_config => 'monetize_cache zone=keys:1m;',
    config => <<'CONF');
    location /api/ {
        monetize_gate on;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /backend/ { return 200 "ok\n"; }
CONF

sub calls {
    my ($ngx, $path, $n) = @_;
    my @res = $ngx->parallel([map {
        [GET => "$path/$_", headers => {'X-API-Key' => $key}]
    } 1 .. $n], concurrency => 10);
    return scalar grep { $_->{status} == 200 } @res;
}

sub usage {
    my ($location) = @_;
    my ($n) = Test::Monetize::psql(
        "SELECT coalesce(sum(calls), 0) FROM usage"
        . " WHERE user_id = \$1 AND location = \$2", $user, $location);
    return $n->[0];
}

sub gone {
    my (@pids) = @_;
    return !grep { kill 0, $_ } @pids;
}

# --- a reload at once after the calls -----------------------------------------

my $ngx = Test::Monetize::Nginx->start(%conf);
is calls($ngx, '/api/a', 40), 40, '40 calls admitted';
$ngx->reload;
is usage('/api/'), 40,
    'a reload right after: the retired workers wrote all 40 calls';

# --- a quit at once after the calls ----------------------------------------------

is calls($ngx, '/api/b', 30), 30, '30 more calls admitted';
my ($master, @kids) = $ngx->pids;
kill 'QUIT', $master;
ok Test::Monetize::wait_until(15, sub { gone($master, @kids) }),
    'nginx -s quit: every process exits';
is usage('/api/'), 70, '... and the usage table has all 70 calls';
unlike $ngx->error_log_since(0), qr/was not written|\[alert\]/,
    '... and nothing was dropped';

# --- PostgreSQL refusing the counts does not hold a worker forever ----------

$ngx = Test::Monetize::Nginx->start(%conf);
is calls($ngx, '/api/c', 5), 5, '5 calls admitted';
ok Test::Monetize::wait_until(5, sub { usage('/api/') == 75 }),
    '... and written';

# a session holds the usage row: the next writes wait on it, and time out
my $s = Test::Monetize::psql_session();
$s->query("BEGIN");
$s->query("SELECT calls FROM usage WHERE user_id = '$user' FOR UPDATE");

is calls($ngx, '/api/d', 5), 5, '5 more calls admitted';
my $mark = $ngx->error_log_mark;
($master, @kids) = $ngx->pids;
my $start = Time::HiRes::time();
kill 'QUIT', $master;
ok Test::Monetize::wait_until(30, sub { gone($master, @kids) }),
    'nginx -s quit with the counts refused: every process exits';
my $took = Time::HiRes::time() - $start;
cmp_ok $took, '<', 15, '... within the bound of its tries (took '
                       . sprintf('%.1f', $took) . ' s)';
like $ngx->error_log_since($mark),
    qr/monetize: usage of \d+ calls .* was not written/,
    '... and the log says what was lost';

$s->query("ROLLBACK");
$s->close;
is usage('/api/'), 75, 'what was written stays written';

done_testing;
