# STS failing: each refusal or outage is a JSON error of the contract with
# STS's code in the error log, never a 500 and never STS's XML to the
# client. Throttling, a 5xx, STS unreachable or too slow: 503
# backend_unavailable (Retry-After); AccessDenied, ExpiredToken, a
# signature STS refuses (a wrong secret key), an answer not understood:
# 502 upstream_error. A failed call counts nothing against the limit. STS
# hanging never blocks the worker: it answers others meanwhile.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use FakeSts;

my $sts = FakeSts->start(region => 'us-east-1');
$ENV{MONETIZE_T612_KEY_ID} = $sts->access_key;
$ENV{MONETIZE_T612_SECRET} = $sts->secret;
$ENV{MONETIZE_T612_WRONG} = 'not/the/secret/key/0123456789abcdefghijk';

my $role = 'arn:aws:iam::123456789012:role/monetize-transcribe';
sub sts_conf {
    my ($secret, $extra) = @_;
    return "monetize_aws_sts role_arn=$role region=us-east-1"
        . ' access_key_id=env:MONETIZE_T612_KEY_ID'
        . " secret_access_key=env:$secret endpoint=" . $sts->url
        . " limit=2 timeout=3s$extra;";
}
my %nginx = (
    main_config => "env MONETIZE_T612_KEY_ID;\nenv MONETIZE_T612_SECRET;\n"
        . 'env MONETIZE_T612_WRONG;',
    workers => 1,
    config => <<'CONF');
    location /v1/ { monetize_api; }
    location = /ping { return 200 "pong\n"; }
CONF

my $ngx = Test::Monetize::Nginx->start(%nginx,
    http_config => sts_conf('MONETIZE_T612_SECRET', ''));
my ($user, $key) = Test::Monetize::account(plan => 'starter');

sub credentials {
    return $ngx->request('POST', '/v1/aws/credentials',
                         headers => [Authorization => "Bearer $key"],
                         timeout => 20);
}

my @cases = (
    ['throttle', 503, 'backend_unavailable', 'Throttling'],
    ['500', 503, 'backend_unavailable', 'InternalFailure'],
    ['denied', 502, 'upstream_error', 'AccessDenied'],
    ['expired', 502, 'upstream_error', 'ExpiredToken'],
    ['garbage', 502, 'upstream_error', 'not understood'],
);

for my $c (@cases) {
    my ($mode, $status, $code, $log) = @$c;
    $sts->fail($mode, 1);
    my $mark = $ngx->error_log_mark;
    my $res = credentials();
    is_deeply [$res->{status}, $res->{json}{error}{code}], [$status, $code],
        "STS $mode: $status $code";
    unlike $res->{body}, qr/</, '... no XML to the client';
    is $res->{headers}{'retry-after'}, '1', '... Retry-After'
        if $status == 503;
    ok $ngx->wait_for_log(qr/\[error\].*monetize: STS AssumeRole.*\Q$log\E/,
                          since => $mark), "... the log says $log";
}

is credentials()->{status}, 200,
    'STS back: 200 (the failures counted nothing against limit=2)';
is credentials()->{status}, 200, '... and a second';
is credentials()->{status}, 429, '... the third is past the limit';

my @rows = Test::Monetize::psql(
    "SELECT status, error FROM aws_credentials ORDER BY id");
is_deeply \@rows,
    [['failed', 'Throttling'], ['failed', 'InternalFailure'],
     ['failed', 'AccessDenied'], ['failed', 'ExpiredToken'],
     ['failed', 'not understood'], ['issued', undef], ['issued', undef]],
    'aws_credentials: the failures, with STS\'s code, then the two issued';
my ($audit) = Test::Monetize::psql(
    "SELECT count(*) FROM audit_log WHERE action = 'aws.credentials'");
is $audit->[0], 2, '... and only the issued in the audit log';

Test::Monetize::psql('DELETE FROM aws_credentials');

# a wrong secret key: STS refuses the signature
$ngx->stop;
$ngx = Test::Monetize::Nginx->start(%nginx,
    http_config => sts_conf('MONETIZE_T612_WRONG', ''));
my $mark = $ngx->error_log_mark;
my $res = credentials();
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [502, 'upstream_error'], 'a wrong secret key: 502 upstream_error';
ok !(($sts->requests)[-1]{signed}), '... STS found the signature wrong';
ok $ngx->wait_for_log(qr/monetize: STS AssumeRole.*SignatureDoesNotMatch/,
                      since => $mark), '... the log says SignatureDoesNotMatch';
unlike $ngx->error_log_since(0), qr/\Q$ENV{MONETIZE_T612_WRONG}\E/,
    '... and not the key';

# STS unreachable
$ngx->stop;
my $closed = Test::Monetize::free_port();
$ngx = Test::Monetize::Nginx->start(%nginx,
    http_config => sts_conf('MONETIZE_T612_SECRET', '')
        =~ s{endpoint=\S+}{endpoint=http://127.0.0.1:$closed}r);
$res = credentials();
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [503, 'backend_unavailable'], 'STS unreachable: 503 backend_unavailable';

# STS hanging: the worker answers others meanwhile
$ngx->stop;
$ngx = Test::Monetize::Nginx->start(%nginx,
    http_config => sts_conf('MONETIZE_T612_SECRET', ''));
is scalar($ngx->worker_pids), 1, 'one worker';
$sts->fail('hang', 2);
my $started = Time::HiRes::time();
my @held = map {
    $ngx->start_request('POST', '/v1/aws/credentials',
                        headers => [Authorization => "Bearer $key"],
                        timeout => 20)
} 1 .. 2;
ok Test::Monetize::wait_until(10, sub {
        2 == grep { !defined $_->{status} } $sts->requests }),
    'STS holds two calls';
my @res = $ngx->parallel([(map { [GET => '/ping'] } 1 .. 5),
                          [GET => '/v1/health']], concurrency => 6);
is_deeply [map { $_->{status} } @res], [(200) x 6],
    'the worker answers pings and the health check meanwhile';
ok !(grep { $_->done } @held), '... while both calls are still held';
cmp_ok Time::HiRes::time() - $started, '<', 3,
    '... before the calls\' timeout';
@res = map { $ngx->finish_request($_) } @held;
is_deeply [map { [$_->{status}, $_->{json}{error}{code}] } @res],
    [([503, 'backend_unavailable']) x 2],
    'the held calls end at timeout=3s: 503 backend_unavailable';
cmp_ok Time::HiRes::time() - $started, '<', 10, '... in time';

unlike $ngx->error_log_since(0), qr/\[(alert|crit|emerg)\]/, 'no alert';

done_testing;
