# POST /aws/credentials: STS AssumeRole, signed with Signature Version 4,
# checked by a fake STS that recomputes each signature with
# python3-botocore. The answer is the credentials STS made; the call names
# the user (RoleSessionName), the duration and the session policy (the
# default allows only Transcribe streaming; policy=FILE sends the file's).
# Only the plans listed get credentials; each issuance is in usage and the
# audit log, never its secret; an account gets at most limit= an hour; the
# secrets are in no log.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Sessions;
use FakeSts;
use JSON::PP;

my $sts = FakeSts->start(region => 'eu-west-1');
$ENV{MONETIZE_T611_KEY_ID} = $sts->access_key;
$ENV{MONETIZE_T611_SECRET} = $sts->secret;

my $role = 'arn:aws:iam::123456789012:role/monetize-transcribe';
my $sts_conf = "monetize_aws_sts role_arn=$role region=eu-west-1"
    . ' access_key_id=env:MONETIZE_T611_KEY_ID'
    . ' secret_access_key=env:MONETIZE_T611_SECRET endpoint=' . $sts->url;
my %nginx = (
    main_config => "env MONETIZE_T611_KEY_ID;\nenv MONETIZE_T611_SECRET;",
    log_level => 'debug',
    config => $Sessions::API,
);

my $ngx = Test::Monetize::Nginx->start(%nginx,
    http_config => "$Sessions::HTTP\n$sts_conf"
        . ' plans=starter,professional limit=3;');

my @prefixes = ($ngx->prefix);

my ($starter, $starter_key) = Test::Monetize::account(plan => 'starter');
my ($pro, $pro_key) = Test::Monetize::account(plan => 'professional');
my ($free, $free_key) = Test::Monetize::account();
my ($ent, $ent_key) = Test::Monetize::account(plan => 'enterprise');

sub credentials {
    my ($auth) = @_;
    return $ngx->request('POST', '/v1/aws/credentials',
                         headers => [Authorization => "Bearer $auth"]);
}

my $res = credentials($starter_key);
is $res->{status}, 200, 'a starter account\'s API key: 200'
    or diag explain $res;
my @req = $sts->requests;
is scalar(@req), 1, '... after one call to STS';
ok $req[0]{signed}, '... whose SigV4 signature botocore finds right';
my $akid = $sts->access_key;
like $req[0]{headers}{Authorization},
    qr{^AWS4-HMAC-SHA256[ ]Credential=\Q$akid\E/\d{8}/eu-west-1/sts/
       aws4_request,}x,
    '... made with the configured key for STS in the region';
is_deeply {map { $_ => $req[0]{form}{$_} }
           qw(Action Version RoleArn RoleSessionName DurationSeconds)},
    {Action => 'AssumeRole', Version => '2011-06-15', RoleArn => $role,
     RoleSessionName => "monetize-$starter", DurationSeconds => 3600},
    '... AssumeRole of the role, naming the user, for an hour';
