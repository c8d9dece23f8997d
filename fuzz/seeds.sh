#!/usr/bin/env bash
# Writes seed corpora for every fuzz target from the golden vectors of format version 1
# (repo-format/tests/golden/v1/*.hex), into corpus/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
GOLDEN=../repo-format/tests/golden/v1

# seed <target> <golden name> [prefix hex]: the golden bytes, optionally after a prefix.
seed() {
    local target=$1 name=$2 prefix=${3:-}
    mkdir -p "corpus/$target"
    { printf '%s' "$prefix"; tr -d ' \n' < "$GOLDEN/$name.hex"; } | xxd -r -p > "corpus/$target/golden-$name${prefix:+-prefixed}"
}

seed fuzz_key_file key_file
seed fuzz_config_body config_body
seed fuzz_config_body config
seed fuzz_pack_header pack_header_plain
seed fuzz_pack_header pack
seed fuzz_index_body index_body
seed fuzz_tree tree
seed fuzz_content_list content_list
seed fuzz_snapshot_body snapshot_body
seed fuzz_plan plan_body
seed fuzz_plan plan
seed fuzz_plan plan_body 00
seed fuzz_lease lease_body
seed fuzz_lease lease
printf '00000000000000000042' > corpus/fuzz_lease/name-42
seed fuzz_envelope envelope_hello
seed fuzz_envelope index
seed fuzz_envelope snapshot
seed fuzz_envelope config
# As plaintexts behind an envelope: compression byte 0 (raw), then the body.
seed fuzz_envelope index_body 00
seed fuzz_envelope snapshot_body 00

# Chunker: min 4096, avg 16384, max 65536 (the stream profile), the SPEC §15 seed, then data.
mkdir -p corpus/fuzz_chunker
python3 - > corpus/fuzz_chunker/golden-stream <<'PY'
import struct, sys
x = 0x9e3779b97f4a7c15
out = bytearray(struct.pack('<IIIQ', 4096, 16384, 65536, 0x0123456789abcdef))
M = (1 << 64) - 1
for _ in range(200_000):
    x ^= (x << 13) & M; x ^= x >> 7; x ^= (x << 17) & M
    out.append(x & 0xff)
sys.stdout.buffer.write(out)
PY
printf '\x41\x00\x00\x00\x00\x01\x00\x00\x00\x04\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00%s' \
    "$(head -c 3000 /dev/zero | tr '\0' 'a')" > corpus/fuzz_chunker/small-zeros

echo "seed corpora written to $(pwd)/corpus/"
