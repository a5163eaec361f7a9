# monetize_overage_interval: a bad value fails "nginx -t" with an EMERG
# naming the directive and the value; a good one passes.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my @bad = (
    ['monetize_overage_interval soon;',
     qr/monetize_overage_interval: invalid value "soon"/],
    ['monetize_overage_interval 500ms;',
     qr/monetize_overage_interval: invalid value "500ms"/],
    ['monetize_overage_interval 2d;',
     qr/monetize_overage_interval: invalid value "2d"/],
    ["monetize_overage_interval 1m;\nmonetize_overage_interval 2m;",
     qr/"monetize_overage_interval" directive is duplicate/],
);

for my $case (@bad) {
    my ($rc, $out) = Test::Monetize::nginx_t(
        http_config => $case->[0],
        config => 'location /v1/ { monetize_api; }');
    isnt $rc, 0, "refused: $case->[0]";
    like $out, qr/\[emerg\].*$case->[1]/, '... with an EMERG naming it';
}

my ($rc, $out) = Test::Monetize::nginx_t(
    http_config => 'monetize_overage_interval 5m;',
    config => 'location /v1/ { monetize_api; }');
is $rc, 0, 'monetize_overage_interval 5m passes' or diag $out;

done_testing;
