# The Redis limiter, batched: one EVALSHA a worker decides all the calls
# that came while the last one was in flight, for all their keys, with no
# more than batch= calls in one. The limit stays exact under concurrency
# (two workers, many clients: what Redis counted is what the clients were
# told), and a Redis that lost its scripts (SCRIPT FLUSH) still decides
# every call of the batch that meets NOSCRIPT.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use POSIX qw(ceil);
use Time::HiRes qw(time);

my $redis = Test::Monetize::Redis->start;

Test::Monetize::psql(
    "INSERT INTO plans (id, name, price_cents, monthly_quota,"
    . "                 rate_limit_rps, rate_limit_burst)"
    . " VALUES ('slow', 'Slow', 100, NULL, 1, 50),"
    . "        ('wide', 'Wide', 100, NULL, 1000000, 1000000)");

sub new_key {
    my ($plan) = @_;
    my ($user, $key) = Test::Monetize::account(plan => $plan,
                                               credits => 100000);
    my ($id) = Test::Monetize::psql(
        'SELECT id FROM api_keys WHERE user_id = $1', $user);
    return ($key, $id->[0]);
}

my $ngx = Test::Monetize::Nginx->start(
    workers => 2,
    http_config => "monetize_cache zone=keys:1m;\n"
                 . "monetize_redis 127.0.0.1:" . $redis->port
                 . " prefix=t235: timeout=5s batch=16;",
    config => <<'CONF');
    add_header X-Decided $msec always;
    location /v1/ { monetize_api; }
    location /api/ {
        monetize_gate on;
        monetize_rate_limit redis;
        monetize_fail_mode closed;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /backend/ { return 200 "ok\n"; }
CONF

# the TAT Redis keeps for a key, in microseconds
sub tat {
    my ($id) = @_;
    return $redis->cli('GET', "t235:k:$id");
}

sub evalsha_calls {
    my ($stats) = $redis->cli('INFO', 'commandstats')
                  =~ /^cmdstat_evalsha:calls=(\d+)/m;
    return $stats // 0;
}

sub statuses {
    my %s;
    $s{$_->{status} // 'none'}++ for @_;
    return \%s;
}

# The EVALSHAs (and EVALs) Redis ran while $code ran, from MONITOR: the
# number of keys of each.
sub monitored {
    my ($code) = @_;
    my $file = Test::Monetize::new_dir('monitor') . '/monitor.txt';
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', $file or POSIX::_exit(1);
        { exec 'redis-cli', '-h', '127.0.0.1', '-p', $redis->port, 'MONITOR' };
        POSIX::_exit(127);
    }
    Test::Monetize::wait_until(5, sub { -s $file })
        or diag 'MONITOR said nothing yet';
    my @ret = $code->();
    # what Redis ran is in the file once PING comes after it
    $redis->cli('PING');
    Test::Monetize::wait_until(5, sub {
        Test::Monetize::_slurp($file) =~ /"PING"\s*\z/ });
    kill 'TERM', $pid;
    waitpid $pid, 0;
    my @keys = map { /"EVAL(?:SHA)?" "[^"]*" "(\d+)"/ ? $1 : () }
               split /\n/, Test::Monetize::_slurp($file);
    return (\@keys, @ret);
}

# --- exactness: many clients, two workers, one key --------------------------

# the first call alone (its decision sets TAT = its instant + 1s), then 199
# from 50 clients at once, well within the second that TAT stays ahead
my ($key, $id) = new_key('slow');
$redis->cli('CONFIG', 'RESETSTAT');
my ($first, $start);
my ($sizes, @res) = monitored(sub {
    $first = $ngx->request('GET', '/api/first',
                           headers => {'X-API-Key' => $key});
    $start = tat($id) - 1_000_000;
    $ngx->parallel([map { [GET => "/api/$_", headers => {'X-API-Key' => $key}]
                        } 1 .. 199], concurrency => 50);
});
is $first->{status}, 200, 'a first call passes';
is $first->{headers}{'ratelimit-remaining'}, 49, '... 49 more may come now';
my @ok = grep { $_->{status} == 200 } @res;
is_deeply [sort keys %{statuses(@res)}], [200, 429], '199 calls: 200, then 429';
sub decided { (split /, /, $_[0]{headers}{'x-decided'} // '0')[0] }
my @decided = sort { $a <=> $b } map { decided($_) } @res;
my $elapsed = $decided[-1] - decided($first);
my $admitted = 1 + @ok;
ok $admitted >= 50 && $admitted <= 50 + ceil($elapsed),
    sprintf '%d admitted over %.2fs (a burst of 50, then 1/s)',
            $admitted, $elapsed;
is tat($id) - $start, $admitted * 1_000_000,
    'Redis counted exactly the calls the clients were told passed';
is_deeply [grep { $_->{headers}{'ratelimit-remaining'} ne '0'
                  || !$_->{headers}{'retry-after'} }
           grep { $_->{status} == 429 } @res], [],
    'every 429 says Remaining 0 and Retry-After';

my $calls = evalsha_calls();
cmp_ok $calls, '<', 200, "batches: $calls EVALSHA for 200 calls";
is scalar(@$sizes), $calls, '... as MONITOR saw them';
cmp_ok((sort { $b <=> $a } @$sizes)[0], '<=', 16,
       '... none of more than batch=16 calls');
like $redis->cli('CLIENT', 'LIST'), qr/cmd=evalsha.*\n.*cmd=evalsha/,
    '... from both workers';

# --- batches gather while one is in flight ------------------------------------

# Redis held (SIGSTOP): each worker's first batch waits in flight, and the
# calls behind it gather, 16 at most a batch. The key is in the cache first,
# so a call is in its batch as soon as nginx has read it.
sub read_by_nginx {
    my ($n) = @_;
    my $port = sprintf '%04X', $ngx->port;
    my @c = grep { (split ' ')[1] =~ /:$port\z/ && (split ' ')[3] eq '01' }
            split /\n/, Test::Monetize::_slurp('/proc/net/tcp');
    return @c >= $n && !grep { (split /:/, (split ' ')[4])[1] !~ /\A0+\z/ }
                       @c;
}

($key, $id) = new_key('wide');
is $ngx->request('GET', '/api/warm', headers => {'X-API-Key' => $key})
        ->{status}, 200, 'a key of a wide limit';
$redis->cli('CONFIG', 'RESETSTAT');

($sizes, @res) = monitored(sub {
    kill 'STOP', $redis->pid;
    my @h = map { $ngx->start_request('GET', "/api/held-$_",
                      headers => {'X-API-Key' => $key}, timeout => 20) }
            1 .. 60;
    my $read = Test::Monetize::wait_until(10, sub {
        Test::Monetize::HTTP::pump(0.05); read_by_nginx(60) });
    kill 'CONT', $redis->pid;
    ok $read, 'nginx read the 60 calls while Redis was held';
    return map { $ngx->finish_request($_) } @h;
});
is_deeply statuses(@res), {200 => 60}, 'every held call passes';
$calls = evalsha_calls();
cmp_ok $calls, '<=', 8, "$calls EVALSHA for 60 calls held (at most 2 a "
                        . 'worker in flight, then batches of 16)';
is_deeply [sort { $a <=> $b } grep { $_ > 16 } @$sizes], [],
    '... none of more than 16';
is eval { my $n = 0; $n += $_ for @$sizes; $n }, 60,
    '... together the 60 calls, each once';

# --- NOSCRIPT: Redis forgot the script -------------------------------------

($key, $id) = new_key('slow');
$first = $ngx->request('GET', '/api/first', headers => {'X-API-Key' => $key});
$start = tat($id) - 1_000_000;

$redis->cli('SCRIPT', 'FLUSH');
my $mark = $ngx->error_log_mark;
@res = $ngx->parallel([map { [GET => "/api/ns-$_",
                              headers => {'X-API-Key' => $key}] } 1 .. 30],
                      concurrency => 30);
is_deeply statuses(@res), {200 => 30},
    'after SCRIPT FLUSH, every call of the batches that met NOSCRIPT passes';
is tat($id) - $start, 31 * 1_000_000, '... each counted once';
like $redis->cli('INFO', 'commandstats'), qr/^cmdstat_eval:calls=[1-9]/m,
    '... sent whole (EVAL) once';
like $redis->cli('INFO', 'memory'), qr/number_of_cached_scripts:1\b/,
     '... and the script is loaded again';
@res = $ngx->parallel([map { [GET => "/api/ns2-$_",
                              headers => {'X-API-Key' => $key}] } 1 .. 4]);
is_deeply statuses(@res), {200 => 4}, 'the next calls pass';
unlike $ngx->error_log_since($mark), qr/\[(error|alert|crit)\]/,
    'no error logged';

$ngx->stop;
unlike $ngx->error_log_since(0), qr/\[(alert|crit|emerg)\]|exited on signal/,
    'no alert, no crash';

done_testing;
