#!/usr/bin/env bash
# Instructions per request, counted by valgrind (callgrind): a figure that
# does not move with the noise of a shared machine, unlike req/s.
#
#   bench/instructions.sh [--seconds N] [--no-build] [--no-install] [--keep DIR]
#
#   --seconds     how long each target is driven (default 8); with one
#                 connection under valgrind that is a few thousand requests
#   --no-build    use the binaries already in target/release
#   --no-install  do not apt-get install missing tools
#   --keep DIR    copy the callgrind dumps to DIR, for callgrind_annotate
#
#   --targets     comma-separated subset of the targets below (default all)
#
# Targets, one after another, each behind the same static nginx upstream:
#   nginx         nginx plain reverse proxy (bench/nginx-proxy.conf.tmpl, as
#                 in bench/run.sh), one process: `daemon off; master_process
#                 off;` so the process under valgrind is the one serving
#   nginx-auth    nginx + auth_request (bench/nginx-auth.conf.tmpl) to a
#                 static nginx answering 204; only the proxying nginx is
#                 counted, not the auth server (guise does its check in
#                 process, so its figure includes it)
#   bare-pingora  examples/bare_pingora.rs
#   guise-anon    guise, public route, no cookie (bench/guise-bench.yaml)
#   guise-login   guise, logged in, memory store (bench/guise-bench-login.yaml)
#   guise-imp     guise, the bench admin viewing the app as the bench user
#                 (impersonation), the same configuration as guise-login;
#                 its audit writer runs in the same process and is counted
#   guise-perm    guise logged in with 100 sharing rules on the route's
#                 resource (bench/guise-bench-perm.yaml)
#
# Each target runs under `valgrind --tool=callgrind`; after a warm-up the
# counters are zeroed, wrk drives one connection for --seconds, and the
# counters are dumped. Reported: instructions per request (whole process),
# and for guise-login the part spent in SHA-256 compression.
#
# Why the SHA-256 column: valgrind does not offer the CPU's SHA extensions,
# so under it the sha2 crate takes its portable code, which needs several
# times the instructions the SHA-NI path needs on real hardware. The session
# token hash and the identity-header HMAC are SHA-256, so "login extra" is
# shown with and without it; the truth on hardware lies between, close to
# the "without" figure.
set -euo pipefail

