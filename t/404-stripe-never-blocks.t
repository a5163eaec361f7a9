# The worker never blocks while Stripe hangs: with one worker whose job
# runner holds calls to a Stripe that never answers (each held until the
# client's timeout), the same worker answers other requests, registrations
# included, before any held call ends. The test asserts the order of
# events: every answer comes while Stripe still holds the calls.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $stripe = Test::Monetize::FakeStripe->start(key => 'sk_test_404');

my $ngx = Test::Monetize::Nginx->start(
    workers => 1,
    http_config => "monetize_bcrypt_cost 4;\n"
        . 'monetize_stripe secret_key=sk_test_404 api_base=' . $stripe->url
        . ' timeout=20s tries=2;',
    config => <<'CONF');
    location /v1/ { monetize_api; }
    location = /ping { return 200 "pong\n"; }
CONF

is scalar($ngx->worker_pids), 1, 'one worker';

$stripe->fail('/v1/customers', 'hang', 100);

my @users = map {
    my $res = $ngx->request('POST', '/v1/register',
        json => {email => "user$_\@example.com", password => 'correct horse'});
    $res->{json}{user}{id}
} 1 .. 3;

sub held {
    return scalar grep { $_->{path} eq '/v1/customers'
                         && !defined $_->{status} } $stripe->requests;
}

ok Test::Monetize::wait_until(10, sub { held() == 3 }),
    'Stripe holds the three customers\' calls';

my $started = Time::HiRes::time();
my @res = $ngx->parallel([
    (map { [GET => '/ping'] } 1 .. 10),
    (map { [POST => '/v1/register', json => {
        email => "more$_\@example.com", password => 'correct horse'}] }
     1 .. 3),
    [GET => '/v1/plans'],
], concurrency => 14);
is_deeply [map { $_->{status} } @res], [(200) x 10, (201) x 3, 200],
    'the worker answers pings, registrations and reads meanwhile';

ok Test::Monetize::wait_until(5, sub { held() == 6 }),
    '... while Stripe still holds every call (three more now)';
my ($done) = Test::Monetize::psql(
    'SELECT count(*) FROM jobs WHERE done_at IS NOT NULL');
is $done->[0], 0, '... and no job has ended';
cmp_ok Time::HiRes::time() - $started, '<', 15,
    '... all before the first call\'s timeout';

unlike $ngx->error_log_since(0), qr/\[(alert|crit|emerg)\]/, 'no alert';

done_testing;
