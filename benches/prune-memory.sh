#!/usr/bin/env bash
# Peak memory and time of `cairn prune` on a synthetic repository with millions of blobs.
#
#   benches/prune-memory.sh                   5 000 000 blobs (cairn only)
#   BLOBS=200000 benches/prune-memory.sh      a quick run
#   RESTIC=1 BLOBS=200000 benches/prune-memory.sh   also restic, on a repository of as many blobs
#
# Steps, each under GNU time (wall seconds, CPU seconds, peak RSS), with the repository's size
# after each:
#   gen          benches/src/bin/gen-repo.rs: a new repository (prune grace 1 s) holding BLOBS
#                distinct 64-byte data blobs split evenly over 4 snapshots, each one stream
#                file stored through content lists, as `cairn backup --stdin` stores a stream
#   snapshots    `cairn snapshots`: the floor every command pays to open the repository (the
#                Argon2id key derivation alone takes 64 MiB)
#   forget       `cairn forget` of the 2 oldest snapshots: half the blobs become garbage
#   prune-dry    `cairn prune --dry-run`
#   prune-mark   `cairn prune`: phase 1, marks the forgotten snapshots' packs in a plan
#   prune-sweep  `cairn prune` 2 s later (past the grace period): phase 2, deletes them
#   check        `cairn check` of what is left
#
# With RESTIC=1 the same is done with restic (repository version 2, compression auto): restic
# has no way to store many blobs without as many files (its chunker does not cut below 512 KiB),
# so each snapshot is a directory of BLOBS/4 distinct 64-byte files in directories of 1000,
# backed up with `restic backup`; then `restic snapshots`, `restic forget` of the 2 oldest,
# `restic prune --dry-run`, `restic prune` (one phase) and `restic check`. Building it costs a file per blob on disk (~4 KiB each, one
# snapshot's worth at a time) and a restic backup of that many files.
#
# Environment:
#   BLOBS        number of data blobs (default 5000000)
#   RESTIC       1: also measure restic on a repository with as many blobs (default 0)
#   BENCH_DIR    where the temporary work directory goes (default ${TMPDIR:-/tmp}); KEEP=1 keeps it
#   CAIRN, GEN_REPO  existing binaries to use instead of building (release) here
# The machine may be busy with other builds: the times are noisy; peak RSS much less so.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME:-/root}/.cache/cairn/target}"
if [[ -d "${CARGO_HOME:-${HOME:-/root}/.cargo}/bin" ]]; then
  export PATH="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin:$PATH"
fi
BLOBS="${BLOBS:-5000000}"
RESTIC="${RESTIC:-0}"
SNAPSHOTS=4
PASSWORD="prune-memory-sh-bench-password"

die() { echo "prune-memory: $*" >&2; exit 1; }
if ! [[ "$BLOBS" =~ ^[1-9][0-9]*$ ]] || ((BLOBS < SNAPSHOTS)); then
  die "BLOBS must be a whole number of at least $SNAPSHOTS"
fi

# GNU time, for peak RSS (the shell's `time` does not report it).
if [[ ! -x /usr/bin/time ]]; then
  echo "prune-memory: installing GNU time"
  sudo=()
  ((EUID == 0)) || sudo=(sudo -n)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null ||
    die "GNU time (/usr/bin/time) is missing and could not be installed: apt-get install time"
fi
if ((RESTIC)); then command -v restic >/dev/null || die "RESTIC=1 but restic is not installed"; fi

# --- Build ------------------------------------------------------------------------------------
if [[ -z "${CAIRN:-}" || -z "${GEN_REPO:-}" ]]; then
  echo "prune-memory: cargo build --release -p cairn-cli -p cairn-benches"
  cargo build --release --quiet -p cairn-cli -p cairn-benches --bin cairn --bin gen-repo ||
    die "build failed"
fi
CAIRN="${CAIRN:-$CARGO_TARGET_DIR/release/cairn}"
GEN_REPO="${GEN_REPO:-$CARGO_TARGET_DIR/release/gen-repo}"
[[ -x "$CAIRN" ]] || die "no cairn binary at $CAIRN"
[[ -x "$GEN_REPO" ]] || die "no gen-repo binary at $GEN_REPO"
"$CAIRN" prune --help >/dev/null 2>&1 || die "$CAIRN has no prune command"