SECONDS_PER_TARGET=8
DO_BUILD=1
DO_INSTALL=1
KEEP=""
ONLY=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seconds)    SECONDS_PER_TARGET=$2; shift 2 ;;
        --no-build)   DO_BUILD=0; shift ;;
        --no-install) DO_INSTALL=0; shift ;;
        --keep)       KEEP=$2; shift 2 ;;
        --targets)    ONLY=$2; shift 2 ;;
        -h|--help)    awk 'NR == 1 {next} /^#/ {sub(/^# ?/, ""); print; next} {exit}' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[[ $SECONDS_PER_TARGET =~ ^[0-9]+$ && $SECONDS_PER_TARGET -ge 1 ]] || { echo "--seconds must be a whole number >= 1" >&2; exit 2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
RELEASE=${CARGO_TARGET_DIR:-$ROOT/target}/release
TMP=$(mktemp -d /tmp/guise-instr.XXXXXX)
chmod 755 "$TMP"
export PATH=$PATH:/usr/sbin:/sbin

log() { printf '[instr %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

PIDS=()
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        local deadline=$((SECONDS + 20))
        while kill -0 "$pid" 2>/dev/null && [[ $SECONDS -lt $deadline ]]; do sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ $rc -ne 0 ]]; then
        local f
        for f in "$TMP"/*.log; do [[ -s $f ]] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ $DO_INSTALL -eq 1 ]]; then
    pkgs=()
    command -v valgrind >/dev/null || pkgs+=(valgrind)
    command -v wrk >/dev/null || pkgs+=(wrk)
    command -v nginx >/dev/null || pkgs+=(nginx-light)
    command -v curl >/dev/null || pkgs+=(curl)
    if [[ ${#pkgs[@]} -gt 0 ]]; then
        sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo
        log "installing: ${pkgs[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${pkgs[@]}" >/dev/null
    fi
fi
for t in valgrind callgrind_control callgrind_annotate wrk nginx curl python3; do
    command -v "$t" >/dev/null || die "$t not found"
done
if [[ $DO_BUILD -eq 1 ]]; then
    log "building release binaries"
    (cd "$ROOT" && cargo build --release --bin guise --example bare_pingora)
fi

read -r -a PORTS <<<"$(python3 - <<'EOF'
import socket
socks = []
for _ in range(13):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)"
P_UP=${PORTS[0]} P_BARE=${PORTS[1]} P_ANON=${PORTS[2]} P_ANON_OPS=${PORTS[3]} P_LOGIN=${PORTS[4]} P_LOGIN_OPS=${PORTS[5]}
P_NGINX=${PORTS[6]} P_NGINX_AUTH=${PORTS[7]} P_AUTH=${PORTS[8]} P_IMP=${PORTS[9]} P_IMP_OPS=${PORTS[10]}
P_PERM=${PORTS[11]} P_PERM_OPS=${PORTS[12]}
want() { [[ -z $ONLY || ",$ONLY," == *",$1,"* ]]; }
BENCH_PATH=/api/companies/co-101

# wait_ok URL [CURL ARGS...]: poll until 200, with a deadline (valgrind
# starts slowly).
wait_ok() {
    local url=$1; shift
    local deadline=$((SECONDS + 120)) pid=${PIDS[-1]}
    until [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$url" || true) == 200 ]]; do
        kill -0 "$pid" 2>/dev/null || die "server for $url exited"
        [[ $SECONDS -lt $deadline ]] || die "$url did not answer 200 within 120 s"
        sleep 0.2
    done
}

USER_LINE=""; [[ $(id -u) -eq 0 ]] && USER_LINE="user root;"
sed -e "s|@USER_LINE@|$USER_LINE|" -e "s|@TMP@|$TMP|g" -e "s|@NAME@|upstream|g" \
    -e "s|@LISTEN_PORT@|$P_UP|" "$BENCH/nginx-static.conf.tmpl" >"$TMP/upstream.conf"
nginx -p "$TMP" -c "$TMP/upstream.conf" -g 'daemon off;' >"$TMP/upstream.log" 2>&1 &
PIDS+=($!)
wait_ok "http://127.0.0.1:$P_UP$BENCH_PATH"

# nginx_conf TEMPLATE NAME PORT: a copy of a bench/run.sh nginx template.
nginx_conf() {
    sed -e "s|@USER_LINE@|$USER_LINE|" -e "s|@TMP@|$TMP|g" -e "s|@NAME@|$2|g" \
        -e "s|@LISTEN_PORT@|$3|" -e "s|@UPSTREAM_PORT@|$P_UP|" -e "s|@AUTH_PORT@|$P_AUTH|" \
        "$BENCH/$1" >"$TMP/$2.conf"
    if grep -q '@[A-Z_]*@' "$TMP/$2.conf"; then die "unfilled placeholder in $TMP/$2.conf"; fi
}
nginx_conf nginx-proxy.conf.tmpl nginx "$P_NGINX"
nginx_conf nginx-auth.conf.tmpl nginx-auth "$P_NGINX_AUTH"
if want nginx-auth; then
    nginx_conf nginx-static.conf.tmpl authsrv "$P_AUTH"
    nginx -p "$TMP" -c "$TMP/authsrv.conf" -g 'daemon off;' >"$TMP/authsrv.log" 2>&1 &
    PIDS+=($!)
    deadline=$((SECONDS + 30))
    until [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_AUTH/auth-check" || true) == 204 ]]; do
        [[ $SECONDS -lt $deadline ]] || die "auth server did not answer 204"
        sleep 0.1
    done
fi
NGINX_ONE_PROCESS='daemon off; master_process off;'

GUISE_SIGNING_KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
export GUISE_SIGNING_KEY
guise_yaml() { # guise_yaml SRC PORT OPS OUT
    sed -e "s|127\.0\.0\.1:18080|127.0.0.1:$2|" -e "s|127\.0\.0\.1:19090|127.0.0.1:$3|" \
        -e "s|127\.0\.0\.1:18081|127.0.0.1:$P_UP|" "$BENCH/$1" >"$4"
}
guise_yaml guise-bench.yaml "$P_ANON" "$P_ANON_OPS" "$TMP/anon.yaml"
guise_yaml guise-bench-login.yaml "$P_LOGIN" "$P_LOGIN_OPS" "$TMP/login.yaml"
guise_yaml guise-bench-login.yaml "$P_IMP" "$P_IMP_OPS" "$TMP/imp.yaml"
guise_yaml guise-bench-perm.yaml "$P_PERM" "$P_PERM_OPS" "$TMP/perm.yaml"

# session_cookie HDR_FILE -> "guise_session=..." from a Set-Cookie
session_cookie() {
    tr -d '\r' <"$1" | awk 'tolower($1) == "set-cookie:" && $2 ~ /^guise_session=/ {sub(/;.*/, "", $2); print $2; exit}'
}

