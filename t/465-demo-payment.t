# The demo's whole payment flow, as scripts/run serves it: the fake Stripe
# started with --webhook pays a Checkout Session when its page's Pay form is
# posted, sends the events Stripe would (signed as Stripe signs) to
# /v1/webhooks/stripe, and sends the browser to the session's success_url.
#
# A credit pack: POST /purchase_credits -> the fake's page (a Pay form) ->
# POST /pay/<id> -> 303 to the success URL -> the balance shows the pack; the
# form posted twice (the same events again) grants it once.
# A subscription: POST /billing/checkout -> the same -> the account is on
# the plan. The billing portal page links back to its return URL. Against a
# receiver that fails twice: the fake retries, each try signed anew.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Digest::SHA qw(hmac_sha256_hex);

plan tests => 30;

my $whsec = 'whsec_demo_payment_0123456789';
my $port = Test::Monetize::free_port();
my $fake = Test::Monetize::FakeStripe->start(key => 'sk_test_465',
    webhook => "http://127.0.0.1:$port/v1/webhooks/stripe",
    webhook_secret => $whsec);

my $ngx = Test::Monetize::Nginx->start(
    port => $port,
    workers => 2,
    config => 'location /v1/ { monetize_api; }',
    http_config => sprintf(<<'HTTP', $fake->port, $whsec, $port));
monetize_stripe secret_key=sk_test_465 api_base=http://127.0.0.1:%d
                timeout=3s;
monetize_stripe_webhook_secret %s;
monetize_public_url http://127.0.0.1:%d;
monetize_bcrypt_cost 4;
HTTP

sub api {
    my ($method, $path, $key, $json) = @_;
    return $ngx->request($method, $path,
        headers => [Authorization => "Bearer $key"],
        defined $json ? (json => $json) : ());
}

