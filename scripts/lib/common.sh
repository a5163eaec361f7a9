# shellcheck shell=bash
#
# Helpers shared by scripts/run and scripts/test: install the Debian
# packages, build the two dynamic modules against Debian's nginx, and run
# private PostgreSQL and Redis instances. Source this file; every function
# works under `set -euo pipefail` and exits with a message on failure.
#
#   monetize_install_deps                 install what is missing (root)
#   monetize_build REPO BUILDDIR [sanitize]  -> BUILDDIR/nginx/objs/*.so;
#                                         sanitize: with ASan and UBSan
#   monetize_pg_start DIR PORT            cluster in DIR, role + db monetize
#   monetize_pg_psql DIR PORT [ARGS...]   psql as the cluster's superuser
#   monetize_pg_stop DIR
#   monetize_redis_start DIR PORT / monetize_redis_stop DIR
#   monetize_free_port                    prints a free port on 127.0.0.1
#   monetize_random_hex BYTES             prints 2*BYTES hex digits
#   monetize_alive PID                    is PID running (not a zombie)
#   monetize_node_deps REPO BUILDDIR      t/node's npm packages (Stripe's
#                                         library) -> BUILDDIR/node

MONETIZE_PG_BIN=/usr/lib/postgresql/15/bin

MONETIZE_DEBS=(
    nginx nginx-dev postgresql postgresql-contrib redis-server
    libpq-dev libjansson-dev libhiredis-dev libcurl4-openssl-dev libjwt-dev
    python3-jwt python3-botocore python3-cryptography
    libssl-dev libcrypt-dev libpcre2-dev zlib1g-dev
    gcc make perl wrk curl python3-aiosmtpd iproute2
    chromium chromium-driver python3-selenium python3-html5lib
)


monetize_say() {
    printf '%s\n' "$*" >&2
}


monetize_die() {
    printf '%s: error: %s\n' "${0##*/}" "$*" >&2
    exit 1
}


monetize_random_hex() {
    od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'
}


monetize_free_port() {
    perl -MIO::Socket::INET -e '
        my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1",
                                      LocalPort => 0, Proto => "tcp")
            or die "cannot bind a free port: $!\n";
        print $s->sockport, "\n";'
}


# True when process PID runs. A zombie does not count: where PID 1 does not
# reap orphans, a stopped daemon stays one.
monetize_alive() {
    local stat
    kill -0 "$1" 2>/dev/null || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}


