# The identity provider of the JWKS tests (t/60x): keys and tokens made by
# python3-jwt and python3-cryptography (t/lib/jwks_tool.py), and a fake
# provider on loopback that serves the JWKS published last. Its mode:
# "ok", "down" (503) or "hang" (answers nothing until the mode changes).
package Idp;

use strict;
use warnings;
use Test::Monetize;

our $ISSUER = 'https://idp.example.test/pool-1';
our $AUDIENCE = 'client-abc';

sub tool {
    my @args = @_;
    open my $fh, '-|', 'sh', '-c', 'exec /usr/bin/python3 "$@"',
        'sh', 't/lib/jwks_tool.py', @args or die "python3: $!";
    local $/;
    my $out = <$fh>;
    close $fh;
    die "jwks_tool.py @args[0, 1]: $?" if $?;
    return $out =~ s/\s+\z//r;
}

sub start {
    my ($class, %o) = @_;
    my $dir = Test::Monetize::new_dir('idp');
    Test::Monetize::_spew("$dir/mode", 'ok');
    Test::Monetize::_spew("$dir/jwks.json", '{"keys":[]}');
    my $be = Test::Monetize::Backend->start(sub {
        my ($req) = @_;
        my $mode;
        while (($mode = Test::Monetize::_slurp("$dir/mode")) eq 'hang') {
            select undef, undef, undef, 0.1;
        }
        return (503, {}, "down\n") if $mode eq 'down';
        return (404, {}, "no\n") unless $req->{path} eq '/jwks';
        return (200, {'Content-Type' => 'application/json'},
                Test::Monetize::_slurp("$dir/jwks.json"));
    });
    return bless { dir => $dir, be => $be,
                   issuer => $o{issuer} // $ISSUER }, $class;
}

sub dir { $_[0]{dir} }
sub issuer { $_[0]{issuer} }
sub url { "http://127.0.0.1:$_[0]{be}->{port}/jwks" }
sub fetches { scalar grep { $_->{path} eq '/jwks' } $_[0]{be}->requests }
sub mode { Test::Monetize::_spew("$_[0]{dir}/mode", $_[1]) }
sub serve { Test::Monetize::_spew("$_[0]{dir}/jwks.json", $_[1]) }
sub stop { $_[0]{be}->stop }

# a new private key
sub key {
    my ($self, $kid, $alg) = @_;
    tool('key', $self->{dir}, $kid, $alg);
}

# the JWKS served from now on: "kid", or "kid:alg:use" ("-": left out)
sub publish {
    my ($self, @specs) = @_;
    my $jwks = tool('jwks', $self->{dir}, @specs);
    Test::Monetize::_spew("$self->{dir}/jwks.json.tmp", $jwks);
    rename "$self->{dir}/jwks.json.tmp", "$self->{dir}/jwks.json" or die;
    return $jwks;
}

# a token; claims default to a good one of our issuer and audience
sub token {
    my ($self, $kid, $alg, $claims, $header) = @_;
    my %c = (iss => $self->{issuer}, aud => $AUDIENCE, sub => 'user-1',
             iat => 'now', exp => 'now+300', %{$claims // {}});
    delete @c{grep { !defined $c{$_} } keys %c};
    return tool('sign', $self->{dir}, $kid, $alg, JSON::PP::encode_json(\%c),
                JSON::PP::encode_json($header // {}));
}

sub http_config {
    my ($self, %o) = @_;
    my $extra = join ' ', map { "$_=$o{$_}" } sort keys %o;
    return "monetize_jwks url=" . $self->url
         . " issuer=$self->{issuer} audience=$AUDIENCE $extra;";
}

1;
