#!/usr/bin/env bash
# Runs every fuzz target for N seconds (default 60), one after the other, and prints each
# target's exec count. Usage: fuzz/ci.sh [SECONDS]
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); works on the stable toolchain.
set -euo pipefail
secs="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
  exit 1
fi
fuzz/seed.sh || echo "fuzz/seed.sh failed (python3 missing?); fuzzing from the existing corpus only" >&2
logdir="$(mktemp -d)"
status=0
for target in $(cargo fuzz list); do
  log="$logdir/$target.log"
  echo "== $target: ${secs}s"
  if cargo fuzz run "$target" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    echo "== $target: ok, ${runs:-?} execs"
  else
    status=1
    echo "== $target: FAILED (crash input in fuzz/artifacts/$target/); last lines of the log:"
    tail -n 40 "$log"
  fi
done
exit "$status"
