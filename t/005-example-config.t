# nginx.conf.example, which scripts/run serves, is a valid configuration
# for the modules as built.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

my $prefix = Test::Monetize::new_dir('example');
mkdir "$prefix/$_" for qw(modules logs tmp);
for my $so (qw(ngx_http_monetize_module.so ngx_http_monetize_gate_module.so)) {
    symlink "$ENV{MONETIZE_MODULES_DIR}/$so", "$prefix/modules/$so" or die $!;
}

my $conf = "$ENV{MONETIZE_REPO}/nginx.conf.example";
my ($rc, $out, $err) = Test::Monetize::run_nginx(
    ['-t', '-p', "$prefix/", '-c', $conf],
    env => { MONETIZE_PG_PASSWORD => 'x',
             MONETIZE_KEY_SECRET => '0123456789abcdef0123' });
$out .= $err;
is $rc, 0, 'nginx -t accepts nginx.conf.example' or diag $out;
like $out, qr/syntax is ok/, '... and says so';

($rc, $out, $err) = Test::Monetize::run_nginx(
    ['-t', '-p', "$prefix/", '-c', $conf],
    env => { MONETIZE_PG_PASSWORD => 'x', MONETIZE_KEY_SECRET => undef });
$out .= $err;
isnt $rc, 0, 'without its secret in the environment it is refused';
like $out, qr/\[emerg\].*monetize_key_secret: the environment variable "MONETIZE_KEY_SECRET" is not set/,
    '... with a line that says which';
Test::Monetize::sanitizer_check('nginx -t');

done_testing;
