#!/usr/bin/env bash
# Backs up and restores the same dump-like stream with cairn, restic and borg, and prints a table.
#
#   benches/compare.sh                 1 GiB stream, all tools installed
#   SIZE_MB=256 benches/compare.sh     a smaller stream
#   TOOLS="restic borg" benches/compare.sh
#
# For each tool, all through stdin, on the same generated data (benches/src/bin/gen-dump.rs):
#   backup    the day-1 dump into an empty repository
#   again     the same dump again (nothing new: measures the dedup pass)
#   day2      the day-2 dump: ~0.5 % of rows edited in place ("added" = repository growth)
#   restore   the latest snapshot's stream back to a file, checked against the day-2 checksum
#   check     a full verification of the day-2 repository, every byte read and authenticated:
#             cairn check --read-data, restic check --read-data, borg check --verify-data
# and reports wall seconds, throughput (MiB of stream per second; for check, MiB of repository
# per second), MiB per CPU-second (user+sys, likewise), peak RSS, repository size and bytes
# added; then cairn/restic and cairn/borg ratios.
#
# Settings comparable to cairn's defaults (zstd level 3, AES-256, keyed-hash ids):
#   restic  repository version 2, --compression auto (zstd), its default chunker (~1 MiB chunks)
#   borg    -e repokey, --compression zstd,3, its default chunker (~2 MiB chunks)
#
# Environment:
#   SIZE_MB      stream size in MiB (default 1024)
#   TOOLS        tools to measure (default "cairn restic borg"; missing peers are skipped, a
#                cairn that fails to build or run stops the script)
#   BENCH_DIR    where the temporary directory goes (default ${TMPDIR:-/tmp}); it needs about
#                3 x SIZE_MB free. KEEP=1 keeps it.
#   CAIRN        a cairn binary to use instead of building one (release) here
#   SKIP_SETUP=1 do not run scripts/setup --bench (which installs restic, borg and GNU time)
# Each figure comes from one run on a machine that may be doing other things: repeat before
# drawing conclusions from differences of a few percent. The input file is in the page cache.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME:-/root}/.cache/cairn/target}"
SIZE_MB="${SIZE_MB:-1024}"
TOOLS="${TOOLS:-cairn restic borg}"
PASSWORD="compare-sh-bench-password"

die() { echo "compare: $*" >&2; exit 1; }
[[ "$SIZE_MB" =~ ^[1-9][0-9]*$ ]] || die "SIZE_MB must be a positive whole number of MiB"

if [[ "${SKIP_SETUP:-0}" != 1 ]]; then
  scripts/setup --bench || echo "compare: scripts/setup --bench failed; using what is installed" >&2
fi
[[ -x /usr/bin/time ]] || die "GNU time (/usr/bin/time) is missing: apt-get install time"

# --- Build ------------------------------------------------------------------------------------
want() { [[ " $TOOLS " == *" $1 "* ]]; }
build=(cargo build --release --quiet -p cairn-benches --bin gen-dump)
if want cairn && [[ -z "${CAIRN:-}" ]]; then build+=(-p cairn-cli --bin cairn); fi
echo "compare: ${build[*]}"
"${build[@]}" || die "build failed (TOOLS=\"restic borg\" measures the peers without cairn)"
GEN="$CARGO_TARGET_DIR/release/gen-dump"
if want cairn; then
  CAIRN="${CAIRN:-$CARGO_TARGET_DIR/release/cairn}"
  [[ -x "$CAIRN" ]] || die "no cairn binary at $CAIRN"
fi

# --- Work directory ---------------------------------------------------------------------------
mkdir -p "${BENCH_DIR:-${TMPDIR:-/tmp}}"
WORK="$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/cairn-compare.XXXXXX")"
cleanup() {
  if [[ "${KEEP:-0}" == 1 ]]; then echo "compare: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
free_mb=$(($(df -Pk "$WORK" | awk 'NR == 2 { print $4 }') / 1024))
if ((free_mb < 3 * SIZE_MB + 512)); then
  die "$WORK has $free_mb MiB free; SIZE_MB=$SIZE_MB needs about $((3 * SIZE_MB + 512))"
fi

# shellcheck source=benches/lib.sh
source benches/lib.sh # measure, check_passed, report_table, report_ratios; rows
private_env "$PASSWORD"

# --- Environment and versions -----------------------------------------------------------------
echo
echo "machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)," \
  "$(free -g | awk '/^Mem:/ { print $2 }') GiB; load average $(cut -d' ' -f1-3 /proc/loadavg)"
tools=()
for t in $TOOLS; do
  case "$t" in
    cairn) echo "cairn:  $("$CAIRN" --version 2>&1 | head -n1)"; tools+=(cairn) ;;
    restic | borg)
      if command -v "$t" >/dev/null; then
        if [[ $t == restic ]]; then echo "restic: $(restic version)"; else echo "borg:   $(borg --version)"; fi
        tools+=("$t")
      else
        echo "$t: not installed, skipped (scripts/setup --bench installs it)"
      fi
      ;;
    *) die "unknown tool in TOOLS: $t" ;;
  esac