my $policy = decode_json($req[0]{form}{Policy} // 'null');
is_deeply $policy,
    {Version => '2012-10-17',
     Statement => [{Effect => 'Allow',
                    Action => ['transcribe:StartStreamTranscription',
                               'transcribe:StartStreamTranscriptionWebSocket'],
                    Resource => '*'}]},
    '... with the default policy: Transcribe streaming only';
my $issued = $req[0]{issued};
is_deeply $res->{json},
    {access_key_id => $issued->{AccessKeyId},
     secret_access_key => $issued->{SecretAccessKey},
     session_token => $issued->{SessionToken},
     expiration => $issued->{Expiration}},
    'the answer: the credentials STS issued, and their expiration';

my $token = Sessions::encode({sub => $pro, typ => 'access', iat => 'now',
                              exp => 'now+300', jti => 'j611'});
$res = credentials($token);
is $res->{status}, 200, 'a professional account\'s session token: 200';
is(($sts->requests)[-1]{form}{RoleSessionName}, "monetize-$pro",
   '... in a session named after that user');

for my $case (['a free account', $free_key],
              ['an enterprise account (not listed)', $ent_key]) {
    $res = credentials($case->[1]);
    is_deeply [$res->{status}, $res->{json}{error}{code}],
        [403, 'subscription_required'], "$case->[0]: 403 subscription_required";
}
is scalar($sts->requests), 2, '... and STS is not asked';

$res = $ngx->request('POST', '/v1/aws/credentials');
is $res->{status}, 401, 'no credentials: 401';

$res = credentials('sk_live_not_a_key_at_all_0123456789');
is $res->{status}, 401, 'a wrong key: 401';

# the limit: 3 an hour per account; the first call above was one
is credentials($starter_key)->{status}, 200, 'the starter\'s second: 200';
is credentials($starter_key)->{status}, 200, '... third: 200';
$res = credentials($starter_key);
is_deeply [$res->{status}, $res->{json}{error}{code}], [429, 'rate_limited'],
    '... fourth within the hour: 429 rate_limited';
cmp_ok $res->{headers}{'retry-after'} // 0, '>', 3500,
    '... with Retry-After: when the first leaves the hour';
is scalar($sts->requests), 4, '... and STS is not asked';
is credentials($pro_key)->{status}, 200,
    'another account is not limited by it';
Test::Monetize::psql("UPDATE aws_credentials SET created_at = created_at"
                     . " - interval '61 minutes' WHERE user_id = \$1"
                     . " AND id = (SELECT min(id) FROM aws_credentials"
                     . "            WHERE user_id = \$1)", $starter);
is credentials($starter_key)->{status}, 200,
    'once the first is an hour old, one more: 200';

my @all = grep { $_->{status} == 200 } $sts->requests;
is scalar(@all), 6, 'six credentials issued';

# four calls at once of an account with room for three: a psql session
# holds the inserts of aws_credentials until all four have counted, or
# wait to count (the account's lock): three pass
my ($racer, $racer_key) = Test::Monetize::account(plan => 'starter');
my $hold = Test::Monetize::psql_session();
$hold->query('BEGIN; LOCK TABLE aws_credentials IN SHARE ROW EXCLUSIVE MODE;');
my @racing = map {
    $ngx->start_request('POST', '/v1/aws/credentials',
                        headers => [Authorization => "Bearer $racer_key"])
} 1 .. 4;
ok Test::Monetize::wait_until(4, sub {
        my ($n) = Test::Monetize::psql(
            "SELECT count(*) FROM pg_stat_activity"
            . " WHERE wait_event_type = 'Lock'"
            . "   AND query LIKE '%monetize_sts_begin%'");
        $n->[0] == 4 }),
    'four calls at once, held';
$hold->query('COMMIT;');
my @race = map { $ngx->finish_request($_) } @racing;
is_deeply [sort map { $_->{status} } @race], [200, 200, 200, 429],
    '... within the limit of three: three 200, one 429';
Test::Monetize::psql('DELETE FROM usage WHERE user_id = $1', $racer);
Test::Monetize::psql('DELETE FROM audit_log WHERE actor_user_id = $1',
                     $racer);
Test::Monetize::psql('DELETE FROM aws_credentials WHERE user_id = $1',
                     $racer);
push @all, grep { $_->{status} == 200 } ($sts->requests)[6 .. 8];
$hold->close;

my ($rows) = Test::Monetize::psql(
    "SELECT count(*), count(DISTINCT access_key_id),"
    . " bool_and(status = 'issued'), bool_and(expires_at > now())"
    . " FROM aws_credentials");
is_deeply $rows, [6, 6, 't', 't'], 'aws_credentials: the six, issued';

my @usage = Test::Monetize::psql(
    "SELECT user_id, sum(calls), sum(credits) FROM usage"
    . " WHERE location = 'aws/credentials' GROUP BY 1 ORDER BY 2");
is_deeply \@usage, [[$pro, 2, 0], [$starter, 4, 0]],
    'usage: each issuance, per account, no credits';

my @audit = Test::Monetize::psql(
    "SELECT actor_user_id, target_user_id, target, details->>'role_arn',"
    . " details->>'session_name', address FROM audit_log"
    . " WHERE action = 'aws.credentials' ORDER BY id");
is scalar(@audit), 6, 'the audit log: each issuance';
is_deeply $audit[0],
    [$starter, $starter, $all[0]{issued}{AccessKeyId}, $role,
     "monetize-$starter", '127.0.0.1'],
    '... by whom, for whom, its access key id, the role and session';

my ($dump) = Test::Monetize::psql(
    "SELECT string_agg(t::text, ' ') FROM ("
    . " SELECT a::text AS t FROM aws_credentials a"
    . " UNION ALL SELECT l::text FROM audit_log l"
    . " UNION ALL SELECT u::text FROM usage u) x");
my @secrets = ($sts->secret,
               map { ($_->{issued}{SecretAccessKey},
                      $_->{issued}{SessionToken}) } @all);
is scalar(grep { index($dump->[0], $_) >= 0 } @secrets), 0,
    'no secret and no session token in the database';

# another policy and duration
my $dir = Test::Monetize::new_dir('policy');
open my $fh, '>', "$dir/policy.json" or die;
print $fh <<'JSON';
{
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["transcribe:StartStreamTranscription"],
         "Resource": "*", "Condition": {"StringEquals":
             {"aws:RequestedRegion": "eu-west-1"}}}
    ]
}
JSON
close $fh;
$ngx->stop;
$ngx = Test::Monetize::Nginx->start(%nginx,
    http_config => "$Sessions::HTTP\n$sts_conf"
        . " policy=$dir/policy.json duration=15m;");
push @prefixes, $ngx->prefix;
$res = credentials($ent_key);
is $res->{status}, 200,
    'without plans=, an enterprise account (any plan but free): 200';
is_deeply [credentials($free_key)->{status}], [403],
    '... a free one: 403';
@req = $sts->requests;
is $req[-1]{form}{DurationSeconds}, 900, 'duration=15m: DurationSeconds 900';
is_deeply decode_json($req[-1]{form}{Policy}),
    {Version => '2012-10-17',
     Statement => [{Effect => 'Allow',
                    Action => ['transcribe:StartStreamTranscription'],
                    Resource => '*',
                    Condition => {StringEquals =>
                                  {'aws:RequestedRegion' => 'eu-west-1'}}}]},
    'policy=FILE: the policy sent is the file\'s';
ok $req[-1]{signed}, '... signed right';
push @secrets, $req[-1]{issued}{SecretAccessKey},
    $req[-1]{issued}{SessionToken};
$ngx->stop;

my $logs = '';
for my $f (map { glob("$_/logs/*.log") } @prefixes) {
    local (@ARGV, $/) = ($f);
    $logs .= <>;
}
cmp_ok length($logs), '>', 1000, 'the logs (debug level) were read';
is scalar(grep { index($logs, $_) >= 0 } @secrets), 0,
    'no secret key and no issued secret or session token in any log';

done_testing;
