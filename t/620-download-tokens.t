# Download tokens: POST /downloads/token gives one to an account whose plan
# includes the product; "monetize_download on product=..." lets a download
# through only with a valid token of that product, from the token alone.
# Tokens are made here too, by an independent implementation of the
# format (README, "Downloads"): valid, tampered, expired, for another
# product, another user's, signed with another secret.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64url decode_base64url);

my $sql = \&Test::Monetize::psql;

$sql->("INSERT INTO products (id, name, source, plans, active) VALUES"
       . " ('starter-kit', 'Starter kit', '/srv/kit.bin',"
       . "  '{starter,professional}', true),"
       . " ('pro-tool', 'Pro tool', 'http://files.internal/pro.zip',"
       . "  '{professional}', true),"
       . " ('retired', 'Old tool', '/srv/old.bin', '{starter}', false)");

my ($alice, $A) = Test::Monetize::account(plan => 'professional');
my ($bob, $B) = Test::Monetize::account(plan => 'starter');
my ($carol, $C) = Test::Monetize::account();             # free
my ($dave, $D) = Test::Monetize::account(plan => 'professional',
                                         suspended => 1);

my $prefix = Test::Monetize::new_dir('nginx');
mkdir "$prefix/files" or die;
my %file = ('pro-tool' => join('', map { chr(65 + $_ % 26) } 1 .. 12345),
            'starter-kit' => 'k' x 100000);
for my $p (keys %file) {
    open my $fh, '>', "$prefix/files/$p" or die;
    print $fh $file{$p};
    close $fh;
}

my $ngx = Test::Monetize::Nginx->start(
    prefix => $prefix,
    http_config => 'monetize_download_url http://downloads.example.com/dl/;',
    config => <<"EOF2");
location /v1/ { monetize_api; }
location ~ ^/dl/(?<product>[A-Za-z0-9._-]+)\$ {
    monetize_download on product=\$product;
    alias $prefix/files/\$product;
    add_header X-Download-User \$monetize_download_user;
}
EOF2

sub api {
    my ($method, $path, $key, $json) = @_;
    return $ngx->request($method, "/v1$path",
        headers => [Authorization => "Bearer $key"],
        defined $json ? (json => $json) : ());
}

