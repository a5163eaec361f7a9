# monetize_jwks, monetize_jwt_autoprovision and monetize_gate's scope=:
# bad values fail "nginx -t" with an EMERG naming the directive and the
# value; good ones pass.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $ok = 'url=http://127.0.0.1:9/jwks issuer=https://i.example audience=a';
my $gate = 'location /api/ { monetize_gate on; }';

my @bad = (
    ["monetize_jwks issuer=https://i.example audience=a;", $gate,
     qr/monetize_jwks: give url=URL or file=PATH \(one of them\)/],
    ["monetize_jwks $ok file=/tmp/x.json;", $gate,
     qr/monetize_jwks: give url=URL or file=PATH \(one of them\)/],
    ["monetize_jwks url=http://127.0.0.1:9/jwks audience=a;", $gate,
     qr/monetize_jwks: give url=URL or file=PATH \(one of them\), issuer/],
    ["monetize_jwks url=ftp://x/jwks issuer=https://i.example audience=a;",
     $gate, qr/monetize_jwks: invalid parameter "url=ftp:\/\/x\/jwks"/],
    ["monetize_jwks $ok leeway=soon;", $gate,
     qr/monetize_jwks: invalid parameter "leeway=soon"/],
    ["monetize_jwks $ok refresh=0;", $gate,
     qr/monetize_jwks: invalid parameter "refresh=0"/],
    ["monetize_jwks $ok colour=blue;", $gate,
     qr/monetize_jwks: invalid parameter "colour=blue"/],
    ["monetize_jwks $ok; monetize_jwks $ok;", $gate,
     qr/monetize_jwks: issuer "https:\/\/i.example" is given twice/],
    ["monetize_jwt_autoprovision maybe;", $gate,
     qr/invalid value "maybe" in "monetize_jwt_autoprovision"/],
    ["", 'location /api/ { monetize_gate on scope=a*b; }',
     qr/monetize_gate: invalid parameter "scope=a\*b"/],
    ["", 'location /api/ { monetize_gate on colour=blue; }',
     qr/monetize_gate: invalid parameter "colour=blue"/],
    ["", 'location /api/ { monetize_gate off scope=x; }',
     qr/monetize_gate: invalid value "off"/],
);

plan tests => 2 * @bad + 1;

for my $case (@bad) {
    my ($rc, $out) = Test::Monetize::nginx_t(
        http_config => $case->[0],
        config => "location /v1/ { monetize_api; } $case->[1]");
    isnt $rc, 0, "refused: $case->[0] $case->[1]";
    like $out, qr/\[emerg\].*$case->[2]/, '... with an EMERG naming it';
}

my ($rc, $out) = Test::Monetize::nginx_t(
    http_config => "monetize_jwks $ok leeway=30s refresh=5m timeout=2s;\n"
                   . "monetize_jwks file=/nonexistent/jwks.json "
                   . "issuer=https://other.example audience=b;\n"
                   . "monetize_jwt_autoprovision on;",
    config => 'location /v1/ { monetize_api; } '
              . 'location /api/ { monetize_gate on scope=transcribe:stream; }');
is $rc, 0, 'good ones pass (no fetch at configuration time)' or diag $out;
