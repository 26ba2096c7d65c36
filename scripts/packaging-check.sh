#!/usr/bin/env bash
# Check the packaging where the tools for it exist; skip (and say so)
# where they do not. Exits 0 when everything it could check passed.
#   - packaging/guise.service: `systemd-analyze verify`, and the offline
#     `systemd-analyze security` score, where systemd-analyze is installed;
#   - Dockerfile: `docker build` where a Docker engine answers `docker info`.
# GUISE_IMAGE names the image built (default guise:ci). GUISE_DOCKER_BUILD=0
# skips the image build (CI does: a release build inside Docker takes most of
# an hour on two cores).
set -euo pipefail
cd "$(dirname "$0")/.."

skipped=()

if command -v systemd-analyze >/dev/null 2>&1; then
  # verify wants every Exec path to be an executable file. Rather than put
  # one at /usr/local/bin on the CI machine, check a copy of the unit whose
  # paths point at a stand-in; the rest of the unit is checked unchanged.
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  printf '#!/bin/sh\nexit 0\n' >"$tmp/guise"
  chmod +x "$tmp/guise"
  sed "s#/usr/local/bin/guise#$tmp/guise#g" packaging/guise.service >"$tmp/guise.service"
  # verify prints problems but exits 0 for some of them: fail on any output.
  out=$(systemd-analyze verify "$tmp/guise.service" 2>&1) || { echo "$out" >&2; exit 1; }
  if [ -n "$out" ]; then
    echo "systemd-analyze verify packaging/guise.service:" >&2
    echo "$out" >&2
    exit 1
  fi
  echo "packaging/guise.service: systemd-analyze verify ok"
  # --offline needs systemd 250 or later; older versions skip this line.
  if score=$(systemd-analyze security --offline=true "$tmp/guise.service" 2>/dev/null | tail -1); then
    echo "packaging/guise.service: ${score#→ }"
  fi
else
  skipped+=("systemd-analyze verify (systemd-analyze is not installed)")
fi

if [ "${GUISE_DOCKER_BUILD:-1}" = 0 ]; then
  skipped+=("docker build (GUISE_DOCKER_BUILD=0)")
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  docker build --pull -t "${GUISE_IMAGE:-guise:ci}" .
  docker run --rm "${GUISE_IMAGE:-guise:ci}" --version
  echo "Dockerfile: docker build ok"
else
  skipped+=("docker build (no Docker engine answers \`docker info\`)")
fi

for s in "${skipped[@]+"${skipped[@]}"}"; do
  echo "packaging-check: skipped $s"
done