sub dl {
    my ($product, $token, %o) = @_;
    return $ngx->request(GET => "/dl/$product"
                                . (defined $token ? "?token=$token" : ''),
                         headers => $o{headers} // []);
}

# the format, written here from the README
my $key = hmac_sha256('nginx-monetize download token v1',
                      $ENV{MONETIZE_KEY_SECRET});
sub forge {
    my ($user, $product, $expires, $k) = @_;
    my $payload = encode_base64url("$user:$product:$expires");
    return "$payload." . encode_base64url(hmac_sha256($payload, $k // $key));
}


# --- the products an account may download ---------------------------------

my $res = api(GET => '/downloads', $A);
is $res->{status}, 200, 'GET /downloads: 200';
is_deeply $res->{json}, {products => [{id => 'pro-tool', name => 'Pro tool'},
                                      {id => 'starter-kit',
                                       name => 'Starter kit'}]},
    '... the products of the plan, not the retired one, no source';
is_deeply api(GET => '/downloads', $B)->{json}{products},
    [{id => 'starter-kit', name => 'Starter kit'}], 'starter: its one';
is_deeply api(GET => '/downloads', $C)->{json}{products}, [],
    'free: none';


# --- POST /downloads/token --------------------------------------------------

$res = api(POST => '/downloads/token', $A, {product => 'pro-tool'});
is $res->{status}, 201, 'POST /downloads/token: 201';
my $tok = $res->{json}{token};
like $tok, qr/\A[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}\z/,
    '... a token: payload.signature, base64url';
is $res->{json}{url}, "http://downloads.example.com/dl/pro-tool?token=$tok",
    '... the URL: monetize_download_url, the product, ?token=';
is $res->{json}{product}, 'pro-tool', '... the product';
my ($payload) = split /\./, $tok;
my ($u, $p, $exp) = split /:/, decode_base64url($payload);
is "$u:$p", "$alice:pro-tool", '... bound to the user and the product';
cmp_ok abs($exp - time - 86400), '<=', 5, '... expiring in 24 h';
my @t = gmtime $exp;
is $res->{json}{expires_at},
    sprintf('%04d-%02d-%02dT%02d:%02d:%02dZ', $t[5] + 1900, $t[4] + 1,
            @t[3, 2, 1, 0]),
    '... expires_at says when, ISO 8601 UTC';

$res = api(POST => '/downloads/token', $B, {product => 'pro-tool'});
is $res->{status}, 403, 'a plan without the product: 403';
is $res->{json}{error}{code}, 'subscription_required',
    '... subscription_required';
$res = api(POST => '/downloads/token', $C, {product => 'starter-kit'});
is $res->{json}{error}{code}, 'subscription_required',
    'the free plan: subscription_required';

$res = api(POST => '/downloads/token', $A, {product => 'no-such'});
is $res->{status}, 422, 'an unknown product: 422';
is_deeply $res->{json}{error}{fields}, {product => 'no such product'},
    '... naming the field';
is api(POST => '/downloads/token', $B, {product => 'retired'})->{status},
    422, 'a retired product: 422 too';
$res = api(POST => '/downloads/token', $A, {});
is $res->{status}, 422, 'no product: 422';
is $res->{json}{error}{fields}{product}, 'is required', '... required';
$res = api(POST => '/downloads/token', $A, {product => 'x' x 65});
is $res->{status}, 422, 'a product id too long: 422';
$res = api(POST => '/downloads/token', $D, {product => 'pro-tool'});
is $res->{status}, 403, 'a suspended account: 403';
is $res->{json}{error}{code}, 'account_suspended', '... account_suspended';
is $ngx->request(POST => '/v1/downloads/token',
                 json => {product => 'pro-tool'})->{status}, 401,
    'no credentials: 401';


# --- downloads -------------------------------------------------------------

my $mark = $ngx->error_log_mark;
my $admitted = 0;

$res = dl('pro-tool', $tok);
is $res->{status}, 200, 'a valid token: 200';
ok $res->{body} eq $file{'pro-tool'}, '... the file';
is $res->{headers}{'x-download-user'}, $alice,
    '... $monetize_download_user is its user';
$admitted++;

$res = dl('pro-tool', undef, headers => ['X-Download-Token' => $tok]);
is $res->{status}, 200, 'the token in X-Download-Token: 200';
$admitted++;

$res = dl('pro-tool', $tok, headers => [Range => 'bytes=100-199']);
is $res->{status}, 206, 'a range: 206';
is length $res->{body}, 100, '... its 100 bytes';
$admitted++;

my $mine = forge($bob, 'starter-kit', time + 60);
$res = dl('starter-kit', $mine);
is $res->{status}, 200, 'a token made from the README\'s format: 200';
$admitted++;

sub refused {
    my ($res, $code, $what) = @_;
    subtest $what => sub {
        is $res->{status}, 403, 'status 403';
        is $res->{headers}{'content-type'}, 'application/json', 'JSON';
        is $res->{json}{error}{code}, $code, $code;
        unlike $res->{body}, qr/<html/i, 'not nginx\'s page';
    };
}

refused(dl('pro-tool', undef), 'invalid_token', 'no token');
refused(dl('pro-tool', "$tok", headers => ['X-Download-Token' => $mine]),
        'invalid_token', 'a query and a header that disagree');

my $flip = sub {
    my ($s, $i) = @_;
    substr($s, $i, 1) = substr($s, $i, 1) eq 'A' ? 'B' : 'A';
    return $s;
};
refused(dl('pro-tool', $flip->($tok, 5)), 'invalid_token',
        'a payload tampered with');
refused(dl('pro-tool', $flip->($tok, length($tok) - 3)), 'invalid_token',
        'a signature tampered with');
refused(dl('pro-tool', substr($tok, 0, -1)), 'invalid_token',
        'a signature cut short');
refused(dl('pro-tool', 'garbage'), 'invalid_token', 'no token at all');

refused(dl('starter-kit', $tok), 'invalid_token',
        'a token for another product (the account may have both)');

# bob's own token for starter-kit, with alice's id put in: not signed so
my ($bp, $bs) = split /\./, forge($bob, 'starter-kit', time + 3600);
my $stolen = encode_base64url("$alice:starter-kit:" . (time + 3600))
             . ".$bs";
refused(dl('starter-kit', $stolen), 'invalid_token',
        'another user\'s token, with the user changed');
refused(dl('pro-tool', forge($alice, 'pro-tool', time + 3600,
                             hmac_sha256('x', 'another secret'))),
        'invalid_token', 'signed under another secret');
refused(dl('pro-tool', forge($alice, 'pro-tool', time - 1)),
        'token_expired', 'expired');
refused(dl('pro-tool', forge($alice, 'pro-tool', time - 86400 * 30)),
        'token_expired', 'expired long ago');
like dl('pro-tool', forge($alice, 'pro-tool', time - 1))->{json}{error}
        {message}, qr{POST /downloads/token}, '... saying how to get another';

$ngx->wait_for_log('download of "pro-tool" refused: the token has expired',
                   since => $mark);
# nginx's own context of each line shows the request line, ?token= with
# it (README: send the header where logs matter); ours never shows it
my @ours = map { /(monetize: .*?), client:/ ? $1 : () }
           split /\n/, $ngx->error_log_since($mark);
cmp_ok scalar(@ours), '>=', 10, 'each refusal logged';
is_deeply [grep { /\Q$payload\E|[A-Za-z0-9_-]{43}/ } @ours], [],
    '... without the token';


# --- every download let through, in download_logs -------------------------

my $rows = Test::Monetize::wait_until(5, sub {
    my @r = $sql->('SELECT user_id, product_id, address, bytes, status'
                   . ' FROM download_logs ORDER BY id');
    @r >= $admitted ? \@r : undef;
});
is_deeply $rows,
    [[$alice, 'pro-tool', '127.0.0.1', 12345, 200],
     [$alice, 'pro-tool', '127.0.0.1', 12345, 200],
     [$alice, 'pro-tool', '127.0.0.1', 100, 206],
     [$bob, 'starter-kit', '127.0.0.1', 100000, 200]],
    'download_logs: each download let through, with its bytes, once'
    or diag explain $rows;
is_deeply [$sql->('SELECT count(*) FROM download_logs'
                  . ' WHERE downloaded_at > now() - interval \'1 minute\''
                  . '   AND downloaded_at <= now()')],
    [[4]], '... at the time of the download';


# --- a suspended account's tokens work until they expire (README) ----------

$sql->('UPDATE users SET suspended_at = now() WHERE id = $1', $alice);
is api(POST => '/downloads/token', $A, {product => 'pro-tool'})->{status},
    403, 'suspended: no new token';
is dl('pro-tool', $tok)->{status}, 200,
    '... the one it has still downloads (no database trip)';

$ngx->stop;

done_testing;