done
((${#tools[@]} > 0)) || die "no tool to measure"

# --- Data -------------------------------------------------------------------------------------
echo
echo "compare: generating ${SIZE_MB} MiB day-1 and day-2 dumps in $WORK"
"$GEN" "$SIZE_MB" >"$WORK/day1.sql"
"$GEN" --day2 "$SIZE_MB" >"$WORK/day2.sql"
sum1="$(sha256sum <"$WORK/day1.sql" | cut -d' ' -f1)"
sum2="$(sha256sum <"$WORK/day2.sql" | cut -d' ' -f1)"
differing="$(cmp -l "$WORK/day1.sql" "$WORK/day2.sql" | wc -l || true)"
echo "compare: day 1 sha256 $sum1"
echo "compare: day 2 sha256 $sum2 (differs from day 1 in $differing bytes)"

# --- Measuring --------------------------------------------------------------------------------
BENCH=compare
MEASURE_BYTES=$((SIZE_MB * 1048576))
failures=0

# check_restore TOOL FILE: compares the restored stream with day 2 and marks the last row.
check_restore() {
  local got
  got="$(sha256sum <"$2" | cut -d' ' -f1)"
  rm -f "$2"
  if [[ "$got" == "$sum2" ]]; then
    mark_last ok
  else
    mark_last MISMATCH
    failures=$((failures + 1))
    echo "compare: $1 restored a stream that differs from day 2 ($got != $sum2)" >&2
  fi
}

run_cairn() {
  local r="$WORK/cairn-repo"
  "$CAIRN" init --repo "$r" >"$WORK/log.cairn.init" 2>&1 </dev/null ||
    { cat "$WORK/log.cairn.init" >&2; die "cairn init failed"; }
  local b=("$CAIRN" backup --repo "$r" --stdin --stdin-name dump.sql)
  measure cairn backup "$r" "$WORK/day1.sql" /dev/null "${b[@]}"
  measure cairn again "$r" "$WORK/day1.sql" /dev/null "${b[@]}"
  measure cairn day2 "$r" "$WORK/day2.sql" /dev/null "${b[@]}"
  measure cairn restore "$r" /dev/null "$WORK/out.sql" "$CAIRN" dump --repo "$r" latest dump.sql
  check_restore cairn "$WORK/out.sql"
  measure cairn check "$r" /dev/null /dev/null "$CAIRN" check --repo "$r" --read-data
  check_passed
}

run_restic() {
  local r="$WORK/restic-repo"
  restic init --repo "$r" --repository-version 2 >"$WORK/log.restic.init" 2>&1 </dev/null ||
    { cat "$WORK/log.restic.init" >&2; die "restic init failed"; }
  local b=(restic --repo "$r" backup --stdin --stdin-filename dump.sql --host bench
    --compression auto)
  measure restic backup "$r" "$WORK/day1.sql" /dev/null "${b[@]}"
  measure restic again "$r" "$WORK/day1.sql" /dev/null "${b[@]}"
  measure restic day2 "$r" "$WORK/day2.sql" /dev/null "${b[@]}"
  measure restic restore "$r" /dev/null "$WORK/out.sql" restic --repo "$r" dump latest /dump.sql
  check_restore restic "$WORK/out.sql"
  measure restic check "$r" /dev/null /dev/null restic --repo "$r" check --read-data
  check_passed
}

run_borg() {
  local r="$WORK/borg-repo"
  borg init -e repokey "$r" >"$WORK/log.borg.init" 2>&1 </dev/null ||
    { cat "$WORK/log.borg.init" >&2; die "borg init failed"; }
  local b=(borg create --compression 'zstd,3' --stdin-name dump.sql)
  measure borg backup "$r" "$WORK/day1.sql" /dev/null "${b[@]}" "$r::day1" -
  measure borg again "$r" "$WORK/day1.sql" /dev/null "${b[@]}" "$r::day1-again" -
  measure borg day2 "$r" "$WORK/day2.sql" /dev/null "${b[@]}" "$r::day2" -
  measure borg restore "$r" /dev/null "$WORK/out.sql" borg extract --stdout "$r::day2" dump.sql
  check_restore borg "$WORK/out.sql"
  measure borg check "$r" /dev/null /dev/null borg check --verify-data "$r"
  check_passed
}

echo
echo "compare: measuring (${SIZE_MB} MiB stream)"
for t in "${tools[@]}"; do "run_$t"; done

# --- Report -----------------------------------------------------------------------------------
echo
echo "Stream: $SIZE_MB MiB of dump-like SQL (gen-dump); MiB = 2^20 bytes; CPU = user + sys."
echo "MiB/s and MiB/CPU-s count MiB of stream, except for check: MiB of repository (repo MiB),"
echo "the bytes it reads and verifies. 'added' is the repository's growth during the operation"
echo "(added% of the stream size). result: restore matched the day-2 SHA-256; check found no damage."
report_table streams
report_ratios "${tools[@]}"

if ((failures > 0)); then die "$failures restore(s) did not match the day-2 stream"; fi
