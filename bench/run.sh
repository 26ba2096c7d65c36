#!/usr/bin/env bash
# Load benchmark: guise side by side with its peers.
#
#   bench/run.sh [--rounds N] [--duration SECONDS] [--connections C]
#                [--warmup SECONDS] [--targets a,b,...] [--upstream demo|static]
#                [--no-build] [--no-install]
#
#   defaults: 3 rounds of 5 s per target, 50 connections, 2 s warm-up each.
#   --targets     comma-separated subset of the targets below
#   --upstream    demo (default: guise demo-upstream) or static (an nginx
#                 answering a fixed small JSON; isolates the proxies' cost)
#   --no-build    use the binaries already in target/release
#   --no-install  do not apt-get install missing tools
#
# Targets (run interleaved each round, medians reported):
#   direct        wrk -> upstream, no proxy
#   nginx         nginx plain reverse proxy (1 worker, keepalive upstream)
#   nginx-auth    nginx + auth_request to a trivial auth server (answers 204)
#   haproxy       haproxy (nbthread 1, http mode, http-reuse always)
#   bare-pingora  examples/bare_pingora.rs (pingora 0.9 with guise's default
#                 server settings: one thread, work stealing off)
#   guise-anon    guise without sessions: bench/guise-bench.yaml, where the
#                 bench routes are public and wrk sends no cookie
#   guise-login   guise, logged in: bench/guise-bench-login.yaml (no public
#                 route, memory store); the script logs in once through
#                 POST /_guise/login and wrk sends the session cookie on
#                 every request
#   guise-login-redis
#                 the same with `sessions.store: redis`, against a
#                 redis-server the script starts on a free loopback port
#                 (--save "" --appendonly no); steady state is cache hits, so
#                 it should match guise-login
#   guise-perm    guise logged in with data permissions: bench/guise-bench-perm.yaml,
#                 guise-login's configuration plus 100 sharing rules on the
#                 benchmarked route's resource (company), the grant in the
#                 last; the record is decided by its key, cached per user
#   guise-imp     guise, an admin viewing the app as the benchmark user
#                 (impersonation): the same configuration as guise-login;
#                 the script signs in as its admin and starts an
#                 impersonation of the benchmark user, and wrk sends that
#                 session's cookie. What it adds over guise-login is the
#                 impersonation itself: its checks on every request, the
#                 audit record of every request and the second identity
#                 header
#
# HTTPS (TLS 1.3, keep-alive; wrk over https, which does not check the
# certificate: a throwaway self-signed P-256 one made by openssl per run):
#   nginx-tls     nginx plain proxy terminating TLS (OpenSSL)
#   nginx-auth-tls
#                 nginx + auth_request terminating TLS
#   guise-login-tls
#                 guise logged in, over its https listener (rustls), the
#                 same configuration as guise-login plus the listener
# Both nginx TLS configs set keepalive_requests 100000 (nginx's default of
# 1000 would add a handshake every 1000 requests; pingora has no limit).
#
# Whole machine (the proxy on both cores, `taskset -c 0,1` for everything,
# wrk with 2 threads; no pinning separates the proxy from the load, so
# these compare only with each other):
#   nginx-2w      nginx plain proxy, 2 workers
#   nginx-auth-2w nginx + auth_request, 2 workers
#   guise-login-2t
#                 guise logged in with `server.threads: 2`
# Not in the default set (it is run per core): ask for them with
# --targets, e.g. --targets nginx-tls,nginx-auth-tls,guise-login-tls or
# --targets nginx-2w,nginx-auth-2w,guise-login-2t.
#
# Every proxy is pinned to core 0; upstream, auth server, redis and wrk to
# core 1 (see notes/testing.md: only ratios measured side by side in one run
# mean anything on these shared 2-core machines). Each guise target is its
# own guise process (the idle ones cost nothing while another is measured).
#
# Beside req/s and latency, each target's row gives the proxy process's own
# CPU per request (user space and kernel, from /proc/PID/stat around each
# wrk run, its child processes included): it tells a proxy's own work from
# the socket work the kernel does for every proxy alike.
#
# The report ends with the ratios the sessions work is judged by (median
# req/s): guise-login/guise-anon (aim >= 0.95: a logged-in request costs at
# most 5% more than one without sessions), guise-login/nginx-auth (aim > 1),
# guise-anon/bare-pingora, guise-anon/nginx, and the redis store against the
# memory store, and guise-imp/guise-login (aim >= 0.909: an impersonated
# request costs at most 10% more than a plain logged-in one).
#
# Environment:
#   BENCH_PATH  request path (default /api/companies/co-101, a small JSON GET
#               of the demo app; if it is not 200 on the upstream and was not
#               set explicitly, the script falls back, with a warning, to the
#               first of /api/status/200, /healthz that is 200)
#
# Adding a case: one `add_target` line in define_targets (section "targets"),
# plus a start_server_<name> function if it needs a server or setup step.
set -euo pipefail

ROUNDS=3
DURATION=5
CONNS=50
WARMUP=2
ONLY=""
UPSTREAM_KIND=demo
DO_BUILD=1
DO_INSTALL=1
BENCH_PATH_SET=${BENCH_PATH+x}
BENCH_PATH=${BENCH_PATH:-/api/companies/co-101}
# Tried in order when BENCH_PATH is not set and the default is not 200
# (the static upstream, say, has no companies).
FALLBACK_PATHS=(/api/status/200 /healthz)
READY_DEADLINE=60   # seconds per server

usage() { awk 'NR == 1 {next} /^#/ {sub(/^# ?/, ""); print; next} {exit}' "$0"; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds)      ROUNDS=$2; shift 2 ;;
        --duration)    DURATION=$2; shift 2 ;;
        --connections) CONNS=$2; shift 2 ;;
        --warmup)      WARMUP=$2; shift 2 ;;
        --targets)     ONLY=$2; shift 2 ;;
        --upstream)    UPSTREAM_KIND=$2; shift 2 ;;
        --no-build)    DO_BUILD=0; shift ;;
        --no-install)  DO_INSTALL=0; shift ;;
        -h|--help)     usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