# a browser at the fake Stripe: a GET, or the Pay form's POST
sub browse {
    my ($method, $url) = @_;
    my ($path) = $url =~ m{\Ahttp://127\.0\.0\.1:\d+(/\S*)\z};
    return Test::Monetize::HTTP->new(port => $fake->port, timeout => 30,
        raw => Test::Monetize::_build_request(
            method => $method, path => $path // '/',
            $method eq 'POST'
                ? (headers => ['Content-Type'
                               => 'application/x-www-form-urlencoded'],
                   body => '')
                : ()))->wait;
}

sub balance {
    my ($user) = @_;
    my ($row) = Test::Monetize::psql(
        'SELECT balance FROM balances WHERE user_id = $1', $user);
    return $row->[0];
}

sub deliveries {
    my ($fake) = @_;
    return sort { $a->{at} <=> $b->{at} } $fake->objects('deliveries');
}

# the success_url that nginx gave Stripe for session $cs, filled in
sub success_url {
    my ($cs) = @_;
    my @all = grep { $_->{path} eq '/v1/checkout/sessions' }
              $fake->requests;
    my $url = $all[-1]{form}{success_url};
    $url =~ s/\{CHECKOUT_SESSION_ID\}/$cs/g;
    return $url;
}

# --- a credit pack ----------------------------------------------------------

my $reg = $ngx->request(POST => '/v1/register',
    json => {email => 'demo@example.com', password => 'correct horse'});
is $reg->{status}, 201, 'registered';
my ($user, $key) = ($reg->{json}{user}{id}, $reg->{json}{api_key});
my $before = balance($user);

my $buy = api(POST => '/v1/purchase_credits', $key, {pack => 'small'});
is $buy->{status}, 201, 'POST /purchase_credits: 201';
my $cs = $buy->{json}{session_id};
my $success = success_url($cs);
like $success, qr{\Ahttp://127\.0\.0\.1:$port/portal/.*\Q$cs\E},
    'the success URL is this server\'s portal, naming the session';

my $page = browse(GET => $buy->{json}{checkout_url});
is $page->{status}, 200, 'the checkout URL is the fake Stripe\'s page';
like $page->{body}, qr{<form method="post" action="/pay/\Q$cs\E">.*<button[^>]*>Pay</button>}s,
    '... with a Pay form that posts to /pay/<session>';
unlike $page->{body}, qr/<script/i, '... and no script';

is balance($user), $before, 'nothing granted before paying';

my $paid = browse(POST => $buy->{json}{checkout_url});
is $paid->{status}, 303, 'paying: 303';
is $paid->{headers}{location}, $success,
    '... to the success URL, the session id filled in';

my @d = deliveries($fake);
is_deeply [map { [$_->{type}, $_->{status}, $_->{attempt}] } @d],
    [['checkout.session.completed', 200, 1]],
    'the fake sent checkout.session.completed, and nginx took it';
is balance($user), $before + 1000, 'the balance shows the pack';

my ($session) = grep { $_->{id} eq $cs } $fake->objects('checkout_sessions');
is_deeply [@$session{qw(status payment_status)}], ['complete', 'paid'],
    'the session is complete and paid';

$paid = browse(POST => $buy->{json}{checkout_url});
is $paid->{status}, 303, 'the form posted again: 303 again';
@d = deliveries($fake);
is scalar(@d), 2, '... the event sent again';
is $d[1]{event}, $d[0]{event}, '... the same event (the same id)';
is $d[1]{status}, 200, '... and nginx answered 200';
is balance($user), $before + 1000, 'the pack was granted once';
is_deeply [Test::Monetize::psql(
    q{SELECT delta, reference FROM credit_ledger
       WHERE user_id = $1 AND kind = 'purchase'}, $user)],
    [[1000, "stripe:checkout:$cs"]], 'one purchase row in the ledger';

# --- a subscription ---------------------------------------------------------

Test::Monetize::psql(q{UPDATE plans SET stripe_price_id = 'price_starter'
                        WHERE id = 'starter'});
my $sub = api(POST => '/v1/billing/checkout', $key, {plan => 'starter'});
is $sub->{status}, 201, 'POST /billing/checkout: 201';
$cs = $sub->{json}{session_id};
$success = success_url($cs);

$paid = browse(POST => $sub->{json}{checkout_url});
is_deeply [$paid->{status}, $paid->{headers}{location}], [303, $success],
    'paying the subscription: 303 to its success URL';
@d = grep { $_->{at} > $d[-1]{at} } deliveries($fake);
is_deeply [map { [$_->{type}, $_->{status}] } @d],
    [['checkout.session.completed', 200],
     ['customer.subscription.created', 200],
     ['invoice.paid', 200]],
    '... the three events a subscription\'s checkout sends, each taken';

my ($plan) = Test::Monetize::psql(
    q{SELECT plan_id, status FROM subscriptions
       WHERE user_id = $1 AND stripe_subscription_id IS NOT NULL}, $user);
is_deeply $plan, ['starter', 'active'], 'the account is on starter, active';
my ($subscription) = $fake->objects('subscriptions');
is_deeply [map { $_->[0] } Test::Monetize::psql(
    q{SELECT stripe_subscription_id FROM subscriptions
       WHERE user_id = $1 AND stripe_subscription_id IS NOT NULL}, $user)],
    [$subscription->{id}], '... the subscription the fake made';

# --- the billing portal -----------------------------------------------------

my $portal = api(POST => '/v1/billing/portal', $key);
is $portal->{status}, 201, 'POST /billing/portal: 201';
my ($ps) = $fake->objects('portal_sessions');
$page = browse(GET => $portal->{json}{portal_url});
is $page->{status}, 200, 'the fake\'s billing portal page';
my $back = $ps->{return_url} // '';
$back =~ s/&/&amp;/g;
like $page->{body}, qr{<a href="\Q$back\E">}, '... links back to its return URL'
    or diag $page->{body};

Test::Monetize::reconcile();

# --- retries: a receiver that fails twice -----------------------------------

my $count = Test::Monetize::new_dir('receiver') . '/count';
my $receiver = Test::Monetize::Backend->start(sub {
    open my $fh, '>>', $count or die;
    print {$fh} "x";
    close $fh;
    return (-s $count <= 2 ? 500 : 200, {}, '');
});
my $fake2 = Test::Monetize::FakeStripe->start(key => 'sk_test_465',
    webhook => 'http://127.0.0.1:' . $receiver->port . '/hook',
    webhook_secret => $whsec);
my $mk = Test::Monetize::HTTP->new(port => $fake2->port, timeout => 10,
    raw => Test::Monetize::_build_request(method => 'POST',
        path => '/v1/checkout/sessions',
        headers => ['Authorization' => 'Bearer sk_test_465',
                    'Content-Type' => 'application/x-www-form-urlencoded'],
        body => 'mode=payment&success_url=http%3A%2F%2Fx.example%2Fok'
                . '%3Fs%3D%7BCHECKOUT_SESSION_ID%7D'
                . '&line_items[0][quantity]=1'
                . '&line_items[0][price_data][unit_amount]=500'))->wait;
my $s2 = $mk->{json}{id};
my $res = Test::Monetize::HTTP->new(port => $fake2->port, timeout => 30,
    raw => Test::Monetize::_build_request(method => 'POST',
                                          path => "/pay/$s2", body => ''))
    ->wait;
is_deeply [$res->{status}, $res->{headers}{location}],
    [303, "http://x.example/ok?s=$s2"],
    'a payment against a failing receiver still sends the browser on';
is_deeply [map { [$_->{attempt}, $_->{status}] } deliveries($fake2)],
    [[1, 500], [2, 500], [3, 200]], '... after the event was tried 3 times';
my @signed = map {
    my ($t, $v1) = $_->{headers}{'stripe-signature'} =~ /\At=(\d+),v1=([0-9a-f]{64})\z/;
    defined $v1 && $v1 eq hmac_sha256_hex("$t.$_->{body}", $whsec) ? 1 : 0
} $receiver->requests;
is_deeply \@signed, [1, 1, 1],
    '... each try signed: v1 the HMAC-SHA256 of "t.body" under the secret';
