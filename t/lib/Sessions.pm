# Helpers of the session tests (t/32x): an account made through the API,
# a login, and the independent JWT implementation (python3-jwt) through
# t/lib/jwt_tool.py.
package Sessions;

use strict;
use warnings;
use JSON::PP;

our $SECRET = 'test-jwt-secret-0123456789abcdef-0123456789';
our $HTTP = "monetize_bcrypt_cost 4;\n"
          . "monetize_jwt_secret $SECRET;";
our $NO_LIMIT = 'monetize_api_limit off;';
our $API = 'location /v1/ { monetize_api; }';

sub pyjwt {
    my @args = @_;
    # its reason for a refusal is not the test's output
    open my $fh, '-|', 'sh', '-c', 'exec /usr/bin/python3 "$@" 2>/dev/null',
        'sh', 't/lib/jwt_tool.py', @args or die "python3: $!";
    local $/;
    my $out = <$fh>;
    close $fh;
    return $? == 0 ? $out =~ s/\s+\z//r : undef;
}

# claims and header of a token, checked by python3-jwt; undef if refused
sub decode {
    my ($token, $secret) = @_;
    my $out = pyjwt('decode', $secret // $SECRET, $token);
    return defined $out ? decode_json($out) : undef;
}

# a token made by python3-jwt
sub encode {
    my ($claims, %o) = @_;
    return pyjwt('encode', $o{secret} // $SECRET, $o{alg} // 'HS256',
                 encode_json($claims));
}

sub register {
    my ($ngx, $email, $password) = @_;
    my $res = $ngx->request('POST', '/v1/register',
        json => {email => $email, password => $password // 'correct horse'});
    die "register $email: $res->{status}" unless $res->{status} == 201;
    return $res->{json};
}

sub login {
    my ($ngx, $email, $password) = @_;
    return $ngx->request('POST', '/v1/auth/login',
        json => {email => $email, password => $password // 'correct horse'});
}

sub bearer {
    my ($ngx, $method, $path, $token, %o) = @_;
    return $ngx->request($method, $path,
                         headers => {Authorization => "Bearer $token"}, %o);
}

1;
