# POST /v1/webhooks/stripe takes an event only with a Stripe-Signature that
# Stripe's own library made (t=, v1= HMAC-SHA256 of "<t>.<body>") under one
# of monetize_stripe_webhook_secret's secrets, within
# monetize_stripe_tolerance of now, in the past or the future. Anything
# else is 400 invalid_signature, changes nothing, and is logged once,
# without the secret or the signature. Bodies up to 1 MB.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use StripeWebhook;
use Time::HiRes ();

plan tests => 33;

my $current = 'whsec_' . join '', map { ('a' .. 'z')[rand 26] } 1 .. 32;
my $old = 'whsec_' . join '', map { ('a' .. 'z')[rand 26] } 1 .. 32;
my $wrong = 'whsec_' . join '', map { ('a' .. 'z')[rand 26] } 1 .. 32;
$ENV{MONETIZE_TEST_OLD_WHSEC} = $old;

my $ngx = Test::Monetize::Nginx->start(
    main_config => 'env MONETIZE_TEST_OLD_WHSEC;',
    http_config => "monetize_stripe_webhook_secret $current"
                   . " env:MONETIZE_TEST_OLD_WHSEC;",
    # Stripe's bodies may reach 1 MB, nginx's own default limit
    config => 'location /v1/ { monetize_api; client_max_body_size 2m; }');

sub events {
    return (Test::Monetize::psql('SELECT count(*) FROM webhook_events'))[0][0];
}

sub refused {
    my ($res, $what) = @_;
    is_deeply [$res->{status}, $res->{json} && $res->{json}{error}{code}],
        [400, 'invalid_signature'], "$what: 400 invalid_signature"
        or diag explain $res;
}

my $obj = {id => 'cs_sig_1', object => 'checkout.session',
           payment_status => 'unpaid', mode => 'payment'};

# Valid: 200, recorded.
my $body = StripeWebhook::event('checkout.session.completed', $obj,
                                id => 'evt_sig_valid');
my $res = StripeWebhook::send($ngx, $body, $current);
is_deeply [$res->{status}, $res->{json}{received}, $res->{json}{duplicate}],
    [200, JSON::PP::true, JSON::PP::false], 'a valid signature: 200'
    or diag explain $res;
is_deeply [Test::Monetize::psql(
        "SELECT type, payload->'data'->'object'->>'id', created IS NOT NULL,"
        . "     processed_at IS NOT NULL FROM webhook_events"
        . " WHERE id = 'evt_sig_valid'")],
    [['checkout.session.completed', 'cs_sig_1', 't', 't']],
    'the event is recorded, and processed';

my $n = events();
my $mark = $ngx->error_log_mark;

# Tampered: signed, then one byte changed.
$body = StripeWebhook::event('checkout.session.completed', $obj,
                             id => 'evt_sig_tampered');
my $sig = StripeWebhook::sign($body, $current);
(my $tampered = $body) =~ s/unpaid/paid!!/;
refused(StripeWebhook::post($ngx, $tampered, $sig), 'a tampered body');

# The wrong secret.
refused(StripeWebhook::send($ngx, $body, $wrong), 'a wrong secret');

# No header; a header without a v1; without a t.
refused(StripeWebhook::post($ngx, $body, undef), 'no Stripe-Signature');
(my $no_v1 = $sig) =~ s/,v1=.*//;
refused(StripeWebhook::post($ngx, $body, $no_v1), 'no v1');
(my $no_t = $sig) =~ s/^t=\d+,//;
refused(StripeWebhook::post($ngx, $body, $no_t), 'no t');

# 301 s old, 301 s ahead: outside the default tolerance of 300 s.
refused(StripeWebhook::send($ngx, $body, $current, timestamp => time - 301),
        'signed 301 s ago');
