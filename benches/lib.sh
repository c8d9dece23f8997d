# Measuring and reporting shared by benches/compare.sh and benches/macro.sh (sourced, not run).
#
# The sourcing script sets BENCH (the prefix of its messages), WORK (its work directory) and,
# before each `measure`, MEASURE_BYTES (the size of the operation's input: MiB/s and added% are
# over it) and MEASURE_FILES (its number of files, 0 for a stream: files/s then shows "-").
# Each measured operation becomes a row of `rows`:
#   tool op wall user sys rss_kb repo_bytes added_bytes input_bytes files result
# shellcheck shell=bash

# private_env PASSWORD: keeps every tool's caches and config inside $WORK, so runs start cold and
# leave nothing behind, and forgets any repository the caller's environment names.
private_env() {
  export RESTIC_PASSWORD="$1" RESTIC_CACHE_DIR="$WORK/restic-cache"
  export BORG_PASSPHRASE="$1" BORG_BASE_DIR="$WORK/borg-base" BORG_DISPLAY_PASSPHRASE=n
  export CAIRN_PASSWORD="$1" CAIRN_CACHE_DIR="$WORK/cairn-cache"
  unset RESTIC_REPOSITORY BORG_REPO CAIRN_REPOSITORY CAIRN_PASSWORD_FILE CAIRN_PASSWORD_COMMAND
}

# warm PATH...: reads every file at or below each PATH, so that the step measured next finds
# its input in the page cache whatever ran before it: this VM keeps only ~1-1.4 GiB of page
# cache, and a tool measured after another's restore otherwise read part of the tree from disk
# (a cairn tree backup 1.7 s in a first round, 3.5 s in the next, with a second of it system
# time). `measure` warms the paths in WARM.
warm() { find "$@" -type f -print0 | xargs -0 -r cat >/dev/null; }
WARM=()

rows=()
MEASURE_BYTES=0
MEASURE_FILES=0

