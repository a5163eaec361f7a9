# monetize_portal serves the portal's three files from the module itself:
# the title put in (escaped), the right Content-Type, an ETag that a
# browser revalidates with (304), and on every answer a CSP without
# 'unsafe-inline' that forbids framing, nosniff and a Referrer-Policy.
# Bad parameters fail "nginx -t" with an EMERG naming the value.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

sub slurp {
    open my $fh, '<:raw', "$ENV{MONETIZE_REPO}/portal/$_[0]" or die "$_[0]: $!";
    local $/;
    return scalar <$fh>;
}

my $ngx = Test::Monetize::Nginx->start(
    config => 'location /v1/ { monetize_api; }'
              . ' location /portal/ {'
              . '   monetize_portal "title=Acme & Co <API>"; }'
              . ' location /p2/ { monetize_portal api=/v2/; }');

my %type = ('' => 'text/html; charset=utf-8',
            'index.html' => 'text/html; charset=utf-8',
            'portal.css' => 'text/css; charset=utf-8',
            'portal.js' => 'text/javascript; charset=utf-8');
my %etag;

for my $file (sort keys %type) {
    my $res = $ngx->request('GET', "/portal/$file");
    my $h = $res->{headers};
    is $res->{status}, 200, "GET /portal/$file: 200";
    is $h->{'content-type'}, $type{$file}, '... its Content-Type';
    my $csp = $h->{'content-security-policy'} // '';
    like $csp, qr/(^|; )default-src 'none'(;|$)/, '... a CSP: default none';
    like $csp, qr/(^|; )script-src 'self'(;|$)/, '... scripts of its own';
    like $csp, qr/(^|; )style-src 'self'(;|$)/, '... styles of its own';
    like $csp, qr/(^|; )frame-ancestors 'none'(;|$)/, '... never framed';
    unlike $csp, qr/unsafe-inline|unsafe-eval/, '... nothing unsafe';
    is $h->{'x-content-type-options'}, 'nosniff', '... nosniff';
    is $h->{'referrer-policy'}, 'no-referrer', '... no referrer';
    is $h->{'x-frame-options'}, 'DENY', '... X-Frame-Options for old ones';
    is $h->{'cache-control'}, 'no-cache', '... revalidated';
    like $h->{etag} // '', qr/^"[0-9a-f]{32}"$/, '... an ETag';
    is $h->{'content-length'}, length $res->{body}, '... Content-Length';
    $etag{$file} = $h->{etag};

    my $again = $ngx->request('GET', "/portal/$file",
                              headers => ['If-None-Match' => $h->{etag}]);
    is $again->{status}, 304, '... again with its ETag: 304';
    is $again->{body}, '', '... no body';

    $again = $ngx->request('GET', "/portal/$file",
                           headers => ['If-None-Match' => '"stale"']);
    is $again->{status}, 200, '... with another ETag: 200';
}

is $ngx->request('GET', '/portal/portal.js')->{body}, slurp('portal.js'),
    'portal.js is the file of the sources';
is $ngx->request('GET', '/portal/portal.css')->{body}, slurp('portal.css'),
    'portal.css too';

my $page = $ngx->request('GET', '/portal/')->{body};
(my $want = slurp('index.html'))
    =~ s/\{\{title\}\}/Acme &amp; Co &lt;API&gt;/g;
$want =~ s/\{\{api\}\}/\/v1\//g;
is $page, $want, 'the page: the title, escaped, and the API path put in';
unlike $page, qr/\{\{/, '... no placeholder left';
is $ngx->request('GET', '/portal/index.html')->{body}, $page,
    '/portal/index.html is the same page';

# the page as served is valid HTML5 (html5lib's strict parser stops at the
# first parse error); what the script draws is checked by t/511
my $dir = Test::Monetize::new_dir('html');
Test::Monetize::_spew("$dir/page.html", $page);
my ($rc5, $out5, $err5) = Test::Monetize::_run(
    ['/usr/bin/python3', '-c',
     'import sys, html5lib; html5lib.HTMLParser(strict=True)'
     . '.parse(open(sys.argv[1], "rb"))', "$dir/page.html"]);
is $rc5, 0, 'the page is valid HTML (html5lib, strict)' or diag $err5;
Test::Monetize::_spew("$dir/bad.html", "<!DOCTYPE html><p><div></span>");
($rc5) = Test::Monetize::_run(
    ['/usr/bin/python3', '-c',
     'import sys, html5lib; html5lib.HTMLParser(strict=True)'
     . '.parse(open(sys.argv[1], "rb"))', "$dir/bad.html"]);
isnt $rc5, 0, '... a check that refuses a page that is not';

my $p2 = $ngx->request('GET', '/p2/');
like $p2->{body}, qr{<title>API portal</title>}, 'the default title';
like $p2->{body}, qr{<meta name="monetize-api" content="/v2/">}, 'api=/v2/';
isnt $p2->{headers}{etag}, $etag{''}, '... another page, another ETag';
is $ngx->request('GET', '/p2/portal.js')->{headers}{etag},
    $etag{'portal.js'}, '... the same script, the same ETag';

my $res = $ngx->request('HEAD', '/portal/');
is_deeply [$res->{status}, $res->{body}], [200, ''], 'HEAD: 200, no body';

$res = $ngx->request('POST', '/portal/', json => {});
is $res->{status}, 405, 'POST: 405';

for my $path ('/portal/nope.js', '/portal/x/portal.jsx', '/portal/.env') {
    is $ngx->request('GET', $path)->{status}, 404, "GET $path: 404";
}

my @bad = (
    ['monetize_portal title=;', qr/monetize_portal: invalid "title="/],
    ["monetize_portal \"title=a\tb\";", qr/monetize_portal: invalid "title=a/],
    ['monetize_portal title=' . ('x' x 201) . ';',
     qr/monetize_portal: invalid "title=x+", give title=TEXT of 1 to 200/],
    ['monetize_portal colour=blue;',
     qr/monetize_portal: invalid parameter "colour=blue"/],
    ['monetize_portal api=v1;', qr/monetize_portal: invalid "api=v1"/],
    ['monetize_portal api=https://evil.example/;',
     qr/monetize_portal: invalid "api=https:\/\/evil.example\/"/],
    ['monetize_portal api=//evil.example/;',
     qr/monetize_portal: invalid "api=\/\/evil.example\/"/],
    ['monetize_portal; monetize_portal;',
     qr/"monetize_portal" directive is duplicate/],
    ['monetize_api; monetize_portal;',
     qr/"monetize_portal" directive is duplicate, or the location has/],
);

for my $case (@bad) {
    my ($rc, $out) = Test::Monetize::nginx_t(
        config => "location /portal/ { $case->[0] }");
    isnt $rc, 0, "refused: $case->[0]";
    like $out, qr/\[emerg\].*$case->[1]/, '... with an EMERG naming it';
}

my ($rc, $out) = Test::Monetize::nginx_t(
    config => 'location /portal/ { monetize_portal "title=My API" api=/v1/; }');
is $rc, 0, 'title= and api= pass' or diag $out;

done_testing;
