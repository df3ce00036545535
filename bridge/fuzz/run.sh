#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) from its seed corpus in corpus/<target>, keeping
# what it learns in work/<target>. Needs cargo-fuzz (`cargo install cargo-fuzz`); cargo-fuzz passes
# nightly-only sanitizer flags, and RUSTC_BOOTSTRAP lets the stable toolchain accept them, so no
# second toolchain is needed. A crash leaves its input in artifacts/<target>/ and fails the script.
set -uo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2; exit 1; }
status=0
for target in token config mapping; do
  mkdir -p "work/$target"
  log="work/$target.log"
  if RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "work/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -max_len=65536 >"$log" 2>&1; then
    echo "$target: clean, $(grep -E '^Done' "$log") (corpus: $(ls "work/$target" | wc -l) inputs)"
  else
    echo "$target: FAILED, see bridge/fuzz/$log and bridge/fuzz/artifacts/$target/" >&2
    grep -E "panicked|ERROR|SUMMARY" "$log" | head -5 >&2
    status=1
  fi
done
exit $status
