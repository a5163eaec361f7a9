package StripeWebhook;

# Stripe's webhooks as the tests send them: events built here in Stripe's
# shape (id, object "event", created, type, data.object), signed by
# Stripe's own library (npm's "stripe", generateTestHeaderString, through
# t/lib/stripe_sign.js), posted to /v1/webhooks/stripe.
#
#   my $body = StripeWebhook::event('invoice.paid', {...}, created => $t);
#   my $sig = StripeWebhook::sign($body, $secret, $timestamp);
#   my $res = StripeWebhook::post($ngx, $body, $sig);
#   my $res = StripeWebhook::send($ngx, $body, $secret);   # signed now
#   my $h = StripeWebhook::start($ngx, $body, $sig); ... $h->wait;

use strict;
use warnings;

use IPC::Open3 ();
use JSON::PP ();
use Symbol ();

my $Json = JSON::PP->new->utf8->canonical;
my $Seq = 0;

sub _repo { $ENV{MONETIZE_REPO} // '.' }

sub event {
    my ($type, $object, %o) = @_;
    $Seq++;
    return $Json->encode({
        id => $o{id} // sprintf('evt_test_%d_%d_%d', $$, time, $Seq),
        object => 'event',
        api_version => '2024-06-20',
        created => $o{created} // time,
        livemode => JSON::PP::false,
        type => $type,
        data => {object => $object},
    });
}

# The header Stripe would send: its library, not ours, computes it.
sub sign {
    my ($body, $secret, $timestamp) = @_;
    local $ENV{NODE_PATH} = $ENV{MONETIZE_NODE_PATH}
        // die "StripeWebhook: MONETIZE_NODE_PATH is not set (scripts/test "
               . "sets it)\n";
    my ($in, $out) = (Symbol::gensym, Symbol::gensym);
    my $pid = IPC::Open3::open3($in, $out, undef, 'node',
                                _repo() . '/t/lib/stripe_sign.js',
                                $secret, $timestamp // time);
    binmode $in;
    print {$in} $body;
    close $in;
    my $header = do { local $/; <$out> };
    waitpid $pid, 0;
    die "StripeWebhook: stripe_sign.js failed ($?)\n" if $? || !$header;
    return $header;
}

# Sends, returns at once: ->wait gives the answer (Test::Monetize's HTTP).
sub start {
    my ($ngx, $body, $signature, %o) = @_;
    return $ngx->start_request('POST', $o{path} // '/v1/webhooks/stripe',
        headers => ['Content-Type' => 'application/json',
                    'Stripe-Signature' => $signature],
        body => $body, timeout => $o{timeout} // 10);
}

sub post {
    my ($ngx, $body, $signature, %o) = @_;
    return $ngx->request('POST', $o{path} // '/v1/webhooks/stripe',
        headers => ['Content-Type' => 'application/json',
                    defined $signature
                        ? ('Stripe-Signature' => $signature) : ()],
        body => $body, timeout => $o{timeout} // 10);
}

sub send {
    my ($ngx, $body, $secret, %o) = @_;
    return post($ngx, $body, sign($body, $secret, $o{timestamp}), %o);
}

1;