# measure TOOL OP REPO INPUT OUTPUT CMD...: runs CMD with INPUT on stdin and OUTPUT as stdout
# under GNU time, after a sync; records wall, CPU, peak RSS and the repository's growth. A failing command
# stops the script with its log, so the table never shows figures from a failed run (for the
# check operation that includes a check that reports damage). cairn's exit code 3 (done with
# warnings) is tolerated.
measure() {
  local tool="$1" op="$2" repo="$3" in="$4" out="$5" status=0
  shift 5
  local tf="$WORK/time.$tool.$op" log="$WORK/log.$tool.$op" before after
  before="$(du -sb "$repo" | cut -f1)"
  ((${#WARM[@]} == 0)) || warm "${WARM[@]}"
  # Dirty pages left by the step before (a dump just written, a repository just stored) would
  # be written back during this one: whichever tool runs first after generating the data pays.
  sync
  /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" <"$in" >"$out" 2>"$log" || status=$?
  if ((status != 0)) && ! [[ $tool == cairn && $status == 3 ]]; then
    echo "$BENCH: $tool $op failed (exit $status): $*" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  ((status == 0)) || echo "$BENCH: $tool $op finished with warnings (exit 3)" >&2
  after="$(du -sb "$repo" | cut -f1)"
  local wall user sys rss
  read -r wall user sys rss < <(tail -n 1 "$tf")
  rows+=("$tool $op $wall $user $sys $rss $after $((after - before)) $MEASURE_BYTES $MEASURE_FILES -")
  printf '  %-7s %-8s %8.2fs  (user %.2f, sys %.2f)\n' "$tool" "$op" "$wall" "$user" "$sys"
}

# median_rows: keeps, of the rows of each tool and operation (one per round), the one with the
# median wall time (the lower middle for an even count), in the order they first appear;
# prints "tool op fastest median slowest" for each. Call it without a subshell (it sets
# `rows`): `median_rows >FILE`.
median_rows() {
  local kept
  kept="$(printf '%s\n' "${rows[@]}" | awk '
    { key = $1 " " $2; if (!(key in n)) order[++keys] = key; row[key, ++n[key]] = $0; wall[key, n[key]] = $3 }
    END {
      for (k = 1; k <= keys; k++) {
        key = order[k]; m = n[key]
        for (i = 1; i <= m; i++) idx[i] = i
        for (i = 2; i <= m; i++) for (j = i; j > 1 && wall[key, idx[j]] + 0 < wall[key, idx[j - 1]] + 0; j--) {
          t = idx[j]; idx[j] = idx[j - 1]; idx[j - 1] = t
        }
        mid = idx[int((m + 1) / 2)]
        print "R " row[key, mid]
        split(key, kv, " ")
        printf "S %-7s %-8s %6.2f %6.2f %6.2f\n", kv[1], kv[2], wall[key, idx[1]], wall[key, mid], wall[key, idx[m]]
      }
    }')"
  rows=()
  local line
  while IFS= read -r line; do
    case "$line" in R\ *) rows+=("${line#R }") ;; esac
  done <<<"$kept"
  printf '%s\n' "$kept" | sed -n 's/^S //p'
}

# mark_last RESULT: sets the result field of the last row (ok, MISMATCH, ...).
mark_last() {
  local last="${rows[-1]}"
  rows[-1]="${last% -} $1"
}

# check_passed: marks the last row (a check) as passed; measure already stopped the script if
# the check exited non-zero, i.e. found damage or could not run.
check_passed() { mark_last ok; }

# report_table streams|files: the table of `rows`. MiB/s and MiB/CPU-s are over each row's
# input size, except for check: over the repository size (the bytes it reads and verifies);
# added% is the growth over the input size. "files" adds a files/s column.
report_table() {
  local files=""
  if [[ $1 == files ]]; then files=1; fi
  printf '%s\n' "${rows[@]}" | awk -v files="$files" '
    BEGIN {
      printf "%-7s %-8s %8s %8s %9s", "tool", "op", "seconds", "MiB/s", "MiB/CPU-s"
      if (files != "") printf " %9s", "files/s"
      printf " %8s %9s %12s %7s %7s\n", "RSS MiB", "repo MiB", "added bytes", "added%", "result"
    }
    {
      cpu = $4 + $5
      size = ($2 == "check" ? $7 : $9) / 1048576
      printf "%-7s %-8s %8.2f %8.1f %9.1f", $1, $2, $3, ($3 > 0 ? size / $3 : 0),
        (cpu > 0 ? size / cpu : 0)
      if (files != "") printf " %9s", ($10 > 0 && $2 != "check" && $3 > 0 ? sprintf("%.0f", $10 / $3) : "-")
      printf " %8.1f %9.1f %12d %7.2f %7s\n", $6 / 1024, $7 / 1048576, $8,
        ($9 > 0 ? 100 * $8 / $9 : 0), $11
    }'
}

# report_ratios TOOL...: for each peer among TOOL... (restic, borg) measured along with cairn,
# cairn's figure divided by the peer's, per operation (below 1 = cairn smaller/faster).
report_ratios() {
  [[ " $* " == *" cairn "* ]] || return 0
  local peer
  for peer in restic borg; do
    [[ " $* " == *" $peer "* ]] || continue
    echo
    echo "cairn/$peer (below 1: cairn takes less)"
    printf '%s\n' "${rows[@]}" | awk -v peer="$peer" '
      { key = $1 SUBSEP $2; wall[key] = $3; cpu[key] = $4 + $5; rss[key] = $6; repo[key] = $7; add[key] = $8 }
      function ratio(a, b) { return b > 0 ? sprintf("%.2f", a / b) : "-" }
      END {
        printf "%-8s %9s %9s %9s %9s %9s\n", "op", "seconds", "CPU-s", "RSS", "repo", "added"
        n = split("backup again day2 restore check", ops, " ")
        for (i = 1; i <= n; i++) {
          c = "cairn" SUBSEP ops[i]; p = peer SUBSEP ops[i]
          printf "%-8s %9s %9s %9s %9s %9s\n", ops[i], ratio(wall[c], wall[p]),
            ratio(cpu[c], cpu[p]), ratio(rss[c], rss[p]), ratio(repo[c], repo[p]), ratio(add[c], add[p])
        }
      }'
  done
}
