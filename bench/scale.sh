#!/usr/bin/env bash
# Scale-out benchmark (issue 14): N guise nodes (default 10) on this machine
# against ONE redis-server, then against a 3-master Redis Cluster, both
# started here on free loopback ports and stopped on exit.
#
#   bench/scale.sh [--no-build] [--nodes N] [--revocations N] [--duration S]
#                  [--sessions S] [--time-scale K] [--single-only | --cluster-only]
#
#   --nodes        guise nodes (default 10)
#   --revocations  sessions revoked one after another (default 200)
#   --duration     seconds of measured steady load (default 30)
#   --sessions     logged-in sessions the steady load spreads over (default 50)
#   --time-scale   the steady-load phase runs with the session intervals
#                  divided by K (default 10: refresh_interval_seconds 6 and
#                  cache_ttl_seconds 3 instead of 60 and 30), so that a
#                  short window holds several refresh periods; the report
#                  scales the rates back to the default intervals
#   --no-build     use target/release/guise as it is
#   --single-only / --cluster-only   only one Redis topology
#
# For each topology it measures, with bench/scale_probe.py (Python stdlib):
#   1. Revocation: the probe logs in the sessions, makes every node cache
#      every one of them, then revokes them one at a time (POST
#      /_guise/logout on node i mod N) while it polls GET /_guise/session on
#      every node over keep-alive connections (one request in flight per
#      node, all nodes at once); per (revocation, node) the time from the
#      logout being sent until that node's first refusal arrives.
#      Nodes run with cache_ttl_seconds 600, so a node refuses only because
#      the pub/sub event reached it (or, for the node that revoked, at once).
#   2. Fan-out cost of those revocations: Redis commands, PUBLISH count,
#      subscribers (PUBSUB NUMSUB, CLIENT LIST), bytes (INFO
#      total_net_output_bytes, /proc/PID/io of each redis-server, and an own
#      subscriber on guise:events), Redis CPU (INFO used_cpu_sys+user) with
#      an idle window's background CPU subtracted.
#   3. Steady logged-in load: the nodes are restarted with the shortened
#      intervals; one wrk per node (-t1 -c4, a Lua script sending the
#      sessions' cookies in turn: no sticky balancing) for --duration
#      seconds; INFO commandstats before and after gives commands/s by
#      command, compared with the sliding-expiry refreshes and cache_ttl
#      re-reads the design expects.
#
# Pinning: every guise node on core 0; redis, upstream, probe and wrk on
# core 1. On a 2-core machine that is 10 gateways sharing one core: the
# figures are what this machine does, not what ten machines would.
#
# Writes bench/results/scale-STAMP.txt (the report) and scale-STAMP.json
# (every raw figure, per (revocation, node) latencies included).
set -euo pipefail

NODES=10
REVOCATIONS=200
DURATION=30
SESSIONS=50
TIME_SCALE=10
DO_BUILD=1
MODES=(single cluster)
READY_DEADLINE=60

usage() { awk 'NR == 1 {next} /^#/ {sub(/^# ?/, ""); print; next} {exit}' "$0"; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --nodes)        NODES=$2; shift 2 ;;
        --revocations)  REVOCATIONS=$2; shift 2 ;;
        --duration)     DURATION=$2; shift 2 ;;
        --sessions)     SESSIONS=$2; shift 2 ;;
        --time-scale)   TIME_SCALE=$2; shift 2 ;;
        --no-build)     DO_BUILD=0; shift ;;
        --single-only)  MODES=(single); shift ;;
        --cluster-only) MODES=(cluster); shift ;;
        -h|--help)      usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
for v in NODES REVOCATIONS DURATION SESSIONS TIME_SCALE; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "--${v,,} must be a whole number >= 1" >&2; exit 2; }
done
[[ $TIME_SCALE -le 30 ]] || { echo "--time-scale must be <= 30 (cache_ttl_seconds must stay >= 1)" >&2; exit 2; }
# Steady-load intervals: the defaults (refresh 60 s, cache_ttl 30 s) / K.
LOAD_REFRESH=$((60 / TIME_SCALE))
LOAD_TTL=$((30 / TIME_SCALE))

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
RELEASE=${CARGO_TARGET_DIR:-$ROOT/target}/release
GUISE=$RELEASE/guise
PROBE=$BENCH/scale_probe.py
BENCH_PATH=/api/companies/co-101
TMP=$(mktemp -d /tmp/guise-scale.XXXXXX)

