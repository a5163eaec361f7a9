# nginx.conf.example, which scripts/run serves, is a valid configuration
# for the modules as built; and, run here on ports of its own, it answers
# what nginx itself refuses in the contract's JSON, names a top-up page
# that exists, and keeps the customer's API key from the upstream.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $example = "$ENV{MONETIZE_REPO}/nginx.conf.example";

sub prefix {
    my $prefix = Test::Monetize::new_dir('example');
    mkdir "$prefix/$_" for qw(modules logs tmp);
    for my $so (qw(ngx_http_monetize_module.so
                   ngx_http_monetize_gate_module.so))
    {
        symlink "$ENV{MONETIZE_MODULES_DIR}/$so", "$prefix/modules/$so"
            or die $!;
    }
    return $prefix;
}

my $prefix = prefix();
my ($rc, $out, $err) = Test::Monetize::run_nginx(
    ['-t', '-p', "$prefix/", '-c', $example],
    env => { MONETIZE_PG_PASSWORD => 'x',
             MONETIZE_KEY_SECRET => '0123456789abcdef0123',
             MONETIZE_JWT_SECRET => '0123456789abcdef0123456789abcdef',
             MONETIZE_STRIPE_WEBHOOK_SECRET => 'whsec_005_example' });
$out .= $err;
is $rc, 0, 'nginx -t accepts nginx.conf.example' or diag $out;
like $out, qr/syntax is ok/, '... and says so';

($rc, $out, $err) = Test::Monetize::run_nginx(
    ['-t', '-p', "$prefix/", '-c', $example],
    env => { MONETIZE_PG_PASSWORD => 'x', MONETIZE_KEY_SECRET => undef,
             MONETIZE_JWT_SECRET => '0123456789abcdef0123456789abcdef',
             MONETIZE_STRIPE_WEBHOOK_SECRET => 'whsec_005_example' });
$out .= $err;
isnt $rc, 0, 'without its secret in the environment it is refused';
like $out, qr/\[emerg\].*monetize_key_secret: the environment variable "MONETIZE_KEY_SECRET" is not set/,
    '... with a line that says which';
Test::Monetize::sanitizer_check('nginx -t');


# --- the example, run: its PostgreSQL, Redis and ports made this test's ----

# The gated API's upstream is a backend that records what it is sent.
my $backend = Test::Monetize::Backend->start(sub {
    return (200, {'Content-Type' => 'application/json'}, '{"hello":1}');
});

my ($port, $demo) = (Test::Monetize::free_port(), Test::Monetize::free_port());
my $smtp = Test::Monetize::Smtp->start;
# the demo's Stripe, as scripts/run starts it, on a port of this test's:
# what its Pay button sends, signed with the secret that the example reads
# from the environment
$ENV{MONETIZE_STRIPE_WEBHOOK_SECRET} = 'whsec_005_example';
my $stripe = Test::Monetize::FakeStripe->start(
    key => 'sk_test_demo_placeholder_0000000000',
    webhook => "http://127.0.0.1:$port/v1/webhooks/stripe",
    webhook_secret => $ENV{MONETIZE_STRIPE_WEBHOOK_SECRET});
my $conf = do { local (@ARGV, $/) = $example; <> };
my %subst = (
    'port=5433' => "port=$ENV{MONETIZE_PG_PORT}",
    'dbname=monetize' => 'dbname=' . Test::Monetize::database(),
    '127.0.0.1:6380' => "127.0.0.1:$ENV{MONETIZE_REDIS_PORT}",
    'listen 127.0.0.1:8080' => "listen 127.0.0.1:$port",
    'server 127.0.0.1:8081' => 'server 127.0.0.1:' . $backend->port,
    'listen 127.0.0.1:8081' => "listen 127.0.0.1:$demo",
    'smtp://127.0.0.1:2525' => 'smtp://127.0.0.1:' . $smtp->port,
    'api_base=http://127.0.0.1:12111' => 'api_base=' . $stripe->url,
);
for my $from (sort keys %subst) {
    my $n = $conf =~ s/\Q$from\E/$subst{$from}/g;
    ok $n, "the example has $from";
}

my $ngx = Test::Monetize::Nginx->start(conf => $conf, port => $port,
                                       prefix => prefix(), workers => 2);
my $res = Test::Monetize::wait_until(5, sub {
    my $r = $ngx->request('GET', '/v1/health');
    $r->{status} == 200 && $r;
});
ok $res, 'the example serves /v1/health';