for v in ROUNDS DURATION CONNS WARMUP; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "--${v,,} must be a whole number" >&2; exit 2; }
done
[[ $ROUNDS -ge 1 && $DURATION -ge 1 && $CONNS -ge 1 ]] || { echo "rounds, duration, connections must be >= 1" >&2; exit 2; }
case "$UPSTREAM_KIND" in demo|static) ;; *) echo "--upstream must be demo or static" >&2; exit 2 ;; esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
RELEASE=${CARGO_TARGET_DIR:-$ROOT/target}/release
TMP=$(mktemp -d /tmp/guise-bench.XXXXXX)
chmod 755 "$TMP"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup
PIDS=()
declare -A PID_OF=()   # process name (as given to start) -> pid
STOPSIGS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ ${#PIDS[@]} -gt 0 ]]; then
        log "stopping ${#PIDS[@]} processes"
        local pid i
        for i in "${!PIDS[@]}"; do kill -"${STOPSIGS[$i]}" "${PIDS[$i]}" 2>/dev/null || true; done
        local deadline=$((SECONDS + 10))
        for pid in "${PIDS[@]}"; do
            while kill -0 "$pid" 2>/dev/null && [[ $SECONDS -lt $deadline ]]; do sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        done
    fi
    if [[ $rc -ne 0 && -d $TMP ]]; then
        log "failed (exit $rc); server logs:"
        local f
        for f in "$TMP"/*.log; do
            [[ -s $f ]] || continue
            echo "--- $f" >&2
            tail -n 20 "$f" >&2
        done
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CORE CMD...   (background, pinned; output to $TMP/NAME.log)
# STOPSIG (default TERM) is the signal cleanup sends it; pingora-based servers
# want INT (fast shutdown: TERM waits out pingora's grace period).
start() {
    local name=$1 core=$2; shift 2
    taskset -c "$core" "$@" >"$TMP/$name.log" 2>&1 &
    PIDS+=($!)
    PID_OF[$name]=$!
    STOPSIGS+=("${STOPSIG:-TERM}")
    log "started $name (pid $!, core $core): $*"
}

# ---------------------------------------------------------------- tools
install_missing() {
    local -a pkgs=()
    command -v wrk     >/dev/null || pkgs+=(wrk)
    command -v nginx   >/dev/null || pkgs+=(nginx-light)
    command -v haproxy >/dev/null || pkgs+=(haproxy)
    command -v cmake   >/dev/null || pkgs+=(cmake)
    command -v curl    >/dev/null || pkgs+=(curl)
    command -v taskset >/dev/null || pkgs+=(util-linux)
    command -v python3 >/dev/null || pkgs+=(python3)
    command -v redis-server >/dev/null || pkgs+=(redis-server)
    [[ ${#pkgs[@]} -eq 0 ]] && return 0
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    log "installing: ${pkgs[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${pkgs[@]}" >/dev/null
}
# nginx-light and haproxy live in /usr/sbin, which is not always on PATH.
export PATH=$PATH:/usr/sbin:/sbin
if [[ $DO_INSTALL -eq 1 ]]; then install_missing; fi
for t in wrk nginx haproxy curl taskset python3; do command -v "$t" >/dev/null || die "$t not found"; done
[[ $(nproc) -ge 2 ]] || log "WARNING: fewer than 2 cores; pinning to cores 0 and 1 will fail"

# ---------------------------------------------------------------- ports
# Bind N sockets to port 0 at once, read the ports, release them.
read -r -a PORTS <<<"$(python3 - <<'EOF'
import socket
socks = []
for _ in range(26):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)"
P_UPSTREAM=${PORTS[0]}
P_NGINX=${PORTS[1]}
P_NGINX_AUTH=${PORTS[2]}
P_AUTH=${PORTS[3]}
P_HAPROXY=${PORTS[4]}
P_BARE=${PORTS[5]}
P_GUISE=${PORTS[6]}
P_GUISE_OPS=${PORTS[7]}
P_LOGIN=${PORTS[8]}
P_LOGIN_OPS=${PORTS[9]}
P_LOGIN_REDIS=${PORTS[10]}
P_LOGIN_REDIS_OPS=${PORTS[11]}
P_REDIS=${PORTS[12]}
P_IMP=${PORTS[13]}
P_IMP_OPS=${PORTS[14]}
P_NGINX_TLS=${PORTS[15]}
P_NGINX_AUTH_TLS=${PORTS[16]}
P_GUISE_TLS=${PORTS[17]}
P_GUISE_TLS_HTTP=${PORTS[18]}
P_GUISE_TLS_OPS=${PORTS[19]}
P_NGINX_2W=${PORTS[20]}
P_NGINX_AUTH_2W=${PORTS[21]}
P_LOGIN_2T=${PORTS[22]}
P_LOGIN_2T_OPS=${PORTS[23]}
P_PERM=${PORTS[24]}
P_PERM_OPS=${PORTS[25]}

URL_BASE=http://127.0.0.1

# ---------------------------------------------------------------- targets
# add_target NAME SERVER URL [EXTRA WRK ARGS...]
#   SERVER names the start_server_<SERVER> function that brings up what the
#   target needs (started once, in order of first use, even if several
#   targets share it). define_targets runs twice: first to learn which
#   servers to start, then again once they are all up, so URL and arguments
#   may use variables a start function sets (write them as ${VAR:-}), as
#   the guise-login targets do with the session cookie their start function
#   gets by logging in.
# WRK_CORES (default 1) and WRK_THREADS (default 1) set before add_target
# say where the target's wrk runs; OPT_IN=1 keeps a target out of the
# default set (it runs only when --targets names it).
T_NAMES=(); T_SERVERS=(); T_URLS=(); T_ARGS=(); T_WRK_CORES=(); T_WRK_THREADS=()
add_target() {
    local name=$1 server=$2 url=$3; shift 3
    if [[ -n $ONLY && ",$ONLY," != *",$name,"* ]]; then return 0; fi
    if [[ -z $ONLY && -n ${OPT_IN:-} ]]; then return 0; fi
    T_NAMES+=("$name"); T_SERVERS+=("$server"); T_URLS+=("$url")
    T_WRK_CORES+=("${WRK_CORES:-1}"); T_WRK_THREADS+=("${WRK_THREADS:-1}")
    if [[ $# -gt 0 ]]; then T_ARGS+=("$(printf '%q ' "$@")"); else T_ARGS+=(""); fi
}
define_targets() {
    add_target direct       upstream   "$URL_BASE:$P_UPSTREAM$BENCH_PATH"
    add_target nginx        nginx      "$URL_BASE:$P_NGINX$BENCH_PATH"
    add_target nginx-auth   nginx_auth "$URL_BASE:$P_NGINX_AUTH$BENCH_PATH"
    add_target haproxy      haproxy    "$URL_BASE:$P_HAPROXY$BENCH_PATH"
    add_target bare-pingora bare       "$URL_BASE:$P_BARE$BENCH_PATH"
    add_target guise-anon   guise      "$URL_BASE:$P_GUISE$BENCH_PATH"
    add_target guise-login  guise_login "$URL_BASE:$P_LOGIN$BENCH_PATH" \
        -H "Cookie: ${LOGIN_COOKIE:-}"
    add_target guise-login-redis guise_login_redis "$URL_BASE:$P_LOGIN_REDIS$BENCH_PATH" \
        -H "Cookie: ${LOGIN_REDIS_COOKIE:-}"
    add_target guise-imp    guise_imp  "$URL_BASE:$P_IMP$BENCH_PATH" \
        -H "Cookie: ${IMP_COOKIE:-}"
    add_target guise-perm   guise_perm "$URL_BASE:$P_PERM$BENCH_PATH" \
        -H "Cookie: ${PERM_COOKIE:-}"
    OPT_IN=1 add_target nginx-tls nginx_tls "https://127.0.0.1:$P_NGINX_TLS$BENCH_PATH"
    OPT_IN=1 add_target nginx-auth-tls nginx_auth_tls "https://127.0.0.1:$P_NGINX_AUTH_TLS$BENCH_PATH"
    OPT_IN=1 add_target guise-login-tls guise_login_tls "https://127.0.0.1:$P_GUISE_TLS$BENCH_PATH" \
        -H "Cookie: ${LOGIN_TLS_COOKIE:-}"
    OPT_IN=1 WRK_CORES=0,1 WRK_THREADS=2 add_target nginx-2w nginx_2w "$URL_BASE:$P_NGINX_2W$BENCH_PATH"
    OPT_IN=1 WRK_CORES=0,1 WRK_THREADS=2 add_target nginx-auth-2w nginx_auth_2w "$URL_BASE:$P_NGINX_AUTH_2W$BENCH_PATH"
    OPT_IN=1 WRK_CORES=0,1 WRK_THREADS=2 add_target guise-login-2t guise_login_2t "$URL_BASE:$P_LOGIN_2T$BENCH_PATH" \
        -H "Cookie: ${LOGIN_2T_COOKIE:-}"
}

# ---------------------------------------------------------------- readiness
# wait_http NAME URL [EXPECT]: poll until the server answers (any HTTP status,
# or exactly EXPECT), with a deadline. Fails early if the process died.
wait_http() {
    local name=$1 url=$2 expect=${3:-} pid=${PIDS[-1]}
    local deadline=$((SECONDS + READY_DEADLINE)) code
    while :; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" 2>/dev/null || true)
        if [[ -n $code && $code != 000 ]]; then
            if [[ -z $expect || $code == "$expect" ]]; then return 0; fi
        fi
        kill -0 "$pid" 2>/dev/null || die "$name exited before answering on $url (see log above)"
        [[ $SECONDS -lt $deadline ]] || die "$name did not answer ${expect:-any status} on $url within ${READY_DEADLINE}s (last: ${code:-none})"
        sleep 0.05
    done
}

render() { # render TEMPLATE OUT KEY=VALUE...
    local tmpl=$1 out=$2; shift 2
    local -a sedargs=()
    local kv
    for kv in "$@"; do sedargs+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
    sed "${sedargs[@]}" "$tmpl" >"$out"
    if grep -q '@[A-Z_]*@' "$out"; then die "unfilled placeholder in $out"; fi
}
USER_LINE=""
[[ $(id -u) -eq 0 ]] && USER_LINE="user root;"

start_nginx() { # start_nginx NAME CORE TEMPLATE LISTEN_PORT
    local name=$1 core=$2 tmpl=$3 port=$4
    render "$BENCH/$tmpl" "$TMP/$name.conf" "TMP=$TMP" "NAME=$name" "USER_LINE=$USER_LINE" \
        "LISTEN_PORT=$port" "UPSTREAM_PORT=$P_UPSTREAM" "AUTH_PORT=$P_AUTH"
    nginx -t -q -p "$TMP" -c "$TMP/$name.conf" -g 'daemon off;' >"$TMP/$name-check.log" 2>&1 \
        || { cat "$TMP/$name-check.log" >&2; die "nginx config $name invalid"; }
    start "$name" "$core" nginx -p "$TMP" -c "$TMP/$name.conf" -g 'daemon off;'
}

start_server_upstream() {
    case "$UPSTREAM_KIND" in
        demo)
            STOPSIG=INT start upstream 1 "$RELEASE/guise" demo-upstream --listen "127.0.0.1:$P_UPSTREAM"
            ;;
        static)
            start_nginx upstream 1 nginx-static.conf.tmpl "$P_UPSTREAM"
            ;;
    esac
    wait_http upstream "$URL_BASE:$P_UPSTREAM/"
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' "$URL_BASE:$P_UPSTREAM$BENCH_PATH" || true)
    if [[ $code != 200 ]]; then
        [[ -z $BENCH_PATH_SET ]] || die "upstream answers $code on BENCH_PATH=$BENCH_PATH (want 200)"
        # Not set explicitly: take the first fallback that answers 200, JSON first.
        local first=$BENCH_PATH p
        for p in "${FALLBACK_PATHS[@]}"; do
            code=$(curl -s -o /dev/null -w '%{http_code}' "$URL_BASE:$P_UPSTREAM$p" || true)
            if [[ $code == 200 ]]; then BENCH_PATH=$p; break; fi
        done
        [[ $code == 200 ]] || die "upstream answers 200 on none of $first ${FALLBACK_PATHS[*]}"
        log "WARNING: upstream does not answer 200 on $first; using $BENCH_PATH"
    fi
    log "upstream OK: GET $BENCH_PATH -> 200 ($(curl -s "$URL_BASE:$P_UPSTREAM$BENCH_PATH" | wc -c) bytes)"
}
start_server_nginx() {
    start_nginx nginx 0 nginx-proxy.conf.tmpl "$P_NGINX"
    wait_http nginx "$URL_BASE:$P_NGINX$BENCH_PATH"
}
AUTH_STARTED=""
start_server_auth() { # once, whichever nginx-auth target needs it first
    [[ -z $AUTH_STARTED ]] || return 0
    AUTH_STARTED=1
    start_nginx authsrv 1 nginx-static.conf.tmpl "$P_AUTH"
    wait_http authsrv "$URL_BASE:$P_AUTH/auth-check" 204
}
start_server_nginx_auth() {
    start_server_auth
    start_nginx nginx-auth 0 nginx-auth.conf.tmpl "$P_NGINX_AUTH"
    wait_http nginx-auth "$URL_BASE:$P_NGINX_AUTH$BENCH_PATH"
}
start_server_haproxy() {
    render "$BENCH/haproxy.cfg.tmpl" "$TMP/haproxy.cfg" "LISTEN_PORT=$P_HAPROXY" "UPSTREAM_PORT=$P_UPSTREAM"
    haproxy -c -q -f "$TMP/haproxy.cfg" || die "haproxy config invalid"
    start haproxy 0 haproxy -db -f "$TMP/haproxy.cfg"
    wait_http haproxy "$URL_BASE:$P_HAPROXY$BENCH_PATH"
}
start_server_bare() {
    STOPSIG=INT start bare-pingora 0 "$RELEASE/examples/bare_pingora" "127.0.0.1:$P_BARE" "127.0.0.1:$P_UPSTREAM"
    wait_http bare-pingora "$URL_BASE:$P_BARE$BENCH_PATH"
}
# One signing key for every guise process of the run.
GUISE_SIGNING_KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
export GUISE_SIGNING_KEY

# start_guise NAME YAML PORT OPS_PORT [SED ARGS...]: a guise process with a
# copy of bench/YAML whose placeholder ports are rewritten (plus any further
# sed edits), ready once it answers and its /readyz is 200.
declare -A GUISE_OPS=()   # guise process name -> its operations port
start_guise() {
    local name=$1 yaml=$2 port=$3 ops=$4; shift 4
    GUISE_OPS[$name]=$ops
    sed -e "s|127\.0\.0\.1:18080|127.0.0.1:$port|" \
        -e "s|127\.0\.0\.1:19090|127.0.0.1:$ops|" \
        -e "s|127\.0\.0\.1:18081|127.0.0.1:$P_UPSTREAM|" \
        "$@" "$BENCH/$yaml" >"$TMP/$name.yaml"
    STOPSIG=INT start "$name" "${GUISE_CORES:-0}" "$RELEASE/guise" run --config "$TMP/$name.yaml"
    wait_http "$name" "$URL_BASE:$port$BENCH_PATH"
    local deadline=$((SECONDS + 15)) code=""
    while [[ $SECONDS -lt $deadline ]]; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$URL_BASE:$ops/readyz" || true)
        [[ $code == 200 ]] && break
        sleep 0.1
    done
    [[ $code == 200 ]] || log "WARNING: $name /readyz answers ${code:-nothing} (measuring anyway)"
}

# The benchmark user of bench/guise-bench-login.yaml (password: a
# benchmark-only value, never a real secret).
BENCH_USER=bench@bench.test
BENCH_PASSWORD=bench-pass

# login NAME PORT -> "guise_session=TOKEN" on stdout. Logs in once through
# guise's JSON login, then checks that the cookie really opens BENCH_PATH
# (200, not the 401 of a request without a session).
login() {
    local name=$1 port=$2 code cookie
    code=$(curl -s -o "$TMP/$name-login.json" -D "$TMP/$name-login.hdr" -w '%{http_code}' \
        -H 'Content-Type: application/json' \
        --data "{\"username\":\"$BENCH_USER\",\"password\":\"$BENCH_PASSWORD\"}" \
        "$URL_BASE:$port/_guise/login" || true)
    [[ $code == 200 ]] || die "$name: login answered ${code:-nothing} (want 200): $(head -c 300 "$TMP/$name-login.json" 2>/dev/null)"
    cookie=$(tr -d '\r' <"$TMP/$name-login.hdr" \
        | awk 'tolower($1) == "set-cookie:" && $2 ~ /^guise_session=/ {sub(/;.*/, "", $2); print $2; exit}')
    [[ -n $cookie && $cookie != guise_session= ]] || die "$name: login answered 200 without a guise_session cookie"
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $cookie" "$URL_BASE:$port$BENCH_PATH" || true)
    [[ $code == 200 ]] || die "$name: GET $BENCH_PATH with the session cookie answers ${code:-nothing} (want 200)"
    code=$(curl -s -o /dev/null -w '%{http_code}' "$URL_BASE:$port$BENCH_PATH" || true)
    [[ $code != 200 ]] || die "$name: GET $BENCH_PATH answers 200 without a cookie: the route is public, nothing measures the session path"
    log "$name: logged in as $BENCH_USER; with the cookie $BENCH_PATH -> 200, without -> $code"
    echo "$cookie"
}