log() { printf '[scale %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for t in redis-server redis-cli wrk curl taskset python3; do
    command -v "$t" >/dev/null || die "$t not found"
done
[[ $(nproc) -ge 2 ]] || die "needs 2 cores (nodes pinned to core 0, the rest to core 1)"

# ---------------------------------------------------------------- processes
# Every process this script starts: pid, the signal that stops it, a name.
PIDS=(); STOPSIGS=(); NAMES=()
stop_pid() { # stop_pid INDEX
    local i=$1 pid=${PIDS[$1]}
    [[ -n $pid ]] || return 0
    kill -"${STOPSIGS[$i]}" "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && [[ $SECONDS -lt $deadline ]]; do sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    PIDS[i]=""
}
# stop_matching PREFIX: stop every started process whose name begins so.
stop_matching() {
    local i
    for i in "${!PIDS[@]}"; do
        [[ -n ${PIDS[$i]} && ${NAMES[$i]} == "$1"* ]] && kill -"${STOPSIGS[$i]}" "${PIDS[$i]}" 2>/dev/null || true
    done
    for i in "${!PIDS[@]}"; do
        [[ -n ${PIDS[$i]} && ${NAMES[$i]} == "$1"* ]] && stop_pid "$i"
    done
    return 0
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_matching ""
    if [[ $rc -ne 0 && -d $TMP ]]; then
        log "failed (exit $rc); last lines of the server logs:"
        local f
        for f in "$TMP"/*.log; do
            [[ -s $f ]] || continue
            echo "--- $f" >&2
            tail -n 15 "$f" >&2
        done
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CORE CMD...   (background, pinned, output to $TMP/NAME.log)
start() {
    local name=$1 core=$2; shift 2
    taskset -c "$core" "$@" >"$TMP/$name.log" 2>&1 &
    PIDS+=($!); STOPSIGS+=("${STOPSIG:-TERM}"); NAMES+=("$name")
}
last_pid() { echo "${PIDS[-1]}"; }

# ---------------------------------------------------------------- ports
# Free loopback ports below the ephemeral range (a Redis Cluster node also
# needs port + 10000 for its bus, so both must be free, and <= 32767).
# Bound all at once, read, released.
NPORTS=$((1 + 2 * NODES + 4))
read -r -a PORTS <<<"$(python3 - "$NPORTS" <<'EOF'
import random, socket, sys
n = int(sys.argv[1])
held, ports = [], []
while len(ports) < n:
    p = random.randrange(12000, 22000)
    if p in ports or p + 10000 in ports:
        continue
    try:
        a = socket.socket(); a.bind(("127.0.0.1", p))
        b = socket.socket(); b.bind(("127.0.0.1", p + 10000))
    except OSError:
        continue
    held += [a, b]; ports.append(p)
print(" ".join(map(str, ports)))
EOF
)"
[[ ${#PORTS[@]} -eq $NPORTS ]] || die "could not find $NPORTS free ports"
P_UPSTREAM=${PORTS[0]}
P_REDIS=${PORTS[1]}
P_CLUSTER=("${PORTS[2]}" "${PORTS[3]}" "${PORTS[4]}")
NODE_PORTS=(); OPS_PORTS=()
for ((j = 0; j < NODES; j++)); do
    NODE_PORTS+=("${PORTS[$((5 + 2 * j))]}")
    OPS_PORTS+=("${PORTS[$((6 + 2 * j))]}")
done

# ---------------------------------------------------------------- readiness
# poll DESCRIPTION PID CMD...: until CMD succeeds, with a deadline; fails
# early if PID (when not empty) died.
poll() {
    local what=$1 pid=$2; shift 2
    local deadline=$((SECONDS + READY_DEADLINE))
    until "$@" >/dev/null 2>&1; do
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then die "$what: process exited"; fi
        [[ $SECONDS -lt $deadline ]] || die "$what: not within ${READY_DEADLINE}s"
        sleep 0.05
    done
}
http_is() { # http_is CODE URL
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$2") == "$1" ]]
}
redis_pong() { [[ $(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]; }
cluster_ok() { redis-cli -h 127.0.0.1 -p "$1" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; }
# subscribers PORT... -> total PUBSUB NUMSUB guise:events over those servers
subscribers() {
    local p n total=0
    for p in "$@"; do
        n=$(redis-cli -h 127.0.0.1 -p "$p" pubsub numsub guise:events 2>/dev/null | sed -n 2p)
        total=$((total + ${n:-0}))
    done
    echo "$total"
}
all_subscribed() { [[ $(subscribers "$@") -ge $NODES ]]; }

# ---------------------------------------------------------------- build
if [[ $DO_BUILD -eq 1 ]]; then
    log "building: cargo build --release --bin guise"
    (cd "$ROOT" && cargo build --release --bin guise)
fi
[[ -x $GUISE ]] || die "$GUISE missing (build it, or drop --no-build)"

GUISE_SIGNING_KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
export GUISE_SIGNING_KEY

# ---------------------------------------------------------------- servers
start_upstream() {
    STOPSIG=INT start upstream 1 "$GUISE" demo-upstream --listen "127.0.0.1:$P_UPSTREAM"
    poll "upstream on :$P_UPSTREAM" "$(last_pid)" http_is 200 "http://127.0.0.1:$P_UPSTREAM$BENCH_PATH"
}

REDIS_PORTS=(); REDIS_PIDS=()
start_single() {
    start redis-single 1 redis-server --bind 127.0.0.1 --port "$P_REDIS" --save '' --appendonly no
    poll "redis-server on :$P_REDIS" "$(last_pid)" redis_pong "$P_REDIS"
    REDIS_PORTS=("$P_REDIS"); REDIS_PIDS=("$(last_pid)")
    REDIS_YAML="{ url: \"redis://127.0.0.1:$P_REDIS/0\" }"
}
start_cluster() {
    local p urls=() seeds=()
    REDIS_PORTS=(); REDIS_PIDS=()
    mkdir -p "$TMP/cluster"
    for p in "${P_CLUSTER[@]}"; do
        start "redis-cluster-$p" 1 redis-server --bind 127.0.0.1 --port "$p" --save '' --appendonly no \
            --cluster-enabled yes --cluster-config-file "$TMP/cluster/nodes-$p.conf" --dir "$TMP/cluster"
        REDIS_PORTS+=("$p"); REDIS_PIDS+=("$(last_pid)")
        seeds+=("127.0.0.1:$p"); urls+=("\"redis://127.0.0.1:$p\"")
    done
    local i
    for i in "${!REDIS_PORTS[@]}"; do
        poll "cluster node :${REDIS_PORTS[$i]}" "${REDIS_PIDS[$i]}" redis_pong "${REDIS_PORTS[$i]}"
    done
    redis-cli --cluster create "${seeds[@]}" --cluster-replicas 0 --cluster-yes >"$TMP/cluster-create.log" 2>&1 \
        || { cat "$TMP/cluster-create.log" >&2; die "redis-cli --cluster create failed"; }
    for p in "${REDIS_PORTS[@]}"; do poll "cluster_state:ok on :$p" "" cluster_ok "$p"; done
    REDIS_YAML="{ cluster: { urls: [$(IFS=,; echo "${urls[*]}")] } }"
}

# write_configs REFRESH TTL: one YAML per node from bench/guise-bench-login.yaml,
# with its ports, the redis store, and the session intervals.
write_configs() {
    local refresh=$1 ttl=$2 j
    for ((j = 0; j < NODES; j++)); do
        sed -e "s|127\.0\.0\.1:18080|127.0.0.1:${NODE_PORTS[$j]}|" \
            -e "s|127\.0\.0\.1:19090|127.0.0.1:${OPS_PORTS[$j]}|" \
            -e "s|127\.0\.0\.1:18081|127.0.0.1:$P_UPSTREAM|" \
            -e "s|^  store: memory\$|  store: redis\\n  redis: $REDIS_YAML\\n  refresh_interval_seconds: $refresh|" \
            -e "s|^  cache_ttl_seconds: 600\$|  cache_ttl_seconds: $ttl|" \
            -e "s|guise-bench-audit.jsonl|$TMP/audit-$j.jsonl|" \
            "$BENCH/guise-bench-login.yaml" >"$TMP/node$j.yaml"
        grep -q '^  store: redis$' "$TMP/node$j.yaml" || die "could not switch node $j to the redis store"
        grep -q "^  cache_ttl_seconds: $ttl\$" "$TMP/node$j.yaml" || die "could not set cache_ttl_seconds in node $j"
    done
    "$GUISE" check-config "$TMP/node0.yaml" >"$TMP/check-config.log" 2>&1 \
        || { cat "$TMP/check-config.log" >&2; die "generated config invalid"; }
}

start_nodes() {
    local j
    for ((j = 0; j < NODES; j++)); do
        STOPSIG=INT start "node$j" 0 "$GUISE" run --config "$TMP/node$j.yaml"
    done
    for ((j = 0; j < NODES; j++)); do
        local pid=${PIDS[$((${#PIDS[@]} - NODES + j))]}
        # No session: the gateway answers 401 on its own endpoint.
        poll "node $j on :${NODE_PORTS[$j]}" "$pid" http_is 401 "http://127.0.0.1:${NODE_PORTS[$j]}/_guise/session"
        poll "node $j /readyz" "$pid" http_is 200 "http://127.0.0.1:${OPS_PORTS[$j]}/readyz"
    done
    # Revocations reach only subscribed nodes: wait until all are.
    poll "$NODES subscribers on guise:events" "" all_subscribed "${REDIS_PORTS[@]}"
    log "$NODES nodes up on ports ${NODE_PORTS[*]} ($(subscribers "${REDIS_PORTS[@]}") subscribers on guise:events)"
}

csv() { local IFS=,; echo "$*"; }
node_ports_csv() { csv "${NODE_PORTS[@]}"; }
redis_addrs_csv() { local p out=(); for p in "${REDIS_PORTS[@]}"; do out+=("127.0.0.1:$p"); done; csv "${out[@]}"; }

run_mode() {
    local mode=$1
    log "=== $mode: starting Redis"
    "start_$mode"
    log "$mode: revocation phase ($REVOCATIONS revocations, $NODES nodes, refresh/cache_ttl 600 s)"
    write_configs 600 600
    start_nodes
    taskset -c 1 python3 "$PROBE" revoke --nodes "$(node_ports_csv)" --redis "$(redis_addrs_csv)" \
        --redis-pids "$(csv "${REDIS_PIDS[@]}")" --count "$REVOCATIONS" --out "$TMP/$mode-revoke.json"
    stop_matching node
    log "$mode: steady-load phase ($SESSIONS sessions, ${DURATION}s, refresh ${LOAD_REFRESH}s, cache_ttl ${LOAD_TTL}s)"
    write_configs "$LOAD_REFRESH" "$LOAD_TTL"
    start_nodes
    taskset -c 1 python3 "$PROBE" load --nodes "$(node_ports_csv)" --redis "$(redis_addrs_csv)" \
        --redis-pids "$(csv "${REDIS_PIDS[@]}")" --sessions "$SESSIONS" --duration "$DURATION" \
        --path "$BENCH_PATH" --wrk-core 1 --out "$TMP/$mode-load.json"
    stop_matching node
    stop_matching redis
}

start_upstream
for mode in "${MODES[@]}"; do run_mode "$mode"; done

# ---------------------------------------------------------------- report
mkdir -p "$BENCH/results"
STAMP=$(date +%Y%m%d-%H%M%S)
RESULT=$BENCH/results/scale-$STAMP.txt
RAW=$BENCH/results/scale-$STAMP.json
COMMAND="bench/scale.sh --nodes $NODES --revocations $REVOCATIONS --duration $DURATION --sessions $SESSIONS --time-scale $TIME_SCALE"
if [[ ${#MODES[@]} -eq 1 ]]; then COMMAND+=" --${MODES[0]}-only"; fi
args=()
for mode in "${MODES[@]}"; do args+=("$mode=$TMP/$mode-revoke.json,$TMP/$mode-load.json"); done
{
    echo "guise scale-out benchmark  $(date -Is)"
    echo "host: $(uname -n)  kernel: $(uname -r)  cores: $(nproc)  $(redis-server --version | awk '{print $1, $2, $3}')"
    echo "command: $COMMAND"
    echo "pinning: $NODES guise nodes on core 0; redis, upstream (guise demo-upstream), probe and wrk on core 1"
    echo
    python3 "$PROBE" report --time-scale "$TIME_SCALE" --refresh "$LOAD_REFRESH" --ttl "$LOAD_TTL" \
        --raw "$RAW" "${args[@]}"
} >"$RESULT"
cat "$RESULT"
echo "report: $RESULT"
echo "raw figures: $RAW"
