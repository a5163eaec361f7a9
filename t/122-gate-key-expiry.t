# A key's expiry is kept to the millisecond by the gate as by the API: a key
# rotated without grace is refused at once (403 key_expired), and a cached
# key stops at its expires_at, not at the whole second nearest to it.
#
# Both cases are set up at a fractional second of .55 to .7, where a lookup
# that rounds expires_at to whole seconds would round it up and let the key
# pass for the rest of the second. The locations cost 0, so no debit
# happens: only the gate's own check decides.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Time::HiRes qw(time);

my $ngx = Test::Monetize::Nginx->start(
    workers => 2,
    http_config => 'monetize_cache zone=keys:1m ttl=3600s;',
    config => <<'CONF');
    location /v1/ { monetize_api; }
    location /api/ {
        monetize_gate on;
        monetize_cost 0;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /backend/ { return 200 "served\n"; }
CONF

sub late_in_a_second {
    Test::Monetize::wait_until(2, sub {
        my $f = time - int(time);
        $f >= 0.55 && $f < 0.7;
    });
}

sub call {
    my ($key) = @_;
    my $res = $ngx->request('GET', '/api/x', headers => {'X-API-Key' => $key});
    return [$res->{status}, $res->{json} && $res->{json}{error}{code}];
}

# --- rotation without grace ------------------------------------------------

my @got;
for my $i (1 .. 5) {
    my ($user, $key) = Test::Monetize::account();
    my ($id) = map { $_->[0] } Test::Monetize::psql(
        "SELECT id FROM api_keys WHERE user_id = \$1", $user);

    late_in_a_second();
    my $rot = $ngx->request('POST', "/v1/keys/$id/rotate",
                            headers => {'X-API-Key' => $key},
                            json => {grace_seconds => 0});
    die "rotate: $rot->{status}\n" unless $rot->{status} == 201;
    push @got, call($key);
}

is_deeply \@got, [([403, 'key_expired']) x 5],
    'a key rotated without grace: 403 key_expired at once, every time';

# --- a cached key reaching its expires_at --------------------------------

my ($user, $key) = Test::Monetize::account();
my ($expires) = map { $_->[0] } Test::Monetize::psql(
    "UPDATE api_keys SET expires_at = date_trunc('second', now())"
    . "                               + interval '2.6 seconds'"
    . " WHERE user_id = \$1 RETURNING extract(epoch FROM expires_at)",
    $user);

is call($key)->[0], 200, 'a key that expires at .6 of a second works (and is cached)';

my (@early, @late);
while (time < $expires + 0.7) {
    my $sent = time;
    my $r = call($key);
    push @early, $r->[0] if $sent < $expires - 0.05;
    push @late, "$r->[0] $r->[1]" if $sent > $expires + 0.01;
}

ok @early && !grep({ $_ != 200 } @early), 'before its expires_at: 200';
ok @late && !grep({ $_ ne '403 key_expired' } @late),
    'after it: 403 key_expired on every call, from the first millisecond'
    or diag explain \@late;

done_testing;
