# AWS STS, faked: t/lib/fake_sts.py on loopback, which checks each
# request's Signature Version 4 with python3-botocore. Stopped at END.
#
#   my $sts = FakeSts->start(access_key => ..., secret => ...,
#                            region => ...);
#   $sts->url (for endpoint=), ->requests (every STS request: {form,
#   headers, signed, status, issued}), ->fail($mode, $times) (mode
#   throttle|denied|expired|500|hang|garbage), ->reset, ->stop
package FakeSts;

use strict;
use warnings;
use IO::Socket::INET;
use POSIX ();
use Test::Monetize ();

my @Fakes;

sub start {
    my ($class, %o) = @_;
    my $self = bless {
        dir => Test::Monetize::new_dir('sts'),
        port => Test::Monetize::free_port(),
        access_key => $o{access_key} // 'AKIAMONETIZETEST0001',
        secret => $o{secret} // 'monetize/Secret+Access/Key0123456789abcd',
        region => $o{region} // 'eu-west-1',
    }, $class;
    push @Fakes, $self;
    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        open STDOUT, '>>', "$self->{dir}/sts.log";
        open STDERR, '>&', \*STDOUT;
        { exec '/usr/bin/python3', 't/lib/fake_sts.py',
               '--port', $self->{port}, '--access-key', $self->{access_key},
               '--secret', $self->{secret}, '--region', $self->{region} };
        POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    Test::Monetize::wait_until(20, sub {
        IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                              PeerPort => $self->{port}) })
        or die "the fake STS on $self->{port} does not answer\n";
    return $self;
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    local $?;
    kill 'TERM', $pid;
    waitpid $pid, 0;
}

sub url { "http://127.0.0.1:$_[0]{port}" }
sub port { $_[0]{port} }
sub access_key { $_[0]{access_key} }
sub secret { $_[0]{secret} }
sub region { $_[0]{region} }

sub _call {
    my ($self, $method, $path, $body) = @_;
    my %o = (method => $method, path => $path);
    $o{json} = $body if defined $body;
    my $res = Test::Monetize::HTTP->new(
        port => $self->{port}, timeout => 10,
        raw => Test::Monetize::_build_request(%o))->wait;
    die "fake STS $method $path: " . ($res->{error} // $res->{status})
        . "\n" if $res->{error};
    return $res;
}

sub requests { @{ $_[0]->_call(GET => '/_fake/requests')->{json} } }

sub fail {
    my ($self, $mode, $times) = @_;
    $self->_call(POST => '/_fake/fail',
                 { mode => "$mode", times => $times // 1 });
}

sub reset { $_[0]->_call(POST => '/_fake/reset') }

END { $_->stop for @Fakes }

1;
