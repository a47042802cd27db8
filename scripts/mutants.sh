#!/usr/bin/env bash
# Mutation testing with cargo-mutants, time-boxed.
#
# cargo-mutants changes the code one small edit at a time (a return value replaced, a `>` made
# `>=`, a `+=` made `-=`, ...) and runs the tests against each change. A mutant the tests do not
# notice ("missed") points at behaviour no test pins down.
#
# Usage:
#   scripts/mutants.sh [GLOB...]     mutate the files matching GLOB in MUTANTS_PACKAGE
#   scripts/mutants.sh --ci          the short run of .ci/run: a slice of one package's
#                                    default files, both chosen by the commit, tested in place
#     GLOB   file globs to mutate, relative to the repository root (default: the package's
#            files below)
# Packages and their default files:
#   nodegrid       crates/nodegrid/src/proto/*.rs and the session's timers, keepalive and
#                  dispatch (crates/nodegrid/src/session/{timers,keepalive,dispatch}.rs)
#   nodegrid-log   crates/nodegrid-log/src/registry.rs and the webhook's worker, disk store and
#                  replay loop (crates/nodegrid-log/src/webhook/{worker,store,replay}.rs)
# Environment:
#   MUTANTS_PACKAGE      nodegrid (default) or nodegrid-log (with --ci: the commit picks one)
#   MUTANTS_BUDGET       total wall-clock budget in seconds (default 2400); the run is stopped
#                        after it and what was tested so far is reported
#   MUTANTS_TIMEOUT      per-mutant test timeout in seconds (default 60; the suites take 15 s)
#   MUTANTS_JOBS         mutants built and tested at once (default 1: the suites use both cores)
#   MUTANTS_TESTS        arguments for `cargo test` (default: per package, the unit tests and the
#                        integration suites that run in seconds; see default_tests below)
#   MUTANTS_COPY_TARGET  copy ./target into the scratch tree (default false; true saves the
#                        first build when ./target is warm for the same package)
#   MUTANTS_SHARD        e.g. 1/4 (0-based): only that shard of the mutants, round-robin
#   MUTANTS_OUT          directory that receives mutants.out/ (default: the repository root;
#                        mutants.out/ is git-ignored)
#   MUTANTS_CI_MUTANTS   --ci: about this many mutants (default 8): the commit hash picks the
#                        package (modulo 2), the package's mutants are split into shards of
#                        that size and the rest of the hash picks a shard, so every commit
#                        tests another slice and a given commit always the same one
#   MUTANTS_CI_BUDGET    --ci: budget in seconds (default 240)
# Mutants known to be equivalent (no observable difference) are excluded in
# .cargo/mutants.toml, each with its reason.
# Exit status: 0 when no mutant was missed (also when the budget stopped the run), 2 when some
# were missed (listed in <out>/mutants.out/missed.txt), 1 on other failures. Timeouts are
# listed in mutants.out/timeout.txt and reported, not failed on.
#
# Needs: cargo install cargo-mutants --locked
#
# Examples:
#   scripts/mutants.sh                                      # proto/ and session timers, 40 min
#   MUTANTS_PACKAGE=nodegrid-log scripts/mutants.sh         # nodegrid-log webhook and registry
#   MUTANTS_BUDGET=600 scripts/mutants.sh 'crates/nodegrid/src/wire/*.rs'
#   MUTANTS_TESTS='--lib' scripts/mutants.sh crates/nodegrid/src/proto/muxtable.rs
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if ! cargo mutants --version >/dev/null 2>&1; then
    echo "cargo-mutants is not installed: cargo install cargo-mutants --locked" >&2
    exit 1
fi

default_globs() {
    case "$1" in
        nodegrid)
            echo "crates/nodegrid/src/proto/*.rs crates/nodegrid/src/session/timers.rs" \
                "crates/nodegrid/src/session/keepalive.rs crates/nodegrid/src/session/dispatch.rs"
            ;;
        nodegrid-log)
            # The webhook's other files (state, mod, client, config, proxy, certs, backoff) have
            # not been through a run yet: add them once their survivors are dealt with.
            echo "crates/nodegrid-log/src/registry.rs crates/nodegrid-log/src/webhook/worker.rs" \
                "crates/nodegrid-log/src/webhook/store.rs crates/nodegrid-log/src/webhook/replay.rs"
            ;;
        *) return 1 ;;
    esac
}

# The unit tests and the integration suites that run in seconds (paused clock or loopback).
default_tests() {
    case "$1" in
        nodegrid)
            # Without the long differential property tests of wire/ and transport/ws.rs.
            echo "--lib --test liveness --test limits --test sim --test single --test streams" \
                "--test scenarios --test auth --test timers -- --skip diff_tests"
            ;;
        nodegrid-log)
            echo "--lib --test registry --test webhook --test disk_queue --test restart" \
                "--test concurrency --test mtls --test idle"
            ;;
        *) return 1 ;;
    esac
}

