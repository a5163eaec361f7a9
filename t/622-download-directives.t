# monetize_download, monetize_download_ttl and monetize_download_url: bad
# values fail "nginx -t" with an EMERG naming the directive and the value;
# good ones pass.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $loc = sub { "location /dl/ { $_[0] root html; }" };

my @bad = (
    [config => $loc->('monetize_download maybe;'),
     qr/monetize_download: invalid value "maybe"/],
    [config => $loc->('monetize_download on;'),
     qr/"monetize_download on" needs product=ID/],
    [config => $loc->('monetize_download on product=;'),
     qr/monetize_download: invalid or repeated parameter "product="/],
    [config => $loc->('monetize_download on product=a product=b;'),
     qr/monetize_download: invalid or repeated parameter "product=b"/],
    [config => $loc->('monetize_download on colour=blue;'),
     qr/monetize_download: invalid or repeated parameter "colour=blue"/],
    [config => $loc->('monetize_download off product=a;'),
     qr/monetize_download: invalid value "off"/],
    [config => $loc->('monetize_download on product=a;'
                      . ' monetize_download off;'),
     qr/"monetize_download" directive is duplicate/],
    [config => $loc->('satisfy any; allow 127.0.0.1; deny all;'
                      . ' monetize_download on product=a;'),
     qr/"monetize_download on" cannot be combined with "satisfy any" in location "\/dl\/"/],
    [http_config => 'monetize_download_ttl 0;',
     qr/monetize_download_ttl: invalid time "0"/],
    [http_config => 'monetize_download_ttl soon;',
     qr/monetize_download_ttl: invalid time "soon"/],
    [http_config => 'monetize_download_ttl 400d;',
     qr/monetize_download_ttl: invalid time "400d"/],
    [http_config => 'monetize_download_ttl 1h; monetize_download_ttl 2h;',
     qr/"monetize_download_ttl" directive is duplicate/],
);

for my $case (@bad) {
    my ($where, $text, $re) = @$case;
    my ($rc, $out) = Test::Monetize::nginx_t(
        config => 'location /v1/ { monetize_api; }',
        $where => $text);
    isnt $rc, 0, "refused: $text";
    like $out, qr/\[emerg\].*$re/, '... with an EMERG naming it';
}

# tokens need the key secret; download_logs need PostgreSQL
for my $o ([key_secret => ' '], [postgres => ' ']) {
    my ($rc, $out) = Test::Monetize::nginx_t(
        @$o, config => $loc->('monetize_download on product=a;'));
    isnt $rc, 0, "refused without the $o->[0]";
    like $out, qr/\[emerg\].*"monetize_download on" needs "monetize_key_secret" \(its tokens' key\) and "monetize_postgres"/,
        '... saying what it needs';
}

my ($rc, $out) = Test::Monetize::nginx_t(
    http_config => 'monetize_download_ttl 2h;'
        . ' monetize_download_url https://files.example.com/get/;',
    config => "location /v1/ { monetize_api; }\n"
        . 'location ~ ^/dl/(?<product>[a-z-]+)$ {'
        . ' monetize_download on product=$product; alias html/$product; }'
        . "\nlocation /static/ { monetize_download on product=kit;"
        . " location /static/free/ { monetize_download off; } }");
is $rc, 0, 'good directives pass' or diag $out;

done_testing;