# --- Work directory ---------------------------------------------------------------------------
mkdir -p "${BENCH_DIR:-${TMPDIR:-/tmp}}"
WORK="$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/cairn-prune-memory.XXXXXX")"
cleanup() {
  if [[ "${KEEP:-0}" == 1 ]]; then echo "prune-memory: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
printf '%s\n' "$PASSWORD" >"$WORK/password"
# Every cache inside $WORK; no password or repository from the caller's environment.
export CAIRN_CACHE_DIR="$WORK/cairn-cache" RESTIC_CACHE_DIR="$WORK/restic-cache"
unset CAIRN_REPOSITORY CAIRN_PASSWORD CAIRN_PASSWORD_FILE CAIRN_PASSWORD_COMMAND
unset RESTIC_REPOSITORY RESTIC_PASSWORD RESTIC_PASSWORD_COMMAND
export RESTIC_PASSWORD_FILE="$WORK/password"

echo "machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)," \
  "$(free -g | awk '/^Mem:/ { print $2 }') GiB; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "cairn: $("$CAIRN" --version 2>&1 | head -n1)"
if ((RESTIC)); then echo "restic: $(restic version)"; fi
echo "work: $WORK; $BLOBS blobs in $SNAPSHOTS snapshots"

# --- Measuring --------------------------------------------------------------------------------
rows=() # "tool step wall cpu rss_kb repo_bytes"

# measure TOOL STEP REPO CMD...: runs CMD under GNU time with its output in a log; a failure
# stops the script with the log's tail.
measure() {
  local tool="$1" step="$2" repo="$3" status=0
  shift 3
  local tf="$WORK/time.$tool.$step" log="$WORK/log.$tool.$step"
  /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" </dev/null >"$log" 2>&1 || status=$?
  if ((status != 0)); then
    echo "prune-memory: $tool $step failed (exit $status): $*" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
  local wall user sys rss size
  read -r wall user sys rss < <(tail -n 1 "$tf")
  size="$(du -sb "$repo" | cut -f1)"
  rows+=("$tool $step $wall $(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }') $rss $size")
  printf '  %-7s %-12s %8.1fs %8.1f MiB peak RSS\n' "$tool" "$step" "$wall" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')"
}

# snapshot_count TOOL REPO: how many snapshots the repository lists.
snapshot_count() {
  if [[ $1 == cairn ]]; then
    "$CAIRN" snapshots --repo "$2" --password-file "$WORK/password" --json | jq length
  else
    restic --repo "$2" snapshots --json | jq length
  fi
}

run_cairn() {
  local r="$WORK/cairn-repo" c=("$CAIRN" --repo "$WORK/cairn-repo" --password-file "$WORK/password")
  echo
  echo "prune-memory: cairn"
  measure cairn gen "$r" "$GEN_REPO" --repo "$r" --password-file "$WORK/password" \
    --blobs "$BLOBS" --snapshots "$SNAPSHOTS"
  grep '^gen-repo:' "$WORK/log.cairn.gen" | tail -n 1
  # gen-repo prints the snapshots oldest first.
  mapfile -t ids < <(awk '/^snapshot / { print $2 }' "$WORK/log.cairn.gen")
  ((${#ids[@]} == SNAPSHOTS)) || die "gen-repo reported ${#ids[@]} snapshots, not $SNAPSHOTS"
  [[ "$(snapshot_count cairn "$r")" == "$SNAPSHOTS" ]] || die "cairn snapshots does not list $SNAPSHOTS"
  measure cairn snapshots "$r" "${c[@]}" snapshots
  measure cairn forget "$r" "${c[@]}" forget "${ids[0]}" "${ids[1]}"
  [[ "$(snapshot_count cairn "$r")" == $((SNAPSHOTS - 2)) ]] || die "forget left the wrong snapshots"
  measure cairn prune-dry "$r" "${c[@]}" prune --dry-run
  # Packs must be older than the 1 s grace period to be marked; gen finished moments ago.
  sleep 2
  measure cairn prune-mark "$r" "${c[@]}" prune
  sleep 2
  measure cairn prune-sweep "$r" "${c[@]}" prune
  measure cairn check "$r" "${c[@]}" check
  for step in prune-dry prune-mark prune-sweep; do
    echo "--- cairn $step:"
    tail -n 12 "$WORK/log.cairn.$step"
  done
}

# restic_tree N DIR: N distinct 64-byte random files in DIR, 1000 to a subdirectory.
restic_tree() {
  local dir="$2" d=0 left="$1"
  rm -rf "$dir"
  while ((left > 0)); do
    local k=$((left < 1000 ? left : 1000))
    mkdir -p "$dir/d$d"
    head -c $((k * 64)) /dev/urandom | (cd "$dir/d$d" && split -b 64 -a 3 -d - f)
    left=$((left - k))
    d=$((d + 1))
  done
}

run_restic() {
  local r="$WORK/restic-repo" src="$WORK/restic-src" s per
  echo
  echo "prune-memory: restic"
  restic init --repo "$r" --repository-version 2 >"$WORK/log.restic.init" 2>&1 </dev/null ||
    { cat "$WORK/log.restic.init" >&2; die "restic init failed"; }
  local start=$SECONDS
  for ((s = 0; s < SNAPSHOTS; s++)); do
    per=$((BLOBS / SNAPSHOTS + (s < BLOBS % SNAPSHOTS ? 1 : 0)))
    restic_tree "$per" "$src"
    measure restic "backup$s" "$r" restic --repo "$r" backup --host gen --compression auto "$src"
  done
  rm -rf "$src"
  echo "  restic: built the repository in $((SECONDS - start)) s (files included)"
  mapfile -t ids < <(restic --repo "$r" snapshots --json | jq -r 'sort_by(.time) | .[].id')
  ((${#ids[@]} == SNAPSHOTS)) || die "restic lists ${#ids[@]} snapshots, not $SNAPSHOTS"
  measure restic snapshots "$r" restic --repo "$r" snapshots
  measure restic forget "$r" restic --repo "$r" forget "${ids[0]}" "${ids[1]}"
  measure restic prune-dry "$r" restic --repo "$r" prune --dry-run
  measure restic prune "$r" restic --repo "$r" prune
  measure restic check "$r" restic --repo "$r" check
  echo "--- restic prune:"
  tail -n 12 "$WORK/log.restic.prune"
}

run_cairn
if ((RESTIC)); then run_restic; fi

# --- Report -----------------------------------------------------------------------------------
echo
echo "$BLOBS data blobs of 64 bytes in $SNAPSHOTS snapshots; 2 forgotten. MiB = 2^20 bytes;"
echo "CPU = user + sys seconds; repo MiB = the repository's size after the step (du -sb)."
printf '%s\n' "${rows[@]}" | awk '
  BEGIN { printf "| %-6s | %-11s | %8s | %8s | %13s | %9s |\n", "tool", "step", "wall s", "CPU s", "peak RSS MiB", "repo MiB"
          print "|--------|-------------|---------:|---------:|--------------:|----------:|" }
  { printf "| %-6s | %-11s | %8.1f | %8.1f | %13.1f | %9.1f |\n", $1, $2, $3, $4, $5 / 1024, $6 / 1048576 }'
