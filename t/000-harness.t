# The harness's own test, on stock nginx directives only: the block format,
# the Perl API, PostgreSQL and Redis helpers.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use JSON::PP ();
use Test2::API ();

my $dir = Test::Monetize::new_dir('harness');

sub release {
    open my $fh, '>', "$dir/release-$_[0]" or die "release: $!";
    close $fh;
}

# An upstream: /echo tells what it received; /hold/NAME answers once the
# file release-NAME exists (or after 20 s); /release/NAME creates it.
my $backend = Test::Monetize::Backend->start(sub {
    my ($req) = @_;
    if ($req->{path} =~ m{\A/hold/(\w+)\z}) {
        my $file = "$dir/release-$1";
        Test::Monetize::wait_until(20, sub { -e $file });
        return (200, {}, "held $1");
    }
    if ($req->{path} =~ m{\A/release/(\w+)\z}) {
        release($1);
        return (200, {}, "released $1");
    }
    return (200, { 'Content-Type' => 'application/json' },
            JSON::PP->new->canonical->encode({
                method => $req->{method}, uri => $req->{uri},
                body => $req->{body},
                x_test => $req->{headers}{'x-test'} }));
});
$ENV{TEST_NGINX_BACKEND_PORT} = $backend->port;



# --- The block format ------------------------------------------------------

run_tests();

# Blocks 1-5 share a configuration, 6 has another and 8 the same as 6; 7 is
# a --- must_die and 9 is skipped: two starts.
is(Test::Monetize::block_nginx_starts(), 2,
   'run_tests reuses nginx across identical configurations');


# --- The Perl API: requests ------------------------------------------------

my %stock = (no_monetize => 1, config => <<'EOF');
        location /hello { add_header X-Hello world; return 200 "hello"; }
        location /fast { return 200 "fast"; }
        location /missing { root $TEST_NGINX_PREFIX/html; }
        location / {
            proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT;
            proxy_set_header X-Test "through nginx";
        }
EOF

my $ngx = Test::Monetize::Nginx->start(%stock, workers => 2);

my @pids = $ngx->pids;
is(scalar @pids, 3, 'pids: a master and two workers');
is(scalar $ngx->worker_pids, 2, 'worker_pids: two');

my $res = $ngx->request('GET', '/hello');
is($res->{status}, 200, 'GET /hello: 200');
is($res->{body}, 'hello', 'GET /hello: body');
is($res->{headers}{'x-hello'}, 'world', 'GET /hello: lowercased header');
ok(!$res->{error}, 'no error');

$res = $ngx->request('POST', '/echo', json => { a => [1, 'two'] },
                     headers => { 'X-Other' => 1 });
is($res->{status}, 200, 'POST /echo: 200');
is_deeply($res->{json}, { method => 'POST', uri => '/echo',
                          body => '{"a":[1,"two"]}',
                          x_test => 'through nginx' },
          'POST /echo: the upstream saw the JSON body');
my @seen = $backend->requests;
is($seen[-1]{headers}{'content-type'}, 'application/json',
   'Backend->requests: the request as the upstream saw it');

my $mark = $ngx->error_log_mark;
$res = $ngx->request('GET', '/missing/file.txt');
is($res->{status}, 404, 'GET /missing: 404');
like($ngx->error_log_since($mark), qr/open\(\) ".*file\.txt" failed/,
     'error_log_since: the lines of this request');
ok($ngx->wait_for_log('No such file or directory', since => $mark),
   'wait_for_log');
unlike($ngx->error_log_since($ngx->error_log_mark), qr/open\(\)/,
       'nothing after a new mark');

$res = $ngx->request('GET', '/hold/never', timeout => 0.5);
like($res->{error}, qr/^timeout/, 'a request that times out says so');

# Two requests held by the upstream, a third one that completes first, then
# the two released in the reverse order.
my $ha = $ngx->start_request('GET', '/hold/a');
my $hb = $ngx->start_request('GET', '/hold/b');
ok(Test::Monetize::wait_until(10, sub {
       2 == grep { $_->{path} =~ m{^/hold/[ab]\z} } $backend->requests }),
   'the upstream has both held requests');
