# POST /purchase_credits {"pack"}: a Checkout Session in mode payment for
# the caller's one Stripe customer, as Stripe's API names its fields
# (priced from the pack, or its stripe_price_id), with the metadata the
# webhook grants from, the return URLs, an Idempotency-Key made of what the
# POST is for, the secret key and the pinned Stripe-Version. A client that
# retries with its Idempotency-Key gets the same session; the same key for
# another pack is 409. A session token is a credential as a key is.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Sessions;

my $fake = Test::Monetize::FakeStripe->start(key => 'sk_test_441');

my ($alice, $A) = Test::Monetize::account(email => 'alice@example.com');
my ($bob, $B) = Test::Monetize::account(email => 'bob@example.com');
# The registration's job would make the customer too (sql/012's trigger):
# these accounts' are marked done, so that Stripe sees only this test's.
Test::Monetize::psql('UPDATE jobs SET done_at = now()');

my $ngx = Test::Monetize::Nginx->start(
    config => 'location /v1/ { monetize_api; }',
    http_config => sprintf(
        "monetize_stripe secret_key=sk_test_441 api_base=http://127.0.0.1:%d"
        . " timeout=3s;\nmonetize_public_url https://shop.example/base;\n"
        . $Sessions::HTTP, $fake->port));


sub call {
    my ($method, $path, $key, $json, @h) = @_;
    return $ngx->request($method, $path,
        headers => [($key ? (Authorization => "Bearer $key") : ()), @h],
        defined $json ? (json => $json) : ());
}

sub header {
    my ($req, $name) = @_;
    my ($k) = grep { lc $_ eq lc $name } keys %{$req->{headers}};
    return defined $k ? $req->{headers}{$k} : undef;
}

