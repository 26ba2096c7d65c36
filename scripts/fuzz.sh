#!/usr/bin/env bash
# Fuzz the parsers the gateway exposes to clients (cargo-fuzz, libFuzzer).
#
#   scripts/fuzz.sh TARGET|all [SECONDS]   fuzz each target SECONDS (default 300)
#   FUZZ_RUNS=1000000 scripts/fuzz.sh all  ... or for a number of executions
#   scripts/fuzz.sh --replay               run every seed once (CI regression check)
#   scripts/fuzz.sh --list                 the targets
#
# Targets live in fuzz/fuzz_targets/; their checks in src/fuzzing.rs (shared
# with tests/fuzz_seeds.rs, which replays the seeds on stable). Committed
# seeds are in fuzz/seeds/<target>/; a run copies them into the work corpus
# fuzz/corpus/<target>/ (not committed) and libFuzzer grows it there. A
# crashing input lands in fuzz/artifacts/<target>/; minimise it with
# `cargo +nightly fuzz tmin TARGET FILE` and keep it in fuzz/regressions/.
#
# cargo-fuzz needs the nightly toolchain; --replay skips (exit 0) without it.
# Runs happen in an empty network namespace when possible: the config target
# resolves `host:port` addresses, and fuzzed host names must not turn into
# DNS queries.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(request_target identity_strip cookies config endpoint_json answer_filters json_list permissions partner_import)
# Its own target dir: the nightly, sanitizer-instrumented build shares
# nothing with the stable one, and must not evict it.
FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/fuzz/target}
# Debug assertions on: integer overflow is a bug worth a crash report.
BUILD_FLAGS=(--debug-assertions --target-dir "$FUZZ_TARGET_DIR")

usage() {
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

have_nightly() {
    command -v rustup >/dev/null 2>&1 && rustup toolchain list | grep -q '^nightly'
}

ensure_cargo_fuzz() {
    if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
        echo "fuzz: installing cargo-fuzz" >&2
        cargo install --locked cargo-fuzz
    fi
}

# Run a command without network access when we can (root, util-linux).
isolated() {
    if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1 && unshare -n true 2>/dev/null; then
        unshare -n "$@"
    else
        "$@"
    fi
}

run_target() {
    local target=$1 seconds=$2
    local corpus=fuzz/corpus/$target artifacts=fuzz/artifacts/$target
    mkdir -p "$corpus" "$artifacts"
    cp -n fuzz/seeds/"$target"/* "$corpus"/
    local before
    before=$(ls "$artifacts" | wc -l)
    local limit=(-max_total_time="$seconds")
    if [ -n "${FUZZ_RUNS:-}" ]; then
        limit=(-runs="$FUZZ_RUNS")
    fi
    local log=fuzz/artifacts/$target.log
    echo "fuzz: $target (${limit[*]})"
    build "$target"
    local start end rc=0
    start=$(date +%s)
    isolated cargo +nightly fuzz run "${BUILD_FLAGS[@]}" "$target" "$corpus" -- \
        "${limit[@]}" -print_final_stats=1 -artifact_prefix="$artifacts/" \
        >"$log" 2>&1 || rc=$?
    end=$(date +%s)
    local execs rate
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    echo "fuzz: $target: ${execs:-?} executions in $((end - start)) s (${rate:-?} exec/s, build included in the time), corpus $(ls "$corpus" | wc -l) files, exit $rc"
    if [ "$(ls "$artifacts" | wc -l)" != "$before" ] || [ "$rc" != 0 ]; then
        grep -E "panicked at|ERROR: |SUMMARY" "$log" | head -5 || true
        echo "fuzz: $target: CRASH; inputs in $artifacts/, log in $log"
        return 1
    fi
}

# Build outside the network namespace: the first build downloads crates.
build() {
    cargo +nightly fuzz build "${BUILD_FLAGS[@]}" "$@"
}

replay() {
    if ! have_nightly; then
        echo "fuzz replay: skipped, the nightly toolchain is not installed (rustup toolchain install nightly)"
        exit 0
    fi
    ensure_cargo_fuzz
    local failed=0 empty
    empty=$(mktemp -d)
    trap 'rm -rf "$empty"' EXIT
    build
    for target in "${TARGETS[@]}"; do
        # An empty first corpus dir: libFuzzer writes there, the seeds stay as committed.
        if isolated cargo +nightly fuzz run "${BUILD_FLAGS[@]}" "$target" "$empty" fuzz/seeds/"$target" -- \
            -runs=0 >"$empty/$target.log" 2>&1; then
            echo "fuzz replay: $target: $(ls fuzz/seeds/"$target" | wc -l) seeds ok"
        else
            echo "fuzz replay: $target: FAILED"
            tail -30 "$empty/$target.log"
            failed=1
        fi
    done
    return "$failed"
}

case "${1:-}" in
--replay) replay ;;
--list) printf '%s\n' "${TARGETS[@]}" ;;
"" | -h | --help) usage ;;
*)
    if ! have_nightly; then
        echo "fuzz: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
        exit 1
    fi
    ensure_cargo_fuzz
    seconds=${2:-300}
    if [ "$1" = all ]; then
        chosen=("${TARGETS[@]}")
    elif printf '%s\n' "${TARGETS[@]}" | grep -qx "$1"; then
        chosen=("$1")
    else
        echo "fuzz: no target $1 (try --list)" >&2
        exit 2
    fi
    status=0
    for target in "${chosen[@]}"; do
        run_target "$target" "$seconds" || status=1
    done
    exit "$status"
    ;;
esac