my $fast = $ngx->request('GET', '/fast');
is($fast->{body}, 'fast', 'a request completes while two are held');
ok(!$ha->done && !$hb->done, 'the held requests are still in flight');
release('b');
is(Test::Monetize::wait_any($ha, $hb), $hb, 'wait_any: b completes first');
release('a');
my $ra = $ngx->finish_request($ha);
my $rb = $hb->result;
is($ra->{body}, 'held a', 'finish_request: the answer to a');
ok($fast->{seq} < $rb->{seq} && $rb->{seq} < $ra->{seq},
   'seq: the order of completion');

# parallel(): with concurrency 2, one slot is held until the last request
# releases it, and the fast ones go one by one through the other.
my @reqs = (['GET', '/hold/p'], (map { ['GET', '/fast'] } 1 .. 20),
            { method => 'GET', path => '/release/p' });
my @res = $ngx->parallel(\@reqs, concurrency => 2);
is(scalar @res, 22, 'parallel: a result for each request');
is_deeply([map { $_->{seq} } @res[1 .. 20]], [1 .. 20],
          'parallel: the fast ones in order');
ok($res[0]{seq} >= 21, 'parallel: the held one completes last but one or '
   . 'last');
is($res[0]{body}, 'held p', 'parallel: its answer');

@res = $ngx->parallel([map { ['GET', '/fast'] } 1 .. 50], concurrency => 50);
is_deeply([sort { $a <=> $b } map { $_->{seq} } @res], [1 .. 50],
          'parallel: seq 1..50');
is(scalar(grep { $_->{status} == 200 } @res), 50, 'parallel: all 200');
my @by_seq = sort { $a->{seq} <=> $b->{seq} } @res;
ok(!grep({ $by_seq[$_]{done_at} < $by_seq[$_ - 1]{done_at} } 1 .. 49),
   'parallel: done_at follows seq');

my @old = $ngx->worker_pids;
$ngx->reload(config => 'location / { return 200 "reloaded"; }');
my @new = $ngx->worker_pids;
is(scalar @new, 2, 'reload: two new workers');
ok(!grep({ my $o = $_; grep { $_ == $o } @new } @old),
   'reload: the old workers are gone');
is($ngx->request('GET', '/x')->{body}, 'reloaded', 'reload: new config');
ok(!eval { $ngx->reload(config => 'location / { bogus; }'); 1 },
   'reload: a bad configuration dies');
like($@, qr/unknown directive "bogus"/, 'reload: and says why');
is($ngx->request('GET', '/x')->{body}, 'reloaded',
   'reload: the old configuration still serves');

# Starting on a port in use fails and shows nginx's own words.
ok(!eval { Test::Monetize::Nginx->start(%stock, port => $ngx->port); 1 },
   'start on a busy port dies');
like($@, qr/Address already in use/, 'start: the error is shown');

my $master = $pids[0];
$ngx->stop;
ok(!Test::Monetize::_alive($master), 'stop: the master is gone');
ok(!$ngx->pids, 'stop: no pids');

my ($rc, $err) = Test::Monetize::nginx_t(%stock);
is($rc, 0, 'nginx_t: a good configuration') or diag($err);
($rc, $err) = Test::Monetize::nginx_t(no_monetize => 1,
                                      config => 'listen foo:bar:baz;');
isnt($rc, 0, 'nginx_t: a bad configuration');
like($err, qr/\[emerg\]/, 'nginx_t: stderr');


# --- JSON matching ---------------------------------------------------------

my $got = JSON::PP->new->decode(
    '{"n":3,"s":"3","t":true,"z":null,"a":[1,{"k":"v","x":1}],"e":"abc"}');
my %json_cases = (
    '{"n":3}'              => undef,
    '{"n":"3"}'            => '$.n: expected "3", got 3',
    '{"s":3}'              => '$.s: expected 3, got "3"',
    '{"t":true,"z":null}'  => undef,
    '{"t":1}'              => '$.t: expected 1, got true',
    '{"q":1}'              => '$.q: missing',
    '{"a":[1,{"k":"v"}]}'  => undef,
    '{"a":[1]}'            => '$.a: expected 1 elements, got 2',
    '{"a":[1,{"k":"w"}]}'  => '$.a[1].k: expected "w", got "v"',
    '{"e":"re:^a.c$"}'     => undef,
);
for my $exp (sort keys %json_cases) {
    is(Test::Monetize::json_match(JSON::PP->new->decode($exp), $got),
       $json_cases{$exp}, "json_match $exp");
}


# --- PostgreSQL and Redis --------------------------------------------------

like(Test::Monetize::database(), qr/\At_000_harness_\d+\z/,
     'database: named after the file');

