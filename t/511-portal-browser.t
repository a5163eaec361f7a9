# The portal in headless Chromium (t/lib/portal_browser.py): a new
# customer signs up, opens the link of the mail, resets the password
# through the mail, logs in, creates a key, calls the gated API with it
# (outside the browser), sees the calls in the chart, stays logged in past
# the access token's life (the refresh token in its HttpOnly cookie),
# rotates and revokes the key; sees Downloads in the menu only once its
# plan has a product, gets a download link (the bytes fetched outside the
# browser, a download_logs row; a plan that lost the product is told so in
# words); buys a credit pack (to the fake Stripe's
# Checkout and back; Stripe's signed webhook arrives, and the page shows
# the new balance), opens the billing portal; a stolen refresh token
# reused revokes the family and the browser must log in again; logs out.
# An operator grants credits and suspends the account, and the customer's
# next gated call is refused. Every page is checked as valid HTML and saved
# as screenshots (desktop and phone) under the test's directory; the
# console must show no CSP violation.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;
use Sessions;
use JSON::PP;

my $TTL = 3;        # the access token's life, seconds
my $CREDITS = 100;  # monetize_signup_credits
my $WHSEC = 'whsec_portal_test_0123456789';

# the file of a product the customer's plan includes (the browser inserts
# the product, for the free plan); one of another plan's, never listed
my $files = Test::Monetize::new_dir('files');
my $product = 'cli-tool';
my $content = join '', map { chr(32 + ($_ * 7) % 95) } 1 .. 54321;
open my $fh, '>', "$files/$product" or die "$files/$product: $!";
print $fh $content;
close $fh;
Test::Monetize::psql("INSERT INTO products (id, name, source, plans)"
                     . " VALUES ('pro-tool', 'Pro tool', '/srv/pro.zip',"
                     . " '{professional}')");

my $smtp = Test::Monetize::Smtp->start;
my $stripe = Test::Monetize::FakeStripe->start;
my $port = Test::Monetize::free_port();
my $ngx = Test::Monetize::Nginx->start(
    port => $port,
    http_config => $Sessions::HTTP
        . "\nmonetize_jwt_ttl access=${TTL}s;\n"
        . "monetize_signup_credits $CREDITS;\n"
        . "monetize_require_verified_email on;\n"
        . 'monetize_smtp smtp://127.0.0.1:' . $smtp->port
        . " from=noreply\@example.com timeout=5s;\n"
        . "monetize_public_url http://127.0.0.1:$port;\n"
        . "monetize_portal_url http://127.0.0.1:$port/portal/;\n"
        . 'monetize_stripe secret_key=' . $stripe->key
        . ' api_base=' . $stripe->url . " timeout=5s;\n"
        . "monetize_stripe_webhook_secret $WHSEC;\n"
        . 'monetize_cache zone=keys:1m ttl=3600s;',
    api_limit => $Sessions::NO_LIMIT,
    config => <<'CONF' . <<"CONF2");
    location /v1/ { monetize_api; monetize_session_cookie on insecure; }
    location /portal/ { monetize_portal "title=Example API"; }
    location /api/ {
        monetize_gate on;
        monetize_cost 1;
        proxy_pass http://127.0.0.1:$server_port/backend/;
    }
    location /backend/ { return 200 "ok\n"; }
CONF
    location ~ ^/downloads/(?<product>[A-Za-z0-9._-]+)\$ {
        monetize_download on product=\$product;
        alias $files/\$product;
    }
CONF2

# the operator: an account made admin as scripts/admin does
my $admin = Sessions::register($ngx, 'root@example.com', 'operator password');
Test::Monetize::psql('UPDATE users SET is_admin = true, email_verified = true'
                     . ' WHERE id = $1', $admin->{user}{id});

my $shots = Test::Monetize::new_dir('screenshots');
my $email = 'ada@example.com';

# the browser's psql (products changed as the page is open) needs this
%ENV = (%ENV, %{Test::Monetize::_pg_env()});

# bounded: one browser, and at most four minutes of it
open my $py, '-|', 'timeout', '-k', '10', '240', '/usr/bin/python3',
    't/lib/portal_browser.py', '--base', "http://127.0.0.1:$port",
    '--mail', $smtp->dir . '/mail', '--shots', $shots, '--email', $email,
    '--admin', 'root@example.com', '--ttl', $TTL, '--credits', $CREDITS,
    '--stripe', $stripe->url, '--webhook-secret', $WHSEC,
    '--psql', JSON::PP->new->canonical->encode(Test::Monetize::_psql_cmd(
        Test::Monetize::database(), '-t', '--csv')),
    '--product', $product, '--file', "$files/$product"
    or die "python3: $!";
my $lines = 0;
while (my $line = <$py>) {
    chomp $line;
    if ($line =~ /^(not )?ok - ([^\t]*)(?:\t(.*))?$/) {
        ok !$1, $2 or diag $3 // '';
        $lines++;
    } else {
        diag $line;
    }
}
close $py;
is $? >> 8, 0, 'the browser run ends well (not killed by the timeout)';
cmp_ok $lines, '>=', 72, 'every check of the browser ran';
diag "screenshots in $shots";

my ($user) = Test::Monetize::psql(
    'SELECT id, email_verified, suspended_at IS NOT NULL FROM users'
    . ' WHERE email = $1', $email);
is_deeply [@$user[1, 2]], ['t', 't'], 'the customer: verified, suspended';

my ($rt) = Test::Monetize::psql(
    'SELECT count(*), count(*) FILTER (WHERE spent_at IS NOT NULL'
    . '                                    OR revoked_at IS NOT NULL)'
    . '  FROM refresh_tokens WHERE user_id = $1', $user->[0]);
cmp_ok $rt->[0], '>=', 2, 'the session was refreshed (a new refresh token)';
is $rt->[1], $rt->[0], '... and every refresh token is spent or revoked'
    . ' (logged out, suspended)';

my ($ledger) = Test::Monetize::psql(
    'SELECT sum(delta) FROM credit_ledger'
    . ' WHERE user_id = $1 AND kind = \'grant\'', $user->[0]);
is $ledger->[0], 25, 'the operator\'s grant is in the ledger';
my ($bought) = Test::Monetize::psql(
    'SELECT sum(delta), count(*) FROM credit_ledger'
    . ' WHERE user_id = $1 AND kind = \'purchase\'', $user->[0]);
is_deeply $bought, [1000, 1], 'the pack bought: one purchase of 1000';

# the download through the link: a row of download_logs (a worker writes
# its rows once a second)
my $dl;
for (1 .. 50) {
    ($dl) = Test::Monetize::psql(
        'SELECT count(*), coalesce(sum(bytes), 0), min(status)'
        . '  FROM download_logs WHERE user_id = $1 AND product_id = $2',
        $user->[0], $product);
    last if $dl->[0] > 0;
    select undef, undef, undef, 0.2;
}
is_deeply $dl, [1, length $content, 200],
    'the download is logged: one row, its bytes, 200';

Test::Monetize::reconcile();

done_testing;