# What nginx refuses before any module runs, or answers itself: JSON
sub raw {
    my ($head, $body) = @_;
    return $ngx->request('GET', '/', raw => "$head\r\n\r\n" . ($body // ''));
}

my $host = "Host: localhost\r\nConnection: close";
for my $case (
    ['a NUL in the path', 400, 'invalid_request',
     raw("GET /v1/keys/%00 HTTP/1.1\r\n$host")],
    ['a space in the query', 400, 'invalid_request',
     raw("GET /v1/usage?from=a b HTTP/1.1\r\n$host")],
    ['Authorization given twice', 400, 'invalid_request',
     raw("GET /api/hello HTTP/1.1\r\n$host\r\n"
         . "Authorization: Bearer a\r\nAuthorization: Bearer a")],
    ['a header over 8k (494)', 400, 'invalid_request',
     raw("GET /v1/health HTTP/1.1\r\n$host\r\nX-Big: " . ('a' x 9000))],
    ['a URI over 8k', 414, 'invalid_request',
     raw('GET /v1/' . ('a' x 9000) . " HTTP/1.1\r\n$host")],
    ['a body over client_max_body_size', 413, 'body_too_large',
     raw("POST /v1/register HTTP/1.1\r\n$host\r\n"
         . "Content-Type: application/json\r\nContent-Length: 2000000")],
    ['an unknown Transfer-Encoding', 501, 'invalid_request',
     raw("POST /v1/register HTTP/1.1\r\n$host\r\n"
         . "Transfer-Encoding: gzip")],
    ['an HTTP version nginx does not speak', 505, 'invalid_request',
     raw("GET /v1/health HTTP/2.0\r\n$host")],
    ['a path outside the API', 404, 'not_found',
     raw("GET /nothing/here HTTP/1.1\r\n$host")],
    )
{
    my ($what, $status, $code, $r) = @$case;
    is_deeply [$r->{status}, $r->{headers}{'content-type'},
               $r->{json} && $r->{json}{error}{code}],
        [$status, 'application/json', $code], "$what: $status $code in JSON"
        or diag $r->{raw};
}

# The top-up page that a 402 names is there
my ($user, $key) = Test::Monetize::account();
$res = $ngx->request('POST', '/v1/use_credit',
                     headers => [Host => "localhost:$port",
                                 Authorization => "Bearer $key"],
                     json => {amount => 1});
my $url = $res->{json}{error}{top_up_url} // '';
is $res->{status}, 402, 'no credits: 402';
like $url, qr{\Ahttp://localhost:$port/}, '... whose top_up_url keeps the port'
    or diag $res->{body};
(my $path = $url) =~ s{\Ahttps?://[^/]+}{};
$res = $ngx->request('GET', $path);
is $res->{status}, 200, "... and names a page that is there ($path)";

# The upstream gets who called, not the customer's key
($user, $key) = Test::Monetize::account(credits => 10);
for my $header ('Authorization', 'X-API-Key') {
    $res = $ngx->request('GET', "/api/\L$header", headers =>
        [$header => $header eq 'X-API-Key' ? $key : "Bearer $key"]);
    is $res->{status}, 200, "a call with $header: 200" or diag $res->{body};
}
my @seen = map { [$_->{path}, $_->{headers}{authorization},
                  $_->{headers}{'x-api-key'}, $_->{headers}{'x-user-id'}] }
           $backend->requests;
is_deeply \@seen, [['/api/authorization', undef, undef, $user],
                   ['/api/x-api-key', undef, undef, $user]],
    'the upstream saw neither key, and X-User-Id';

# Credits are bought through the example's Stripe: a Checkout Session at
# the fake, for the account's customer, that returns to the portal's page
$res = $ngx->request('POST', '/v1/purchase_credits',
                     headers => [Authorization => "Bearer $key"],
                     json => {pack => 'small'});
is $res->{status}, 201, 'POST /v1/purchase_credits on the example: 201'
    or diag $res->{body};
like $res->{json}{checkout_url} // '', qr{\A\Q${\ $stripe->url}\E/pay/cs_},
    '... a checkout URL at the example\'s Stripe';
my ($session) = grep { $_->{path} eq '/v1/checkout/sessions' }
                $stripe->requests;
like $session->{form}{success_url} // '',
    qr{\Ahttp://127\.0\.0\.1:8080/portal/#billing\?checkout=success},
    '... returning to the portal on the example\'s public URL';

# Paying on the fake's page: its webhook reaches the example, which grants
sub balance {
    my ($row) = Test::Monetize::psql(
        'SELECT balance FROM balances WHERE user_id = $1', $_[0]);
    return $row->[0];
}
my $before = balance($user);
(my $pay = $res->{json}{checkout_url} // '') =~ s{\Ahttp://[^/]+}{};
my $paid = Test::Monetize::HTTP->new(port => $stripe->port, timeout => 30,
    raw => Test::Monetize::_build_request(method => 'POST', path => $pay,
                                          body => ''))->wait;
is $paid->{status}, 303, 'paying at the fake Stripe: 303 to the success URL';
is_deeply [map { [$_->{type}, $_->{status}] }
           $stripe->objects('deliveries')],
    [['checkout.session.completed', 200]],
    '... its webhook taken by the example (its secret from the environment)';
is balance($user), $before + 1000, '... and the pack granted';
Test::Monetize::reconcile();

# A registration's verification mail reaches the example's mail server
$res = $ngx->request('POST', '/v1/register',
                     json => {email => 'demo@example.com',
                              password => 'correct horse'});
is $res->{status}, 201, 'a registration on the example: 201';
my ($mail) = $smtp->wait_mails(1, 15);
like $mail // '', qr{^http://127\.0\.0\.1:8080/v1/auth/verify-email\?token=}m,
    '... and its mail, with the link on the example\'s public URL';
$ngx->stop;

done_testing;