# run PACKAGE BUDGET OUT EXTRA_ARGS... -- GLOBS...
run() {
    local package="$1" budget="$2" out="$3"
    shift 3
    local extra=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
        extra+=("$1")
        shift
    done
    shift
    local globs=("$@")
    local tests
    read -r -a tests <<<"${MUTANTS_TESTS:-$(default_tests "$package")}"
    local args=(mutants -p "$package" --no-shuffle
        --timeout "${MUTANTS_TIMEOUT:-60}" --output "$out" "${extra[@]}")
    local g
    for g in "${globs[@]}"; do
        args+=(--file "$g")
    done
    echo "cargo ${args[*]} -- ${tests[*]}  (budget ${budget}s)"
    # No backtrace when the budget interrupts cargo-mutants (CI sets RUST_BACKTRACE=1).
    RUST_BACKTRACE=0 RUST_LIB_BACKTRACE=0 \
        timeout --signal=INT --kill-after=60 "$budget" cargo "${args[@]}" -- "${tests[@]}"
    local rc=$?
    local dir="$out/mutants.out"
    count() { if [ -f "$dir/$1" ]; then grep -c . "$dir/$1"; else echo 0; fi; }
    echo "summary ($package): caught $(count caught.txt), missed $(count missed.txt)," \
        "timeout $(count timeout.txt), unviable $(count unviable.txt)"
    if [ "$(count timeout.txt)" -gt 0 ]; then
        echo "timed out (reported, not failed on):"
        cat "$dir/timeout.txt"
    fi
    if [ "$(count missed.txt)" -gt 0 ]; then
        echo "missed mutants:"
        cat "$dir/missed.txt"
        return 2
    fi
    case $rc in
        0 | 3) return 0 ;; # 3: only timeouts
        124 | 130) echo "stopped by the ${budget}s budget"; return 0 ;;
        *) return "$rc" ;;
    esac
}

ci=false
if [ "${1:-}" = "--ci" ]; then
    ci=true
    # The commit hash picks the package (modulo 2) and, below, the shard.
    hash="$(git rev-parse HEAD)"
    pick=$(( 16#${hash:0:8} ))
    packages=(nodegrid nodegrid-log)
    package="${MUTANTS_PACKAGE:-${packages[$(( pick % 2 ))]}}"
    pick=$(( pick / 2 ))
else
    package="${MUTANTS_PACKAGE:-nodegrid}"
fi
if ! default_globs "$package" >/dev/null; then
    echo "MUTANTS_PACKAGE must be nodegrid or nodegrid-log" >&2
    exit 1
fi

if $ci; then
    # Tested in place (the CI checkout is thrown away; ./target is warm from the test step),
    # without a baseline run (the test step just passed). Refuse a tree with changes in the
    # mutated files, and put them back afterwards even if the run was stopped.
    per_run="${MUTANTS_CI_MUTANTS:-8}"
    read -r -a globs <<<"$(default_globs "$package")"
    files=()
    list=(mutants -p "$package" --list)
    for g in "${globs[@]}"; do
        list+=(--file "$g")
        for f in $g; do files+=("$f"); done
    done
    total="$(cargo "${list[@]}" | grep -c .)"
    shards=$(( (total + per_run - 1) / per_run ))
    if [ "$shards" -lt 1 ]; then shards=1; fi
    shard=$(( pick % shards ))
    if ! git diff --quiet -- "${files[@]}"; then
        echo "mutants --ci: uncommitted changes in the files to mutate; commit or stash them" >&2
        exit 1
    fi
    # Without a baseline run, a test argument that names no suite would make every mutant
    # look caught: build the suites first (this also warms the build for this package).
    read -r -a tests <<<"${MUTANTS_TESTS:-$(default_tests "$package")}"
    targets=()
    for t in "${tests[@]}"; do
        if [ "$t" = "--" ]; then break; fi
        targets+=("$t")
    done
    if ! cargo test -p "$package" --no-run "${targets[@]}"; then
        echo "mutants --ci: the test suites of $package do not build" >&2
        exit 1
    fi
    out="$(mktemp -d)"
    echo "== mutants: $package, shard $shard/$shards of $total mutants (commit ${hash:0:8})"
    run "$package" "${MUTANTS_CI_BUDGET:-240}" "$out" --in-place --baseline skip \
        --shard "$shard/$shards" --sharding round-robin -- "${globs[@]}"
    rc=$?
    git checkout -- "${files[@]}"
    exit $rc
fi

globs=("$@")
if [ ${#globs[@]} -eq 0 ]; then
    read -r -a globs <<<"$(default_globs "$package")"
fi
extra=(--jobs "${MUTANTS_JOBS:-1}" --copy-target "${MUTANTS_COPY_TARGET:-false}" --baseline run)
if [ -n "${MUTANTS_SHARD:-}" ]; then
    extra+=(--shard "$MUTANTS_SHARD" --sharding round-robin)
fi
run "$package" "${MUTANTS_BUDGET:-2400}" "${MUTANTS_OUT:-$root}" "${extra[@]}" -- "${globs[@]}"
