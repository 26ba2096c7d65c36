#!/usr/bin/env bash
# Run the demo: the bundled legacy app behind guise, in-memory sessions.
# Extra arguments go to `guise demo` (e.g. --listen 127.0.0.1:8000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
cargo build --release --bin guise
exec target/release/guise demo "$@"
