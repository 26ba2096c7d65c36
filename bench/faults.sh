#!/usr/bin/env bash
# What an operator sees under faults, measured on a release build:
#
#   bench/faults.sh [drain|outage|all]
#
#   drain   wrk keeps 50 connections busy with 100 ms upstream answers;
#           SIGTERM arrives 2 s in. Prints wrk's totals: requests answered,
#           read/write errors (requests cut in flight: the drain's failures)
#           and connect errors (new connections refused after the listeners
#           closed, which is the point of stopping), and how long the
#           gateway took to exit.
#   outage  wrk at full speed for 12 s while the upstream is gone for the
#           middle 10 s. Prints the gateway's log lines written during the
#           outage, and per second (every request fails with 502 then).
#
# Proxy pinned to core 0, upstream and wrk to core 1. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:-all}

scripts/deps.sh build
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 2; }
cargo build --release --bin guise >/dev/null
BIN=$PWD/target/release/guise

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

start_app() {
  taskset -c 1 "$BIN" demo-upstream --listen "127.0.0.1:$1" >/dev/null 2>&1 & APP_PID=$!
  PIDS+=("$APP_PID")
  wait_port "$1"
}

start_gateway() { # app-port -> sets GW, GW_PID; log in $WORK/gw.log
  GW=$(free_port); local ops; ops=$(free_port)
  cat > "$WORK/gw.yaml" <<EOF
listeners:
  http: 127.0.0.1:$GW
operations:
  address: 127.0.0.1:$ops
server:
  shutdown_timeout_seconds: 10
upstream:
  address: 127.0.0.1:$1
  connect_timeout_ms: 200
auth:
  require_login: false
logging:
  level: info
EOF
  GUISE_SIGNING_KEY=$KEY taskset -c 0 "$BIN" run --config "$WORK/gw.yaml" 2>"$WORK/gw.log" & GW_PID=$!
  PIDS+=("$GW_PID")
  wait_port "$GW"
}

drain() {
  local app; app=$(free_port); start_app "$app"; start_gateway "$app"
  taskset -c 1 wrk -t1 -c50 -d6s "http://127.0.0.1:$GW/api/slow?ms=100" > "$WORK/wrk.txt" 2>&1 & local wrk=$!
  sleep 2
  local t0; t0=$(date +%s%N)
  kill -TERM "$GW_PID"
  while kill -0 "$GW_PID" 2>/dev/null; do sleep 0.01; done
  local t1; t1=$(date +%s%N)
  wait "$wrk" || true
  echo "drain: SIGTERM with 50 connections busy on 100 ms answers"
  echo "  gateway exited $(( (t1 - t0) / 1000000 )) ms after SIGTERM"
  grep -E "requests in|Socket errors|Non-2xx" "$WORK/wrk.txt" | sed 's/^/  wrk: /'
  grep -E "SIGTERM|drained|cutting" "$WORK/gw.log" | sed 's/^/  log: /' | cut -c1-200
  kill "$APP_PID" 2>/dev/null || true
}

outage() {
  local app; app=$(free_port); start_app "$app"; start_gateway "$app"
  taskset -c 1 wrk -t1 -c50 -d12s "http://127.0.0.1:$GW/api/companies/co-101" > "$WORK/wrk.txt" 2>&1 & local wrk=$!
  sleep 1
  local before; before=$(wc -l < "$WORK/gw.log")
  kill "$APP_PID"; wait "$APP_PID" 2>/dev/null || true
  sleep 10
  local during; during=$(( $(wc -l < "$WORK/gw.log") - before ))
  local bytes; bytes=$(wc -c < "$WORK/gw.log")
  start_app "$app"
  wait "$wrk" || true
  echo "outage: upstream gone for 10 s under wrk -c50"
  grep -E "requests in|Non-2xx" "$WORK/wrk.txt" | sed 's/^/  wrk: /'
  echo "  log lines during the outage: $during ($(( during / 10 )) per second), log size $bytes bytes"
  tail -n 5 "$WORK/gw.log" | sed 's/^/  log: /' | cut -c1-220
}

case $WHAT in
  drain) drain ;;
  outage) outage ;;
  all) drain; outage ;;
  *) echo "usage: bench/faults.sh [drain|outage|all]" >&2; exit 2 ;;
esac