start_server_guise() {
    start_guise guise guise-bench.yaml "$P_GUISE" "$P_GUISE_OPS"
}
start_server_guise_login() {
    start_guise guise-login guise-bench-login.yaml "$P_LOGIN" "$P_LOGIN_OPS"
    LOGIN_COOKIE=$(login guise-login "$P_LOGIN")
}
# The admin of bench/guise-bench-login.yaml, who may impersonate.
BENCH_ADMIN=bench-admin@bench.test

# impersonate NAME PORT -> "guise_session=TOKEN" of an impersonation of the
# benchmark user by the benchmark admin, checked to open BENCH_PATH.
impersonate() {
    local name=$1 port=$2 code cookie csrf
    code=$(curl -s -o "$TMP/$name-login.json" -D "$TMP/$name-login.hdr" -w '%{http_code}' \
        -H 'Content-Type: application/json' \
        --data "{\"username\":\"$BENCH_ADMIN\",\"password\":\"$BENCH_PASSWORD\"}" \
        "$URL_BASE:$port/_guise/login" || true)
    [[ $code == 200 ]] || die "$name: admin login answered ${code:-nothing} (want 200)"
    cookie=$(tr -d '\r' <"$TMP/$name-login.hdr" \
        | awk 'tolower($1) == "set-cookie:" && $2 ~ /^guise_session=/ {sub(/;.*/, "", $2); print $2; exit}')
    csrf=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["csrf_token"])' "$TMP/$name-login.json")
    code=$(curl -s -o "$TMP/$name-imp.json" -D "$TMP/$name-imp.hdr" -w '%{http_code}' \
        -H 'Content-Type: application/json' -H "Cookie: $cookie" -H "X-CSRF-Token: $csrf" \
        --data '{"user":"u-bench"}' "$URL_BASE:$port/_guise/impersonate" || true)
    [[ $code == 200 ]] || die "$name: POST /_guise/impersonate answered ${code:-nothing}: $(head -c 300 "$TMP/$name-imp.json")"
    cookie=$(tr -d '\r' <"$TMP/$name-imp.hdr" \
        | awk 'tolower($1) == "set-cookie:" && $2 ~ /^guise_session=/ {sub(/;.*/, "", $2); print $2; exit}')
    [[ -n $cookie ]] || die "$name: the impersonation set no session cookie"
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $cookie" "$URL_BASE:$port$BENCH_PATH" || true)
    [[ $code == 200 ]] || die "$name: GET $BENCH_PATH while impersonating answers ${code:-nothing} (want 200)"
    log "$name: $BENCH_ADMIN views the app as $BENCH_USER; $BENCH_PATH -> 200"
    echo "$cookie"
}
start_server_guise_perm() {
    [[ $BENCH_PATH == /api/companies/co-101 ]] \
        || log "WARNING: guise-perm: BENCH_PATH is $BENCH_PATH, not /api/companies/co-101: no sharing rule is exercised"
    start_guise guise-perm guise-bench-perm.yaml "$P_PERM" "$P_PERM_OPS"
    PERM_COOKIE=$(login guise-perm "$P_PERM")
}
start_server_guise_imp() {
    start_guise guise-imp guise-bench-login.yaml "$P_IMP" "$P_IMP_OPS"
    IMP_COOKIE=$(impersonate guise-imp "$P_IMP")
}
# ---------------------------------------------------------------- https
# A throwaway self-signed P-256 certificate for the TLS targets.
make_cert() {
    [[ -s $TMP/tls-cert.pem ]] && return 0
    command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -keyout "$TMP/tls-key.pem" -out "$TMP/tls-cert.pem" >"$TMP/openssl.log" 2>&1 \
        || die "openssl could not make a certificate: $(tail -3 "$TMP/openssl.log")"
}
# tls_nginx NAME TEMPLATE PORT: an nginx config of TEMPLATE terminating
# TLS 1.3 on PORT, started pinned to core 0.
tls_nginx() {
    local name=$1 tmpl=$2 port=$3
    make_cert
    sed -e "s|listen 127.0.0.1:@LISTEN_PORT@;|listen 127.0.0.1:@LISTEN_PORT@ ssl;\n        ssl_certificate @TMP@/tls-cert.pem;\n        ssl_certificate_key @TMP@/tls-key.pem;\n        ssl_protocols TLSv1.3;\n        keepalive_requests 100000;|" \
        "$BENCH/$tmpl" >"$TMP/$name.tmpl"
    grep -q 'ssl_protocols TLSv1.3' "$TMP/$name.tmpl" || die "could not make $name's TLS config"
    render "$TMP/$name.tmpl" "$TMP/$name.conf" "TMP=$TMP" "NAME=$name" "USER_LINE=$USER_LINE" \
        "LISTEN_PORT=$port" "UPSTREAM_PORT=$P_UPSTREAM" "AUTH_PORT=$P_AUTH"
    nginx -t -q -p "$TMP" -c "$TMP/$name.conf" -g 'daemon off;' >"$TMP/$name-check.log" 2>&1 \
        || { cat "$TMP/$name-check.log" >&2; die "nginx config $name invalid"; }
    start "$name" 0 nginx -p "$TMP" -c "$TMP/$name.conf" -g 'daemon off;'
    local deadline=$((SECONDS + READY_DEADLINE))
    until [[ $(curl -sk -o /dev/null -w '%{http_code}' --tlsv1.3 "https://127.0.0.1:$port$BENCH_PATH" || true) == 200 ]]; do
        [[ $SECONDS -lt $deadline ]] || die "$name did not answer 200 over TLS 1.3"
        sleep 0.1
    done
}
start_server_nginx_tls() {
    tls_nginx nginx-tls nginx-proxy.conf.tmpl "$P_NGINX_TLS"
}
start_server_nginx_auth_tls() {
    start_server_auth
    tls_nginx nginx-auth-tls nginx-auth.conf.tmpl "$P_NGINX_AUTH_TLS"
}
start_server_guise_login_tls() {
    make_cert
    start_guise guise-login-tls guise-bench-login.yaml "$P_GUISE_TLS_HTTP" "$P_GUISE_TLS_OPS" \
        -e "s|^listeners:\$|listeners:\n  https: { address: \"127.0.0.1:$P_GUISE_TLS\", cert: \"$TMP/tls-cert.pem\", key: \"$TMP/tls-key.pem\", http2: false }|"
    grep -q "^  https: " "$TMP/guise-login-tls.yaml" || die "could not add the https listener"
    local code cookie
    code=$(curl -sk -o "$TMP/guise-login-tls-login.json" -D "$TMP/guise-login-tls-login.hdr" -w '%{http_code}' \
        -H 'Content-Type: application/json' \
        --data "{\"username\":\"$BENCH_USER\",\"password\":\"$BENCH_PASSWORD\"}" \
        "https://127.0.0.1:$P_GUISE_TLS/_guise/login" || true)
    [[ $code == 200 ]] || die "guise-login-tls: login over https answered ${code:-nothing}"
    # Over https the cookie has its own (prefixed) name.
    cookie=$(tr -d '\r' <"$TMP/guise-login-tls-login.hdr" \
        | awk 'tolower($1) == "set-cookie:" && $2 ~ /guise_session=/ {sub(/;.*/, "", $2); print $2; exit}')
    [[ -n $cookie ]] || die "guise-login-tls: no session cookie over https"
    code=$(curl -sk --tlsv1.3 -o /dev/null -w '%{http_code}' -H "Cookie: $cookie" "https://127.0.0.1:$P_GUISE_TLS$BENCH_PATH" || true)
    [[ $code == 200 ]] || die "guise-login-tls: $BENCH_PATH with the cookie answers ${code:-nothing} over TLS 1.3"
    LOGIN_TLS_COOKIE=$cookie
}

