#!/usr/bin/env bash
# Resident memory of a gateway under login floods an anonymous client can
# send: what the attempt counters and the password checks make it hold.
#
#   bench/login_memory.sh [--requests N] [--concurrency N]
#
# Starts the demo app and a release guise (memory store, the demo users) on
# loopback ports, samples the gateway's RSS every 100 ms, and runs:
#   failed   N failed logins, 60 KB usernames, N distinct source addresses
#            (every one a new client network and a new username: the worst
#            case for the counters)
#   burst    concurrent logins of distinct usernames from distinct
#            addresses, all in flight at once (every one passes the limits
#            and wants a password check: unknown users are checked against
#            a dummy hash), with password checks capped at 4 (the default)
#            and then at 64
# and prints RSS before, peak and after for each. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=20000
CONCURRENCY=200
while [ $# -gt 0 ]; do
  case $1 in
    --requests) REQUESTS=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

scripts/deps.sh build
cargo build --release --bin guise --example login_flood >/dev/null
BIN=target/release/guise
FLOOD=target/release/examples/login_flood

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

APP=$(free_port)
$BIN demo-upstream --listen "127.0.0.1:$APP" >/dev/null 2>&1 & PIDS+=($!)
wait_port "$APP"

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# One gateway with password checks capped at $1; runs the flood given as
# the other arguments and prints RSS before, peak and after (MiB).
measure() {
  local cap=$1 label=$2; shift 2
  local gw ops
  gw=$(free_port); ops=$(free_port)
  sed -e "s/127.0.0.1:8080/127.0.0.1:$gw/" -e "s/127.0.0.1:9090/127.0.0.1:$ops/" \
      -e "s/127.0.0.1:8081/127.0.0.1:$APP/" -e 's/  level: info/  level: error/' \
      config/demo.yaml > "$WORK/gw.yaml"
  printf 'auth:\n  password_checks: { max_concurrent: %s, queue_timeout_ms: 2000 }\n' "$cap" >> "$WORK/gw.yaml"
  GUISE_SIGNING_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') \
    $BIN run --config "$WORK/gw.yaml" 2>"$WORK/gw.log" & local pid=$!
  PIDS+=($pid)
  wait_port "$gw"
  local before; before=$(rss_kb "$pid")
  : > "$WORK/rss"
  ( while kill -0 "$pid" 2>/dev/null; do rss_kb "$pid" >> "$WORK/rss"; sleep 0.1; done ) & local sampler=$!
  local result; result=$($FLOOD --gateway "127.0.0.1:$gw" "$@")
  sleep 1
  local after; after=$(rss_kb "$pid")
  kill "$sampler" 2>/dev/null || true
  local peak; peak=$(sort -n "$WORK/rss" | tail -1)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  awk -v l="$label" -v b="$before" -v p="$peak" -v a="$after" -v r="$result" \
    'BEGIN { printf "%-34s before %6.1f MiB  peak %6.1f MiB  after %6.1f MiB\n    %s\n", l, b/1024, p/1024, a/1024, r }'
}

echo "login floods against guise (memory store), $REQUESTS requests, $CONCURRENCY in flight"
measure 4 "failed, 60 KB usernames" --requests "$REQUESTS" --concurrency "$CONCURRENCY" \
  --username-bytes 60000 --sources "$REQUESTS"
BURST=$(( CONCURRENCY * 2 ))
measure 4 "burst of $BURST logins, cap 4" --requests "$BURST" --concurrency "$BURST" \
  --sources "$BURST" --username-bytes 20
measure 64 "burst of $BURST logins, cap 64" --requests "$BURST" --concurrency "$BURST" \
  --sources "$BURST" --username-bytes 20
