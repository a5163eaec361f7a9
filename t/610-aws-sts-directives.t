# monetize_aws_sts: bad values fail "nginx -t" with an EMERG naming the
# directive and the value (never the secret key); good ones pass, without
# any network at -t.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

$ENV{MONETIZE_T610_KEY_ID} = 'AKIAMONETIZET610KEY1';
$ENV{MONETIZE_T610_SECRET} = 'sts/Secret+Key/t610abcdefghijklmnopqrstu';
my $keys = 'access_key_id=env:MONETIZE_T610_KEY_ID'
         . ' secret_access_key=env:MONETIZE_T610_SECRET';
my $role = 'role_arn=arn:aws:iam::123456789012:role/monetize-transcribe';
my $ok = "$role region=eu-west-1 $keys";

my $dir = Test::Monetize::new_dir('policies');
open my $fh, '>', "$dir/bad.json" or die;
print $fh "{\"Version\": \"2012-10-17\", \"Statement\": [\n";
close $fh;
open $fh, '>', "$dir/array.json" or die;
print $fh "[1, 2]\n";
close $fh;
open $fh, '>', "$dir/big.json" or die;
print $fh '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
    . '"Action":"transcribe:*","Resource":"' . ('x' x 3000) . '"}]}';
close $fh;
open $fh, '>', "$dir/good.json" or die;
print $fh <<'JSON';
{
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow",
                   "Action": "transcribe:StartStreamTranscription",
                   "Resource": "*"}]
}
JSON
close $fh;

my @bad = (
    ["monetize_aws_sts region=eu-west-1 $keys;",
     qr/monetize_aws_sts: role_arn= is required/],
    ["monetize_aws_sts $role $keys;",
     qr/monetize_aws_sts: region= is required/],
    ["monetize_aws_sts $role region=eu-west-1"
     . ' secret_access_key=env:MONETIZE_T610_SECRET;',
     qr/monetize_aws_sts: access_key_id= is required/],
    ["monetize_aws_sts $role region=eu-west-1"
     . ' access_key_id=env:MONETIZE_T610_KEY_ID;',
     qr/monetize_aws_sts: secret_access_key= is required/],
    ["monetize_aws_sts role_arn=arn:aws:iam::12:user/bob region=eu-west-1"
     . " $keys;",
     qr/monetize_aws_sts: invalid "role_arn=arn:aws:iam::12:user\/bob"/],
    ["monetize_aws_sts $role region=EU_West $keys;",
     qr/monetize_aws_sts: invalid "region=EU_West"/],
    ["monetize_aws_sts $role region=eu-west-1"
     . ' access_key_id=env:MONETIZE_T610_NO_SUCH'
     . ' secret_access_key=env:MONETIZE_T610_SECRET;',
     qr/monetize_aws_sts: the environment variable "MONETIZE_T610_NO_SUCH"/],
    ["monetize_aws_sts $role region=eu-west-1"
     . ' access_key_id=bad-key-id'
     . ' secret_access_key=env:MONETIZE_T610_SECRET;',
     qr/monetize_aws_sts: invalid access_key_id/],
    ["monetize_aws_sts $ok endpoint=ftp://sts.example.com;",
     qr/monetize_aws_sts: invalid "endpoint=ftp:\/\/sts.example.com"/],
    ["monetize_aws_sts $ok duration=10m;",
     qr/monetize_aws_sts: invalid "duration=10m"/],
    ["monetize_aws_sts $ok duration=13h;",
     qr/monetize_aws_sts: invalid "duration=13h"/],
    ["monetize_aws_sts $ok duration=soon;",
     qr/monetize_aws_sts: invalid "duration=soon"/],
    ["monetize_aws_sts $ok policy=$dir/none.json;",
     qr/monetize_aws_sts: invalid "policy=\Q$dir\E\/none.json"/],
    ["monetize_aws_sts $ok policy=$dir/bad.json;",
     qr/monetize_aws_sts: invalid "policy=\Q$dir\E\/bad.json"/],
    ["monetize_aws_sts $ok policy=$dir/array.json;",
     qr/monetize_aws_sts: invalid "policy=\Q$dir\E\/array.json"/],
    ["monetize_aws_sts $ok policy=$dir/big.json;",
     qr/monetize_aws_sts: invalid "policy=\Q$dir\E\/big.json".*2048/],
    ["monetize_aws_sts $ok plans=starter,Pro!;",
     qr/monetize_aws_sts: invalid "plans=starter,Pro!"/],
    ["monetize_aws_sts $ok plans=starter,,pro;",
     qr/monetize_aws_sts: invalid "plans=starter,,pro"/],
    ["monetize_aws_sts $ok limit=0;",
     qr/monetize_aws_sts: invalid "limit=0"/],
    ["monetize_aws_sts $ok limit=many;",
     qr/monetize_aws_sts: invalid "limit=many"/],
    ["monetize_aws_sts $ok timeout=0;",
     qr/monetize_aws_sts: invalid "timeout=0"/],
    ["monetize_aws_sts $ok colour=blue;",
     qr/monetize_aws_sts: invalid parameter "colour=blue"/],
    ["monetize_aws_sts $ok;\nmonetize_aws_sts $ok;",
     qr/"monetize_aws_sts" directive is duplicate/],
);

for my $case (@bad) {
    my ($rc, $out) = Test::Monetize::nginx_t(
        main_config => "env MONETIZE_T610_KEY_ID;\nenv MONETIZE_T610_SECRET;",
        http_config => $case->[0],
        config => 'location /v1/ { monetize_api; }');
    isnt $rc, 0, "refused: $case->[0]";
    like $out, qr/\[emerg\].*$case->[1]/, '... with an EMERG naming it';
    unlike $out, qr/\Q$ENV{MONETIZE_T610_SECRET}\E/, '... and not the secret';
}

my ($rc, $out) = Test::Monetize::nginx_t(
    postgres => '',
    http_config => "monetize_aws_sts $ok;",
    config => 'location / { return 204; }');
isnt $rc, 0, 'refused: monetize_aws_sts without monetize_postgres';
like $out, qr/\[emerg\].*monetize_aws_sts needs "monetize_postgres"/,
    '... with an EMERG naming it';

($rc, $out) = Test::Monetize::nginx_t(
    main_config => "env MONETIZE_T610_KEY_ID;\nenv MONETIZE_T610_SECRET;",
    http_config => "monetize_aws_sts $ok endpoint=https://sts.example.com"
        . " duration=12h policy=$dir/good.json plans=starter,professional"
        . ' limit=10 timeout=5s;',
    config => 'location /v1/ { monetize_api; }');
is $rc, 0, 'a complete monetize_aws_sts passes (no network at -t)'
    or diag $out;

($rc, $out) = Test::Monetize::nginx_t(
    http_config => "monetize_aws_sts $role region=us-east-1"
        . ' access_key_id=AKIAMONETIZET610KEY1'
        . ' secret_access_key=literal/Secret/Key;',
    config => 'location /v1/ { monetize_api; }');
is $rc, 0, '... and one with the defaults, keys given literally'
    or diag $out;

done_testing;
