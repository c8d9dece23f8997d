#!/usr/bin/env bash
# Builds every fuzz target and runs each for N seconds (default 20), from seed corpora made
# from the golden vectors. Usage: fuzz/run.sh [SECONDS] [TARGET...]
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). Uses the nightly toolchain with
# AddressSanitizer when one is installed, else stable without a sanitizer (`-s none`): the
# targets still find panics, overflows (debug assertions) and unbounded allocations.
set -euo pipefail
cd "$(dirname "$0")"
SECS=${1:-20}
shift || true
ALL=(fuzz_key_file fuzz_config_body fuzz_pack_header fuzz_index_body fuzz_tree
     fuzz_content_list fuzz_snapshot_body fuzz_plan fuzz_lease fuzz_envelope fuzz_chunker
     fuzz_cairn_toml fuzz_engine_model)
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL[@]}"); fi

./seeds.sh
# RocksDB (linked by the engine targets) leaks a few bytes per open; see lsan.supp.
export LSAN_OPTIONS="suppressions=$(pwd)/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
if cargo +nightly --version >/dev/null 2>&1; then
    FUZZ=(cargo +nightly fuzz); SAN=()
else
    echo "no nightly toolchain: fuzzing on stable without a sanitizer"
    FUZZ=(cargo fuzz); SAN=(-s none)
fi
"${FUZZ[@]}" build "${SAN[@]}"
failed=()
for t in "${TARGETS[@]}"; do
    echo "=== $t: ${SECS}s"
    # The engine model runs whole repositories: 16 operations at most per input.
    extra=()
    if [ "$t" = fuzz_engine_model ]; then extra=(-max_len=32); fi
    if ! "${FUZZ[@]}" run "${SAN[@]}" "$t" -- -max_total_time="$SECS" -print_final_stats=1 "${extra[@]}"; then
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]} (crash inputs are in fuzz/artifacts/<target>/)"
    exit 1
fi
echo "all ${#TARGETS[@]} targets ran ${SECS}s without a crash"
