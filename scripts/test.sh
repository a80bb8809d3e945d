#!/usr/bin/env bash
# The whole test suite: unit tests, the integration binary (real sockets, real
# stores, headless Chromium, promtool, nginx, systemd-analyze, PostgreSQL 15, ARM
# binaries under qemu), formatting and lints.
# Installs them from Debian's packages when run as root and missing (nginx's own
# service is kept from starting: the tests run it on their own ports).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
[ -x /usr/sbin/nginx ] || need+=(nginx)
# systemd-analyze (package systemd, ~10 MB) checks scripts/chatpulse.service; it runs
# without systemd as PID 1.
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# openssl (certificates and s_client for the TLS tests).
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# PostgreSQL 15 server binaries: the tests start throwaway servers of their own.
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
# Fault tests: unshare/nsenter/losetup (util-linux) for private mounts, and an ext4
# file system that turns read-only under the node (mkfs.ext4, e2fsck).
command -v unshare >/dev/null 2>&1 && command -v losetup >/dev/null 2>&1 || need+=(util-linux mount)
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${need[*]}"
    apt-get update -q
    # No service may start during the install (Debian's nginx would take port 80).
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
      trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
  else
    echo "note: missing ${need[*]} (install them to run the browser, promtool, nginx and systemd checks)" >&2
  fi
fi

# The ARM release binaries tests/cross.rs runs under qemu (a few minutes each on
# 2 cores; as root the Debian cross toolchain is installed on first use).
if [ "$(id -u)" = 0 ]; then
  for target in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
    scripts/cross-build.sh "$target"
  done
else
  echo "note: not building the ARM binaries (scripts/cross-build.sh installs Debian's cross toolchain as root); tests/cross.rs skips without them" >&2
fi

cargo fmt --all -- --check
cargo clippy --locked --all-targets -q -- -D warnings
cargo clippy --locked --all-targets --features postgres -q -- -D warnings
# Everything, PostgreSQL support included (the default build differs only by
# leaving that module out; the ARM binaries above are default builds).
cargo test --locked --features postgres

# Every parser of outside input under coverage-guided fuzzing, 15 s each (a
# crash fails the suite; longer runs: scripts/fuzz.sh SECS [TARGET]).
scripts/fuzz.sh 15