# ---------------------------------------------------------------- whole machine
# The same servers on both cores (taskset -c 0,1), for the -2w/-2t targets.
start_server_nginx_2w() {
    render "$BENCH/nginx-proxy.conf.tmpl" "$TMP/nginx-2w.conf" "TMP=$TMP" "NAME=nginx-2w" "USER_LINE=$USER_LINE" \
        "LISTEN_PORT=$P_NGINX_2W" "UPSTREAM_PORT=$P_UPSTREAM" "AUTH_PORT=$P_AUTH"
    sed -i 's|^worker_processes 1;|worker_processes 2;|' "$TMP/nginx-2w.conf"
    start nginx-2w 0,1 nginx -p "$TMP" -c "$TMP/nginx-2w.conf" -g 'daemon off;'
    wait_http nginx-2w "$URL_BASE:$P_NGINX_2W$BENCH_PATH" 200
}
start_server_nginx_auth_2w() {
    start_server_auth
    render "$BENCH/nginx-auth.conf.tmpl" "$TMP/nginx-auth-2w.conf" "TMP=$TMP" "NAME=nginx-auth-2w" "USER_LINE=$USER_LINE" \
        "LISTEN_PORT=$P_NGINX_AUTH_2W" "UPSTREAM_PORT=$P_UPSTREAM" "AUTH_PORT=$P_AUTH"
    sed -i 's|^worker_processes 1;|worker_processes 2;|' "$TMP/nginx-auth-2w.conf"
    start nginx-auth-2w 0,1 nginx -p "$TMP" -c "$TMP/nginx-auth-2w.conf" -g 'daemon off;'
    wait_http nginx-auth-2w "$URL_BASE:$P_NGINX_AUTH_2W$BENCH_PATH" 200
}
start_server_guise_login_2t() {
    GUISE_CORES=0,1 start_guise guise-login-2t guise-bench-login.yaml "$P_LOGIN_2T" "$P_LOGIN_2T_OPS" \
        -e 's|^  threads: 1$|  threads: 2|'
    grep -q '^  threads: 2$' "$TMP/guise-login-2t.yaml" || die "could not set server.threads: 2"
    LOGIN_2T_COOKIE=$(login guise-login-2t "$P_LOGIN_2T")
}

