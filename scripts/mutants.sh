#!/usr/bin/env bash
# Mutation testing of the nodegrid crate with cargo-mutants, time-boxed.
#
# cargo-mutants changes the code one small edit at a time (a return value replaced, a `>` made
# `>=`, a `+=` made `-=`, ...) and runs the tests against each change. A mutant the tests do not
# notice ("missed") points at behaviour no test pins down.
#
# Usage:
#   scripts/mutants.sh [GLOB...]
#     GLOB   file globs to mutate, relative to the repository root
#            (default: crates/nodegrid/src/proto/*.rs)
# Environment:
#   MUTANTS_BUDGET       total wall-clock budget in seconds (default 2400); the run is stopped
#                        after it and what was tested so far is reported
#   MUTANTS_TIMEOUT      per-mutant test timeout in seconds (default 120)
#   MUTANTS_JOBS         mutants built and tested at once (default 1: the suites use both cores)
#   MUTANTS_TESTS        arguments for `cargo test` (default: the unit tests, less the long
#                        differential property tests, and the integration suites that run in
#                        seconds under the paused clock or on loopback; about 10 s a mutant)
#   MUTANTS_COPY_TARGET  copy ./target into the scratch tree (default true: no full rebuild)
#   MUTANTS_SHARD        e.g. 1/4: only that shard of the mutants (for CI runs spread over time)
#   MUTANTS_OUT          directory that receives mutants.out/ (default: the repository root;
#                        mutants.out/ is git-ignored)
# Exit status: 0 when no mutant was missed (also when the budget stopped the run), 2 when some
# were missed (listed in mutants.out/missed.txt), 1 on other failures. Timeouts are listed in
# mutants.out/timeout.txt and reported, not failed on.
#
# Needs: cargo install cargo-mutants --locked
#
# Examples:
#   scripts/mutants.sh                                      # proto/, 40 minutes at most
#   MUTANTS_BUDGET=600 scripts/mutants.sh 'crates/nodegrid/src/wire/*.rs'
#   MUTANTS_TESTS='--lib' scripts/mutants.sh crates/nodegrid/src/proto/muxtable.rs
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if ! cargo mutants --version >/dev/null 2>&1; then
    echo "cargo-mutants is not installed: cargo install cargo-mutants --locked" >&2
    exit 1
fi

budget="${MUTANTS_BUDGET:-2400}"
timeout_s="${MUTANTS_TIMEOUT:-120}"
jobs="${MUTANTS_JOBS:-1}"
copy_target="${MUTANTS_COPY_TARGET:-true}"
out="${MUTANTS_OUT:-$root}"
# The unit tests (without the long differential property tests of wire/ and transport/ws.rs)
# and the integration suites that run in seconds under the paused clock or on loopback.
default_tests="--lib --test liveness --test limits --test sim --test single --test streams --test scenarios --test auth -- --skip diff_tests"
read -r -a tests <<<"${MUTANTS_TESTS:-$default_tests}"
globs=("$@")
if [ ${#globs[@]} -eq 0 ]; then
    globs=("crates/nodegrid/src/proto/*.rs")
fi

args=(mutants -p nodegrid --no-shuffle --jobs "$jobs" --timeout "$timeout_s"
    --copy-target "$copy_target" --output "$out" --baseline run)
for g in "${globs[@]}"; do
    args+=(--file "$g")
done
if [ -n "${MUTANTS_SHARD:-}" ]; then
    args+=(--shard "$MUTANTS_SHARD")
fi

echo "cargo ${args[*]} -- ${tests[*]}  (budget ${budget}s)"
timeout --signal=INT --kill-after=60 "$budget" cargo "${args[@]}" -- "${tests[@]}"
rc=$?

dir="$out/mutants.out"
count() { if [ -f "$dir/$1" ]; then grep -c . "$dir/$1"; else echo 0; fi; }
echo "summary: caught $(count caught.txt), missed $(count missed.txt)," \
    "timeout $(count timeout.txt), unviable $(count unviable.txt)"
if [ "$(count missed.txt)" -gt 0 ]; then
    echo "missed mutants:"
    cat "$dir/missed.txt"
    exit 2
fi
case $rc in
    0 | 3) exit 0 ;;              # 3: only timeouts
    124 | 130) echo "stopped by the ${budget}s budget"; exit 0 ;;
    *) exit "$rc" ;;
esac
