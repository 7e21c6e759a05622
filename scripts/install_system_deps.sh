#!/usr/bin/env bash
# Debian packages the tests and benchmarks need, installed only when missing (idempotent):
#   prometheus   -> `promtool` (config/rule checks, rule unit tests) and `prometheus` (end-to-end test)
#   redis-server -> the Redis recent-category store tests
#   wrk          -> the serving benchmark
#   chromium, chromium-driver -> the explorer page's browser test (headless Chromium driven by Selenium)
# A no-op (no apt-get call at all) when every binary is already on PATH.
set -euo pipefail

declare -A PACKAGE_OF=(
  [promtool]=prometheus
  [prometheus]=prometheus
  [redis-server]=redis-server
  [wrk]=wrk
  [chromium]=chromium
  [chromedriver]=chromium-driver
)

missing=()
for binary in "${!PACKAGE_OF[@]}"; do
  if ! command -v "$binary" >/dev/null 2>&1; then
    missing+=("${PACKAGE_OF[$binary]}")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install_system_deps: promtool, prometheus, redis-server, wrk, chromium and chromedriver already present"
  exit 0
fi

# one package may provide several binaries: install each once
mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install_system_deps: need root (or sudo) to install: ${packages[*]}" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_system_deps: apt-get not found; install these by hand: ${packages[*]}" >&2
  exit 1
fi

echo "install_system_deps: installing ${packages[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends keeps the prometheus package from pulling its web-console extras;
# the postinst of these packages may try to start a daemon, which fails harmlessly without systemd.
$SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}"

for binary in "${!PACKAGE_OF[@]}"; do
  if ! command -v "$binary" >/dev/null 2>&1; then
    echo "install_system_deps: $binary still missing after installing ${packages[*]}" >&2
    exit 1
  fi
done
echo "install_system_deps: done"
