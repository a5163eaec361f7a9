# The contract is in the repository (docs/API.md), the README points at it
# and at nothing outside the clone, and the contract's marks are true: every
# endpoint marked served is routed by the API, every one to come is not.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $repo = $ENV{MONETIZE_REPO};
my $slurp = sub { local (@ARGV, $/) = @_; <> };

ok -f "$repo/docs/API.md", 'docs/API.md is in the repository';
my $readme = $slurp->("$repo/README.md");
unlike $readme, qr{\.\./}, 'the README names no file outside the clone';
like $readme, qr{\(docs/API\.md\)}, '... and links docs/API.md';

my $api = -f "$repo/docs/API.md" ? $slurp->("$repo/docs/API.md") : '';
my (%served, %to_come);
for my $row (grep { /\A\| `[A-Z]+ \// } split /\n/, $api) {
    my @cells = split /\s*\|\s*/, $row;
    my $mark = $cells[-1];
    my ($method, $path) = $cells[1] =~ /\A`([A-Z]+) (\S+?)`/ or next;
    my @paths = ($path, $cells[1] =~ /also `(\/[^`?]+)`/g);
    for my $p (@paths) {
        $p =~ s/\{id\}/00000000-0000-4000-8000-000000000000/;
        my $set = $mark =~ /served/ ? \%served : \%to_come;
        $set->{"$method $p"} = 1;
    }
}
cmp_ok scalar(keys %served), '>=', 10, 'endpoints marked served';
cmp_ok scalar(keys %to_come), '>=', 10, 'endpoints marked to come';

my ($user, $key) = Test::Monetize::account(credits => 10);
my $ngx = Test::Monetize::Nginx->start(
    config => 'location /v1/ { monetize_api; }');
my (@wrong_served, @wrong_to_come);
for my $endpoint (sort(keys %served), sort(keys %to_come)) {
    my ($method, $path) = split ' ', $endpoint;
    my $res = $ngx->request($method, "/v1$path",
        headers => [Authorization => "Bearer $key",
                    'Content-Type' => 'application/json'],
        body => $method =~ /\A(?:POST|PATCH|PUT)\z/ ? '{}' : undef);
    my $routed = !($res->{status} == 404
                   && ($res->{json}{error}{message} // '') eq
                      'no such endpoint');
    push @wrong_served, $endpoint if $served{$endpoint} && !$routed;
    push @wrong_to_come, $endpoint if $to_come{$endpoint} && $routed;
}
is_deeply \@wrong_served, [], 'every endpoint marked served is routed';
is_deeply \@wrong_to_come, [], 'no endpoint marked to come is';
$ngx->stop;

done_testing;
