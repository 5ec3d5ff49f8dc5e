#!/usr/bin/env bash
# Runs each cargo-fuzz target for SECONDS_PER_TARGET seconds (default 60): manifest, names,
# ops, or those named in TARGETS. The seeds in corpus/<target>/ are read, never written; what
# libFuzzer adds goes to work/<target>/ (not checked in) and a crash to artifacts/<target>/.
# Exits non-zero on the first crash. Needs a nightly toolchain: without one it says so and
# skips (exit 0); installs cargo-fuzz if missing. No sanitizer by default (the crate is safe
# Rust, and AddressSanitizer makes runs several times slower): FUZZ_SANITIZER=address for one.
set -euo pipefail
cd "$(dirname "$0")"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: skipped: no nightly toolchain (rustup toolchain install nightly)"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

secs=${SECONDS_PER_TARGET:-60}
for t in ${TARGETS:-manifest names ops}; do
    mkdir -p "work/$t"
    echo "fuzz/run.sh: $t for ${secs}s"
    cargo +nightly fuzz run --sanitizer "${FUZZ_SANITIZER:-none}" "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=60 -print_final_stats=1
done