start_server_redis() {
    command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"
    command -v redis-cli >/dev/null || die "redis-cli not found (apt-get install redis-tools)"
    start redis 1 redis-server --bind 127.0.0.1 --port "$P_REDIS" --save '' --appendonly no
    local deadline=$((SECONDS + READY_DEADLINE)) pid=${PIDS[-1]}
    until [[ $(redis-cli -h 127.0.0.1 -p "$P_REDIS" ping 2>/dev/null) == PONG ]]; do
        kill -0 "$pid" 2>/dev/null || die "redis-server exited before answering PING"
        [[ $SECONDS -lt $deadline ]] || die "redis-server did not answer PING within ${READY_DEADLINE}s"
        sleep 0.05
    done
}
start_server_guise_login_redis() {
    start_server_redis
    start_guise guise-login-redis guise-bench-login.yaml "$P_LOGIN_REDIS" "$P_LOGIN_REDIS_OPS" \
        -e "s|^  store: memory\$|  store: redis\\n  redis: { url: \"redis://127.0.0.1:$P_REDIS/0\" }|"
    grep -q '^  store: redis$' "$TMP/guise-login-redis.yaml" || die "could not switch guise-login-redis to the redis store"
    LOGIN_REDIS_COOKIE=$(login guise-login-redis "$P_LOGIN_REDIS")
}