# measure NAME PORT [COOKIE] CMD... -> "NAME requests instructions sha256"
measure() {
    local name=$1 port=$2 cookie=$3; shift 3
    valgrind --tool=callgrind --callgrind-out-file="$TMP/$name.cg.%p" "$@" >"$TMP/$name.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    local -a hdr=()
    if [[ $cookie == login || $cookie == imp ]]; then
        local user=bench@bench.test
        [[ $cookie == imp ]] && user=bench-admin@bench.test
        local deadline=$((SECONDS + 120)) code=""
        until [[ $code == 200 ]]; do
            code=$(curl -s -o "$TMP/login.json" -D "$TMP/login.hdr" -w '%{http_code}' --max-time 10 \
                -H 'Content-Type: application/json' \
                --data "{\"username\":\"$user\",\"password\":\"bench-pass\"}" \
                "http://127.0.0.1:$port/_guise/login" || true)
            kill -0 "$pid" 2>/dev/null || die "$name exited"
            [[ $SECONDS -lt $deadline ]] || die "$name: login answered ${code:-nothing}"
            [[ $code == 200 ]] || sleep 0.5
        done
        local c
        c=$(session_cookie "$TMP/login.hdr")
        [[ -n $c ]] || die "$name: no session cookie"
        if [[ $cookie == imp ]]; then
            # The admin starts viewing the app as the bench user, as
            # bench/run.sh's guise-imp does; the new cookie is the one measured.
            local csrf
            csrf=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["csrf_token"])' "$TMP/login.json")
            code=$(curl -s -o "$TMP/imp.json" -D "$TMP/imp.hdr" -w '%{http_code}' --max-time 10 \
                -H 'Content-Type: application/json' -H "Cookie: $c" -H "X-CSRF-Token: $csrf" \
                --data '{"user":"u-bench"}' "http://127.0.0.1:$port/_guise/impersonate" || true)
            [[ $code == 200 ]] || die "$name: POST /_guise/impersonate answered ${code:-nothing}: $(head -c 300 "$TMP/imp.json")"
            c=$(session_cookie "$TMP/imp.hdr")
            [[ -n $c ]] || die "$name: the impersonation set no session cookie"
        fi
        hdr=(-H "Cookie: $c")
        wait_ok "http://127.0.0.1:$port$BENCH_PATH" "${hdr[@]}"
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$BENCH_PATH") != 200 ]] \
            || die "$name: $BENCH_PATH answers 200 without the cookie; the session path is not measured"
    else
        wait_ok "http://127.0.0.1:$port$BENCH_PATH"
    fi
    wrk -t1 -c1 -d2s "${hdr[@]}" "http://127.0.0.1:$port$BENCH_PATH" >/dev/null
    callgrind_control -z "$pid" >>"$TMP/$name.control.log" 2>&1 \
        || die "$name: callgrind_control -z failed: $(tail -n 3 "$TMP/$name.control.log")"
    local out reqs
    out=$(wrk -t1 -c1 -d"${SECONDS_PER_TARGET}s" "${hdr[@]}" "http://127.0.0.1:$port$BENCH_PATH")
    callgrind_control -d "$pid" >>"$TMP/$name.control.log" 2>&1 \
        || die "$name: callgrind_control -d failed: $(tail -n 3 "$TMP/$name.control.log")"
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    grep -q 'Non-2xx' <<<"$out" && die "$name: non-2xx answers during the run: $out"
    [[ ${reqs:-0} -gt 0 ]] || die "$name: wrk completed no request: $out"
    local dump deadline=$((SECONDS + 30))
    until dump=$(ls "$TMP/$name".cg.*.1 2>/dev/null | head -1) && [[ -n $dump ]] && grep -q '^totals:' "$dump"; do
        [[ $SECONDS -lt $deadline ]] || die "$name: no callgrind dump"
        sleep 0.2
    done
    local total sha
    total=$(awk '/^totals:/ {print $2}' "$dump")
    # Self cost of the portable SHA-256 compression, summed over the
    # entries callgrind splits it into (one per source file inlined).
    sha=$(callgrind_annotate --inclusive=no --threshold=100 "$dump" 2>/dev/null \
        | awk '/:sha2::sha256::soft::compress/ && !/=>/ {gsub(/,/, "", $1); s += $1} END {print s + 0}')
    if [[ $name == guise-login && $sha -eq 0 ]]; then
        log "WARNING: no SHA-256 compression found in the guise-login profile (symbol renamed?); the SHA-256 column is 0"
    fi
    kill -INT "$pid" 2>/dev/null || true
    if [[ -n $KEEP ]]; then
        mkdir -p "$KEEP" && cp "$dump" "$KEEP/$name.callgrind" && echo "$reqs" >"$KEEP/$name.requests"
    fi
    log "$name: $reqs requests, $total instructions"
    echo "$name $reqs $total $sha" >>"$TMP/results"
}