Test::Monetize::psql('CREATE TABLE harness_t (id int, name text)');
Test::Monetize::psql('INSERT INTO harness_t VALUES ($1, $2), ($3, $4)',
                     1, "it's; DROP TABLE harness_t; --", 2, undef);
is_deeply([Test::Monetize::psql(
              'SELECT id, name FROM harness_t WHERE id >= $1 ORDER BY id', 1)],
          [[1, "it's; DROP TABLE harness_t; --"], [2, undef]],
          'psql: bound values, NULL as undef');
is_deeply([Test::Monetize::psql(q{SELECT 'a,b', E'x\ny', '', '"q'})],
          [['a,b', "x\ny", '', '"q']], 'psql: CSV quoting');
ok(!eval { Test::Monetize::psql('SELECT nosuch'); 1 }, 'psql: dies on error');
like($@, qr/nosuch/, 'psql: with the error');

my $s1 = Test::Monetize::psql_session();
my $s2 = Test::Monetize::psql_session();
$s1->query('BEGIN; LOCK TABLE harness_t IN ACCESS EXCLUSIVE MODE');
$s2->send('SELECT count(*) FROM harness_t');
ok(Test::Monetize::wait_until(10, sub {
       (Test::Monetize::psql(q{SELECT count(*) FROM pg_stat_activity
                               WHERE wait_event_type = 'Lock'
                                 AND query LIKE '%harness_t%'}))[0][0] == 1 }),
   'psql_session: the second session waits for the lock');
ok(!$s2->done, 'psql_session: done is false while it waits');
$s1->query('ROLLBACK');
is_deeply([$s2->wait], [[2]], 'psql_session: it completes after ROLLBACK');
$s2->send('SELECT nosuch');
ok(!eval { $s2->wait; 1 }, 'psql_session: wait dies on an error');
is_deeply([$s2->query('SELECT 1, 2')], [[1, 2]],
          'psql_session: and goes on');
$s1->close;
$s2->close;

Test::Monetize::pg_stop();
ok(!eval { Test::Monetize::psql('SELECT 1'); 1 }, 'pg_stop: no PostgreSQL');
Test::Monetize::pg_start();
is_deeply([Test::Monetize::psql('SELECT 1')], [[1]], 'pg_start: back');

is(Test::Monetize::redis_cli('PING'), 'PONG', 'redis_cli: PING');
Test::Monetize::redis_cli('SET', "harness:$$", "a b");
is(Test::Monetize::redis_cli('GET', "harness:$$"), 'a b', 'redis_cli: GET');
Test::Monetize::redis_cli('DEL', "harness:$$");


# --- Sanitizers (MONETIZE_SANITIZE=1 scripts/test) ---------------------------

SKIP: {
    skip 'not built with the sanitizers', 6
        unless Test::Monetize::sanitizing();

    my $ngx = Test::Monetize::Nginx->start(
        config => 'location / { return 204; }');
    my ($w) = $ngx->worker_pids;
    like(Test::Monetize::_slurp("/proc/$w/maps"), qr/libasan\.so/,
         'sanitizers: the workers run with the runtime');

    # ASan's own SEGV handler writes a report, as it does for a bug.
    kill 'SEGV', $w;
    Test::Monetize::wait_until(10, sub {
        !grep { $_ == $w } $ngx->worker_pids });
    my $events = Test2::API::intercept(sub {
        Test::Monetize::sanitizer_check('a worker that crashed');
    });
    my @fails = grep { $_->isa('Test2::Event::Ok') && !$_->pass } @$events;
    is(scalar @fails, 1, 'sanitizers: a report fails a test');
    like(join('', map { $_->isa('Test2::Event::Diag') ? $_->message : '' }
                  @$events),
         qr/AddressSanitizer: SEGV/, '... and prints it');
    is(Test::Monetize::sanitizer_check('the same again'), 1,
       '... once');

    # UBSan writes to stderr, which nginx points at its error log.
    open my $log, '>>', $ngx->error_log_file or die $!;
    print {$log} "x.c:1:2: runtime error: a line as UBSan writes it\n";
    close $log;
    $events = Test2::API::intercept(sub {
        Test::Monetize::sanitizer_check('a line in the error log');
    });
    @fails = grep { $_->isa('Test2::Event::Ok') && !$_->pass } @$events;
    is(scalar @fails, 1, 'sanitizers: a UBSan line in the error log fails');
    is(Test::Monetize::sanitizer_check('the same again'), 1, '... once');
    $ngx->stop;
}