# ---------------------------------------------------------------- wrk
# run_wrk INDEX SECONDS -> raw wrk output on stdout
run_wrk() {
    local i=$1 secs=$2
    local -a extra=()
    eval "extra=(${T_ARGS[$i]})"
    taskset -c "${T_WRK_CORES[$i]}" wrk -t"${T_WRK_THREADS[$i]}" -c"$CONNS" -d"${secs}s" --latency "${extra[@]}" "${T_URLS[$i]}"
}
# to_ms VALUE_WITH_UNIT (wrk prints us, ms, s, m)
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n }'
}
# parse_wrk FILE -> "rps p50_ms p99_ms non2xx socket_errors"
parse_wrk() {
    local f=$1 rps p50 p99 non2xx errs
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$f")
    p50=$(awk '$1 == "50%" {print $2}' "$f")
    p99=$(awk '$1 == "99%" {print $2}' "$f")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$f")
    errs=$(awk '/Socket errors:/ {s=0; for (i=3;i<=NF;i++) if ($i ~ /^[0-9]+,?$/) s += $i + 0; print s}' "$f")
    [[ -n $rps && -n $p50 && -n $p99 ]] || { cat "$f" >&2; die "could not parse wrk output $f"; }
    echo "$rps $(to_ms "$p50") $(to_ms "$p99") ${non2xx:-0} ${errs:-0}"
}
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }

