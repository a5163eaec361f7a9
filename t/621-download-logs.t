# download_logs from the log phase, batched: every download that two
# workers let through is written once, with its bytes and address, in a
# few statements rather than one a download; and a graceful exit (QUIT)
# writes what a worker still holds, even while PostgreSQL keeps it waiting.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $sql = \&Test::Monetize::psql;

$sql->("INSERT INTO products (id, name, source, plans)"
       . " VALUES ('kit', 'Kit', '/srv/kit', '{starter}')");
my ($bob, $B) = Test::Monetize::account(plan => 'starter');
my ($eve, $E) = Test::Monetize::account(plan => 'starter');

my $prefix = Test::Monetize::new_dir('nginx');
mkdir "$prefix/files" or die;
open my $fh, '>', "$prefix/files/kit" or die;
print $fh 'z' x 5000;
close $fh;

my $ngx = Test::Monetize::Nginx->start(
    prefix => $prefix, workers => 2,
    http_config => 'monetize_download_ttl 90m;',
    config => <<"EOF2");
location /v1/ { monetize_api; }
location = /dl/kit {
    monetize_download on product=kit;
    alias $prefix/files/kit;
    add_header X-Pid \$pid;
}
EOF2

my %token;
for ([$bob, $B], [$eve, $E]) {
    my $res = $ngx->request(POST => '/v1/downloads/token',
        headers => [Authorization => "Bearer $_->[1]"],
        json => {product => 'kit'});
    is $res->{status}, 201, 'a token';
    $token{$_->[0]} = $res->{json}{token};
}
my ($payload) = split /\./, $token{$bob};
require MIME::Base64;
my (undef, undef, $exp) = split /:/, MIME::Base64::decode_base64url($payload);
cmp_ok abs($exp - time - 5400), '<=', 5, 'monetize_download_ttl 90m';

my @reqs = map { [GET => "/dl/kit?token=" . $token{$_ % 2 ? $bob : $eve}] }
           1 .. 60;
my @res = $ngx->parallel(\@reqs, concurrency => 20);
is scalar(grep { $_->{status} == 200 && length $_->{body} == 5000 } @res),
    60, '60 downloads served';
my %pids = map { $_->{headers}{'x-pid'} => 1 } @res;
is scalar(keys %pids), 2, '... by both workers';

my $n = Test::Monetize::wait_until(5, sub {
    my ($c) = $sql->('SELECT count(*) FROM download_logs');
    $c->[0] >= 60 ? $c->[0] : 0;
});
is $n, 60, 'all 60 in download_logs';
is_deeply [$sql->('SELECT user_id, count(*), sum(bytes), min(address),'
                  . ' max(address), min(status), max(status)'
                  . ' FROM download_logs GROUP BY user_id ORDER BY 1')],
    [sort { $a->[0] cmp $b->[0] }
     [$bob, 30, 150000, '127.0.0.1', '127.0.0.1', 200, 200],
     [$eve, 30, 150000, '127.0.0.1', '127.0.0.1', 200, 200]],
    '... each once, with its user, bytes, address and status';
my ($statements) = $sql->('SELECT count(DISTINCT xmin::text)'
                          . ' FROM download_logs');
cmp_ok $statements->[0], '<=', 10,
    "... written in a few statements ($statements->[0]), not one each";


# --- a graceful exit writes what is pending ----------------------------------

my $lock = Test::Monetize::psql_session();
$lock->query('BEGIN; LOCK TABLE download_logs IN ACCESS EXCLUSIVE MODE');

@res = $ngx->parallel([map { [GET => "/dl/kit?token=$token{$bob}"] } 1 .. 10],
                      concurrency => 5);
is scalar(grep { $_->{status} == 200 } @res), 10, '10 more downloads';

my ($master, @workers) = $ngx->pids;
kill 'QUIT', $master;

# the insert waits on the lock: the workers with rows wait with it
select undef, undef, undef, 1.5;
ok scalar(grep { kill 0, $_ } @workers), 'a worker with rows waits for them';

$lock->query('ROLLBACK');
ok Test::Monetize::wait_until(10, sub { !kill 0, $master }),
    'nginx exits once they are written';
is_deeply [$sql->('SELECT count(*), sum(bytes) FROM download_logs'
                  . " WHERE user_id = '$bob'")],
    [[40, 200000]], 'all 70 downloads in download_logs after the exit';
unlike Test::Monetize::_slurp($ngx->error_log_file),
    qr/downloads were not logged/, 'none dropped';

done_testing;
