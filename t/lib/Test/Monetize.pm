package Test::Monetize;

=head1 NAME

Test::Monetize - the project's small Test::Nginx-style test harness

=head1 SYNOPSIS

    use lib 't/lib';
    use Test::Monetize;

    plan tests => scalar blocks();     # one (sub)test per block
    run_tests();

    __DATA__

    === TEST 1: the health check answers
    --- config
        location /v1/ { monetize_api; }
    --- request
    GET /v1/health
    --- error_code: 200
    --- response_json
    {"status": "ok", "postgres": "ok"}

Run the tests with C<scripts/test> (or C<scripts/test t/010-foo.t>): it
starts PostgreSQL and Redis and sets the environment this module reads
(MONETIZE_NGINX, MONETIZE_MODULES_DIR, MONETIZE_PG_HOST, MONETIZE_PG_PORT,
MONETIZE_PG_USER, MONETIZE_PG_PASSWORD, MONETIZE_PG_TEMPLATE,
MONETIZE_PG_DIR, MONETIZE_REDIS_PORT, MONETIZE_REDIS_DIR,
MONETIZE_KEY_SECRET, MONETIZE_TMP, MONETIZE_REPO). Only core Perl is used.

=head1 BLOCKS

C<run_tests()> reads the test file's C<__DATA__>. A block starts with
C<=== title>; each section with C<--- name>, its value on the lines below
(blank lines around it are dropped) or inline as C<--- name: value>.
After the name, C<eval> evaluates the value as Perl (a string, or an
arrayref for several requests) and C<chomp> drops its final newline.
Each block is one subtest.

  main_config           directives at main level
  http_config           directives at http level
  config                directives in the server block (the locations)
  workers               worker_processes (default 1)
  log_level             error_log level (default info)
  postgres              replaces the whole monetize_postgres line
  key_secret            replaces the whole monetize_key_secret line
  api_limit             replaces the whole monetize_api_limit line; by
                        default "monetize_api_limit off;", since every test
                        calls from 127.0.0.1
  no_monetize           no load_module, monetize_postgres nor
                        monetize_key_secret lines (stock nginx only)
  request               "METHOD /path [HTTP/1.x]"; the lines below it are
                        the body, sent with Content-Length (its final
                        newline is not sent). With eval, an arrayref of such
                        strings sends several requests in turn; the checks
                        below then take an arrayref too (one per request)
                        or a plain value (the same for all).
  more_headers          "Name: value" per line
  timeout               seconds for each request (default 10)
  error_code            the expected status (default 200)
  response_body         the exact body
  response_body_like    a regex (//s) the body must match
  response_headers      "Name: value" per line, exact; "!Name": absent
  response_headers_like "Name: regex" per line
  response_json         a JSON document that the response's must contain:
                        every key given, deep, with that value (extra keys
                        allowed; arrays match element by element and have
                        the same length; numbers, strings, booleans and null
                        are told apart); a string "re:REGEX" is a regex
  sql                   SQL run after the request(s) in this file's database
  sql_result            its rows, fields separated by tabs (NULL as empty)
  error_log             lines each a string that must appear in the error
                        log during this block (waits up to 5 s for it);
                        with eval, an arrayref of strings and qr//s
  no_error_log          strings that must not appear. Default when absent:
                        [alert], [emerg], [crit]. "exited on signal" and
                        "segfault" are always checked.
  must_die              nginx -t must fail; error_log is then matched
                        against its stderr
  ONLY, SKIP, LAST      run only the ONLY blocks; skip this block; stop
                        after this block

$TEST_NGINX_SERVER_PORT, $TEST_NGINX_PREFIX, $TEST_NGINX_DB,
$TEST_NGINX_PG_HOST, $TEST_NGINX_PG_PORT and $TEST_NGINX_REDIS_PORT are
replaced in every section (and any other $TEST_NGINX_* from %ENV).

The blocks of a file share one nginx prefix, one port and one database. A
block whose generated nginx.conf is the same as the previous block's reuses
the running nginx; otherwise nginx is stopped and started afresh.

Each file gets a database of its own, created from MONETIZE_PG_TEMPLATE on
first use and dropped at the end; all nginx, backends and psql sessions the
file started are stopped then, even when the test dies.

=head1 PERL API

  Test::Monetize::database()        this file's database (created on use)
  Test::Monetize::psql($sql, @bind) rows as arrayrefs (NULL as undef);
                                    $1, $2... in $sql are bound as literals
                                    (psql variables, no SQL injection)
  my $s = Test::Monetize::psql_session();   # a psql kept open
  $s->query($sql)                   sends, waits, returns the rows
  $s->send($sql)                    sends, returns at once (the statement
                                    may block, e.g. on a lock)
  $s->done                          have all statements sent completed?
  $s->wait(timeout => 10, allow_error => 0)  waits for them, returns rows;
                                    dies on an ERROR unless allow_error
  $s->errors; $s->close
  my ($user_id, @keys) = Test::Monetize::account(%o);
                                    # an account made in SQL, with API keys
                                    # the test knows (only their HMACs are
                                    # stored): email, id, keys => N or
                                    # [keys], key_ids, key_names, credits
                                    # (granted in the ledger), plan (an
                                    # active subscription), suspended,
                                    # revoked, expires_in (seconds)
  Test::Monetize::pg_stop(), pg_start()  stop/start the cluster that all
                                    test files share: a file that does this
                                    must not run beside others (prove -j)
  my $redis = Test::Monetize::Redis->start(args => [...], auth => [...]);
                                    # a private redis-server on a free port,
                                    # for tests that stop or hang it:
                                    # ->port, ->dir, ->pid, ->stop,
                                    # ->restart, ->cli(@args)
  my $smtp = Test::Monetize::Smtp->start(auth => 'user:pass');
                                    # a mail sink on a free port (AUTH
                                    # required with auth)
                                    # (scripts/lib/smtp_sink.py, aiosmtpd)
                                    # writing each mail to a file: ->port,
                                    # ->dir, ->mails (raw texts, in order),
                                    # ->wait_mails($n, $seconds), ->stop,
                                    # ->restart (same port)
  my $stripe = Test::Monetize::FakeStripe->start(key => 'sk_test_x');
                                    # t/lib/fake_stripe.py on a free port:
                                    # ->port, ->url (for api_base=), ->key,
                                    # ->requests (every /v1/ request:
                                    # {method, path, headers, form, status,
                                    # at}), ->objects('customers'),
                                    # ->fail(path, mode, times, %o) (mode
                                    # 500|429|409|400|402|404|hang|drop),
                                    # ->reset, ->event($type, $id, %over)
                                    # (a hashref; ->event_json: its text),
                                    # ->stop, ->restart (same port);
                                    # with webhook => URL, webhook_secret
                                    # => S, paying at /pay/ sends the
                                    # events, signed, to URL
                                    # (->objects('deliveries'): each try)
  Test::Monetize::redis_cli(@args)  output (lines in list context); Redis
                                    too is shared: use keys of your own
  Test::Monetize::nginx_t(%conf)    (exit code, output) of nginx -t
  Test::Monetize::free_port()
  Test::Monetize::new_dir($name)    a fresh directory under this file's dir
  Test::Monetize::json_match($expected, $got)  undef, or where they differ
  Test::Monetize::wait_until($seconds, sub { ... })  polls until the sub
                                    returns true; returns its last value

  my $ngx = Test::Monetize::Nginx->start(config => ..., http_config => ...,
      main_config => ..., workers => 2, log_level => 'debug',
      no_monetize => 1, postgres => ..., key_secret => ..., api_limit => ...,
      port => ...);
      # or conf => the whole nginx.conf (error_log logs/error.log and
      # pid logs/nginx.pid in it; port => the port that request() calls)
  my $res = $ngx->request('POST', '/v1/register',
      headers => {...} or [name => value, ...], body => '...' or
      json => {...}, timeout => 10, protocol => 'HTTP/1.0', raw => $bytes);
      # {status, headers (lowercase names; repeats joined by ", "),
      #  header_list ([name, value]...), body, json (or undef), error
      #  (connect/timeout/malformed, else undef), seq, done_at, elapsed}
  my @res = $ngx->parallel([[GET => '/a'], {method => 'POST',
      path => '/b', body => 'x'}], concurrency => 50);
      # results in input order; seq is 1..N in order of completion
  my $h = $ngx->start_request('GET', '/slow');    # returns at once
  $h->done;                         # finished yet? (does not block)
  my $res = $ngx->finish_request($h);             # or $h->wait
  my $first = Test::Monetize::wait_any($h1, $h2); # the first to finish
  $ngx->error_log_mark; $ngx->error_log_since($mark);
  $ngx->wait_for_log('text' or qr/re/, since => $mark, timeout => 5);
  $ngx->reload(%conf);              # %conf over the options so far; waits
                                    # for the new workers and (unless
                                    # wait_old => 0) the old ones' exit;
                                    # dies if the new config is refused
  $ngx->stop; $ngx->pids (master, then its children); $ngx->worker_pids;
  $ngx->port; $ngx->prefix;

  my $be = Test::Monetize::Backend->start(sub {
      my ($req) = @_;               # {method, uri, path, query, headers,
                                    #  body}
      return (200, {'Content-Type' => 'text/plain'}, "hello");
  });
  $be->port; $be->requests;         # what it was sent, in arrival order
  $be->stop;

The backend serves each connection in a process of its own, so a handler
may block (for example until a file appears) without holding up others.
Requests are recorded before the handler runs.

=head1 FILES AND PROCESSES

Everything of a test file lives in MONETIZE_TMP/NAME.PID/: block/ (the
prefix of the block runner's nginx), nginx-N/ (Perl API instances),
nginx-t-N/, backend-N/. It is removed when the file passes and kept when it
fails (or with MONETIZE_KEEP=1). nginx runs as root with its workers as
nobody, so these directories are world-readable.

Waiting is polling with a timeout, never a fixed sleep.

=head1 SANITIZERS

With MONETIZE_SANITIZE=1 (C<MONETIZE_SANITIZE=1 scripts/test>, which
builds the modules with AddressSanitizer and UBSan), every nginx runs with
the runtimes preloaded (MONETIZE_SANITIZE_PRELOAD, the LD_PRELOAD that
scripts/test sets), ASAN_OPTIONS writing ASan's reports to sanitizer/ in
the file's directory, and UBSAN_OPTIONS; nginx.conf keeps them for the
workers with C<env>. UBSan writes to stderr: nginx's error log, or what
run_nginx captures. After each nginx stops, and after each block, a
report written since the last look (a file there, a "runtime error:" in
an error log or on stderr) fails the test and is printed. Options of
your own in ASAN_OPTIONS/UBSAN_OPTIONS come first (log_path stays ours).

  Test::Monetize::nginx_env()       the environment an nginx runs with
                                    (a hashref; empty without sanitizers)
  Test::Monetize::run_nginx(\@args, env => {...})
                                    (exit code, stdout, stderr) of the
                                    nginx binary with @args; env values
                                    undef unset a variable
  Test::Monetize::sanitizer_check($what)   a failing test, with the
                                    reports, if any was written since the
                                    last look; else true and no test

=cut

use strict;
use warnings;

use Test::More;
use B ();
use Errno ();
use Exporter 'import';
use File::Path ();
use File::Temp ();
use IO::Select;
use IO::Socket::INET;
use IPC::Open3 ();
use JSON::PP ();
use POSIX ();
use Symbol ();
use Time::HiRes ();

our @EXPORT = (@Test::More::EXPORT, qw(run_tests blocks));

our $PG_BIN = '/usr/lib/postgresql/15/bin';

my $OwnerPid = $$;
my $Json = JSON::PP->new->utf8->canonical->allow_nonref;

my ($FileDir, $Db, $PgStopped, $Blocks, $BlockNginx, $BlockPort);
my $BlockStarts = 0;
my (%UsedPorts, %DirCount);
our (@Nginxes, @Backends, @Sessions);

$SIG{PIPE} = 'IGNORE';
# exit, not die: a die could be caught by an eval. exit runs END, which
# stops what the file started.
$SIG{INT} //= sub { exit 130 };
$SIG{TERM} //= sub { exit 143 };


# ---------------------------------------------------------------------------
# Environment, files, processes

sub _env {
    my ($name) = @_;
    my $v = $ENV{$name};
    return $v if defined $v && length $v;
    die "Test::Monetize: $name is not set: run the tests with scripts/test\n";
}


sub _file_id {
    my $id = $0;
    $id =~ s{.*/}{};
    $id =~ s{\.t\z}{};
    $id =~ s{[^A-Za-z0-9_-]}{_}g;
    return $id;
}


sub _mkdir {
    for my $d (@_) {
        File::Path::make_path($d);
        chmod 0755, $d;       # nginx's workers run as nobody
    }
}


sub _file_dir {
    $FileDir //= do {
        my $d = _env('MONETIZE_TMP') . '/' . _file_id() . ".$$";
        _mkdir($d);
        $d;
    };
    return $FileDir;
}


sub new_dir {
    my ($name) = @_;
    my $d = _file_dir() . "/$name-" . ++$DirCount{$name};
    _mkdir($d);
    return $d;
}


my $Accounts = 0;

sub account {
    my (%o) = @_;
    $Accounts++;
    my $email = $o{email} // "account$Accounts\@example.com";
    my @keys = ref $o{keys} ? @{$o{keys}}
             : map { sprintf 'sk_live_%08d%08d%016d', $$, $Accounts, $_ }
               1 .. ($o{keys} // 1);

    my ($user) = map { $_->[0] } psql(
        "INSERT INTO users (id, email, password_hash, suspended_at)"
        . " VALUES (coalesce(\$1::uuid, gen_random_uuid()), \$2, 'x',"
        . "         CASE WHEN \$3 = 't' THEN now() END) RETURNING id",
        $o{id}, $email, $o{suspended} ? 't' : 'f');

    for my $i (0 .. $#keys) {
        require Digest::SHA;
        psql("INSERT INTO api_keys (id, user_id, key_hash, prefix, name,"
             . "                    revoked_at, expires_at)"
             . " VALUES (coalesce(\$1::uuid, gen_random_uuid()), \$2, \$3,"
             . "         \$4, coalesce(\$5, 'default'),"
             . "         CASE WHEN \$6 = 't' THEN now() END,"
             . "         now() + (\$7 || ' seconds')::interval)",
             $o{key_ids} && $o{key_ids}[$i], $user,
             Digest::SHA::hmac_sha256_hex($keys[$i],
                                          _env('MONETIZE_KEY_SECRET')),
             substr($keys[$i], 0, 12), $o{key_names} && $o{key_names}[$i],
             $o{revoked} ? 't' : 'f', $o{expires_in} // 86400 * 365);
    }

    psql("SELECT monetize_credit(\$1, \$2, 'admin', \$3)", $user,
         $o{credits}, "fixture:$user") if $o{credits};

    psql("INSERT INTO subscriptions (user_id, plan_id, status)"
         . " VALUES (\$1, \$2, 'active')", $user, $o{plan}) if $o{plan};

    return ($user, @keys);
}


# The money checks that must hold after any test of the gate, as one
# subtest: every account's balance is the sum of its ledger; every debit is
# a call the gate admitted with credits, at its cost; every write-off gives
# back a debit of a voided call, in full; no debit is given back twice
# (refund and write-off together); no void's reference was ever debited;
# and every request id in served => [...] (those the upstream saw) was
# admitted exactly once, debited or covered by the quota (or past it, as
# overage: sql/015), and never voided.
sub reconcile {
    my (%o) = @_;
    my @served = @{$o{served} // []};

    Test::More::subtest('reconciliation: the ledger, the balances and the '
                        . 'calls agree' => sub {
        eval { _reconcile(@served); 1 }
            or Test::More::fail('the reconciliation ran')
            or Test::More::diag($@);
    });
}


sub _reconcile {
    my (@served) = @_;
    my ($bad) = psql(
        "SELECT count(*) FROM balances b"
        . " WHERE b.balance <> coalesce((SELECT sum(l.delta)"
        . "   FROM credit_ledger l WHERE l.user_id = b.user_id), 0)");
    my ($orphans) = psql(
        "SELECT count(DISTINCT l.user_id) FROM credit_ledger l"
        . " WHERE NOT EXISTS (SELECT 1 FROM balances b"
        . "                    WHERE b.user_id = l.user_id)");
    Test::More::is($bad->[0] + $orphans->[0], 0,
                   'every balance is the sum of its ledger');

    ($bad) = psql(
        "SELECT count(*) FROM credit_ledger l"
        . " WHERE l.kind = 'debit' AND NOT EXISTS ("
        . "   SELECT 1 FROM gate_calls c WHERE c.reference = l.reference"
        . "      AND c.user_id = l.user_id AND c.outcome = 'credits'"
        . "      AND c.cost = -l.delta)");
    Test::More::is($bad->[0], 0,
                   'every debit is an admitted call, at its cost');

    ($bad) = psql(
        "SELECT count(*) FROM credit_ledger w"
        . " WHERE w.kind = 'write_off' AND NOT EXISTS ("
        . "   SELECT 1 FROM credit_ledger d JOIN gate_calls c"
        . "       ON c.reference = d.reference"
        . "    WHERE d.reference = w.metadata->>'debit'"
        . "      AND d.kind = 'debit' AND d.delta = -w.delta"
        . "      AND w.reference = 'write_off:' || d.reference"
        . "      AND c.voided_at IS NOT NULL)");
    Test::More::is($bad->[0], 0,
                   'every write-off gives back a voided debit in full');

    ($bad) = psql(
        "SELECT count(*) FROM (SELECT l.metadata->>'debit'"
        . "   FROM credit_ledger l"
        . "  WHERE l.kind IN ('refund', 'write_off')"
        . "  GROUP BY 1 HAVING count(*) > 1) AS twice");
    Test::More::is($bad->[0], 0, 'no debit is given back twice');

    ($bad) = psql(
        "SELECT count(*) FROM gate_calls c JOIN credit_ledger l"
        . "    ON l.reference = c.reference"
        . " WHERE c.outcome = 'void'");
    Test::More::is($bad->[0], 0, "no void's reference was debited");

    return unless @served;

    my %admitted = map { $_->[0] => $_ } psql(
        "SELECT substr(c.reference, 6), c.outcome, c.voided_at IS NULL,"
        . "       (SELECT count(*) FROM credit_ledger l"
        . "         WHERE l.reference = c.reference"
        . "           AND l.kind = 'debit'),"
        . "       sign(c.cost)"
        . "  FROM gate_calls c WHERE c.reference LIKE 'call:%'");
    my @wrong = grep {
        my $c = $admitted{$_};
        !$c || $c->[2] ne 't'
            || !($c->[1] =~ /^(?:quota|overage)\z/ && $c->[3] == 0
                 || $c->[1] eq 'credits' && $c->[3] == $c->[4])
    } @served;
    my %n;
    my @twice = grep { $n{$_}++ == 1 } @served;
    Test::More::is(scalar(@wrong) + scalar(@twice), 0,
                   'every call served was admitted once, paid and '
                   . 'not voided')
        or Test::More::diag("not so: @wrong @twice");
}


sub free_port {
    for (1 .. 100) {
        my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                      LocalPort => 0, Proto => 'tcp')
            or die "Test::Monetize: cannot bind a free port: $!\n";
        my $port = $s->sockport;
        close $s;
        return $port unless $UsedPorts{$port}++;
    }
    die "Test::Monetize: no free port\n";
}


sub _slurp {
    my ($file, $offset) = @_;
    open my $fh, '<', $file or return '';
    binmode $fh;
    seek $fh, $offset, 0 if $offset;
    local $/;
    my $s = <$fh>;
    return $s // '';
}


sub _spew {
    my ($file, $text) = @_;
    open my $fh, '>', $file or die "Test::Monetize: $file: $!\n";
    print {$fh} $text;
    close $fh or die "Test::Monetize: $file: $!\n";
}


# Calls $code every few ms until it returns true or $seconds pass; returns
# its last value.
sub wait_until {
    return _poll(@_);
}


sub _poll {
    my ($seconds, $code) = @_;
    my $deadline = Time::HiRes::time() + $seconds;
    my $nap = 0.002;
    while (1) {
        my $v = $code->();
        return $v if $v;
        return $v if Time::HiRes::time() >= $deadline;
        Time::HiRes::sleep($nap);
        $nap = 0.05 if ($nap *= 2) > 0.05;
    }
}


# A process that runs; a zombie does not count (PID 1 may not reap).
sub _alive {
    my ($pid) = @_;
    return 0 unless $pid && kill 0, $pid;
    my $stat = _slurp("/proc/$pid/stat");
    return 0 unless $stat =~ /\)\s+(\S)/;
    return $1 ne 'Z';
}


# (pid, ppid, cmdline) of every process.
sub _processes {
    my @ps;
    opendir my $dh, '/proc' or return;
    for my $pid (grep /\A\d+\z/, readdir $dh) {
        my $stat = _slurp("/proc/$pid/stat");
        my ($state, $ppid) = $stat =~ /\)\s+(\S)\s+(\d+)/ or next;
        next if $state eq 'Z';
        my $cmd = _slurp("/proc/$pid/cmdline");
        $cmd =~ s/\0+\z//;
        $cmd =~ tr/\0/ /;
        push @ps, [$pid, $ppid, $cmd];
    }
    return @ps;
}


# Runs a command; returns (exit code, stdout, stderr). Options: stdin,
# env (hashref), chdir, timeout (seconds, default 120).
sub _run {
    my ($cmd, %o) = @_;
    my $in = File::Temp->new;
    print {$in} $o{stdin} // '';
    $in->flush;
    my $out = File::Temp->new;
    my $err = File::Temp->new;

    my $pid = fork // die "Test::Monetize: fork: $!\n";
    if ($pid == 0) {
        open STDIN, '<', $in->filename;
        open STDOUT, '>', $out->filename;
        open STDERR, '>', $err->filename;
        chdir $o{chdir} if $o{chdir};
        for my $k (keys %{$o{env} // {}}) {
            if (defined $o{env}{$k}) {
                $ENV{$k} = $o{env}{$k};
            } else {
                delete $ENV{$k};
            }
        }
        { no warnings 'exec'; exec { $cmd->[0] } @$cmd; }
        print STDERR "exec $cmd->[0]: $!\n";
        POSIX::_exit(127);
    }

    my $timeout = $o{timeout} // 120;
    my $done = _poll($timeout, sub { waitpid($pid, POSIX::WNOHANG()) == $pid });
    if (!$done) {
        kill 'KILL', $pid;
        waitpid $pid, 0;
        die "Test::Monetize: '@$cmd' did not finish in $timeout s\n";
    }
    my $st = $?;
    my $rc = $st & 127 ? 128 + ($st & 127) : $st >> 8;
    return ($rc, _slurp($out->filename), _slurp($err->filename));
}


# ---------------------------------------------------------------------------
# PostgreSQL and Redis

sub _ident {
    my ($name) = @_;
    $name =~ s/"/""/g;
    return qq{"$name"};
}


sub _psql_bin {
    return -x "$PG_BIN/psql" ? "$PG_BIN/psql" : 'psql';
}


sub _psql_cmd {
    my ($db, @args) = @_;
    return [_psql_bin(), '-X', '-q', '-v', 'ON_ERROR_STOP=1',
            '-h', _env('MONETIZE_PG_HOST'), '-p', _env('MONETIZE_PG_PORT'),
            '-U', _env('MONETIZE_PG_USER'), '-d', $db, @args];
}


sub _pg_env {
    return { PGPASSWORD => _env('MONETIZE_PG_PASSWORD'),
             PGCONNECT_TIMEOUT => 10,
             PGOPTIONS => '-c client_min_messages=warning' };
}


sub database {
    return $Db if defined $Db;

    my $name = lc('t_' . _file_id() . "_$$");
    $name =~ s/[^a-z0-9_]/_/g;
    $name = substr($name, 0, 40) . substr($name, -20) if length $name > 63;
    my $tpl = _env('MONETIZE_PG_TEMPLATE');

    for my $try (1 .. 20) {
        my ($rc, undef, $err) = _run(
            _psql_cmd('postgres', '-c',
                      'CREATE DATABASE ' . _ident($name)
                      . ' TEMPLATE ' . _ident($tpl)),
            env => _pg_env());
        if ($rc == 0) {
            $Db = $name;
            return $Db;
        }
        # Another file's CREATE DATABASE may hold the template a moment.
        die "Test::Monetize: cannot create database $name: $err"
            unless $err =~ /being accessed by other users/ && $try < 20;
        Time::HiRes::sleep(0.25);
    }
}


sub _drop_database {
    return unless defined $Db;
    my ($rc, undef, $err) = _run(
        _psql_cmd('postgres', '-c',
                  'DROP DATABASE IF EXISTS ' . _ident($Db) . ' WITH (FORCE)'),
        env => _pg_env());
    warn "Test::Monetize: cannot drop database $Db: $err" if $rc;
    undef $Db;
}


# psql's CSV: fields in double quotes when they need it, "" for a quote.
sub _parse_csv {
    my ($text) = @_;
    my (@rows, @row);
    my $field = '';
    my $quoted = 0;
    pos($text) = 0;
    while (pos($text) < length $text) {
        if ($text =~ /\G"((?:[^"]|"")*)"/gc) {
            ($field = $1) =~ s/""/"/g;
            $quoted = 1;
        } elsif ($text =~ /\G([^,\n"]+)/gc) {
            $field = $1;
        } elsif ($text =~ /\G,/gc) {
            push @row, ($quoted || $field ne '\N') ? $field : undef;
            ($field, $quoted) = ('', 0);
        } elsif ($text =~ /\G\n/gc) {
            push @row, ($quoted || $field ne '\N') ? $field : undef;
            push @rows, [@row];
            @row = ();
            ($field, $quoted) = ('', 0);
        } else {
            die "Test::Monetize: cannot parse psql output: $text\n";
        }
    }
    return @rows;
}


sub psql {
    my ($sql, @bind) = @_;
    my @vars;

    # $N -> :'monetize_pN', which psql expands to a quoted literal.
    $sql =~ s{\$(\d+)\b}{
        my $i = $1;
        die "Test::Monetize::psql: no value for \$$i\n"
            if $i < 1 || $i > @bind;
        defined $bind[$i - 1] ? ":'monetize_p$i'" : 'NULL';
    }ge if @bind;
    for my $i (1 .. @bind) {
        push @vars, '-v', "monetize_p$i=$bind[$i - 1]"
            if defined $bind[$i - 1];
    }

    my ($rc, $out, $err) = _run(
        _psql_cmd(database(), '--csv', '-t', '-P', 'null=\N', @vars),
        stdin => "$sql\n", env => _pg_env());
    die "Test::Monetize::psql failed: $err" if $rc;
    return _parse_csv($out);
}


sub psql_session {
    my $s = Test::Monetize::PsqlSession->new(@_);
    push @Sessions, $s;
    return $s;
}


sub _pg_ctl {
    my @args = @_;
    my @cmd = ("$PG_BIN/pg_ctl", '-D', _env('MONETIZE_PG_DIR') . '/data',
               @args);
    unshift @cmd, qw(runuser -u postgres --) if $> == 0;
    my ($rc, $out, $err) = _run(\@cmd, chdir => '/');
    die "Test::Monetize: pg_ctl @args failed: $out$err" if $rc;
}


sub pg_stop {
    _pg_ctl(qw(-m fast -w stop));
    $PgStopped = 1;
}


sub pg_start {
    _pg_ctl('-w', '-t', '60', '-l', _env('MONETIZE_PG_DIR') . '/log',
            'start');
    $PgStopped = 0;
}


sub redis_cli {
    my @args = @_;
    my ($rc, $out, $err) = _run(['redis-cli', '-h', '127.0.0.1',
                                 '-p', _env('MONETIZE_REDIS_PORT'), @args]);
    die "Test::Monetize::redis_cli @args: $err$out" if $rc;
    chomp $out;
    return wantarray ? split(/\n/, $out) : $out;
}


# ---------------------------------------------------------------------------
# nginx configuration

sub _var {
    my ($name, $ctx) = @_;
    my %vars = (
        TEST_NGINX_SERVER_PORT => sub { $ctx->{port} },
        TEST_NGINX_PREFIX      => sub { $ctx->{prefix} },
        TEST_NGINX_DB          => \&database,
        TEST_NGINX_PG_HOST     => sub { _env('MONETIZE_PG_HOST') },
        TEST_NGINX_PG_PORT     => sub { _env('MONETIZE_PG_PORT') },
        TEST_NGINX_REDIS_PORT  => sub { _env('MONETIZE_REDIS_PORT') },
    );
    my $v = $vars{$name} ? $vars{$name}->() : $ENV{$name};
    die "Test::Monetize: \$$name has no value\n" unless defined $v;
    return $v;
}


sub _subst {
    my ($text, $ctx) = @_;
    return $text unless defined $text && !ref $text;
    $text =~ s/\$(TEST_NGINX_[A-Z0-9_]+)/_var($1, $ctx)/ge;
    return $text;
}


# nginx.conf for %o (main_config, http_config, config, workers, log_level,
# postgres, key_secret, api_limit, no_monetize); port and prefix are
# required.
sub _conf_text {
    my (%o) = @_;
    my $ctx = { port => $o{port}, prefix => $o{prefix} };
    $o{$_} = _subst($o{$_}, $ctx) for keys %o;

    my ($modules, $monetize) = ('', '');
    unless ($o{no_monetize}) {
        my $dir = _env('MONETIZE_MODULES_DIR');
        $modules = "load_module $dir/ngx_http_monetize_module.so;\n"
                 . "load_module $dir/ngx_http_monetize_gate_module.so;\n";
        my $pg = $o{postgres} // sprintf(
            'monetize_postgres "host=%s port=%s dbname=%s user=%s '
            . 'password=env:MONETIZE_PG_PASSWORD" pool=4 timeout=5s;',
            _env('MONETIZE_PG_HOST'), _env('MONETIZE_PG_PORT'), database(),
            _env('MONETIZE_PG_USER'));
        my $ks = $o{key_secret}
                 // 'monetize_key_secret env:MONETIZE_KEY_SECRET;';
        my $al = $o{api_limit} // 'monetize_api_limit off;';
        chomp($pg, $ks, $al);
        $monetize = "    $pg\n    $ks\n    $al\n";
    }

    my $workers = $o{workers} // 1;
    my $level = $o{log_level} // 'info';
    chomp($level, $workers);
    my %s = map { $_ => $o{$_} // '' } qw(main_config http_config config);

    # nginx clears the workers' environment of all that env does not
    # keep; the runtimes read their options at start, in the master, but a
    # binary upgrade's exec needs them again.
    my $sanitize = sanitizing()
        ? "env LD_PRELOAD;\nenv ASAN_OPTIONS;\nenv UBSAN_OPTIONS;\n" : '';

    return <<"EOF";
daemon on;
master_process on;
worker_processes $workers;
error_log logs/error.log $level;
pid logs/nginx.pid;
${modules}env MONETIZE_PG_PASSWORD;
env MONETIZE_KEY_SECRET;
$sanitize$s{main_config}
events {
    worker_connections 1024;
}

http {
    access_log logs/access.log;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
$monetize
$s{http_config}
    server {
        listen 127.0.0.1:$o{port};
        server_name localhost;

$s{config}
    }
}
EOF
}


sub _write_conf {
    my ($prefix, $text, $name) = @_;
    _mkdir(map "$prefix/$_", qw(conf logs tmp html));
    my $file = "$prefix/conf/" . ($name // 'nginx.conf');
    _spew($file, $text);
    return $file;
}


sub nginx_t {
    my (%o) = @_;
    my $prefix = new_dir('nginx-t');
    my $file = _write_conf($prefix, _conf_text(
        %o, port => $o{port} // free_port(), prefix => $prefix));
    my ($rc, $out, $err) = run_nginx(['-t', '-p', "$prefix/", '-c', $file]);
    sanitizer_check('nginx -t');
    return ($rc, $out . $err);
}


# ---------------------------------------------------------------------------
# Sanitizers

my %SeenReports;

sub sanitizing {
    return ($ENV{MONETIZE_SANITIZE} // '') eq '1';
}


sub _sanitizer_dir {
    my $d = _file_dir() . '/sanitizer';
    if (!-d $d) {
        _mkdir($d);
        chmod 01777, $d;        # the workers (nobody) write their reports
    }
    return $d;
}


sub nginx_env {
    return {} unless sanitizing();
    my $dir = _sanitizer_dir();
    my $mine = sub {
        my ($name, $own) = @_;
        my $theirs = $ENV{$name} // '';
        return length $theirs ? "$theirs:$own" : $own;
    };
    return {
        LD_PRELOAD => _env('MONETIZE_SANITIZE_PRELOAD'),
        # nginx frees what it allocated at exit as it likes: no leak
        # checks. Every dynamic module defines ngx_modules,
        # ngx_module_names and ngx_module_order (nginx's build makes them)
        # and both are loaded RTLD_GLOBAL: ODR level 1 reports only a
        # clash of sizes.
        ASAN_OPTIONS => $mine->('ASAN_OPTIONS',
            "log_path=$dir/asan:detect_leaks=0:halt_on_error=1"
            . ':detect_odr_violation=1'),
        # UBSan starts at its first report and reads its options then,
        # from the process's first environment, which nginx has
        # overwritten with its process titles; and its log_path is lost
        # to ASan's copy of the same symbol. So the modules are built
        # with -fno-sanitize-recover (a report ends the process), and its
        # reports go to stderr, which nginx points at its error log.
        UBSAN_OPTIONS => $mine->('UBSAN_OPTIONS', 'print_stacktrace=1'),
    };
}


my @StderrReports;

sub run_nginx {
    my ($args, %o) = @_;
    my ($rc, $out, $err) = _run([_env('MONETIZE_NGINX'), @$args],
        %o, env => { %{nginx_env()}, %{$o{env} // {}} });
    push @StderrReports, ["stderr of nginx @$args", $err]
        if sanitizing() && _has_report($err);
    return ($rc, $out, $err);
}


sub _has_report {
    return $_[0] =~ /: runtime error: |ERROR: AddressSanitizer/;
}


# The reports written since the last call, as [where, text]: ASan's
# files, UBSan's lines in the error logs and in nginx's stderr.
sub _new_reports {
    return () unless sanitizing();
    my $dir = _sanitizer_dir();
    my @reports = splice @StderrReports;
    opendir my $dh, $dir or return @reports;
    my @new = sort grep { /\A(?:asan|ubsan)\./ && !$SeenReports{$_} }
              readdir $dh;
    $SeenReports{$_} = 1 for @new;
    push @reports, map { ["$dir/$_", _slurp("$dir/$_")] } @new;

    for my $n (@Nginxes) {
        my $log = $n->error_log_file;
        my $size = -s $log || 0;
        my $from = $n->{sanitizer_mark} // 0;
        $from = 0 if $from > $size;
        my $text = _slurp($log, $from);
        $n->{sanitizer_mark} = $from + length $text;
        next unless _has_report($text);
        # The report and the stack under it (lines with no date).
        my @lines = grep { !/\A\d{4}\/\d\d\/\d\d / } split /\n/, $text;
        push @reports, [$log, join("\n", @lines) . "\n"];
    }
    return @reports;
}


# Only a report makes a test (a failing one): a passing check would add
# to the count of a file that planned its tests.
sub sanitizer_check {
    my ($what) = @_;
    my @reports = _new_reports() or return 1;
    fail("no sanitizer report ($what)");
    diag(join '', map { "$_->[0]:\n$_->[1]\n" } @reports);
    return 0;
}


# ---------------------------------------------------------------------------
# HTTP client helpers

sub _build_request {
    my (%o) = @_;
    return $o{raw} if defined $o{raw};

    my $method = $o{method} // 'GET';
    my $body = $o{body};
    my @h;
    if (ref $o{headers} eq 'HASH') {
        @h = map { [$_, $o{headers}{$_}] } sort keys %{$o{headers}};
    } elsif (ref $o{headers} eq 'ARRAY') {
        my @kv = @{$o{headers}};
        push @h, [splice @kv, 0, 2] while @kv;
    }
    if (exists $o{json}) {
        $body = $Json->encode($o{json});
        push @h, ['Content-Type', 'application/json'];
    }
    utf8::encode($body) if defined $body && $body =~ /[^\x00-\xff]/;

    my %have = map { lc $_->[0] => 1 } @h;
    unshift @h, ['Connection', 'close'] unless $have{connection};
    unshift @h, ['Host', 'localhost'] unless $have{host};
    if (!$have{'content-length'} && !$have{'transfer-encoding'}
        && (defined $body || $method =~ /\A(?:POST|PUT|PATCH)\z/))
    {
        push @h, ['Content-Length', length($body // '')];
    }

    my $proto = $o{protocol} // 'HTTP/1.1';
    return "$method $o{path} $proto\r\n"
           . join('', map { "$_->[0]: $_->[1]\r\n" } @h)
           . "\r\n" . ($body // '');
}


# Decodes a chunked body; undef when it is incomplete.
sub _dechunk {
    my ($data) = @_;
    my $body = '';
    while (1) {
        return undef unless $data =~ s/\A([0-9a-fA-F]+)[^\r\n]*\r\n//;
        my $n = hex $1;
        if ($n == 0) {
            return $body;
        }
        return undef if length $data < $n + 2;
        $body .= substr($data, 0, $n);
        substr($data, 0, $n + 2) = '';
    }
}


# Parses a whole HTTP/1.x response (or what came before an error).
sub _parse_response {
    my ($raw, $res, $head) = @_;
    my $end = index $raw, "\r\n\r\n";
    return 'incomplete response headers' if $end < 0;

    my ($status_line, @lines) = split /\r\n/, substr($raw, 0, $end);
    return "bad status line: $status_line"
        unless $status_line =~ m{\AHTTP/\d\.\d (\d{3})};
    $res->{status} = $1 + 0;
    $res->{status_line} = $status_line;

    for my $line (@lines) {
        my ($name, $value) = $line =~ /\A([^:]+):\s*(.*?)\s*\z/ or next;
        push @{$res->{header_list}}, [$name, $value];
        my $lc = lc $name;
        $res->{headers}{$lc} = exists $res->{headers}{$lc}
                               ? "$res->{headers}{$lc}, $value" : $value;
    }

    my $body = substr $raw, $end + 4;
    my $te = $res->{headers}{'transfer-encoding'} // '';
    my $cl = $res->{headers}{'content-length'};
    if ($head) {
        # a response to HEAD has headers only, whatever they announce
    } elsif ($te =~ /chunked/i) {
        $body = _dechunk($body);
        return 'incomplete chunked body' unless defined $body;
    } elsif (defined $cl && $cl =~ /\A\d+\z/) {
        return "body shorter than Content-Length $cl" if length $body < $cl;
        $body = substr $body, 0, $cl;
    }
    $res->{body} = $body;
    if ($body =~ /\A\s*[\[{]/) {
        $res->{json} = eval { $Json->decode($body) };
    }
    return undef;
}


sub wait_any {
    return Test::Monetize::HTTP::wait_any(@_);
}


# How many times run_tests() started nginx (for the harness's own test).
sub block_nginx_starts {
    return $BlockStarts;
}


# ---------------------------------------------------------------------------
# JSON matching

sub _is_number {
    my ($v) = @_;
    my $flags = B::svref_2object(\$v)->FLAGS;
    return ($flags & (B::SVp_IOK | B::SVp_NOK)) && !($flags & B::SVp_POK);
}


sub _show {
    my ($v) = @_;
    return 'null' unless defined $v;
    return JSON::PP->new->canonical->allow_nonref->encode($v);
}


# undef when $got has all of $exp, else where and how it differs.
sub json_match {
    my ($exp, $got, $path) = @_;
    $path //= '$';

    if (ref $exp eq 'HASH') {
        return "$path: expected an object, got " . _show($got)
            unless ref $got eq 'HASH';
        for my $k (sort keys %$exp) {
            return "$path.$k: missing" unless exists $got->{$k};
            my $e = json_match($exp->{$k}, $got->{$k}, "$path.$k");
            return $e if defined $e;
        }
        return undef;
    }
    if (ref $exp eq 'ARRAY') {
        return "$path: expected an array, got " . _show($got)
            unless ref $got eq 'ARRAY';
        return "$path: expected " . @$exp . " elements, got " . @$got
            unless @$exp == @$got;
        for my $i (0 .. $#$exp) {
            my $e = json_match($exp->[$i], $got->[$i], "$path\[$i]");
            return $e if defined $e;
        }
        return undef;
    }

    my $bad = "$path: expected " . _show($exp) . ', got ' . _show($got);
    if (JSON::PP::is_bool($exp)) {
        return JSON::PP::is_bool($got) && !!$got == !!$exp ? undef : $bad;
    }
    if (!defined $exp) {
        return defined $got ? $bad : undef;
    }
    return $bad if !defined $got || ref $got;
    if (_is_number($exp)) {
        return _is_number($got) && $got == $exp ? undef : $bad;
    }
    return $bad if _is_number($got) || JSON::PP::is_bool($got);
    if ($exp =~ /\Are:(.*)\z/s) {
        return $got =~ /$1/ ? undef : "$path: " . _show($got)
                                      . " does not match /$1/";
    }
    return $got eq $exp ? undef : $bad;
}


# ---------------------------------------------------------------------------
# Blocks

my %Sections = map { $_ => 1 } qw(
    main_config http_config config workers log_level postgres key_secret
    api_limit
    no_monetize request more_headers timeout error_code response_body
    response_body_like response_headers response_headers_like response_json
    sql sql_result error_log no_error_log must_die ONLY SKIP LAST
);


sub _parse_blocks {
    my ($text) = @_;
    my (@blocks, $block, $sec);

    for my $line (split /^/, $text) {
        if ($line =~ /\A===\s*(.*?)\s*\z/) {
            $block = { title => $1, raw => {} };
            push @blocks, $block;
            undef $sec;
            next;
        }
        next unless $block;
        if ($line =~ /\A---\s+(\w+)(.*?)\s*\z/) {
            my ($name, $rest) = ($1, $2);
            die "Test::Monetize: unknown section '--- $name' in"
                . " '$block->{title}'\n" unless $Sections{$name};
            die "Test::Monetize: two '--- $name' in '$block->{title}'\n"
                if $block->{raw}{$name};
            $sec = $block->{raw}{$name} = { text => '', filters => [] };
            if ($rest =~ /\A\s*:\s*(.*)\z/) {
                $sec->{text} = $1;
                $sec->{inline} = 1;
            } else {
                $sec->{filters} = [split ' ', $rest];
            }
            next;
        }
        next unless $sec;
        if ($sec->{inline}) {
            next unless $line =~ /\S/;
            die "Test::Monetize: text after an inline section in"
                . " '$block->{title}'\n";
        }
        $sec->{text} .= $line;
    }

    for my $b (@blocks) {
        for my $sec (values %{$b->{raw}}) {
            next if $sec->{inline};
            $sec->{text} =~ s/\A(?:[ \t]*\n)+//;
            $sec->{text} =~ s/\n(?:[ \t]*\n)+\z/\n/;
            $sec->{text} .= "\n"
                if length $sec->{text} && $sec->{text} !~ /\n\z/;
            $sec->{text} = '' if $sec->{text} =~ /\A\s*\z/;
        }
    }
    return @blocks;
}


sub blocks {
    $Blocks //= do {
        no strict 'refs';
        my $fh = \*{'main::DATA'};
        my $text = defined fileno($fh) ? do { local $/; <$fh> } : '';
        [_parse_blocks($text // '')];
    };
    return @$Blocks;
}


# A section's value: filters applied, $TEST_NGINX_* replaced.
sub _value {
    my ($block, $name, $ctx) = @_;
    my $sec = $block->{raw}{$name} or return undef;
    my $v = $sec->{text};
    for my $f (@{$sec->{filters}}) {
        if ($f eq 'chomp') {
            chomp $v;
        } elsif ($f eq 'eval') {
            my $code = $v;
            $v = eval "package main; no strict; $code";
            die "Test::Monetize: '--- $name eval' failed: $@" if $@;
        } else {
            die "Test::Monetize: unknown filter '$f' in '--- $name'\n";
        }
    }
    if (ref $v eq 'ARRAY') {
        return [map { _subst($_, $ctx) } @$v];
    }
    return _subst($v, $ctx);
}


sub _lines {
    my ($v) = @_;
    return () unless defined $v;
    return @$v if ref $v eq 'ARRAY';
    return $v if ref $v;
    return grep { /\S/ } map { s/\A\s+|\s+\z//gr } split /\n/, $v;
}


sub _nth {
    my ($v, $i) = @_;
    return ref $v eq 'ARRAY' ? $v->[$i] : $v;
}


sub _log_has {
    my ($log, $needle) = @_;
    return ref $needle eq 'Regexp' ? $log =~ $needle
                                   : index($log, $needle) >= 0;
}


sub run_tests {
    my @blocks = blocks();
    my $only = grep { $_->{raw}{ONLY} } @blocks;
    my $last;
    diag 'Test::Monetize: running the --- ONLY blocks only' if $only;

    for my $b (@blocks) {
        my $why = $last ? 'after --- LAST'
                : $b->{raw}{SKIP} ? '--- SKIP'
                : ($only && !$b->{raw}{ONLY}) ? 'not --- ONLY'
                : undef;
        $last ||= $b->{raw}{LAST};
        if ($why) {
            Test::More->builder->skip("$b->{title}: $why");
            next;
        }
        subtest $b->{title} => sub {
            my $ok = eval { _run_block($b); 1 };
            fail("the block ran to its end") or diag($@) unless $ok;
        };
    }
}


sub _run_block {
    my ($b) = @_;
    my $prefix = _file_dir() . '/block';
    $BlockPort //= free_port();
    my $ctx = { port => $BlockPort, prefix => $prefix };
    my %v = map { $_ => _value($b, $_, $ctx) } keys %{$b->{raw}};

    my %conf = map { exists $v{$_} ? ($_ => $v{$_}) : () }
        qw(main_config http_config config workers log_level postgres
           key_secret api_limit);
    $conf{no_monetize} = 1 if exists $v{no_monetize};

    if (exists $v{must_die}) {
        my ($rc, $err) = nginx_t(%conf, port => $BlockPort);
        isnt($rc, 0, 'nginx -t fails') or diag($err);
        for my $needle (_lines($v{error_log})) {
            ok(_log_has($err, $needle), "nginx -t says: $needle")
                or diag("nginx -t said:\n$err");
        }
        return;
    }

    my $text = _conf_text(%conf, port => $BlockPort, prefix => $prefix);
    my $mark;
    if (!$BlockNginx || $BlockNginx->{conf_text} ne $text
        || !$BlockNginx->master_pid)
    {
        $BlockNginx->stop if $BlockNginx;
        undef $BlockNginx;
        # This block's log starts with the start: what the workers say when
        # they start belongs to it.
        $mark = -s "$prefix/logs/error.log" || 0;
        $BlockNginx = eval {
            Test::Monetize::Nginx->start(%conf, port => $BlockPort,
                                         prefix => $prefix);
        };
        if (!$BlockNginx) {
            fail('nginx starts');
            diag($@);
            return;
        }
        $BlockStarts++;
    }
    my $ngx = $BlockNginx;
    $mark //= $ngx->error_log_mark;
    my $failed = 0;

    my @requests = ref $v{request} eq 'ARRAY' ? @{$v{request}}
                 : defined $v{request} ? ($v{request}) : ();
    my @headers = map { /\A([^:\s]+)\s*:\s*(.*)\z/ ? ($1, $2) : () }
                  _lines($v{more_headers});

    for my $i (0 .. $#requests) {
        my $n = @requests > 1 ? ' (request ' . ($i + 1) . ')' : '';
        my ($line, $body) = split /\n/, $requests[$i], 2;
        my ($method, $path, $proto) = split ' ', $line // '';
        die "Test::Monetize: bad --- request '$line'\n" unless $path;
        $body =~ s/\n\z// if defined $body;
        undef $body if defined $body && $body eq '';

        my $res = $ngx->request($method, $path, headers => [@headers],
                                body => $body, protocol => $proto,
                                timeout => $v{timeout} // 10);
        if ($res->{error}) {
            fail("$method $path$n: $res->{error}");
            $failed++;
            next;
        }

        my $code = _nth($v{error_code}, $i) // 200;
        $code =~ s/\s+//g;
        is($res->{status}, $code, "status$n") or $failed++;

        my $exp = _nth($v{response_body}, $i);
        is($res->{body}, $exp, "response body$n") or $failed++
            if defined $exp;

        $exp = _nth($v{response_body_like}, $i);
        if (defined $exp) {
            chomp $exp unless ref $exp;
            like($res->{body}, ref $exp ? $exp : qr/$exp/s,
                 "response body like$n") or $failed++;
        }

        for my $h (_lines(_nth($v{response_headers}, $i))) {
            if ($h =~ /\A!\s*(\S+)\z/) {
                ok(!exists $res->{headers}{lc $1}, "no $1 header$n")
                    or $failed++;
            } elsif ($h =~ /\A([^:\s]+)\s*:\s?(.*)\z/) {
                is($res->{headers}{lc $1}, $2, "header $1$n") or $failed++;
            } else {
                die "Test::Monetize: bad --- response_headers line '$h'\n";
            }
        }

        for my $h (_lines(_nth($v{response_headers_like}, $i))) {
            my ($name, $re) = $h =~ /\A([^:\s]+)\s*:\s?(.*)\z/
                or die "Test::Monetize: bad response_headers_like '$h'\n";
            like($res->{headers}{lc $name}, qr/$re/, "header $name like$n")
                or $failed++;
        }

        $exp = _nth($v{response_json}, $i);
        if (defined $exp) {
            my $want = ref $exp ? $exp : do {
                # The section is bytes (UTF-8), unless the file said
                # "use utf8" and eval made it characters.
                my $dec = JSON::PP->new->allow_nonref;
                $dec->utf8 unless $exp =~ /[^\x00-\xff]/;
                my $j = eval { $dec->decode($exp) };
                die "Test::Monetize: --- response_json is not JSON: $@" if $@;
                $j;
            };
            my $err = defined $res->{json}
                ? json_match($want, $res->{json}) : 'the body is not JSON';
            ok(!defined $err, "response JSON$n")
                or $failed++, diag("$err\nbody: $res->{body}");
        }
    }

    if (defined $v{sql}) {
        my @rows = psql($v{sql});
        my $got = join '', map { join("\t", map { $_ // '' } @$_) . "\n" }
                           @rows;
        my $want = $v{sql_result} // '';
        chomp($got, $want);
        is($got, $want, 'sql result') or $failed++;
    }

    my @want = _lines($v{error_log});
    if (@want) {
        my $log = '';
        _poll(5, sub {
            $log = $ngx->error_log_since($mark);
            !grep { !_log_has($log, $_) } @want;
        });
        for my $needle (@want) {
            ok(_log_has($log, $needle), "error log has: $needle")
                or $failed++;
        }
    }

    my $log = $ngx->error_log_since($mark);
    my @unwanted = exists $v{no_error_log} ? _lines($v{no_error_log})
                                           : ('[alert]', '[emerg]', '[crit]');
    for my $needle (@unwanted, 'exited on signal', 'segfault') {
        ok(!_log_has($log, $needle), "error log lacks: $needle")
            or $failed++;
    }
    sanitizer_check('this block') or $failed++;

    if ($failed) {
        my @l = split /\n/, $log;
        splice @l, 0, @l - 40 if @l > 40;
        diag("error log of this block:\n" . join("\n", @l));
    }
}


# ---------------------------------------------------------------------------
# Cleanup: whatever this file started, even when it dies

sub _cleanup {
    for my $s (@Sessions) {
        eval { $s->close };
    }
    for my $n (@Nginxes) {
        eval { $n->stop };
        warn "Test::Monetize: $@" if $@;
    }
    for my $be (@Backends) {
        eval { $be->stop };
    }
    if ($PgStopped) {
        eval { pg_start() };
        warn "Test::Monetize: $@" if $@;
    }
    eval { _drop_database() };
    warn "Test::Monetize: $@" if $@;
}


END {
    if ($$ == $OwnerPid) {
        my $status = $?;
        _cleanup();
        if ($FileDir && $status == 0 && Test::More->builder->is_passing
            && !$ENV{MONETIZE_KEEP})
        {
            File::Path::remove_tree($FileDir);
        }
        $? = $status;
    }
}


# ===========================================================================

package Test::Monetize::Nginx;

use strict;
use warnings;


sub start {
    my ($class, %o) = @_;
    my $self = bless {
        port   => delete $o{port} // Test::Monetize::free_port(),
        prefix => delete $o{prefix} // Test::Monetize::new_dir('nginx'),
    }, $class;
    $self->_configure(%o);
    # A prefix used before: what its log says was looked at then.
    $self->{sanitizer_mark} = $self->error_log_mark;
    push @Test::Monetize::Nginxes, $self;
    $self->_start;
    return $self;
}


sub port { $_[0]{port} }
sub prefix { $_[0]{prefix} }
sub error_log_file { "$_[0]{prefix}/logs/error.log" }


sub _configure {
    my ($self, %o) = @_;
    $self->{opts} = {%o};
    $self->{workers} = $o{workers} // 1;
    $self->{workers} =~ s/\s+//g;
    $self->{conf_text} = defined $o{conf} ? $o{conf}
        : Test::Monetize::_conf_text(%o, port => $self->{port},
                                     prefix => $self->{prefix});
    $self->{conf_file} = Test::Monetize::_write_conf($self->{prefix},
                                                     $self->{conf_text});
}


sub _log_tail {
    my ($self, $mark) = @_;
    my @l = split /\n/, $self->error_log_since($mark // 0);
    splice @l, 0, @l - 30 if @l > 30;
    return @l ? join('', map { "  $_\n" } @l) : "  (empty)\n";
}


sub _start {
    my ($self) = @_;
    my $mark = $self->error_log_mark;
    $self->stop;            # one left in this prefix, if any
    unlink "$self->{prefix}/logs/nginx.pid";

    my ($rc, $out, $err) = Test::Monetize::run_nginx(
        ['-p', "$self->{prefix}/", '-c', $self->{conf_file}]);
    die "nginx did not start (exit $rc):\n$out$err"
        . "error log:\n" . $self->_log_tail($mark)
        . join('', map { "$_->[0]:\n$_->[1]\n" }
                   Test::Monetize::_new_reports()) if $rc;

    my $up = Test::Monetize::_poll(10, sub {
        $self->master_pid && $self->worker_pids >= $self->{workers};
    });
    if (!$up) {
        $self->stop;
        die "nginx did not come up in 10 s; error log:\n"
            . $self->_log_tail($mark);
    }
}


sub master_pid {
    my ($self) = @_;
    my $pid = Test::Monetize::_slurp("$self->{prefix}/logs/nginx.pid");
    $pid =~ s/\s+//g;
    # A stale pid file may name another process by now.
    return undef unless $pid && Test::Monetize::_alive($pid)
        && Test::Monetize::_slurp("/proc/$pid/cmdline") =~ /\Anginx: master/;
    return $pid;
}


sub _children {
    my ($self, $master) = @_;
    return () unless $master;
    return map { [$_->[0], $_->[2]] }
           grep { $_->[1] == $master } Test::Monetize::_processes();
}


# The workers that take requests (not those shutting down after a reload).
sub worker_pids {
    my ($self) = @_;
    my @pids = sort { $a <=> $b } map { $_->[0] }
               grep { $_->[1] =~ /worker process\z/ }
               $self->_children($self->master_pid);
    return @pids;
}


# The master first, then all its children.
sub pids {
    my ($self) = @_;
    my $master = $self->master_pid or return ();
    my @kids = sort { $a <=> $b } map { $_->[0] } $self->_children($master);
    return ($master, @kids);
}


sub stop {
    my ($self) = @_;
    my ($master, @kids) = $self->pids;
    return unless $master;

    kill 'TERM', $master;
    if (!Test::Monetize::_poll(10, sub { !Test::Monetize::_alive($master) }))
    {
        kill 'KILL', $master, @kids;
    }
    if (!Test::Monetize::_poll(5, sub {
            !grep { Test::Monetize::_alive($_) } @kids }))
    {
        kill 'KILL', @kids;
    }
    Test::Monetize::sanitizer_check("nginx on port $self->{port} stopped");
}


# Re-reads the configuration (with %o over the options given so far, if
# any) and waits until the new workers run and (unless wait_old => 0) the
# old ones have exited.
sub reload {
    my ($self, %o) = @_;
    my $wait_old = delete $o{wait_old} // 1;
    $self->_configure(%{$self->{opts}}, %o) if %o;

    my $master = $self->master_pid or die "nginx is not running\n";
    my %old = map { $_ => 1 } $self->worker_pids;
    my $mark = $self->error_log_mark;
    kill 'HUP', $master;

    my $failed;
    my $ok = Test::Monetize::_poll(10, sub {
        if ($self->error_log_since($mark) =~ /\[emerg\]/) {
            return $failed = 1;
        }
        my @new = grep { !$old{$_} } $self->worker_pids;
        return 0 if @new < $self->{workers};
        return 1 unless $wait_old;
        return !grep { Test::Monetize::_alive($_) } keys %old;
    });
    die "nginx reload failed:\n" . $self->_log_tail($mark) if $failed;
    die "nginx reload did not finish in 10 s:\n" . $self->_log_tail($mark)
        unless $ok;
}


sub error_log_mark {
    my ($self) = @_;
    return -s $self->error_log_file || 0;
}


sub error_log_since {
    my ($self, $mark) = @_;
    return Test::Monetize::_slurp($self->error_log_file, $mark // 0);
}


sub wait_for_log {
    my ($self, $needle, %o) = @_;
    return Test::Monetize::_poll($o{timeout} // 5, sub {
        Test::Monetize::_log_has($self->error_log_since($o{since}), $needle)
    });
}


sub start_request {
    my ($self, $method, $path, %o) = @_;
    return Test::Monetize::HTTP->new(
        port    => $self->{port},
        raw     => Test::Monetize::_build_request(%o, method => $method,
                                                  path => $path),
        timeout => $o{timeout} // 10,
    );
}


sub finish_request {
    my ($self, $h) = @_;
    return $h->wait;
}


sub request {
    my ($self, $method, $path, %o) = @_;
    return $self->start_request($method, $path, %o)->wait;
}


# Runs the requests ([METHOD, PATH, %opts] or {method, path, ...}) with at
# most `concurrency` in flight; results in input order, seq 1..N in order
# of completion.
sub parallel {
    my ($self, $requests, %o) = @_;
    my $max = $o{concurrency} // 50;
    my @specs = map {
        ref eq 'HASH'
            ? do { my %r = %$_; [delete $r{method}, delete $r{path}, %r] }
            : $_
    } @$requests;
    my (@handles, @running);
    my $next = 0;

    while ($next < @specs || @running) {
        while (@running < $max && $next < @specs) {
            my ($method, $path, %ro) = @{$specs[$next]};
            $ro{timeout} //= $o{timeout} if $o{timeout};
            my $h = $self->start_request($method, $path, %ro);
            push @handles, $h;
            push @running, $h;
            $next++;
        }
        Test::Monetize::HTTP::pump(1);
        @running = grep { !$_->{done} } @running;
    }

    my @results = map { $_->{result} } @handles;
    my $seq = 0;
    $_->{seq} = ++$seq for sort { $a->{seq} <=> $b->{seq} } @results;
    return @results;
}


# ===========================================================================

package Test::Monetize::HTTP;

# One request over a non-blocking socket. All requests in flight progress
# together whenever any of them is waited for, so `seq` (a counter over the
# whole file) and `done_at` tell the order in which they completed.

use strict;
use warnings;

my @Inflight;
my $Seq = 0;


sub new {
    my ($class, %o) = @_;
    my $now = Time::HiRes::time();
    my $self = bless { out => $o{raw}, in => '', timeout => $o{timeout},
                       started => $now, deadline => $now + $o{timeout},
                       head => scalar($o{raw} =~ /\AHEAD /) },
                     $class;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $o{port}, Proto => 'tcp',
                                     Blocking => 0);
    if (!$sock) {
        $self->_finish("connect: $!");
        return $self;
    }
    $self->{sock} = $sock;
    push @Inflight, $self;
    $self->_write;
    return $self;
}


sub _finish {
    my ($self, $error) = @_;
    return if $self->{done};
    close $self->{sock} if $self->{sock};
    delete $self->{sock};

    my $now = Time::HiRes::time();
    my $res = { status => undef, headers => {}, header_list => [],
                body => undef, json => undef, raw => $self->{in},
                done_at => $now, elapsed => $now - $self->{started},
                seq => ++$Seq };
    my $perr = Test::Monetize::_parse_response($self->{in}, $res,
                                               $self->{head});
    # A reset after a complete response is no error.
    $res->{error} = defined $perr ? ($error // "malformed response: $perr")
                  : ($error && $error =~ /^timeout/) ? $error : undef;
    $self->{result} = $res;
    $self->{done} = 1;
}


sub _write {
    my ($self) = @_;
    return unless length $self->{out};
    my $n = syswrite $self->{sock}, $self->{out};
    if (defined $n) {
        substr($self->{out}, 0, $n) = '';
    } elsif (!$!{EAGAIN} && !$!{EWOULDBLOCK} && !$!{EINPROGRESS}
             && !$!{ENOTCONN})
    {
        # The server may have answered before reading it all (413).
        $self->{out} = '';
        $self->{write_error} = "write: $!";
    }
}


sub _read {
    my ($self) = @_;
    my $n = sysread $self->{sock}, my $buf, 65536;
    if (!defined $n) {
        return if $!{EAGAIN} || $!{EWOULDBLOCK};
        $self->_finish("read: $!");
    } elsif ($n == 0) {
        $self->_finish($self->{write_error});
    } else {
        $self->{in} .= $buf;
    }
}


# Progresses every request in flight for at most $timeout seconds.
sub pump {
    my ($timeout) = @_;
    my $now = Time::HiRes::time();
    for my $h (@Inflight) {
        $h->_finish("timeout after $h->{timeout} s") if $now >= $h->{deadline};
    }
    @Inflight = grep { !$_->{done} } @Inflight;
    return unless @Inflight;

    for my $h (@Inflight) {
        my $left = $h->{deadline} - $now;
        $timeout = $left if $left < $timeout;
    }
    $timeout = 0 if $timeout < 0;

    my (%by_fd, $r, $w) = ();
    $r = IO::Select->new;
    $w = IO::Select->new;
    for my $h (@Inflight) {
        $by_fd{fileno $h->{sock}} = $h;
        (length $h->{out} ? $w : $r)->add($h->{sock});
    }
    my ($readable, $writable) = IO::Select->select($r, $w, undef, $timeout);
    $by_fd{fileno $_}->_write for @{$writable || []};
    $by_fd{fileno $_}->_read for @{$readable || []};
    @Inflight = grep { !$_->{done} } @Inflight;
}


sub done {
    my ($self) = @_;
    pump(0) unless $self->{done};
    return $self->{done};
}


sub wait {
    my ($self) = @_;
    pump(1) until $self->{done};
    return $self->{result};
}


sub result { $_[0]{result} }


# The first of the handles to complete (waits for one if none has).
sub wait_any {
    my (@handles) = @_;
    pump(1) until grep { $_->{done} } @handles;
    my ($first) = sort { $a->{result}{seq} <=> $b->{result}{seq} }
                  grep { $_->{done} } @handles;
    return $first;
}


# ===========================================================================

package Test::Monetize::PsqlSession;

# A psql process kept open. Each send() is followed by "\echo MARKER", so a
# statement has completed once its marker comes back.

use strict;
use warnings;


sub new {
    my ($class, %o) = @_;
    my $db = $o{database} // Test::Monetize::database();
    my $err = Symbol::gensym;
    my $env = Test::Monetize::_pg_env();
    local @ENV{keys %$env} = values %$env;
    my $pid = IPC::Open3::open3(
        my $in, my $out, $err,
        @{Test::Monetize::_psql_cmd($db, '-A', '-t', '-F', "\t",
                                    '-v', 'ON_ERROR_STOP=0')});
    $in->autoflush(1);
    return bless { pid => $pid, owner_pid => $$, in => $in, out => $out,
                   err => $err, obuf => '', ebuf => '', n => 0,
                   pending => [], rows => [] }, $class;
}


sub send {
    my ($self, $sql) = @_;
    $sql =~ s/\s+\z//;
    $sql .= ';' unless $sql =~ /;\z/;
    my $marker = "__monetize_done_" . ++$self->{n} . '__';
    print {$self->{in}} "$sql\n\\echo $marker\n";
    push @{$self->{pending}}, $marker;
    return $marker;
}


sub _read {
    my ($self, $timeout) = @_;
    my $sel = IO::Select->new($self->{out}, $self->{err});
    for my $fh ($sel->can_read($timeout)) {
        my $n = sysread $fh, my $buf, 65536;
        if (!$n) {
            $sel->remove($fh);
            $self->{eof} = 1 if $fh == $self->{out};
            next;
        }
        $self->{$fh == $self->{out} ? 'obuf' : 'ebuf'} .= $buf;
    }
    while ($self->{obuf} =~ s/\A(.*?)\n//) {
        my $line = $1;
        if (@{$self->{pending}} && $line eq $self->{pending}[0]) {
            shift @{$self->{pending}};
        } else {
            push @{$self->{rows}}, [split /\t/, $line, -1];
        }
    }
}


# True when every statement sent so far has completed.
sub done {
    my ($self) = @_;
    $self->_read(0);
    return !@{$self->{pending}};
}


# Waits for the statements sent so far; returns their rows. Dies on an
# ERROR unless allow_error => 1 (see errors()).
sub wait {
    my ($self, %o) = @_;
    my $timeout = $o{timeout} // 10;
    my $deadline = Time::HiRes::time() + $timeout;
    while (@{$self->{pending}} && !$self->{eof}) {
        my $left = $deadline - Time::HiRes::time();
        last if $left <= 0;
        $self->_read($left);
    }
    die "psql session: no answer in $timeout s\n" if @{$self->{pending}};
    $self->_read(0);
    my @rows = @{$self->{rows}};
    $self->{rows} = [];
    if (!$o{allow_error} && $self->{ebuf} =~ /ERROR:/) {
        die "psql session: " . $self->errors;
    }
    return @rows;
}


sub query {
    my ($self, $sql, %o) = @_;
    $self->send($sql);
    return $self->wait(%o);
}


# What psql wrote to stderr since the last call.
sub errors {
    my ($self) = @_;
    my $e = $self->{ebuf};
    $self->{ebuf} = '';
    return $e;
}


sub close {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    print {$self->{in}} "\\q\n";
    CORE::close($self->{in});
    if (!Test::Monetize::_poll(5, sub {
            waitpid($pid, POSIX::WNOHANG()) == $pid }))
    {
        kill 'KILL', $pid;
        waitpid $pid, 0;
    }
}


sub DESTROY {
    my ($self) = @_;
    local ($?, $@);
    $self->close if $self->{pid} && $$ == $self->{owner_pid};
}


# ===========================================================================

package Test::Monetize::Backend;

# A small HTTP server in a child process, for an upstream to proxy to or a
# third-party API to call. The handler runs in a process per connection.

use strict;
use warnings;


sub start {
    my ($class, $handler, %o) = @_;
    my $listen = IO::Socket::INET->new(
        Listen => 128, LocalAddr => '127.0.0.1', LocalPort => $o{port} // 0,
        Proto => 'tcp', ReuseAddr => 1)
        or die "Test::Monetize::Backend: cannot listen: $!\n";
    my $log = Test::Monetize::new_dir('backend') . '/requests.jsonl';
    Test::Monetize::_spew($log, '');

    my $pid = fork // die "Test::Monetize::Backend: fork: $!\n";
    if ($pid == 0) {
        POSIX::setpgid(0, 0);
        $SIG{$_} = 'DEFAULT' for qw(INT TERM);
        $SIG{CHLD} = 'IGNORE';
        while (1) {
            my $c = $listen->accept or next;
            my $kid = fork;
            if (defined $kid && $kid == 0) {
                close $listen;
                eval { _serve($c, $handler, $log) };
                POSIX::_exit(0);
            }
            close $c;
        }
    }
    my $self = bless { pid => $pid, port => $listen->sockport, log => $log },
                     $class;
    close $listen;
    push @Test::Monetize::Backends, $self;
    return $self;
}


sub port { $_[0]{port} }


sub _serve {
    my ($c, $handler, $log) = @_;
    my $buf = '';
    my $end;
    while (($end = index $buf, "\r\n\r\n") < 0) {
        sysread($c, $buf, 65536, length $buf) or return;
    }
    my ($line, @lines) = split /\r\n/, substr($buf, 0, $end);
    my ($method, $uri) = split ' ', $line;
    my %h;
    for (@lines) {
        my ($n, $v) = /\A([^:]+):\s*(.*?)\s*\z/ or next;
        $h{lc $n} = exists $h{lc $n} ? "$h{lc $n}, $v" : $v;
    }
    my $body = substr $buf, $end + 4;
    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        my $dec;
        until (defined($dec = Test::Monetize::_dechunk($body))) {
            sysread($c, $body, 65536, length $body) or return;
        }
        $body = $dec;
    } else {
        my $cl = $h{'content-length'} // 0;
        while (length $body < $cl) {
            sysread($c, $body, 65536, length $body) or return;
        }
    }
    my ($path, $query) = split /\?/, $uri, 2;
    my $req = { method => $method, uri => $uri, path => $path,
                query => $query // '', headers => \%h, body => $body };

    open my $fh, '>>', $log or die;
    print {$fh} $Json->encode($req) . "\n";
    close $fh;

    my ($status, $headers, $rbody) = $handler->($req);
    $status //= 200;
    $rbody //= '';
    my @hh = ref $headers eq 'HASH' ? %$headers : @{$headers // []};
    my $out = "HTTP/1.1 $status X\r\n";
    while (my ($n, $v) = splice @hh, 0, 2) {
        $out .= "$n: $v\r\n";
    }
    $out .= "Content-Length: " . length($rbody) . "\r\n"
          . "Connection: close\r\n\r\n$rbody";
    while (length $out) {
        my $n = syswrite $c, $out or return;
        substr($out, 0, $n) = '';
    }
    close $c;
}


# The requests received so far: {method, uri, path, query, headers, body}.
sub requests {
    my ($self) = @_;
    return map { $Json->decode($_) }
           split /\n/, Test::Monetize::_slurp($self->{log});
}


sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill 'TERM', -$pid;
    kill 'TERM', $pid;
    waitpid $pid, 0;
}


1;


package Test::Monetize::Redis;

# A private redis-server for a test that stops, hangs or restarts it: the
# shared one (MONETIZE_REDIS_PORT) must never be stopped. Stopped at END.

use strict;
use warnings;

my @Servers;

sub start {
    my ($class, %o) = @_;
    my $self = bless { dir => $o{dir} // Test::Monetize::new_dir('redis'),
                       port => $o{port} // Test::Monetize::free_port(),
                       args => $o{args} // [], auth => $o{auth} // [] },
                     $class;
    push @Servers, $self;
    $self->restart;
    return $self;
}

sub restart {
    my ($self) = @_;
    system('redis-server', '--bind', '127.0.0.1', '--port', $self->{port},
           '--dir', $self->{dir}, '--daemonize', 'yes',
           '--pidfile', "$self->{dir}/redis.pid",
           '--logfile', "$self->{dir}/redis.log",
           '--save', '', '--appendonly', 'no', @{$self->{args}}) == 0
        or die "redis-server did not start\n";
    Test::Monetize::wait_until(10, sub { $self->pid && eval {
        $self->cli(@{$self->{auth}}, 'PING') eq 'PONG' } })
        or die "the private redis on $self->{port} does not answer\n";
    return $self;
}

sub pid {
    my ($self) = @_;
    open my $fh, '<', "$self->{dir}/redis.pid" or return undef;
    my $pid = <$fh>;
    return $pid && $pid =~ /(\d+)/ && kill(0, $1) ? $1 : undef;
}

sub stop {
    my ($self) = @_;
    my $pid = $self->pid or return;
    kill 'CONT', $pid;
    kill 'TERM', $pid;
    Test::Monetize::wait_until(10, sub { !kill 0, $pid });
}

sub cli {
    my ($self, @args) = @_;
    open my $fh, '-|', 'redis-cli', '-h', '127.0.0.1', '-p', $self->{port},
        @args or die "redis-cli: $!\n";
    my $out = do { local $/; <$fh> } // '';
    close $fh;
    $out =~ s/\s+\z//;
    return $out;
}

sub port { $_[0]{port} }
sub dir { $_[0]{dir} }

END { $_->stop for @Servers }



package Test::Monetize::Smtp;

# A mail sink on loopback: scripts/lib/smtp_sink.py (aiosmtpd), one file
# per mail in its directory. Stopped at END.

use strict;
use warnings;
use IO::Socket::INET;

my @Sinks;

sub start {
    my ($class, %o) = @_;
    my $self = bless { dir => $o{dir} // Test::Monetize::new_dir('smtp'),
                       port => $o{port} // Test::Monetize::free_port(),
                       auth => $o{auth} },
                     $class;
    push @Sinks, $self;
    $self->restart;
    return $self;
}

sub restart {
    my ($self) = @_;
    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        open STDOUT, '>>', "$self->{dir}/sink.log";
        open STDERR, '>&', \*STDOUT;
        { exec '/usr/bin/python3', 'scripts/lib/smtp_sink.py',
               '--port', $self->{port}, '--dir', "$self->{dir}/mail",
               $self->{auth} ? ('--auth', $self->{auth}) : () };
        POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    Test::Monetize::wait_until(10, sub {
        IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                              PeerPort => $self->{port}) })
        or die "the mail sink on $self->{port} does not answer\n";
    return $self;
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    kill 'TERM', $pid;
    waitpid $pid, 0;
}

sub mails {
    my ($self) = @_;
    opendir my $dh, "$self->{dir}/mail" or return ();
    my @files = sort grep { /\A\d+-\d+\.eml\z/ } readdir $dh;
    return map { Test::Monetize::_slurp("$self->{dir}/mail/$_") } @files;
}

sub wait_mails {
    my ($self, $n, $seconds) = @_;
    Test::Monetize::wait_until($seconds // 10,
                               sub { scalar($self->mails) >= $n });
    return $self->mails;
}

sub port { $_[0]{port} }
sub dir { $_[0]{dir} }

END { $_->stop for @Sinks }


# ===========================================================================

package Test::Monetize::FakeStripe;

# Stripe's API, faked: t/lib/fake_stripe.py on loopback. Stopped at END.

use strict;
use warnings;
use IO::Socket::INET;

my @Fakes;

sub start {
    my ($class, %o) = @_;
    my $self = bless { dir => $o{dir} // Test::Monetize::new_dir('stripe'),
                       port => $o{port} // Test::Monetize::free_port(),
                       key => $o{key} // 'sk_test_monetize',
                       webhook => $o{webhook},
                       webhook_secret => $o{webhook_secret} },
                     $class;
    push @Fakes, $self;
    $self->restart;
    return $self;
}

sub restart {
    my ($self) = @_;
    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        open STDOUT, '>>', "$self->{dir}/stripe.log";
        open STDERR, '>&', \*STDOUT;
        { exec '/usr/bin/python3', 't/lib/fake_stripe.py',
               '--port', $self->{port}, '--key', $self->{key},
               map { defined $self->{$_->[0]}
                         ? ($_->[1], $self->{$_->[0]}) : () }
                   [webhook => '--webhook'],
                   [webhook_secret => '--webhook-secret'] };
        POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    Test::Monetize::wait_until(10, sub {
        IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                              PeerPort => $self->{port}) })
        or die "the fake Stripe on $self->{port} does not answer\n";
    return $self;
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    local $?;                       # at END, the file's exit status
    kill 'TERM', $pid;
    waitpid $pid, 0;
}

sub port { $_[0]{port} }
sub key { $_[0]{key} }
sub url { "http://127.0.0.1:$_[0]{port}" }

sub _call {
    my ($self, $method, $path, $body) = @_;
    my %o = (method => $method, path => $path);
    $o{json} = $body if defined $body;
    my $res = Test::Monetize::HTTP->new(
        port => $self->{port}, timeout => 10,
        raw => Test::Monetize::_build_request(%o))->wait;
    die "fake Stripe $method $path: " . ($res->{error} // $res->{status})
        . "\n" if $res->{error};
    return $res;
}

sub requests {
    my ($self) = @_;
    return @{ $self->_call(GET => '/_fake/requests')->{json} };
}

sub objects {
    my ($self, $kind) = @_;
    return @{ $self->_call(GET => "/_fake/objects/$kind")->{json} };
}

sub fail {
    my ($self, $path, $mode, $times, %o) = @_;
    $self->_call(POST => '/_fake/fail',
                 { %o, path => $path, mode => "$mode",
                   times => $times // 1 });
}

sub reset { $_[0]->_call(POST => '/_fake/reset') }

sub event_json {
    my ($self, $type, $id, %over) = @_;
    my $q = join '&', map { "$_=" . _escape($over{$_}) } sort keys %over;
    my $res = $self->_call(GET => "/_fake/event/$type/$id"
                                  . ($q ? "?$q" : ''));
    die "fake Stripe: no event $type for $id\n" if $res->{status} != 200;
    return $res->{body};
}

sub event {
    my ($self, @args) = @_;
    return JSON::PP->new->utf8->decode($self->event_json(@args));
}

sub _escape {
    my ($s) = @_;
    $s =~ s/([^A-Za-z0-9\-_.~])/sprintf('%%%02X', ord $1)/ge;
    return $s;
}

END { $_->stop for @Fakes }

1;
