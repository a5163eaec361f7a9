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
my $out = `MONETIZE_PG_PASSWORD=x MONETIZE_KEY_SECRET=0123456789abcdef0123 \\
           $ENV{MONETIZE_NGINX} -t -p $prefix/ -c $conf 2>&1`;
is $?, 0, 'nginx -t accepts nginx.conf.example' or diag $out;
like $out, qr/syntax is ok/, '... and says so';

$out = `env -u MONETIZE_KEY_SECRET MONETIZE_PG_PASSWORD=x \\
        $ENV{MONETIZE_NGINX} -t -p $prefix/ -c $conf 2>&1`;
isnt $?, 0, 'without its secret in the environment it is refused';
like $out, qr/\[emerg\].*monetize_key_secret: the environment variable "MONETIZE_KEY_SECRET" is not set/,
    '... with a line that says which';

done_testing;