done_testing();

__DATA__

=== TEST 1: response_body and response_headers
--- no_monetize
--- config
        location /hello { add_header X-Hello world; return 200 "hello\n"; }
        location /json {
            default_type application/json;
            return 200 '{"a":{"b":1,"c":"xyz"},"d":[1,true,null],"e":"3"}';
        }
        location /missing { root $TEST_NGINX_PREFIX/html; }
        location /len { return 200 "len=$content_length x=$http_x_foo"; }
        location /echo { proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT; }
--- request
GET /hello
--- response_body
hello
--- response_headers
X-Hello: world
!X-Nope
--- response_headers_like
Content-Type: ^text/plain



=== TEST 2: response_json (nginx reused)
--- no_monetize
--- config
        location /hello { add_header X-Hello world; return 200 "hello\n"; }
        location /json {
            default_type application/json;
            return 200 '{"a":{"b":1,"c":"xyz"},"d":[1,true,null],"e":"3"}';
        }
        location /missing { root $TEST_NGINX_PREFIX/html; }
        location /len { return 200 "len=$content_length x=$http_x_foo"; }
        location /echo { proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT; }
--- request
GET /json
--- error_code: 200
--- response_json
{"a": {"c": "re:^x"}, "d": [1, true, null], "e": "3"}



=== TEST 3: error_log
--- no_monetize
--- config
        location /hello { add_header X-Hello world; return 200 "hello\n"; }
        location /json {
            default_type application/json;
            return 200 '{"a":{"b":1,"c":"xyz"},"d":[1,true,null],"e":"3"}';
        }
        location /missing { root $TEST_NGINX_PREFIX/html; }
        location /len { return 200 "len=$content_length x=$http_x_foo"; }
        location /echo { proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT; }
--- request
GET /missing/nothing.html
--- error_code: 404
--- error_log
open()
nothing.html" failed (2: No such file or directory)
--- no_error_log
[alert]
[warn]



=== TEST 4: a request body and more_headers
--- no_monetize
--- config
        location /hello { add_header X-Hello world; return 200 "hello\n"; }
        location /json {
            default_type application/json;
            return 200 '{"a":{"b":1,"c":"xyz"},"d":[1,true,null],"e":"3"}';
        }
        location /missing { root $TEST_NGINX_PREFIX/html; }
        location /len { return 200 "len=$content_length x=$http_x_foo"; }
        location /echo { proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT; }
--- request
POST /echo
{"email": "a@b.c"}
--- more_headers
X-Test: hi there
Content-Type: application/json
--- response_json
{"method": "POST", "body": "{\"email\": \"a@b.c\"}", "x_test": "hi there"}



=== TEST 5: several requests
--- no_monetize
--- config
        location /hello { add_header X-Hello world; return 200 "hello\n"; }
        location /json {
            default_type application/json;
            return 200 '{"a":{"b":1,"c":"xyz"},"d":[1,true,null],"e":"3"}';
        }
        location /missing { root $TEST_NGINX_PREFIX/html; }
        location /len { return 200 "len=$content_length x=$http_x_foo"; }
        location /echo { proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT; }
--- request eval
["GET /hello", "POST /len\nabc", "GET /nope"]
--- more_headers
X-Foo: bar
--- error_code eval
[200, 200, 404]
--- response_body_like eval
["^hello", "^len=3 x=bar\\z", "404 Not Found"]



=== TEST 6: another configuration, two workers
--- no_monetize
--- workers: 2
--- config
        location /port { return 200 "port=$server_port"; }
--- request
GET /port
--- response_body chomp
port=$TEST_NGINX_SERVER_PORT



=== TEST 7: must_die
--- no_monetize
--- config
        location / { bogus_directive on; }
--- must_die
--- error_log
unknown directive "bogus_directive"



=== TEST 8: sql and sql_result (nginx reused from TEST 6)
--- no_monetize
--- workers: 2
--- config
        location /port { return 200 "port=$server_port"; }
--- request
GET /port
--- sql
SELECT 6 * 7, 'x' UNION ALL SELECT 1, current_database()
--- sql_result eval
"42\tx\n1\t\$TEST_NGINX_DB\n"



=== TEST 9: a skipped block
--- SKIP
--- no_monetize
--- config
        location / { bogus_directive on; }
--- request
GET /
