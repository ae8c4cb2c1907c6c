#!/usr/bin/env bash
# Smoke fuzzing for CI: build the cargo-fuzz targets, then run each one for a few seconds
# (FUZZ_SECONDS, default 5) from its committed seed corpus. Fails on the first crash, panic,
# leak, timeout or out-of-memory; libFuzzer saves the input under fuzz/artifacts/<target>/.
#
# Needs cargo-fuzz (installed here if missing) and a nightly compiler: `+nightly` when rustup
# has one, else the stable compiler with RUSTC_BOOTSTRAP=1 (cargo-fuzz passes -Z flags).
# The cost is the build of the instrumented crate (tract, tokenizers, image, ...), not the runs:
# see fuzz/README.md for timings.
#
# All targets are built by one `cargo fuzz build` (one cargo run that compiles the instrumented
# dependencies once and links every target), then each runs in turn.
#
# Disk: the address-sanitized build is large (6.5 GB with debug info, all binaries kept). To
# keep it small this script builds without debug info (a crash report still names the
# functions; rebuild with plain `cargo fuzz build` for line numbers) and deletes each target's
# binary after its run. If the disk has less free space than FUZZ_MIN_FREE_GB (default 3), it
# says so and skips the smoke run rather than fail half-way through the build; FUZZ_REQUIRE=1
# (what CI sets) makes that an error.
set -euo pipefail

cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-5}
min_free_gb=${FUZZ_MIN_FREE_GB:-3}

free_gb() { df -Pk fuzz | awk 'NR == 2 { printf "%d", $4 / 1048576 }'; }

have=$(free_gb)
echo "smoke.sh: ${have} GB free on the disk of fuzz/ (the build needs about ${min_free_gb} GB)"
if [ "$have" -lt "$min_free_gb" ]; then
    echo "smoke.sh: SKIPPED: not enough free disk for the instrumented build" >&2
    if [ "${FUZZ_REQUIRE:-0}" = 1 ]; then exit 1; fi
    exit 0
fi

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
echo "smoke.sh: toolchain: $(rustc "${toolchain[@]}" --version)"

# cargo-fuzz appends its own flags to these; rustc takes the last -C debuginfo, which is ours
# (cargo puts RUSTFLAGS after the profile's line-tables-only).
export RUSTFLAGS="${RUSTFLAGS:-} -Cdebuginfo=0"

start=$(date +%s)
targets=$(cargo "${toolchain[@]}" fuzz list)
[ -n "$targets" ] || { echo "smoke.sh: no fuzz targets found" >&2; exit 1; }
echo "smoke.sh: building all targets:" $targets
cargo "${toolchain[@]}" fuzz build
echo "smoke.sh: built in $(($(date +%s) - start)) s, $(free_gb) GB free"

for target in $targets; do
    # `fuzz run` rebuilds nothing here (the build above is current); it finds the binary.

    # New inputs go to a scratch corpus (first directory); the committed seeds stay as they are.
    scratch=$(mktemp -d)
    log="$scratch.log"
    echo "smoke.sh: $target for ${seconds} s"
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
    # A linked binary is up to ~0.4 GB and this one has run: free its space.
    rm -f fuzz/target/*/release/"$target" fuzz/target/*/release/deps/"$target"-*
    echo "smoke.sh: $target passed ($(($(date +%s) - start)) s so far, $(free_gb) GB free)"
done
echo "smoke.sh: all targets passed; total $(($(date +%s) - start)) s"
