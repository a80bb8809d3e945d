#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer through cargo-fuzz, AddressSanitizer on) of
# every parser of outside input: IRC lines, HTTP request heads, EventSub JSON,
# config files, vote logs and mesh frames (fuzz/fuzz_targets/). Each target runs
# SECS seconds (default 15) from its committed seeds (fuzz/seeds/TARGET) plus a
# scratch corpus; a crash fails the run and leaves the input in
# fuzz/artifacts/TARGET/ — turn it into a regression test beside the parser.
#   scripts/fuzz.sh            # every target, 15 s each (what the test suite runs)
#   scripts/fuzz.sh 600 irc_line   # a longer run of one target
#   FUZZ_CORPUS=fuzz/corpus scripts/fuzz.sh 300   # keep what each run learned
#                                  # (fuzz/corpus/TARGET, git-ignored; see docs/fuzzing.md)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
shift || true
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
# cargo-fuzz passes -Z flags (sanitizers, coverage); the stable compiler takes
# them with RUSTC_BOOTSTRAP. Its own target dir: instrumented builds differ.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-target/fuzz}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
corpus=${FUZZ_CORPUS:-$scratch}
for t in "${targets[@]}"; do
  mkdir -p "$corpus/$t" "fuzz/seeds/$t"
  echo "fuzz: $t for ${secs}s"
  if ! cargo fuzz run --fuzz-dir fuzz -O "$t" "$corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$secs" -max_len=65536 >"$scratch/$t.log" 2>&1; then
    tail -n 40 "$scratch/$t.log" >&2
    echo "fuzz: $t failed: a crash is saved under fuzz/artifacts/$t" >&2
    exit 1
  fi
  grep -E "^Done " "$scratch/$t.log"
done