# nginx sees the header a moment after it is made: it is made for a second
# to come, and sent in that second, 301 s before its t. The attempt counts
# only if it was sent and answered within that second (on a loaded machine
# signing or answering may take longer; such an attempt, under an event id
# of its own, is made again, at most 5 times).
my ($ahead, $logged) = (0, 7);
undef $res;
for my $try (1 .. 5) {
    my $late = StripeWebhook::event('checkout.session.completed', $obj,
                                    id => "evt_sig_ahead_$try");
    Time::HiRes::sleep(0.01) while Time::HiRes::time() - time > 0.1;
    $ahead = time + 302;
    $sig = StripeWebhook::sign($late, $current, $ahead);
    next if time > $ahead - 301;
    Time::HiRes::sleep(0.01) while time < $ahead - 301;
    $res = StripeWebhook::post($ngx, $late, $sig);
    last if time == $ahead - 301;
    $n++ if $res->{status} == 200;
    $logged++ if $res->{status} == 400;
    undef $res;
}
ok defined $res, 'a header signed 301 s ahead sent and answered in time';
refused($res // {}, 'signed 301 s ahead');

is events(), $n, 'none of them recorded anything';

my $log = $ngx->error_log_since($mark);
my @lines = $log =~ /(monetize: a Stripe webhook was refused: [^\n]*)/g;
is scalar(@lines), $logged, 'each refusal logged once' or diag $log;
like $log, qr/refused: no v1 signature matches a secret/, 'saying why';
like $log, qr/refused: the timestamp is older/, '... too old';
like $log, qr/refused: the timestamp is further ahead/, '... too new';
my ($hex) = $sig =~ /v1=([0-9a-f]+)/;
ok index($log, $current) < 0 && index($log, $old) < 0
   && index($log, $wrong) < 0 && index($log, $hex) < 0,
   'the log has no secret and no signature';

# Within the tolerance, either way: taken.
$res = StripeWebhook::send($ngx, $body, $current, timestamp => time - 290);
is $res->{status}, 200, 'signed 290 s ago: 200';
$body = StripeWebhook::event('checkout.session.completed', $obj);
$res = StripeWebhook::send($ngx, $body, $current, timestamp => time + 290);
is $res->{status}, 200, 'signed 290 s ahead: 200';

# Two v1 values, one right (as Stripe sends while a secret rolls).
$body = StripeWebhook::event('checkout.session.completed', $obj,
                             id => 'evt_sig_two');
my $t = time;
my ($bad) = StripeWebhook::sign($body, $wrong, $t) =~ /(v1=[0-9a-f]+)/;
my ($good) = StripeWebhook::sign($body, $current, $t) =~ /(v1=[0-9a-f]+)/;
$res = StripeWebhook::post($ngx, $body, "t=$t,$bad,$good");
is $res->{status}, 200, 'two v1 values, the second right: 200';
$res = StripeWebhook::post($ngx, $body, "t=$t,$bad,$bad");
refused($res, 'two v1 values, both wrong');

# The rotated secret (the second one configured, from the environment).
$body = StripeWebhook::event('checkout.session.completed', $obj,
                             id => 'evt_sig_rotated');
$res = StripeWebhook::send($ngx, $body, $old);
is $res->{status}, 200, 'signed with the older secret: 200';
is_deeply [Test::Monetize::psql(
        "SELECT count(*) FROM webhook_events"
        . " WHERE id IN ('evt_sig_two', 'evt_sig_rotated')")], [[2]],
    'both recorded';

# Signed, but not an event.
$res = StripeWebhook::send($ngx, '{"id": "x"', $current);
is_deeply [$res->{status}, $res->{json}{error}{code}], [400, 'invalid_json'],
    'signed, not JSON: 400 invalid_json';
$res = StripeWebhook::send($ngx, '{"id": "evt_no_type"}', $current);
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [400, 'invalid_request'], 'signed, no type: 400 invalid_request';

# Size: a signed event of nearly 1 MB is taken (nginx keeps it in its
# temporary file); one over 1 MB is 413 body_too_large.
my $pad = 'x' x (1024 * 1024 - 400);
$body = StripeWebhook::event('checkout.session.completed',
                             {%$obj, metadata => {pad => $pad}},
                             id => 'evt_sig_big');
ok length($body) <= 1024 * 1024, '(the event is at most 1 MB)';
$res = StripeWebhook::send($ngx, $body, $current);
is $res->{status}, 200, 'an event of nearly 1 MB: 200';
$body = StripeWebhook::event('checkout.session.completed',
                             {%$obj, metadata => {pad => $pad . ('y' x 500)}},
                             id => 'evt_sig_huge');
ok length($body) > 1024 * 1024, '(this one is over 1 MB)';
$res = StripeWebhook::send($ngx, $body, $current);
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [413, 'body_too_large'], 'over 1 MB: 413 body_too_large';
is_deeply [Test::Monetize::psql(
        "SELECT count(*) FROM webhook_events WHERE id = 'evt_sig_huge'")],
    [[0]], 'not recorded';

# monetize_stripe_tolerance: 10 s refuses what 300 s took.
$ngx->reload(http_config => "monetize_stripe_webhook_secret $current;"
                            . ' monetize_stripe_tolerance 10s;');
$body = StripeWebhook::event('checkout.session.completed', $obj);
refused(StripeWebhook::send($ngx, $body, $current, timestamp => time - 60),
        'tolerance 10s, signed 60 s ago');
$res = StripeWebhook::send($ngx, $body, $current);
is $res->{status}, 200, 'tolerance 10s, signed now: 200';

# Bad directives fail nginx -t, naming the directive.
my ($rc, $out) = Test::Monetize::nginx_t(
    http_config => 'monetize_stripe_webhook_secret env:MONETIZE_NO_SUCH_VAR;',
    config => 'location /v1/ { monetize_api; }');
ok $rc != 0 && $out =~ /\[emerg\].*monetize_stripe_webhook_secret:\ the
                          \ environment\ variable\ "MONETIZE_NO_SUCH_VAR"/x,
    'an unset env: secret: [emerg] naming the directive' or diag $out;
($rc, $out) = Test::Monetize::nginx_t(
    http_config => "monetize_stripe_webhook_secret $current;"
                   . ' monetize_stripe_tolerance soon;',
    config => 'location /v1/ { monetize_api; }');
ok $rc != 0
   && $out =~ /\[emerg\].*"monetize_stripe_tolerance" directive invalid value/,
    'a bad tolerance: [emerg] naming the directive' or diag $out;