# The proxy's own CPU per request, split into user space and kernel: the
# req/s ratios say how far apart two proxies are, this says where (a
# proxy's user-space work, or the kernel's socket work that every proxy
# pays). Counted for the process the target measures and its children
# (nginx's workers), from /proc/PID/stat around each wrk run; the auth
# server of the nginx-auth targets and the upstream are not counted.
CLK_TCK=$(getconf CLK_TCK)
# target_pid INDEX -> pid of the process serving target INDEX (empty if none)
target_pid() {
    local i=$1 name=${T_NAMES[$1]} server=${T_SERVERS[$1]}
    echo "${PID_OF[$name]:-${PID_OF[${server//_/-}]:-}}"
}
# cpu_ticks PID -> "utime stime": clock ticks of PID and its child processes
cpu_ticks() {
    local pid
    [[ -n $1 ]] || { echo "0 0"; return; }
    for pid in "$1" $(pgrep -P "$1" || true); do
        # Fields after "pid (comm) ": utime and stime are the 12th and 13th.
        [[ -r /proc/$pid/stat ]] && sed 's/^.*) //' "/proc/$pid/stat"
    done | awk '{u += $12; s += $13} END {print u + 0, s + 0}'
}
# cpu_per_request BEFORE AFTER REQUESTS -> "user_us sys_us" per request
cpu_per_request() {
    local -a a=($1) b=($2)
    awk -v u=$((b[0] - a[0])) -v s=$((b[1] - a[1])) -v n="$3" -v hz="$CLK_TCK" \
        'BEGIN { if (n > 0) printf "%.2f %.2f", u * 1e6 / hz / n, s * 1e6 / hz / n; else print "0 0" }'
}

