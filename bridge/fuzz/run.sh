#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) from its seed corpus in corpus/<target>.
# Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo-fuzz passes nightly-only sanitizer flags;
# RUSTC_BOOTSTRAP lets the stable toolchain accept them, so no second toolchain is needed.
# Crashes land in artifacts/<target>/ with the input that caused them.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2; exit 1; }
for target in token config mapping; do
  mkdir -p "work/$target"
  echo "== $target for ${seconds}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "work/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 2>&1 | grep -E "^(#|stat::|==|INFO: Running|Done|SUMMARY)" | tail -8
done
