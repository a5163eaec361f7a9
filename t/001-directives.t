# Bad directives fail "nginx -t" with an EMERG line that names the directive
# and the bad value; good ones pass.

use strict;
use warnings;
use lib 't/lib';
use Test::Monetize;

plan tests => scalar blocks();
run_tests();

__DATA__

=== TEST 1: a complete configuration passes
--- http_config
    monetize_signup_credits 25;
    monetize_bcrypt_cost 10;
    monetize_key_prefix sk_test_;
    monetize_api_max_body 8k;
--- config
    location /v1/ { monetize_api; }
--- request
GET /v1/health
--- error_code: 200

=== TEST 2: a conninfo libpq cannot parse
--- postgres
    monetize_postgres "host=/tmp port=5432 nonsense" pool=2;
--- config
    location /v1/ { monetize_api; }
--- must_die
--- error_log
monetize_postgres: invalid conninfo

=== TEST 3: an unknown conninfo keyword
--- postgres
    monetize_postgres "host=/tmp colour=blue";
--- config
    location /v1/ { monetize_api; }
--- must_die
--- error_log
monetize_postgres: invalid conninfo: invalid connection option "colour"

=== TEST 4: a pool of zero connections
--- postgres
    monetize_postgres "host=/tmp dbname=x" pool=0;
--- config
    location /v1/ { monetize_api; }
--- must_die
--- error_log
monetize_postgres: invalid "pool=0", the pool takes 1 to 1024 connections

=== TEST 5: a timeout that is not a time
--- postgres
    monetize_postgres "host=/tmp dbname=x" timeout=soon;
--- config
    location /v1/ { monetize_api; }
--- must_die
--- error_log
monetize_postgres: invalid "timeout=soon", give a time such as timeout=5s

=== TEST 6: an unknown parameter
--- postgres
    monetize_postgres "host=/tmp dbname=x" pools=3;
--- config
    location /v1/ { monetize_api; }
--- must_die
--- error_log
monetize_postgres: invalid parameter "pools=3"

=== TEST 7: a password from an environment variable that is not set
--- postgres
    monetize_postgres "host=/tmp dbname=x password=env:MONETIZE_NO_SUCH_VAR";
--- config
    location /v1/ { monetize_api; }
--- must_die
--- error_log
monetize_postgres: the environment variable "MONETIZE_NO_SUCH_VAR" is not set

=== TEST 8: a host name that does not resolve
--- postgres
    monetize_postgres "host=no-such-host.invalid dbname=x";
--- config
    location /v1/ { monetize_api; }
--- must_die
--- error_log
monetize_postgres: host "no-such-host.invalid" not found

=== TEST 9: monetize_postgres given twice
--- http_config
    monetize_postgres "host=/tmp dbname=y";
--- config
    location /v1/ { monetize_api; }
--- must_die
--- error_log
"monetize_postgres" directive is duplicate

=== TEST 10: a key secret that is too short
--- key_secret
    monetize_key_secret short;
--- config
    location /v1/ { monetize_api; }
--- must_die
--- error_log
monetize_key_secret: the secret must have at least 16 characters

=== TEST 11: a key secret from an unset environment variable
--- key_secret
    monetize_key_secret env:MONETIZE_NO_SUCH_SECRET;
--- config
    location /v1/ { monetize_api; }
--- must_die
--- error_log
monetize_key_secret: the environment variable "MONETIZE_NO_SUCH_SECRET" is not set

=== TEST 12: monetize_api without a key secret
--- key_secret
--- config
    location /v1/ { monetize_api; }
--- must_die
--- error_log
monetize_api needs "monetize_key_secret" at http level

=== TEST 13: monetize_api without monetize_postgres
--- postgres
--- config
    location /v1/ { monetize_api; }
--- must_die
--- error_log
monetize_api needs "monetize_postgres" at http level

=== TEST 14: a key prefix with characters that cannot be in a key
--- http_config
    monetize_key_prefix "sk live!";
--- config
    location /v1/ { monetize_api; }
--- must_die
--- error_log
monetize_key_prefix: "sk live!" must be 1 to 32 letters, digits, "_" or "-"

=== TEST 15: a bcrypt cost out of range
--- http_config
    monetize_bcrypt_cost 3;
--- config
    location /v1/ { monetize_api; }
--- must_die
--- error_log
monetize_bcrypt_cost: invalid value "3", give a whole number from 4 to 31

=== TEST 16: negative signup credits
--- http_config
    monetize_signup_credits -5;
--- config
    location /v1/ { monetize_api; }
--- must_die
--- error_log
monetize_signup_credits: invalid value "-5", give a whole number from 0 to 1000000000

=== TEST 17: monetize_api takes no argument
--- config
    location /v1/ { monetize_api on; }
--- must_die
--- error_log
invalid number of arguments in "monetize_api" directive

=== TEST 18: monetize_api beside another content handler
--- config
    location /v1/ { proxy_pass http://127.0.0.1:1; monetize_api; }
--- must_die
--- error_log
"monetize_api" directive is duplicate, or the location has another content handler

=== TEST 19: http-level directives are refused in a location
--- config
    location /v1/ { monetize_signup_credits 5; monetize_api; }
--- must_die
--- error_log
"monetize_signup_credits" directive is not allowed here