# what Stripe was sent since the last look
my $seen = 0;
sub sent {
    my @all = $fake->requests;
    my @new = @all[$seen .. $#all];
    $seen = @all;
    return @new;
}

# A pack priced from its row: price_data.
my $res = call(POST => '/v1/purchase_credits', $A, {pack => 'small'});
is $res->{status}, 201, 'POST /purchase_credits: 201' or diag explain $res;
like $res->{json}{session_id}, qr/\Acs_test_/, '... the session id';
is $res->{json}{checkout_url},
    sprintf('http://127.0.0.1:%d/pay/%s', $fake->port,
            $res->{json}{session_id}),
    '... and the URL Stripe answered';
my $first = $res->{json}{session_id};

my @reqs = sent();
is_deeply [map { "$_->{method} $_->{path}" } @reqs],
    ['POST /v1/customers', 'POST /v1/checkout/sessions'],
    'Stripe saw the customer made, then the session';
my ($customer) = Test::Monetize::psql(
    'SELECT stripe_customer_id FROM users WHERE id = $1', $alice);
like $customer->[0], qr/\Acus_/, 'the customer is the account\'s';

my $s = $reqs[1];
is_deeply $s->{form}, {
    'mode' => 'payment',
    'customer' => $customer->[0],
    'client_reference_id' => $alice,
    'metadata[user_id]' => $alice,
    'metadata[pack]' => 'small',
    'metadata[credits]' => '1000',
    'line_items[0][quantity]' => '1',
    'line_items[0][price_data][currency]' => 'usd',
    'line_items[0][price_data][unit_amount]' => '1000',
    'line_items[0][price_data][product_data][name]' => '1,000 credits',
    'success_url' => 'https://shop.example/base/portal/#billing?checkout='
                     . 'success&session_id={CHECKOUT_SESSION_ID}',
    'cancel_url' => 'https://shop.example/base/portal/#billing?checkout='
                    . 'cancel',
}, 'the session\'s form, as Stripe names its fields';
like header($s, 'Idempotency-Key'), qr/\Apack-\Q$alice\E-req_[0-9a-f]{32}\z/,
    '... an Idempotency-Key of the account and the request';
is header($s, 'Authorization'), 'Bearer sk_test_441', '... the secret key';
ok header($s, 'Stripe-Version'), '... a pinned Stripe-Version';

# A pack with its own Stripe price; the credits are the pack's now.
Test::Monetize::psql("UPDATE credit_packs SET stripe_price_id = 'price_m',"
                     . " credits = 12000 WHERE id = 'medium'");
$res = call(POST => '/v1/purchase_credits', $A, {pack => 'medium'});
is $res->{status}, 201, 'a pack with a stripe_price_id: 201';
@reqs = sent();
is_deeply [map { "$_->{method} $_->{path}" } @reqs],
    ['POST /v1/checkout/sessions'], '... the customer is not made again';
is_deeply [map { $reqs[0]{form}{$_} } 'line_items[0][price]',
           'metadata[credits]', 'metadata[pack]'],
    ['price_m', '12000', 'medium'], '... the price, the pack\'s credits';
ok !grep({ /price_data/ } keys %{$reqs[0]{form}}), '... and no price_data';
isnt $res->{json}{session_id}, $first, '... a new session';

# The client's Idempotency-Key: its retry is the same session.
my @r = map { call(POST => '/v1/purchase_credits', $A, {pack => 'large'},
                   'Idempotency-Key' => 'order-77') } 1 .. 2;
is_deeply [map { $_->{status} } @r], [201, 201],
    'a retried POST with the same Idempotency-Key: 201 twice';
is $r[0]{json}{session_id}, $r[1]{json}{session_id}, '... one session';
is_deeply [map { header($_, 'Idempotency-Key') } sent()],
    ["pack-$alice-order-77", "pack-$alice-order-77"],
    '... the key Stripe saw is the client\'s, scoped to the account';
is scalar(grep { $_->{client_reference_id} eq $alice }
          $fake->objects('checkout_sessions')), 3,
    '... Stripe made one session of the two (three in all)';

# The same key from another account is another session.
$res = call(POST => '/v1/purchase_credits', $B, {pack => 'large'},
            'Idempotency-Key' => 'order-77');
is $res->{status}, 201, 'the same key, another account: 201';
isnt $res->{json}{session_id}, $r[0]{json}{session_id}, '... its own session';

# The same key for another pack: Stripe refuses it; 409.
$res = call(POST => '/v1/purchase_credits', $A, {pack => 'small'},
            'Idempotency-Key' => 'order-77');
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [409, 'idempotency_conflict'],
    'the same Idempotency-Key for another pack: 409 idempotency_conflict';

# The top_up_url of a 402 is this endpoint (monetize_top_up_url's default).
$res = call(POST => '/v1/use_credit', $B, {amount => 1});
my $top_up = $res->{json}{error}{top_up_url} // '';
is_deeply [$res->{status}, $top_up],
    [402, 'http://localhost/v1/purchase_credits'],
    'a 402 names /v1/purchase_credits';
(my $path = $top_up) =~ s{\Ahttps?://[^/]+}{};
$res = call(POST => $path, $B, {pack => 'small'});
is $res->{status}, 201, '... where the client buys a pack: 201';

# A session token is a credential as a key is.
Sessions::register($ngx, 'carol@example.com');
my $token = Sessions::login($ngx, 'carol@example.com')->{json}{access_token};
$res = call(POST => '/v1/purchase_credits', $token, {pack => 'small'});
is $res->{status}, 201, 'with a session token: 201';
is +($fake->requests)[-1]{form}{'metadata[user_id]'},
    (Test::Monetize::psql('SELECT id FROM users WHERE email = $1',
                          'carol@example.com'))[0][0],
    '... for the token\'s account';

unlike Test::Monetize::_slurp($ngx->error_log_file), qr/sk_test_441/,
    'the secret key is never logged';

unlike Test::Monetize::_slurp($ngx->error_log_file),
    qr/\[(?:alert|crit)\]|exited on signal/, 'no worker crashed, nothing alerted';
$ngx->stop;
$fake->stop;
done_testing;
