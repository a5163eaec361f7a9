# A download is decided from its token alone: with PostgreSQL unreachable
# a valid token still downloads and a bad one is still refused, in JSON;
# error_page takes a refusal where the operator names one.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64url);

my $key = hmac_sha256('nginx-monetize download token v1',
                      $ENV{MONETIZE_KEY_SECRET});
sub forge {
    my ($product, $expires) = @_;
    my $payload = encode_base64url(
        "0b000000-0000-4000-8000-000000000000:$product:$expires");
    return "$payload." . encode_base64url(hmac_sha256($payload, $key));
}

my $prefix = Test::Monetize::new_dir('nginx');
mkdir "$prefix/files" or die;
open my $fh, '>', "$prefix/files/kit" or die;
print $fh "the kit\n";
close $fh;

my $dead = Test::Monetize::free_port();
my $ngx = Test::Monetize::Nginx->start(
    prefix => $prefix,
    postgres => "monetize_postgres \"hostaddr=127.0.0.1 port=$dead"
                . " dbname=x user=x\" pool=1 timeout=1s;",
    config => <<"EOF2");
location = /dl/kit {
    monetize_download on product=kit;
    alias $prefix/files/kit;
}
location = /dl/paged {
    monetize_download on product=paged;
    error_page 403 = /refused;
}
location = /refused {
    return 200 "see the shop\\n";
}
EOF2

my $res = $ngx->request(GET => '/dl/kit?token=' . forge('kit', time + 60));
is $res->{status}, 200, 'PostgreSQL down: a valid token downloads';
is $res->{body}, "the kit\n", '... the file';

$res = $ngx->request(GET => '/dl/kit?token=' . forge('kit', time - 60));
is $res->{status}, 403, '... an expired one is refused';
is $res->{json}{error}{code}, 'token_expired', '... token_expired, JSON';

$res = $ngx->request(GET => '/dl/paged?token=' . forge('kit', time + 60));
is $res->{status}, 200, 'error_page takes a refusal';
is $res->{body}, "see the shop\n", '... to its own page, not our JSON';

$ngx->stop;
like Test::Monetize::_slurp($ngx->error_log_file),
    qr/monetize: 1 downloads were not logged/,
    'the row PostgreSQL never took is reported when the worker goes';

done_testing;
