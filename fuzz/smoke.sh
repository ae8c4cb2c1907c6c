#!/usr/bin/env bash
# Smoke fuzzing for CI: build the cargo-fuzz targets, then run each one for a few seconds
# (FUZZ_SECONDS, default 5) from its committed seed corpus. Fails on the first crash, panic,
# leak, timeout or out-of-memory; libFuzzer saves the input under fuzz/artifacts/<target>/.
#
# Needs cargo-fuzz (installed here if missing) and a nightly compiler: `+nightly` when rustup
# has one, else the stable compiler with RUSTC_BOOTSTRAP=1 (cargo-fuzz passes -Z flags).
# The cost is the build of the instrumented crate (tract, tokenizers, image, ...), not the runs:
# see fuzz/README.md for timings.
set -euo pipefail

cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-5}

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
else
    echo "smoke.sh: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1" >&2
    export RUSTC_BOOTSTRAP=1
fi

start=$(date +%s)
cargo "${toolchain[@]}" fuzz build
built=$(date +%s)
echo "smoke.sh: toolchain: $(rustc "${toolchain[@]}" --version); build took $((built - start)) s"

for target in $(cargo "${toolchain[@]}" fuzz list); do
    # New inputs go to a scratch corpus (first directory); the committed seeds stay as they are.
    scratch=$(mktemp -d)
    echo "smoke.sh: $target for ${seconds} s"
    log="$scratch.log"
    set +e
    cargo "${toolchain[@]}" fuzz run "$target" "$scratch" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1
    status=$?
    set -e
    grep -E '^(stat::number_of_executed_units|Done [0-9]+ runs)' "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log" >&2
    fi
    rm -rf "$scratch" "$log"
    if [ "$status" -ne 0 ]; then
        echo "smoke.sh: $target FAILED (exit $status); the input is under fuzz/artifacts/$target/" >&2
        exit "$status"
    fi
done
echo "smoke.sh: all targets passed; total $(($(date +%s) - start)) s"
