# monetize_notify and monetize_low_balance: bad values fail "nginx -t" with
# an EMERG naming the directive and the value; good ones pass.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $secret = 'secret=' . ('k' x 16);
my $smtp = 'monetize_smtp smtp://127.0.0.1:25 from=a@example.com;'
         . ' monetize_public_url http://localhost:8080;';

my @bad = (
    ["monetize_notify $secret;", qr/monetize_notify: url= is required/],
    ["monetize_notify url=ftp://example.com/h $secret;",
     qr/monetize_notify: invalid "url=ftp:\/\/example.com\/h"/],
    ["monetize_notify url=http://127.0.0.1/h;",
     qr/monetize_notify: secret= is required, of at least 16 characters/],
    ["monetize_notify url=http://127.0.0.1/h secret=short;",
     qr/monetize_notify: secret= is required, of at least 16 characters/],
    ["monetize_notify url=http://127.0.0.1/h"
     . " secret=env:MONETIZE_NO_SUCH_VAR;",
     qr/monetize_notify: the environment variable "MONETIZE_NO_SUCH_VAR"/],
    ["monetize_notify url=http://127.0.0.1/h $secret timeout=soon;",
     qr/monetize_notify: invalid "timeout=soon"/],
    ["monetize_notify url=http://127.0.0.1/h $secret colour=blue;",
     qr/monetize_notify: invalid parameter "colour=blue"/],
    ["monetize_notify url=http://127.0.0.1/h $secret;"
     . " monetize_notify url=http://127.0.0.1/h $secret;",
     qr/"monetize_notify" directive is duplicate/],
    ["monetize_low_balance 0; $smtp",
     qr/monetize_low_balance.*"0"/],
    ["monetize_low_balance ten; $smtp",
     qr/monetize_low_balance.*"ten"/],
    ["monetize_low_balance 100;",
     qr/monetize_low_balance 100 needs "monetize_postgres", and "monetize_smtp" or "monetize_notify"/],
);

for my $case (@bad) {
    my ($rc, $out) = Test::Monetize::nginx_t(
        http_config => $case->[0],
        config => 'location /v1/ { monetize_api; }');
    isnt $rc, 0, "refused: $case->[0]";
    like $out, qr/\[emerg\].*$case->[1]/, '... with an EMERG naming it';
}

my ($rc, $out) = Test::Monetize::nginx_t(
    http_config => "monetize_notify url=https://ops.example.com/hooks"
        . " $secret timeout=3s;\nmonetize_low_balance 100;",
    config => 'location /v1/ { monetize_api; }');
is $rc, 0, 'monetize_notify and monetize_low_balance pass (no network at -t)'
    or diag $out;

($rc, $out) = Test::Monetize::nginx_t(
    http_config => "monetize_low_balance 100; $smtp",
    config => 'location /v1/ { monetize_api; }');
is $rc, 0, 'monetize_low_balance with mail only passes' or diag $out;

done_testing;