# Polls COMMAND... every 0.1 s until it succeeds or SECONDS pass.
monetize_wait_for() {
    local seconds=$1 i
    shift
    for ((i = 0; i < seconds * 10; i++)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}


# The npm packages the tests run (t/node/package.json and its lock: Stripe's
# own library signs their webhooks), with the machine's node and npm, into
# BUILDDIR/node; again only when the lock changes, from npm's cache when it
# has them.
monetize_node_deps() {
    local repo=$1 dir=$2/node

    # the machine's Node.js when it has one, else Debian's
    if ! command -v npm >/dev/null; then
        ((EUID == 0)) \
            || monetize_die "the tests need node and npm; install them as" \
                            "root: apt-get install nodejs npm"
        monetize_say "installing: nodejs npm"
        apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends nodejs npm >&2
    fi

    if [[ -d $dir/node_modules ]] \
        && cmp -s "$repo/t/node/package-lock.json" "$dir/package-lock.json"
    then
        return 0
    fi

    mkdir -p "$dir"
    cp "$repo/t/node/package.json" "$repo/t/node/package-lock.json" "$dir/"
    (cd "$dir" && npm ci --prefer-offline --no-audit --no-fund >&2) \
        || monetize_die "npm ci failed in $dir"
}


monetize_install_deps() {
    local missing=() p

    for p in "${MONETIZE_DEBS[@]}"; do
        if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" \
              != "install ok installed" ]]; then
            missing+=("$p")
        fi
    done

    if ((${#missing[@]} == 0)); then
        return 0
    fi

    if ((EUID != 0)); then
        monetize_die "missing Debian packages: ${missing[*]}; install them" \
                     "as root: apt-get install ${missing[*]}"
    fi

    monetize_say "installing: ${missing[*]}"
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${missing[@]}" >&2

    # The packages may start system-wide instances; we never use them.
    if command -v service >/dev/null; then
        service nginx stop >/dev/null 2>&1 || true
        service redis-server stop >/dev/null 2>&1 || true
    fi
    pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
}


# The sanitizer flags of `monetize_build REPO BUILDDIR sanitize`. The
# modules then need gcc's runtimes loaded first in the process: Debian's
# nginx is not built with them, so it must run with
# LD_PRELOAD="$(monetize_sanitizer_preload)". -O2 as Debian builds: at
# nginx's own -O, gcc 12 leaves out some of UBSan's checks (the nonnull
# argument of a memcpy, for one). UBSan reads UBSAN_OPTIONS only at its
# first report, when nginx has overwritten its environment: a report ends
# the process by the build, not by an option.
MONETIZE_SANITIZE_FLAGS="-O2 -fsanitize=address,undefined"
MONETIZE_SANITIZE_FLAGS+=" -fno-sanitize-recover=undefined"
MONETIZE_SANITIZE_FLAGS+=" -fno-omit-frame-pointer"


monetize_sanitizer_preload() {
    local lib path paths=()
    for lib in libasan.so libubsan.so; do
        path=$(gcc -print-file-name="$lib")
        [[ $path == /* && -e $path ]] \
            || monetize_die "gcc has no $lib (apt-get install gcc)"
        paths+=("$(readlink -f "$path")")
    done
    echo "${paths[*]}"
}


monetize_build() {
    local repo build src log stamp want flags=()

    repo=$(cd "$1" && pwd)
    mkdir -p "$2"
    build=$(cd "$2" && pwd)
    src=$build/nginx
    log=$build/build.log
    stamp=$build/configured-for

    if [[ ${3:-} == sanitize ]]; then
        flags=(--with-cc-opt="$MONETIZE_SANITIZE_FLAGS"
               --with-ld-opt="$MONETIZE_SANITIZE_FLAGS")
    fi
    want=$repo${flags[0]:+ ${flags[*]}}

    [[ -f $repo/config ]] || monetize_die "$repo/config is missing"

    if [[ ! -x $src/configure ]]; then
        [[ -d /usr/share/nginx/src ]] \
            || monetize_die "/usr/share/nginx/src is missing (nginx-dev)"
        rm -rf "$src"
        cp -a /usr/share/nginx/src "$src"
    fi

    : >"$log"

    # set -e does not apply inside a subshell that is followed by ||,
    # hence the explicit "|| exit".
    if ! (
        cd "$src" || exit 1
        # shellcheck disable=SC1091
        source ./conf_flags || exit 1

        # A build directory built with other flags is configured again;
        # make then rebuilds every object.
        if [[ ! -f objs/Makefile || $repo/config -nt objs/Makefile
              || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]
        then
            ./configure "${NGX_CONF_FLAGS[@]}" "${flags[@]}" \
                --add-dynamic-module="$repo" || exit 1
            printf '%s\n' "$want" >"$stamp"
        fi

        make -j2 -f objs/Makefile modules || exit 1
    ) >>"$log" 2>&1; then
        tail -n 40 "$log" >&2
        monetize_die "the build failed; the full log is $log"
    fi
}


# Runs a command as the PostgreSQL OS user when we are root (PostgreSQL
# refuses to run as root), as ourselves otherwise.
monetize_as_pg() {
    if ((EUID == 0)); then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}


monetize_pg_superuser() {
    if ((EUID == 0)); then
        echo postgres
    else
        id -un
    fi
}


monetize_pg_psql() {
    local dir=$1 port=$2
    shift 2
    monetize_as_pg "$MONETIZE_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
        -h "$dir/run" -p "$port" -U "$(monetize_pg_superuser)" \
        -d postgres "$@"
}


monetize_pg_start() {
    local dir port su d
    mkdir -p "$1"
    dir=$(cd "$1" && pwd)
    port=$2
    su=$(monetize_pg_superuser)

    : "${MONETIZE_PG_PASSWORD:?MONETIZE_PG_PASSWORD must be set}"

    mkdir -p "$dir/run"
    chmod 755 "$dir" "$dir/run"
    if ((EUID == 0)); then
        chown postgres: "$dir" "$dir/run"
        # The postgres user (and nginx's workers, for the unix socket) must
        # be able to reach DIR.
        d=$dir
        while [[ $d != / ]]; do
            d=$(dirname "$d")
            if ! runuser -u postgres -- test -x "$d"; then
                monetize_say "making $d traversable (chmod o+x)"
                chmod o+x "$d"
            fi
        done
    fi

    if [[ ! -d $dir/data ]]; then
        monetize_as_pg "$MONETIZE_PG_BIN/initdb" -D "$dir/data" -U "$su" \
            -E UTF8 --locale=C.UTF-8 -A peer >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; monetize_die "initdb failed"; }
        echo "include 'monetize.conf'" \
            | monetize_as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
    fi

    # Rewritten on each start, so that a later start may use another port.
    monetize_as_pg tee "$dir/data/monetize.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/run'
EOF
    monetize_as_pg tee "$dir/data/pg_hba.conf" >/dev/null <<EOF
local all $su peer
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
EOF

    if ! monetize_as_pg "$MONETIZE_PG_BIN/pg_ctl" -D "$dir/data" status \
            >/dev/null 2>&1; then
        monetize_as_pg "$MONETIZE_PG_BIN/pg_ctl" -D "$dir/data" -w -t 60 \
            -l "$dir/log" start >/dev/null \
            || { tail -n 20 "$dir/log" >&2;
                 monetize_die "PostgreSQL did not start; see $dir/log"; }
    fi

    # \getenv keeps the password out of the process list.
    monetize_pg_psql "$dir" "$port" <<'EOF'
\getenv pw MONETIZE_PG_PASSWORD
SELECT 'CREATE ROLE monetize' WHERE NOT EXISTS
    (SELECT FROM pg_roles WHERE rolname = 'monetize') \gexec
ALTER ROLE monetize WITH LOGIN CREATEDB PASSWORD :'pw';
SELECT 'CREATE DATABASE monetize OWNER monetize' WHERE NOT EXISTS
    (SELECT FROM pg_database WHERE datname = 'monetize') \gexec
EOF
}


monetize_pg_stop() {
    local dir=$1
    if [[ -f $dir/data/postmaster.pid ]]; then
        monetize_as_pg "$MONETIZE_PG_BIN/pg_ctl" -D "$dir/data" -m fast -w \
            stop >/dev/null 2>&1 || true
    fi
}


monetize_redis_start() {
    local dir port
    mkdir -p "$1"
    dir=$(cd "$1" && pwd)
    port=$2

    if [[ -f $dir/redis.pid ]] && monetize_alive "$(cat "$dir/redis.pid")"
    then
        return 0
    fi

    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" \
        --daemonize yes --pidfile "$dir/redis.pid" \
        --logfile "$dir/redis.log" --save "" --appendonly no >/dev/null \
        || monetize_die "redis-server did not start; see $dir/redis.log"

    monetize_wait_for 10 redis-cli -h 127.0.0.1 -p "$port" ping \
        || { tail -n 20 "$dir/redis.log" >&2;
             monetize_die "Redis does not answer on port $port"; }
}


monetize_redis_stop() {
    local dir=$1 pid
    [[ -f $dir/redis.pid ]] || return 0
    pid=$(cat "$dir/redis.pid")
    if kill "$pid" 2>/dev/null; then
        monetize_wait_for 10 eval "! monetize_alive $pid" \
            || monetize_say "Redis (pid $pid) did not stop"
    fi
    rm -f "$dir/redis.pid"
}
