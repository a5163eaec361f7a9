# Low-balance alerts (monetize_low_balance N): an account whose balance,
# spent through the gate, falls below N gets one mail and the operator one
# signed webhook; more calls send nothing again until the balance has been
# at or above N again; an account that never had N is not told; two nodes
# of two workers each send nothing twice.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Digest::SHA qw(hmac_sha256_hex);
use JSON::PP ();

$ENV{MONETIZE_TEST_NOTIFY_SECRET} = 'env-secret-' . ('x' x 16);
my $secret = $ENV{MONETIZE_TEST_NOTIFY_SECRET};
my $smtp = Test::Monetize::Smtp->start;
my $hook = Test::Monetize::Backend->start(sub { (204, {}, '') });

my %conf = (
    workers => 2,
    main_config => 'env MONETIZE_TEST_NOTIFY_SECRET;',
    http_config => "monetize_cache zone=keys:1m;\n"
        . "monetize_smtp smtp://127.0.0.1:" . $smtp->port
        . " from=noreply\@example.com timeout=5s;\n"
        . "monetize_public_url https://api.example.com/;\n"
        . "monetize_low_balance 50;\n"
        . "monetize_notify url=http://127.0.0.1:" . $hook->port
        . "/h secret=env:MONETIZE_TEST_NOTIFY_SECRET;",
    config => <<'CONF');
    location /paid/ {
        monetize_gate on;
        monetize_cost 1;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /backend/ { return 200 "ok\n"; }
CONF
my $ngx = Test::Monetize::Nginx->start(%conf);
# a second node on the same database: its two workers sweep too
my $node2 = Test::Monetize::Nginx->start(%conf);

sub calls {
    my ($key, $count) = @_;
    my @res = $ngx->parallel([map {
        [GET => "/paid/$_", headers => {'X-API-Key' => $key}]
    } 1 .. $count], concurrency => 10);
    my %status;
    $status{$_->{status}}++ for @res;
    return \%status;
}

sub sweep {
    my ($r) = Test::Monetize::psql(
        "SELECT mails, jobs FROM monetize_alerts_sweep(50, true, true,"
        . " 'https://api.example.com/')");
    return $r;
}

sub hooks {
    return map {
        my $req = $_;
        my ($t, $v1) = ($req->{headers}{'monetize-signature'} // '')
                       =~ /^t=(\d+),v1=([0-9a-f]{64})$/;
        { valid => defined $t
                   && $v1 eq hmac_sha256_hex("$t.$req->{body}", $secret),
          event => JSON::PP::decode_json($req->{body}) }
    } $hook->requests;
}

my ($user, $key) = Test::Monetize::account(email => 'low@example.com',
                                           credits => 60);
my ($poor, $poor_key) = Test::Monetize::account(email => 'poor@example.com',
                                                credits => 20);

# --- down to 50: not below ----------------------------------------------------

is_deeply calls($key, 10), {200 => 10}, '10 calls paid with credits: 50 left';
is_deeply calls($poor_key, 5), {200 => 5},
    'an account that never had 50 spends 5 of its 20';
is_deeply sweep(), [0, 0], 'a sweep: 50 is not below 50, 15 never fell';

# --- 49: one mail, one webhook ------------------------------------------------

is_deeply calls($key, 1), {200 => 1}, 'one more: 49';
my @mails = $smtp->wait_mails(1, 15);
is scalar(@mails), 1, 'one mail';
like $mails[0] // '', qr/^X-Envelope-To: low\@example\.com\r$/m,
    '... to the account';
like $mails[0] // '', qr/^Subject: Your credit balance is low\r$/m,
    '... saying the balance is low';
like $mails[0] // '', qr/has 49 credits left, below the 50/,
    '... with the numbers';
like $mails[0] // '', qr/back at 50 or more/, '... and when it says it again';

ok Test::Monetize::wait_until(15, sub { hooks() >= 1 }), 'a webhook';
my @hooks = hooks();
is scalar(@hooks), 1, '... one (the receiver answered 204 at once)';
ok $hooks[0]{valid},
    '... signed with the secret from the environment (env:NAME)';
is $hooks[0]{event}{type}, 'balance.low', '... balance.low';
is_deeply [@{$hooks[0]{event}{data}}{qw(user_id email plan balance)}],
    [$user, 'low@example.com', 'free', 49],
    '... data: user_id, email, plan, balance';

# --- more calls: nothing ------------------------------------------------------

is_deeply calls($key, 20), {200 => 20}, '20 more calls: 29 left';
is_deeply sweep(), [0, 0], 'a sweep: nothing new';

# --- back above 50 and down again: a new alert --------------------------------

Test::Monetize::psql(
    "SELECT monetize_credit(\$1, 100, 'admin', 'top-up:' || \$1)", $user);
is_deeply calls($key, 79), {200 => 79}, 'topped up to 129; 79 calls: 50';
is_deeply sweep(), [0, 0], 'a sweep: 50 is not low';
is_deeply calls($key, 1), {200 => 1}, 'one more: 49 again';
@mails = $smtp->wait_mails(2, 15);
is scalar(@mails), 2, 'a second mail: the balance had been back at 50';
ok Test::Monetize::wait_until(15, sub { hooks() >= 2 }), 'a second webhook';
@hooks = hooks();
isnt $hooks[1]{event}{id}, $hooks[0]{event}{id}, '... a new event';

# --- spent out: still nothing more; two workers, nothing twice ---------------

is_deeply calls($key, 60), {200 => 49, 402 => 11}, 'spent out: then 402';
is_deeply sweep(), [0, 0], 'a sweep: nothing new';
Test::Monetize::wait_until(5, sub { 0 });     # a few more sweeps by both
is scalar($smtp->mails), 2, 'two mails in all, from two nodes of two workers';
is scalar(hooks()), 2, 'two webhooks in all';
my ($rows) = Test::Monetize::psql(
    "SELECT count(*) FILTER (WHERE user_id = \$1),"
    . "       count(*) FILTER (WHERE user_id = \$2) FROM alerts",
    $user, $poor);
is_deeply $rows, [2, 0],
    'two alerts for the account; none for one that never had 50';

Test::Monetize::reconcile();

done_testing;
