#!/usr/bin/env bash
# Writes seed corpora for every fuzz target from the golden vectors of format version 1
# (repo-format/tests/golden/v1/*.hex), examples/cairn.toml and short byte strings, into
# corpus/<target>/.
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

# cairn.toml: the complete example, the smallest valid file, and one with several problems.
mkdir -p corpus/fuzz_cairn_toml
cp ../examples/cairn.toml corpus/fuzz_cairn_toml/example
cat > corpus/fuzz_cairn_toml/minimal <<'TOML'
[repository]
location = "memory://"
password_command = ["cat", "/run/secrets/cairn"]

[stores.db]
type = "command"
command = "pg_dump --format=custom ${DB:-app}"
retention = { keep_last = 3, keep_within_hourly = "7d" }
interval = "6h"
TOML
cat > corpus/fuzz_cairn_toml/problems <<'TOML'
[repository]
location = "relative/path"
password = "inline"

[[copy]]
name = "Off Site"
location = "relative/path"

[stores.postgres]
type = "command"
comand = "pg_dump | gzip"
retention = { keep_daily = "thirty" }
interval = "1x"
env = { PGPASSWORD = "secret", X = "$UNBRACED ${UNSET}" }
TOML

# The engine model: operation sequences, two bytes each (engine/tests/common/model.rs, "Input").
# Started afresh from these seeds every time: its coverage depends on thread scheduling, so
# nearly every input looks new and the corpus would grow without bound, and libFuzzer replays
# the whole corpus (a few inputs a second here) before it honours -max_total_time.
rm -rf corpus/fuzz_engine_model
mkdir -p corpus/fuzz_engine_model
# Three backups with dedup, keep-last 1, wait, prune (plans), wait, prune (sweeps).
printf '\x00\x00\x00\x09\x00\x64\x02\x02\x04\x00\x03\x00\x04\x00\x03\x00' \
    > corpus/fuzz_engine_model/backup-forget-prune
# Crashes and lost responses in a backup, a forget, prunes and a repair.
printf '\x00\x00\x05\x02\x00\x15\x05\x81\x02\x00\x04\x00\x05\x03\x03\x00\x03\x00\x04\x00\x03\x00\x05\x01\x07\x00\x06\x00' \
    > corpus/fuzz_engine_model/faults

echo "seed corpora written to $(pwd)/corpus/"
