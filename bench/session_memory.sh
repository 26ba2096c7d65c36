#!/usr/bin/env bash
# Redis memory of logged-in sessions, measured on a real redis-server: the
# figures docs/performance.md scales to a million sessions.
#
#   bench/session_memory.sh [--sessions N] [--no-build]
#
# Starts a redis-server (loopback, free port, no persistence) and a release
# guise on it (bench/guise-bench-login.yaml with `store: redis`), logs the
# benchmark user in through guise once, and reads what that login wrote:
# the session string, its entry in the user's index and in the active
# set, with MEMORY USAGE. Then it adds N sessions shaped exactly like the
# real one (its JSON with a fresh key and reference; an index entry each,
# spread over N/2 users; an entry each in the active set) and reports
# used_memory per session, which includes Redis's per-key overhead that
# MEMORY USAGE of one key leaves out.
set -euo pipefail

N=100000
DO_BUILD=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --sessions) N=$2; shift 2 ;;
        --no-build) DO_BUILD=0; shift ;;
        -h|--help)  awk 'NR == 1 {next} /^#/ {sub(/^# ?/, ""); print; next} {exit}' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RELEASE=${CARGO_TARGET_DIR:-$ROOT/target}/release
TMP=$(mktemp -d /tmp/guise-smem.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
log() { printf '[smem %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [[ $DO_BUILD -eq 1 ]]; then (cd "$ROOT" && cargo build --release --bin guise); fi
read -r P_REDIS P_HTTP P_OPS P_UP <<<"$(python3 - <<'EOF'
import socket
s = [socket.socket() for _ in range(4)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))
EOF
)"
R() { redis-cli -h 127.0.0.1 -p "$P_REDIS" "$@"; }

redis-server --bind 127.0.0.1 --port "$P_REDIS" --save '' --appendonly no >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
until [[ $(R ping 2>/dev/null) == PONG ]]; do sleep 0.05; done

export GUISE_SIGNING_KEY
GUISE_SIGNING_KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
sed -e "s|127\.0\.0\.1:18080|127.0.0.1:$P_HTTP|" -e "s|127\.0\.0\.1:19090|127.0.0.1:$P_OPS|" \
    -e "s|127\.0\.0\.1:18081|127.0.0.1:$P_UP|" \
    -e "s|^  store: memory\$|  store: redis\\n  redis: { url: \"redis://127.0.0.1:$P_REDIS/0\" }|" \
    "$ROOT/bench/guise-bench-login.yaml" >"$TMP/guise.yaml"
"$RELEASE/guise" run --config "$TMP/guise.yaml" >"$TMP/guise.log" 2>&1 &
PIDS+=($!)
deadline=$((SECONDS + 60))
until code=$(curl -s -o "$TMP/login.json" -w '%{http_code}' -H 'Content-Type: application/json' \
        --data '{"username":"bench@bench.test","password":"bench-pass"}' \
        "http://127.0.0.1:$P_HTTP/_guise/login" 2>/dev/null) && [[ $code == 200 ]]; do
    [[ $SECONDS -lt $deadline ]] || die "login answered ${code:-nothing}: $(tail -5 "$TMP/guise.log")"
    sleep 0.2
done

skey=$(R --scan --pattern 'guise:session:*' | head -1)
ikey=$(R --scan --pattern 'guise:user-sessions:*' | head -1)
[[ -n $skey && -n $ikey ]] || die "the login wrote no session"
json=$(R get "$skey")
echo "one real session (redis $(R info server | awk -F: '/^redis_version/ {print $2}' | tr -d '\r')):"
printf '  %-40s %5s bytes of JSON, MEMORY USAGE %s\n' "session string" "${#json}" "$(R memory usage "$skey")"
printf '  %-40s MEMORY USAGE %s (one member)\n' "user index (zset)" "$(R memory usage "$ikey")"
printf '  %-40s MEMORY USAGE %s (one member)\n' "guise:active-sessions (zset)" "$(R memory usage guise:active-sessions)"
echo "  session JSON: $json"

# Stop guise: only Redis is measured from here on.
kill -INT "${PIDS[1]}" 2>/dev/null || true
before=$(R info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r')
log "adding $N sessions shaped like the real one"
python3 - "$N" "$json" <<'EOF' | R --pipe >/dev/null
import json, sys, secrets, time
n, rec = int(sys.argv[1]), json.loads(sys.argv[2])
out = sys.stdout.buffer
def cmd(*a):
    b = [str(x).encode() for x in a]
    out.write(b"*%d\r\n" % len(b) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in b))
now = int(time.time())
for i in range(n):
    key = secrets.token_hex(32)              # a real key: SHA-256 of the token, hex
    rec["reference"] = secrets.token_hex(len(rec["reference"]) // 2)
    rec["csrf_token"] = secrets.token_urlsafe(len(rec["csrf_token"]) * 3 // 4)
    user = "u-%07d" % (i // 2)
    rec["user_id"] = user
    cmd("SET", "guise:session:{%s}" % key, json.dumps(rec, separators=(",", ":")), "PX", 86400000)
    cmd("ZADD", "guise:user-sessions:{%s}" % user, now + 86400, key)
    cmd("ZADD", "guise:active-sessions", (now + 3600) * 1000, key)
EOF
after=$(R info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r')
echo
echo "$N more sessions (2 per user): used_memory $before -> $after bytes"
awk -v a="$after" -v b="$before" -v n="$N" 'BEGIN {
    per = (a - b) / n
    printf "  %.0f bytes per session (string + index entry + active-set entry, half a user index key)\n", per
    printf "  1,000,000 sessions: %.0f MB\n", per * 1e6 / 1048576 }'
printf '  guise:active-sessions: %s members, MEMORY USAGE %s bytes\n' \
    "$(R zcard guise:active-sessions)" "$(R memory usage guise:active-sessions samples 0)"