# ---------------------------------------------------------------- build
define_targets
[[ ${#T_NAMES[@]} -gt 0 ]] || die "no targets selected (--targets $ONLY)"
declare -A NEED=()
for s in "${T_SERVERS[@]}"; do NEED[$s]=1; done
NEED[upstream]=1

NEED_GUISE=""
for s in "${!NEED[@]}"; do [[ $s == guise* ]] && NEED_GUISE=1; done
[[ $UPSTREAM_KIND == demo ]] && NEED_GUISE=1
if [[ $DO_BUILD -eq 1 ]]; then
    build=(cargo build --release)
    if [[ -n $NEED_GUISE ]]; then build+=(--bin guise); fi
    if [[ -n ${NEED[bare]:-} ]]; then build+=(--example bare_pingora); fi
    if [[ ${#build[@]} -gt 3 ]]; then
        log "building: ${build[*]}"
        (cd "$ROOT" && "${build[@]}")
    fi
fi
if [[ -n $NEED_GUISE ]]; then [[ -x $RELEASE/guise ]] || die "$RELEASE/guise missing"; fi
if [[ -n ${NEED[bare]:-} ]]; then [[ -x $RELEASE/examples/bare_pingora ]] || die "$RELEASE/examples/bare_pingora missing"; fi

# ---------------------------------------------------------------- start
start_server_upstream
declare -A STARTED=([upstream]=1)
for s in "${T_SERVERS[@]}"; do
    [[ -n ${STARTED[$s]:-} ]] && continue
    "start_server_$s"
    STARTED[$s]=1
done
# Define the targets again now that every server is up: the upstream check
# may have changed BENCH_PATH, and a start function may have set variables a
# target uses (a session cookie, say).
T_NAMES=(); T_SERVERS=(); T_URLS=(); T_ARGS=(); T_WRK_CORES=(); T_WRK_THREADS=()
define_targets

declare -A STATUS=()
for i in "${!T_NAMES[@]}"; do
    eval "extra=(${T_ARGS[$i]})"
    hdrs=()
    for ((k = 0; k < ${#extra[@]}; k++)); do
        [[ ${extra[$k]} == -H ]] && hdrs+=(-H "${extra[$((k + 1))]}")
    done
    STATUS[${T_NAMES[$i]}]=$(curl -sk -o /dev/null -w '%{http_code}' "${hdrs[@]}" "${T_URLS[$i]}" || true)
    log "target ${T_NAMES[$i]}: ${T_URLS[$i]} -> ${STATUS[${T_NAMES[$i]}]}"
    [[ ${STATUS[${T_NAMES[$i]}]} == 200 ]] || log "WARNING: ${T_NAMES[$i]} does not answer 200; its figures are not comparable"
done

# ---------------------------------------------------------------- measure
mkdir -p "$BENCH/results"
STAMP=$(date +%Y%m%d-%H%M%S)
RESULT=$BENCH/results/$STAMP.txt
RAW=$TMP/raw.txt
: >"$RAW"

if [[ $WARMUP -gt 0 ]]; then
    log "warm-up: ${WARMUP}s per target"
    for i in "${!T_NAMES[@]}"; do run_wrk "$i" "$WARMUP" >/dev/null; done
fi

ROWS=$TMP/rows.txt
: >"$ROWS"
for ((r = 1; r <= ROUNDS; r++)); do
    for i in "${!T_NAMES[@]}"; do
        name=${T_NAMES[$i]}
        out=$TMP/wrk-$r-$name.txt
        pid=$(target_pid "$i")
        before=$(cpu_ticks "$pid")
        run_wrk "$i" "$DURATION" >"$out"
        after=$(cpu_ticks "$pid")
        parsed=$(parse_wrk "$out")
        read -r rps p50 p99 non2xx errs <<<"$parsed"
        requests=$(awk '$2 == "requests" && $3 == "in" {print $1; exit}' "$out")
        read -r user_us sys_us <<<"$(cpu_per_request "$before" "$after" "${requests:-0}")"
        echo "$r $name $rps $p50 $p99 $non2xx $errs $user_us $sys_us" >>"$ROWS"
        log "round $r/$ROUNDS  $(printf '%-17s %10s req/s  p50 %7s ms  p99 %7s ms  cpu/req user %5s us sys %5s us' "$name" "$rps" "$p50" "$p99" "$user_us" "$sys_us")$([[ $non2xx != 0 || $errs != 0 ]] && echo "  non-2xx/3xx $non2xx, socket errors $errs")"
        { echo "===== round $r  $name  ${T_URLS[$i]}  ${T_ARGS[$i]}"; cat "$out"; } >>"$RAW"
    done
done

# ---------------------------------------------------------------- sessions
# What the logged-in guise processes did over the whole run (their own
# /metrics): the steady state is meant to be all session-cache hits.
SESSIONS=$TMP/sessions.txt
: >"$SESSIONS"
metric() { # metric TEXT_FILE NAME_WITH_LABELS -> value (0 if absent)
    awk -v m="$2" '$1 == m {v = $2} END {print v + 0}' "$1"
}
for name in guise-login guise-login-redis guise-imp; do
    [[ -n ${GUISE_OPS[$name]:-} ]] || continue
    m=$TMP/$name-metrics.txt
    curl -s --max-time 5 "$URL_BASE:${GUISE_OPS[$name]}/metrics" >"$m" || true
    [[ -s $m ]] || { log "WARNING: $name /metrics did not answer"; continue; }
    hit=$(metric "$m" 'guise_session_cache_requests_total{result="hit"}')
    miss=$(metric "$m" 'guise_session_cache_requests_total{result="miss"}')
    rerr=$(metric "$m" 'guise_redis_errors_total')
    printf '  %-18s session cache hits %s, misses %s; redis errors %s\n' "$name" "$hit" "$miss" "$rerr" >>"$SESSIONS"
    # A miss per login and per cache_ttl is expected; more means the
    # measured rounds were not the cached steady state.
    [[ $miss -le 5 ]] || log "WARNING: $name had $miss session-cache misses (want a handful at most)"
    [[ $rerr -eq 0 ]] || log "WARNING: $name counted $rerr redis errors"
done

# ---------------------------------------------------------------- report
declare -A MED_RPS=()
table() {
    printf '%-18s %12s %10s %10s %8s %10s %10s %10s\n' target "req/s" "p50 ms" "p99 ms" status "errors" "user us" "sys us"
    local name
    for name in "${T_NAMES[@]}"; do
        local rps p50 p99 errs user sys
        rps=$(awk -v n="$name" '$2 == n {print $3}' "$ROWS" | median)
        p50=$(awk -v n="$name" '$2 == n {print $4}' "$ROWS" | median)
        p99=$(awk -v n="$name" '$2 == n {print $5}' "$ROWS" | median)
        errs=$(awk -v n="$name" '$2 == n {s += $6 + $7} END {print s + 0}' "$ROWS")
        user=$(awk -v n="$name" '$2 == n {print $8}' "$ROWS" | median)
        sys=$(awk -v n="$name" '$2 == n {print $9}' "$ROWS" | median)
        MED_RPS[$name]=$rps
        printf '%-18s %12.0f %10.2f %10.2f %8s %10s %10.2f %10.2f\n' "$name" "$rps" "$p50" "$p99" "${STATUS[$name]}" "$errs" "$user" "$sys"
    done
    echo "(user us / sys us: the proxy process's own CPU per request, medians; not the auth server's or the upstream's)"
    echo
    echo "ratios of median req/s (higher is better for the first name):"
    # ratio A B AIM_OP AIM WHY: A/B, and whether it meets the aim (if any).
    ratio() {
        local a=$1 b=$2 op=${3:-} aim=${4:-} why=${5:-}
        [[ -n ${MED_RPS[$a]:-} && -n ${MED_RPS[$b]:-} ]] || return 0
        awk -v x="${MED_RPS[$a]}" -v y="${MED_RPS[$b]}" -v n="$a/$b" -v op="$op" -v aim="$aim" -v why="$why" 'BEGIN {
            r = x / y
            line = sprintf("  %-34s %5.3f", n, r)
            if (op != "") {
                ok = (op == ">=") ? (r >= aim) : (r > aim)
                line = line sprintf("   aim %s %s (%s): %s", op, aim, why, ok ? "met" : "NOT met")
            }
            print line }'
    }
    ratio guise-login guise-anon ">=" 0.952 "a logged-in request costs at most 5% more"
    ratio guise-login nginx-auth ">" 1 "beats nginx+auth_request"
    ratio guise-login-redis guise-anon ">=" 0.952 "same, redis store"
    ratio guise-login-redis nginx-auth ">" 1 "same, redis store"
    ratio guise-login-redis guise-login
    ratio guise-imp guise-login ">=" 0.909 "an impersonated request costs at most 10% more"
    ratio guise-perm guise-login ">=" 0.909 "100 sharing rules cost at most 10% more"
    ratio guise-anon bare-pingora
    ratio guise-anon nginx
    ratio guise-login-tls nginx-auth-tls ">=" 1.3 "issue 14, over TLS 1.3"
    ratio guise-login-tls nginx-tls ">=" 0.7 "issue 14, over TLS 1.3"
    ratio guise-login-2t nginx-auth-2w ">=" 1.3 "issue 14, whole machine"
    ratio guise-login-2t nginx-2w ">=" 0.7 "issue 14, whole machine"
    if [[ -s $SESSIONS ]]; then
        echo
        echo "logged-in targets over the whole run (their /metrics):"
        cat "$SESSIONS"
    fi
}

{
    echo "guise load benchmark  $(date -Is)"
    echo "host: $(uname -n)  kernel: $(uname -r)  cores: $(nproc)"
    echo "command: bench/run.sh --rounds $ROUNDS --duration $DURATION --connections $CONNS --warmup $WARMUP${ONLY:+ --targets $ONLY} --upstream $UPSTREAM_KIND"
    echo "path: $BENCH_PATH  wrk: taskset -c 1 wrk -t1 -c$CONNS -d${DURATION}s --latency URL"
    echo "pinning: proxies on core 0; upstream ($UPSTREAM_KIND), auth server, wrk on core 1"
    echo "versions: $(nginx -v 2>&1 | tr -d '\n'); $(haproxy -v 2>/dev/null | head -1)"
    echo
    echo "medians over $ROUNDS interleaved rounds (errors = non-2xx/3xx + socket errors, summed):"
    table
    echo
    echo "per round: round target req/s p50_ms p99_ms non2xx socket_errors user_us_per_req sys_us_per_req"
    cat "$ROWS"
    echo
    echo "raw wrk output:"
    cat "$RAW"
} >"$RESULT"

echo
sed -n '/^medians over/,/^per round:/p' "$RESULT" | sed '$d'
echo "raw results: $RESULT"
