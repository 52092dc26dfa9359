#!/usr/bin/env bash
# Runs the fuzz targets one after the other, SECONDS each (default 30), and fails on the first
# crash (panic), hang (-timeout: one input over 10 s) or blow-up (-rss_limit_mb: over 2 GB).
#
#   tests/fuzz/run.sh [SECONDS [TARGET...]]
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`). The corpus
# each run grows is kept in tests/fuzz/corpus/<target> (not committed); a failing input is
# saved in tests/fuzz/artifacts/<target>/. See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${1:-30}
[ $# -gt 0 ] && shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(check_yaml template_value template_prompt condition_simple condition_cel snapshot llm_reply)
fi

cargo +nightly fuzz build --fuzz-dir tests/fuzz
for target in "${targets[@]}"; do
  echo "-- fuzz $target (${seconds} s)"
  mkdir -p "tests/fuzz/corpus/$target"
  set +e
  cargo +nightly fuzz run --fuzz-dir tests/fuzz "$target" \
    "tests/fuzz/corpus/$target" "tests/fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
    grep -vE '^#[0-9]+\s+(NEW|REDUCE|pulse)|NEW_FUNC'
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" -ne 0 ]; then
    echo "fuzz target $target failed (exit $status); the input is in tests/fuzz/artifacts/$target/"
    exit "$status"
  fi
done
