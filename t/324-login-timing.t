# A login for an unknown address costs the same bcrypt work as one for a
# known address with a wrong password: the medians of ten tries each are
# within 20% (not an absolute time). The cost is 10 so that bcrypt, not
# the round trips, is most of each login.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Sessions;
use Time::HiRes qw(time);

plan tests => 3;

my $ngx = Test::Monetize::Nginx->start(
    http_config => "monetize_bcrypt_cost 10;\n"
                   . "monetize_jwt_secret $Sessions::SECRET;",
    api_limit => $Sessions::NO_LIMIT, config => $Sessions::API);

Sessions::register($ngx, 'ada@example.com');

sub median {
    my @t = sort { $a <=> $b } @_;
    return ($t[4] + $t[5]) / 2;
}

sub timed {
    my ($email) = @_;
    my $t0 = time;
    my $res = Sessions::login($ngx, $email, 'not the password');
    die "login $email: $res->{status}" unless $res->{status} == 401;
    return time - $t0;
}

# interleaved, so that a slower moment of the machine falls on both
my (@known, @unknown);
for my $i (1 .. 10) {
    push @known, timed('ada@example.com');
    push @unknown, timed("nobody$i\@example.com");
}

my ($k, $u) = (median(@known), median(@unknown));
diag sprintf 'medians: known %.1f ms, unknown %.1f ms', $k * 1000, $u * 1000;

ok $k > 0.01, 'a login does bcrypt work (median above 10 ms at cost 10)';
ok abs($k - $u) <= 0.2 * $k,
    'unknown and known addresses: medians within 20%';
is_deeply [Test::Monetize::psql(
    q{SELECT count(*) FILTER (WHERE email = 'ada@example.com'), count(*)
        FROM login_failures})],
    [[10, 20]], 'every failure recorded, known or not';

$ngx->stop;
