# monetize_stripe: bad values fail "nginx -t" with an EMERG naming the
# directive and the value; good ones pass, without any network at -t.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my @bad = (
    ['monetize_stripe api_base=http://127.0.0.1:9;',
     qr/monetize_stripe: secret_key= is required/],
    ['monetize_stripe secret_key=sk_test_x api_base=ftp://127.0.0.1;',
     qr/monetize_stripe: invalid "api_base=ftp:\/\/127.0.0.1"/],
    ['monetize_stripe secret_key=sk_test_x api_base=http://a/?x=1;',
     qr/monetize_stripe: invalid "api_base=http:\/\/a\/\?x=1"/],
    ['monetize_stripe secret_key=sk_test_x timeout=soon;',
     qr/monetize_stripe: invalid "timeout=soon"/],
    ['monetize_stripe secret_key=sk_test_x timeout=0;',
     qr/monetize_stripe: invalid "timeout=0"/],
    ['monetize_stripe secret_key=sk_test_x tries=0;',
     qr/monetize_stripe: invalid "tries=0"/],
    ['monetize_stripe secret_key=sk_test_x tries=11;',
     qr/monetize_stripe: invalid "tries=11"/],
    ['monetize_stripe secret_key=sk_test_x tries=many;',
     qr/monetize_stripe: invalid "tries=many"/],
    ['monetize_stripe secret_key=sk_test_x "api_version=2024 06";',
     qr/monetize_stripe: invalid "api_version=2024 06"/],
    ['monetize_stripe secret_key=sk_test_x api_version=;',
     qr/monetize_stripe: invalid "api_version="/],
    ['monetize_stripe secret_key=sk_test_x colour=blue;',
     qr/monetize_stripe: invalid parameter "colour=blue"/],
    ['monetize_stripe secret_key=env:MONETIZE_NO_SUCH_VAR;',
     qr/monetize_stripe: the environment variable "MONETIZE_NO_SUCH_VAR"/],
    ['monetize_stripe "secret_key=sk_test x";',
     qr/monetize_stripe: the secret key has a space or control character/],
    ["monetize_stripe secret_key=sk_test_x;\n"
     . "monetize_stripe secret_key=sk_test_y;",
     qr/"monetize_stripe" directive is duplicate/],
);

for my $case (@bad) {
    my ($rc, $out) = Test::Monetize::nginx_t(
        http_config => $case->[0],
        config => 'location /v1/ { monetize_api; }');
    isnt $rc, 0, "refused: $case->[0]";
    like $out, qr/\[emerg\].*$case->[1]/, '... with an EMERG naming it';
    unlike $out, qr/sk_test_[xy]/, '... and not the key' if $case->[0] !~ /"/;
}

my ($rc, $out) = Test::Monetize::nginx_t(
    postgres => '',
    http_config => 'monetize_stripe secret_key=sk_test_x;',
    config => 'location / { return 204; }');
isnt $rc, 0, 'refused: monetize_stripe without monetize_postgres';
like $out, qr/\[emerg\].*monetize_stripe needs "monetize_postgres"/,
    '... with an EMERG naming it';

($rc, $out) = Test::Monetize::nginx_t(
    http_config => 'monetize_stripe secret_key=sk_live_1234567890'
        . ' api_base=https://stripe.example.com/ timeout=10s'
        . ' api_version=2025-03-31.basil tries=5;',
    config => 'location /v1/ { monetize_api; }');
is $rc, 0, 'a complete monetize_stripe passes (no network at -t)'
    or diag $out;

done_testing;
