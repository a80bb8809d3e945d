#!/usr/bin/env bash
# The whole test suite: unit tests, the integration binary (real sockets, real
# stores, headless Chromium, promtool), formatting and lints.
# Installs Chromium and promtool from Debian's packages when run as root and missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${need[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
  else
    echo "note: missing ${need[*]} (install them to run the browser and promtool checks)" >&2
  fi
fi

cargo fmt --all -- --check
cargo clippy --locked --all-targets -q -- -D warnings
cargo test --locked
