#!/usr/bin/env bash
# Release binary of chatpulse for an ARM board, statically linked (runs on any
# Raspberry Pi OS / ARM distribution whatever its glibc):
#
#   scripts/cross-build.sh aarch64-unknown-linux-gnu      # Pi 3/4/5 64-bit, ARM VPS
#   scripts/cross-build.sh armv7-unknown-linux-gnueabihf  # 32-bit Raspberry Pi OS
#
# Output: target/cross/TARGET/release/chatpulse (CROSS_TARGET_DIR overrides
# target/cross: a directory of its own, so host build scripts compiled by
# Debian's rustc never invalidate the native build's), with its size printed.
# Two routes:
# - rustup has the target installed (`rustup target add TARGET` on a normal
#   machine): plain `cargo build --target`, with the cross gcc as linker;
# - otherwise Debian's Rust (rustc-web/cargo-web 1.96, linked as the rustup
#   toolchain `debian`): aarch64 with Debian's prebuilt std
#   (libstd-rust-web-dev:arm64), armv7 with std built from rust-web-src
#   (-Zbuild-std; RUSTC_BOOTSTRAP is needed for that on a stable compiler).
#   As root the Debian packages are installed when missing (~400 MB download);
#   otherwise the script says which are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:-}
case "$target" in
  aarch64-unknown-linux-gnu)
    gcc=aarch64-linux-gnu-gcc
    debs=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross libstd-rust-web-dev:arm64)
    qemu=qemu-aarch64-static
    build_std=() ;;
  armv7-unknown-linux-gnueabihf)
    gcc=arm-linux-gnueabihf-gcc
    debs=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross rust-web-src)
    qemu=qemu-arm-static
    build_std=(-Zbuild-std=std,panic_abort) ;;
  *)
    echo "usage: $0 aarch64-unknown-linux-gnu | armv7-unknown-linux-gnueabihf" >&2
    exit 2 ;;
esac

env_name=$(echo "$target" | tr 'a-z-' 'A-Z_')
export "CARGO_TARGET_${env_name}_LINKER=$gcc"
export "CC_$(echo "$target" | tr '-' '_')=$gcc"
# Static: no glibc version requirement on the board (Debian's cross glibc is 2.36).
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"
export CARGO_TARGET_DIR=${CROSS_TARGET_DIR:-target/cross}

if rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  command -v "$gcc" >/dev/null || { echo "missing linker $gcc (Debian package ${debs[0]})" >&2; exit 1; }
  cargo build --release --locked --target "$target" --bin chatpulse
else
  missing=()
  for p in rustc-web cargo-web "${debs[@]}" qemu-user-static; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "missing Debian packages: ${missing[*]}" >&2
      echo "install them as root (arm64 ones need: dpkg --add-architecture arm64), or run this as root" >&2
      exit 1
    fi
    echo "installing: ${missing[*]}"
    dpkg --add-architecture arm64
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  rustup toolchain list | grep -q '^debian' || rustup toolchain link debian /usr
  if [ ${#build_std[@]} -gt 0 ]; then
    RUSTC_BOOTSTRAP=1 cargo +debian build --release --locked "${build_std[@]}" \
      --target "$target" --bin chatpulse
  else
    cargo +debian build --release --locked --target "$target" --bin chatpulse
  fi
fi

bin="$CARGO_TARGET_DIR/$target/release/chatpulse"
size=$(stat -c %s "$bin")
echo "$bin: $size bytes ($(awk "BEGIN { printf \"%.2f\", $size / 1048576 }") MiB); run it here with $qemu"
