#!/usr/bin/env bash
# Run the whole test suite: unit tests and end-to-end tests against a real
# demo upstream, real redis-server processes and real HTTP clients.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
cargo test --all-features --no-fail-fast "$@"
