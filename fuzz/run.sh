#!/usr/bin/env bash
# Builds every fuzz target and runs each for N seconds (default 20), from seed corpora made
# from the golden vectors. Usage: fuzz/run.sh [SECONDS] [TARGET...]
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
set -euo pipefail
cd "$(dirname "$0")"
SECS=${1:-20}
shift || true
ALL=(fuzz_key_file fuzz_config_body fuzz_pack_header fuzz_index_body fuzz_tree
     fuzz_content_list fuzz_snapshot_body fuzz_envelope fuzz_chunker)
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL[@]}"); fi

./seeds.sh
cargo +nightly fuzz build
failed=()
for t in "${TARGETS[@]}"; do
    echo "=== $t: ${SECS}s"
    if ! cargo +nightly fuzz run "$t" -- -max_total_time="$SECS" -print_final_stats=1; then
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]} (crash inputs are in fuzz/artifacts/<target>/)"
    exit 1
fi
echo "all ${#TARGETS[@]} targets ran ${SECS}s without a crash"
