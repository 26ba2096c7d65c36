#!/usr/bin/env bash
# Install, on Debian, what building and testing guise needs and the machine
# lacks. Safe to run again: it only installs what is missing.
#   scripts/deps.sh build   cmake (pingora's zlib-ng build needs it)
#   scripts/deps.sh test    build + redis-server, chromium and chromium-driver
#                           (tests/browser.rs drives /usr/bin/chromium through
#                           /usr/bin/chromedriver)
set -euo pipefail

want=(cmake)
[ "${1:-build}" = test ] && want+=(redis-server chromium chromium-driver)

missing=()
for pkg in "${want[@]}"; do
  case $pkg in
    chromium) bin=/usr/bin/chromium ;;
    chromium-driver) bin=/usr/bin/chromedriver ;;
    *) bin=$pkg ;;
  esac
  command -v "$bin" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
