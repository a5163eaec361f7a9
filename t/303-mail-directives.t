# monetize_smtp and monetize_public_url: bad values fail "nginx -t" with an
# EMERG naming the directive and the value; good ones pass.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $url = 'monetize_public_url http://localhost:8080;';

my @bad = (
    ["monetize_smtp http://127.0.0.1:25 from=a\@example.com; $url",
     qr/monetize_smtp: invalid URL "http:\/\/127.0.0.1:25"/],
    ["monetize_smtp smtp://127.0.0.1:25; $url",
     qr/monetize_smtp: "smtp:\/\/127.0.0.1:25" needs from=ADDRESS/],
    ["monetize_smtp smtp://127.0.0.1:25 from=nobody; $url",
     qr/monetize_smtp: invalid "from=nobody"/],
    ["monetize_smtp smtp://127.0.0.1:25 from=a\@example.com timeout=soon; $url",
     qr/monetize_smtp: invalid "timeout=soon"/],
    ["monetize_smtp smtp://127.0.0.1:25 from=a\@example.com colour=blue; $url",
     qr/monetize_smtp: invalid parameter "colour=blue"/],
    ["monetize_smtp smtp://127.0.0.1:25 from=a\@example.com user=me; $url",
     qr/monetize_smtp: give both user= and password=/],
    ["monetize_smtp smtp://127.0.0.1:25 from=a\@example.com"
     . " user=me password=env:MONETIZE_NO_SUCH_VAR; $url",
     qr/monetize_smtp: the environment variable "MONETIZE_NO_SUCH_VAR"/],
    ["monetize_smtp smtp://127.0.0.1:25 from=a\@example.com;",
     qr/monetize_smtp needs "monetize_postgres" and "monetize_public_url"/],
    ["monetize_public_url ftp://example.com;",
     qr/monetize_public_url: invalid URL "ftp:\/\/example.com"/],
    ["monetize_public_url \"http://example.com/<script>\";",
     qr/monetize_public_url: invalid URL "http:\/\/example.com\/<script>"/],
);

for my $case (@bad) {
    my ($rc, $out) = Test::Monetize::nginx_t(
        http_config => $case->[0],
        config => 'location /v1/ { monetize_api; }');
    isnt $rc, 0, "refused: $case->[0]";
    like $out, qr/\[emerg\].*$case->[1]/, '... with an EMERG naming it';
}

my ($rc, $out) = Test::Monetize::nginx_t(
    http_config => "monetize_smtp smtps://mail.example.com:465"
        . " from=noreply\@example.com user=me password=secret starttls=on"
        . " timeout=10s;\n$url",
    config => 'location /v1/ { monetize_api; }');
is $rc, 0, 'a complete monetize_smtp passes (no network at -t)' or diag $out;

done_testing;
