# The whole way a new customer goes, with monetize_require_verified_email
# on: register (201 at once) → login 403 email_not_verified, and the gate
# 403 too → the mail arrives at a real SMTP server → its link verifies the
# address → login 200, and the same key passes the gate.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Sessions;

plan tests => 10;

my $smtp = Test::Monetize::Smtp->start;
my $be = Test::Monetize::Backend->start(sub {
    return (200, {'Content-Type' => 'text/plain'}, "served\n");
});

my $ngx = Test::Monetize::Nginx->start(
    http_config => $Sessions::HTTP
        . "\nmonetize_require_verified_email on;\n"
        . 'monetize_smtp smtp://127.0.0.1:' . $smtp->port
        . " from=noreply\@example.com timeout=5s;\n"
        . "monetize_public_url https://api.example.com;\n"
        . 'monetize_cache zone=keys:1m ttl=3600s;',
    api_limit => $Sessions::NO_LIMIT,
    config => <<"CONF");
    location /v1/ { monetize_api; }
    location /api/ {
        monetize_gate on;
        monetize_cost 0;
        proxy_pass http://127.0.0.1:@{[ $be->port ]};
    }
CONF

my $reg = Sessions::register($ngx, 'grace@example.com');
my $key = $reg->{api_key};
ok $key, 'registered, with a key';

my $res = Sessions::login($ngx, 'grace@example.com');
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [403, 'email_not_verified'], 'login before verifying: 403';

$res = $ngx->request('GET', '/api/x', headers => {'X-API-Key' => $key});
is_deeply [$res->{status}, $res->{json}{error}{code}],
    [403, 'email_not_verified'], 'the gate before verifying: 403';

my @mails = $smtp->wait_mails(1, 15);
is scalar(@mails), 1, 'the verification mail arrives';

my ($path) = ($mails[0] // '') =~
    m{^https://api\.example\.com(/v1/auth/verify-email\?token=[A-Za-z0-9_-]+)\r$}m;
ok $path, 'it carries the link';

$res = $ngx->request('GET', $path // '/v1/auth/verify-email?token=none');
is $res->{status}, 200, 'following the link: 200';
like $res->{body}, qr/verified/i, '... a page that says so';

$res = Sessions::login($ngx, 'grace@example.com');
is $res->{status}, 200, 'login after verifying: 200';
ok $res->{json}{access_token}, '... with an access token';

$res = $ngx->request('GET', '/api/x', headers => {'X-API-Key' => $key});
is $res->{status}, 200, 'the gate after verifying: 200';