want nginx && measure nginx "$P_NGINX" "" nginx -p "$TMP" -c "$TMP/nginx.conf" -g "$NGINX_ONE_PROCESS"
want nginx-auth && measure nginx-auth "$P_NGINX_AUTH" "" nginx -p "$TMP" -c "$TMP/nginx-auth.conf" -g "$NGINX_ONE_PROCESS"
want bare-pingora && measure bare-pingora "$P_BARE" "" "$RELEASE/examples/bare_pingora" "127.0.0.1:$P_BARE" "127.0.0.1:$P_UP"
want guise-anon && measure guise-anon "$P_ANON" "" "$RELEASE/guise" run --config "$TMP/anon.yaml"
want guise-login && measure guise-login "$P_LOGIN" login "$RELEASE/guise" run --config "$TMP/login.yaml"
want guise-imp && measure guise-imp "$P_IMP" imp "$RELEASE/guise" run --config "$TMP/imp.yaml"
want guise-perm && measure guise-perm "$P_PERM" login "$RELEASE/guise" run --config "$TMP/perm.yaml"
[[ -s $TMP/results ]] || die "no target measured (--targets $ONLY)"

echo
echo "instructions per request (callgrind; ${SECONDS_PER_TARGET}s of wrk -c1 per target)"
awk '{ per = $3 / $2; sha = $4 / $2; r[$1] = per; s[$1] = sha
       printf "  %-13s %6d requests  %8.0f instr/req  (SHA-256: %6.0f)\n", $1, $2, per, sha }
     function ratio(a, b, what) {
       if ((a in r) && (b in r)) printf "  %-32s %.2f%s\n", a " / " b, r[a] / r[b], what
     }
     END {
       print ""
       ratio("guise-anon", "bare-pingora", "")
       ratio("guise-login", "nginx-auth", "")
       ratio("guise-login", "nginx", "")
       ratio("bare-pingora", "nginx", "")
       ratio("guise-imp", "guise-login", "  (issue 12 aims at <= 1.10)")
       ratio("guise-perm", "guise-login", "  (issue 13 aims at <= 1.10)")
       if (("guise-login" in r) && ("guise-anon" in r)) {
         extra = r["guise-login"] - r["guise-anon"]
         printf "  guise-login extra per request    %.0f instr (%.1f%% of guise-anon)\n", extra, 100 * extra / r["guise-anon"]
         ex = extra - s["guise-login"] + s["guise-anon"]
         printf "    without SHA-256 compression    %.0f instr (%.1f%% of guise-anon)\n", ex, 100 * ex / r["guise-anon"]
       }
       if (("guise-imp" in r) && ("guise-login" in r)) {
         extra = r["guise-imp"] - r["guise-login"]
         printf "  guise-imp extra per request      %.0f instr (%.1f%% of guise-login)\n", extra, 100 * extra / r["guise-login"]
       }
     }' "$TMP/results"
