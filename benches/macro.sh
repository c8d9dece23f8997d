#!/usr/bin/env bash
# The macro benchmark: cairn, restic and borg on the data real stores produce, in one run, with a
# table per data set.
#
#   benches/macro.sh                          all three data sets at the default size
#   SIZE=small benches/macro.sh               a quick run (a tenth of the default)
#   DATASETS="pg tree" SIZE=300 benches/macro.sh
#
# Data sets (each deterministic: the same input for the same SIZE, awk and PostgreSQL; generators
# in benches/data/):
#   pg     a private PostgreSQL 15 server: `pgbench -i -s SCALE` plus an `events` table of JSON
#          rows (pg-events.sql, setseed + random; ~25 % of the dump). Day 1 is `pg_dump` (plain).
#          Then a day of a busy platform: `pgbench -n -c 1 -j 1 -t 500*SCALE --random-seed=N`
#          (pgbench-day2.sql: the tpcb-like transaction with a deterministic history timestamp;
#          ~0.5 % of the accounts updated) and pg-day2.sql (~0.5 % of the events updated, picked
#          by a hash of their id, ~0.5 % new events); autovacuum is off and there is no VACUUM,
#          so updated rows leave the middle of their table and reappear at its end. Day 2 is
#          `pg_dump` again. Both dumps go through stdin as dump.sql.
#   redis  a private redis-server filled by redis.awk through `redis-cli --pipe` (sessions as
#          JSON strings, user hashes, JSON product records, counters); day 1 is the RDB that
#          SAVE writes. Then ~1 % of the keys get new values of the same kind; day 2 is the next
#          SAVE. Through stdin as dump.rdb. The key set and every value are deterministic; the
#          order of the keys in the file is not across runs (Redis seeds its hash function at
#          random when it starts) and the header records the save time, so the RDB's bytes
#          differ from one run to the next while its size and content do not.
#   tree   a directory of 50,000 small files (tree.awk: logs, NDJSON, markdown, CSV; 1-16 KiB,
#          log-uniform; in 16x16x8 directories) plus 4 large incompressible files of 64 MiB
#          (AES-CTR keystream from `openssl enc` with a fixed key). Day 2: ~1 % of the small
#          files modified (appended to, or a line replaced and one inserted), 0.5 % added, one
#          large file replaced, with their mtimes moved a day on; the unchanged files are hard
#          links to day 1's, so a tool sees them with the same inode, size, mtime and ctime.
#          Backed up as a directory.
# For each tool and data set, each under GNU time:
#   backup    day 1 into an empty repository
#   again     day 1 again (for the tree: the re-scan of an unchanged tree)
#   day2      day 2 ("added" = the repository's growth: the key figure)
#   restore   the latest snapshot: a stream to a file, checked against day 2's SHA-256; the tree
#             into an empty directory, checked against day 2's sorted list of paths and SHA-256s
#   check     cairn check --read-data, restic check --read-data, borg check --verify-data
# A command that fails, or a restore that does not match, stops the script with the log's tail.
# Settings as in compare.sh: restic repository version 2, --compression auto; borg -e repokey,
# --compression zstd,3; cairn's defaults, with the `redis` chunker profile for the RDB (what a
# Redis store of cairn.toml uses).
#
# Environment:
#   SIZE         default (600), small (60), or a whole number N >= 10: the pg dump is ~N MiB
#                (pgbench scale N/13, N*800 events), the RDB ~N/2 MiB (N*2640 keys), the tree
#                has N*250/3 small files (~N*0.45 MiB) and 4 large files of N*64/600 MiB
#   DATASETS     data sets to run, in this order (default "pg redis tree")
#   TOOLS        tools to measure (default "cairn restic borg"; missing peers are skipped)
#   REPEAT       rounds per data set (default 1): each round runs every tool's five operations
#                on a fresh repository, tools interleaved (cairn, restic, borg, cairn, ...); the
#                table shows, per tool and operation, the round with the median wall time, and
#                a line under it the fastest, median and slowest walls
#   BENCH_DIR    where the temporary directory goes (default ${TMPDIR:-/tmp}); it needs about
#                8 x SIZE MiB + 1 GiB free (what a step is done with is deleted at the end, see
#                `discard`), and the postgres user must be able to reach it when
#                this runs as root. KEEP=1 keeps it (and every data set's files).
#   CAIRN        a cairn binary to use instead of building one (release) here
#   SKIP_SETUP=1 do not run scripts/setup --bench (restic, borg, GNU time, PostgreSQL, Redis)
#   CAIRN_PG_BIN the PostgreSQL programs' directory (default: the newest /usr/lib/postgresql/*/bin)
# The servers listen on 127.0.0.1 only, on free ports, keep their data in the work directory
# and are stopped when the script exits, also on failure or interruption. PostgreSQL refuses to
# run as root: as root, its server programs run as the `postgres` user.
# Without REPEAT each figure comes from one run on a machine that may be doing other things:
# repeat before drawing conclusions from differences of a few percent. Each step's input (the
# dump, the tree, the repository it reads) is read once just before it is measured, so it is
# in the page cache whichever step ran before (`warm`).
set -Eeuo pipefail
trap 'echo "macro: line $LINENO failed: $BASH_COMMAND" >&2' ERR

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME:-/root}/.cache/cairn/target}"
SIZE="${SIZE:-default}"
DATASETS="${DATASETS:-pg redis tree}"
TOOLS="${TOOLS:-cairn restic borg}"
PASSWORD="macro-sh-bench-password"
BENCH=macro
started=$SECONDS

die() { echo "macro: $*" >&2; exit 1; }
case "$SIZE" in
  default) size=600 ;;
  small) size=60 ;;
  *)
    if ! [[ "$SIZE" =~ ^[1-9][0-9]*$ ]] || ((SIZE < 10)); then
      die "SIZE must be default, small or a whole number (MiB of pg dump) of at least 10"
    fi
    size=$SIZE
    ;;
esac
REPEAT="${REPEAT:-1}"
[[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || die "REPEAT must be a whole number of rounds, at least 1"
sets=()
for s in $DATASETS; do
  case "$s" in pg | redis | tree) sets+=("$s") ;; *) die "unknown data set in DATASETS: $s (pg, redis, tree)" ;; esac
done
((${#sets[@]} > 0)) || die "no data set in DATASETS"
want_set() { [[ " ${sets[*]} " == *" $1 "* ]]; }

if [[ "${SKIP_SETUP:-0}" != 1 ]]; then
  scripts/setup --bench || echo "macro: scripts/setup --bench failed; using what is installed" >&2
fi
[[ -x /usr/bin/time ]] || die "GNU time (/usr/bin/time) is missing: apt-get install time"
command -v awk >/dev/null || die "awk is missing"
if want_set pg; then
  if [[ -n "${CAIRN_PG_BIN:-}" ]]; then
    PG_BIN="$CAIRN_PG_BIN"
  else
    PG_BIN="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1)"
  fi
  for p in initdb pg_ctl psql pg_dump pgbench; do
    [[ -x "$PG_BIN/$p" ]] || die "no $p in '$PG_BIN' (scripts/setup installs postgresql; CAIRN_PG_BIN=DIR)"
  done
  PG_USER=postgres
  if ((EUID == 0)); then getent passwd "$PG_USER" >/dev/null || PG_USER=nobody; fi
fi
if want_set redis; then
  for p in redis-server redis-cli; do
    command -v "$p" >/dev/null || die "$p is missing (scripts/setup installs redis-server)"
  done
fi
if want_set tree; then command -v openssl >/dev/null || die "openssl is missing: apt-get install openssl"; fi

# --- Build ------------------------------------------------------------------------------------
want() { [[ " $TOOLS " == *" $1 "* ]]; }
if want cairn; then
  if [[ -z "${CAIRN:-}" ]]; then
    echo "macro: cargo build --release -p cairn-cli --bin cairn"
    cargo build --release --quiet -p cairn-cli --bin cairn ||
      die "build failed (TOOLS=\"restic borg\" measures the peers without cairn)"
  fi
  CAIRN="${CAIRN:-$CARGO_TARGET_DIR/release/cairn}"
  [[ -x "$CAIRN" ]] || die "no cairn binary at $CAIRN"
fi

# --- Work directory and servers -----------------------------------------------------------------
mkdir -p "${BENCH_DIR:-${TMPDIR:-/tmp}}"
WORK="$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/cairn-macro.XXXXXX")"
PG_DATA="" PG_PORT="" REDIS_PID="" REDIS_PORT=""

# as_pg CMD...: a PostgreSQL server program, as the postgres user when this runs as root.
as_pg() { if ((EUID == 0)); then runuser -u "$PG_USER" -- "$@"; else "$@"; fi; }
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

stop_servers() {
  if [[ -n "$PG_DATA" && -f "$PG_DATA/postmaster.pid" ]]; then
    local pid
    pid="$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)"
    (cd "${PG_DATA%/data}" && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop) >/dev/null 2>&1 ||
      { [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null; } || true
  fi
  PG_DATA=""
  if [[ -n "$REDIS_PID" ]]; then
    rcli shutdown nosave >/dev/null 2>&1 || true
    local i
    for ((i = 0; i < 100; i++)); do kill -0 "$REDIS_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
  fi
  REDIS_PID=""
}
cleanup() {
  stop_servers
  if [[ "${KEEP:-0}" == 1 ]]; then
    rm -rf "${WORK:?}/discarded"
    echo "macro: kept $WORK"
  else
    rm -rf "$WORK"
  fi
}

# discard PATH...: moves what a step no longer needs out of the way, to be deleted when the
# script ends. Deleting it now would slow the next steps down, whichever tool they measure:
# ext4 skips inodes freed in the last minutes when it allocates new ones (`recently_deleted`),
# and after 50 000 files deleted a restore of the tree spent most of its time in that scan
# (8 s of system time instead of ~0.3 s).
discarded=0
discard() {
  local p
  mkdir -p "$WORK/discarded"
  for p in "$@"; do
    [[ -e "$p" ]] || continue
    discarded=$((discarded + 1))
    mv "$p" "$WORK/discarded/$discarded"
  done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
if ((EUID == 0)); then chmod 711 "$WORK"; fi # the postgres user reaches $WORK/pg, nothing else
free_mb=$(($(df -Pk "$WORK" | awk 'NR == 2 { print $4 }') / 1024))
if ((free_mb < 5 * size + 1024)); then
  die "$WORK has $free_mb MiB free; SIZE=$SIZE needs about $((5 * size + 1024))"
fi

# shellcheck source=benches/lib.sh
source benches/lib.sh # measure, check_passed, report_table, report_ratios; rows
private_env "$PASSWORD"
unset PGDATABASE PGPASSWORD PGSERVICE PGSSLMODE PGOPTIONS PGDATA

# quietly NAME CMD...: runs CMD with its output in $WORK/log.NAME; stops the script with the log's
# tail if it fails.
quietly() {
  local name="$1"
  shift
  "$@" </dev/null >"$WORK/log.$name" 2>&1 || {
    local status=$?
    echo "macro: $name failed (exit $status): $*" >&2
    tail -n 20 "$WORK/log.$name" >&2
    exit 1
  }
}

# free_port: a port nothing listens on at 127.0.0.1 (the caller retries if it is taken first).
free_port() {
  local p i
  for ((i = 0; i < 100; i++)); do
    p=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  die "found no free port on 127.0.0.1"
}

# pg_start: initdb and start a private PostgreSQL server; exports PGHOST, PGPORT and PGUSER.
pg_start() {
  local dir="$WORK/pg" attempt
  mkdir -p "$dir"
  if ((EUID == 0)); then chown "$PG_USER:" "$dir"; fi
  as_pg test -w "$dir" ||
    die "$PG_USER cannot write $dir: set BENCH_DIR to a directory every user can reach (/tmp)"
  (cd "$dir" && quietly pg.initdb as_pg "$PG_BIN/initdb" -D "$dir/data" -U cairn --auth=trust \
    --encoding=UTF8 --locale=C --no-sync --no-instructions)
  # A throwaway cluster: no durability, no autovacuum (row placement must not depend on when
  # it runs), no synchronized or parallel scans (dump order), UTC.
  cat >>"$dir/data/postgresql.conf" <<EOF
# benches/macro.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
max_wal_size = 1GB
shared_buffers = 256MB
maintenance_work_mem = 256MB
autovacuum = off
synchronize_seqscans = off
max_parallel_workers_per_gather = 0
timezone = 'UTC'
logging_collector = off
EOF
  PG_DATA="$dir/data"
  for attempt in 1 2 3 4 5; do
    PG_PORT="$(free_port)"
    if (cd "$dir" && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$dir/postgres.log" -w -t 60 \
      -o "-p $PG_PORT" start) </dev/null >"$WORK/log.pg.start" 2>&1; then
      export PGHOST=127.0.0.1 PGPORT="$PG_PORT" PGUSER=cairn
      return
    fi
    if ((attempt < 5)) && grep -q "could not bind" "$dir/postgres.log"; then continue; fi
    cat "$WORK/log.pg.start" >&2
    tail -n 20 "$dir/postgres.log" >&2
    die "PostgreSQL did not start"
  done
}

# redis_start: a private redis-server (no automatic saves) in $WORK/redis/server.
redis_start() {
  local dir="$WORK/redis/server" attempt i debug=()
  mkdir -p "$dir"
  # Redis 7 refuses DEBUG unless enabled; redis_settle uses DEBUG HTSTATS.
  if [[ "$(redis-server --version)" =~ v=([0-9]+) ]] && ((BASH_REMATCH[1] >= 7)); then
    debug=(--enable-debug-command local)
  fi
  for attempt in 1 2 3 4 5; do
    REDIS_PORT="$(free_port)"
    # hz 500: finishes the incremental rehash of the key table soon after the load.
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --protected-mode yes --dir "$dir" \
      --dbfilename dump.rdb --save '' --appendonly no --daemonize no --hz 500 "${debug[@]}" \
      --logfile "$dir/redis.log" </dev/null >/dev/null 2>&1 &
    REDIS_PID=$!
    for ((i = 0; i < 600; i++)); do
      if ! kill -0 "$REDIS_PID" 2>/dev/null; then
        wait "$REDIS_PID" || true
        REDIS_PID=""
        if ((attempt < 5)) && grep -q "Address already in use" "$dir/redis.log"; then continue 2; fi
        tail -n 20 "$dir/redis.log" >&2
        die "redis-server exited"
      fi
      [[ "$(rcli ping 2>/dev/null)" == PONG ]] && return
      sleep 0.1
    done
    die "redis-server did not answer PING in 60 s"
  done
}

# redis_settle: waits until Redis has finished rehashing its key table, so that the order of
# the keys in the RDB (the table's order) stays the same from one SAVE to the next.
redis_settle() {
  local i
  for ((i = 0; i < 1200; i++)); do
    rcli debug htstats 0 2>/dev/null | grep -q 'rehashing target' || return 0
    sleep 0.1
  done
  die "Redis still rehashing its key table after 120 s"
}

redis_save() { # redis_save FILE: SAVE, then copy the RDB to FILE
  [[ "$(rcli save)" == OK ]] || { tail -n 20 "$WORK/redis/server/redis.log" >&2; die "Redis SAVE failed"; }
  cp "$WORK/redis/server/dump.rdb" "$1"
}

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# fs_line: the work directory's file system. ext4 without a journal does not reuse an inode
# for a minute or more after it is freed (the kernel's `recently_deleted` check, skipped when
# there is a journal), so creating files soon after deleting many is slow there, and restores
# vary with what was deleted before them.
fs_line() {
  local src fstype line
  read -r src fstype < <(findmnt -no SOURCE,FSTYPE -T "$WORK" 2>/dev/null) || return 0
  line="file system: $src ($fstype)"
  if [[ $fstype == ext4 ]]; then
    if compgen -G "/proc/fs/jbd2/$(basename "$src")-*" >/dev/null; then
      line+=", with a journal"
    else
      line+=", without a journal: file creation is slow for minutes after large deletes"
    fi
  fi
  echo "$line"
}

# --- Environment and versions -----------------------------------------------------------------
header=()
header+=("machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(free -g | awk '/^Mem:/ { print $2 }') GiB; load average at start $(cut -d' ' -f1-3 /proc/loadavg)")
header+=("$(fs_line)")
tools=()
for t in $TOOLS; do
  case "$t" in
    cairn) header+=("cairn:  $("$CAIRN" --version 2>&1 | head -n1)"); tools+=(cairn) ;;
    restic | borg)
      if command -v "$t" >/dev/null; then
        if [[ $t == restic ]]; then header+=("restic: $(restic version)"); else header+=("borg:   $(borg --version)"); fi
        tools+=("$t")
      else
        echo "macro: $t: not installed, skipped (scripts/setup --bench installs it)"
      fi
      ;;
    *) die "unknown tool in TOOLS: $t" ;;
  esac
done
((${#tools[@]} > 0)) || die "no tool to measure"
if want_set pg; then header+=("postgres: $("$PG_BIN/postgres" --version)"); fi
if want_set redis; then header+=("redis:  $(redis-server --version)"); fi
header+=("SIZE=$SIZE ($size), DATASETS=\"${sets[*]}\", REPEAT=$REPEAT, work directory $WORK")
echo
printf '%s\n' "${header[@]}"

# --- Data sets ----------------------------------------------------------------------------------
# Each gen_SET leaves day 1 and day 2 in $WORK/SET and sets IN1/IN2 (input bytes), FILES1/FILES2
# (file counts, 0 for a stream), SUM2 (day 2's checksum or manifest) and desc (lines for the
# report).
IN1=0 IN2=0 FILES1=0 FILES2=0 SUM2="" desc=()

gen_pg() {
  local d="$WORK/pg" scale events tx psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1)
  scale=$(((size * 10 + 65) / 130)) # ~9.7 MiB of dump per unit of scale, 75 % of the dump
  events=$((size * 800))            # ~330 bytes each, 25 % of the dump
  tx=$((500 * scale))               # ~0.5 % of the 100000*scale accounts
  # pg_dump 15.14 and later writes a random \restrict key into each dump: fix it.
  local dump=("$PG_BIN/pg_dump" -d shop)
  if "$PG_BIN/pg_dump" --help | grep -- --restrict-key >/dev/null; then dump+=(--restrict-key=cairnmacrobench); fi
  pg_start
  quietly pg.createdb "${psql[@]}" -d postgres -c 'CREATE DATABASE shop'
  echo "macro: pg: pgbench -i -s $scale, $events events"
  quietly pg.init "$PG_BIN/pgbench" -i -q -s "$scale" shop
  quietly pg.events "${psql[@]}" -d shop -v events="$events" -f benches/data/pg-events.sql
  quietly pg.dump1 "${dump[@]}" -f "$d/day1.sql"
  echo "macro: pg: day 2: pgbench -t $tx, events updated and added"
  quietly pg.bench "$PG_BIN/pgbench" -n -c 1 -j 1 -t "$tx" --random-seed=20240302 -s "$scale" \
    -f benches/data/pgbench-day2.sql shop
  quietly pg.day2 "${psql[@]}" -d shop -v events="$events" -f benches/data/pg-day2.sql
  quietly pg.dump2 "${dump[@]}" -f "$d/day2.sql"
  local updated
  updated="$("${psql[@]}" -A -t -d shop -c "SELECT count(*) FROM events WHERE payload->>'processed' = 'true'")"
  stop_servers
  [[ "${KEEP:-0}" == 1 ]] || discard "$d/data"
  IN1="$(stat -c %s "$d/day1.sql")" IN2="$(stat -c %s "$d/day2.sql")" FILES1=0 FILES2=0
  SUM2="$(sha256sum <"$d/day2.sql" | cut -d' ' -f1)"
  local diffstat
  # Lines only in day 1 (removed or moved away) and only in day 2 (new or moved there).
  diffstat="$({ diff "$d/day1.sql" "$d/day2.sql" || (($? == 1)); } | awk '
    /^</ { r++; rb += length($0) - 1 } /^>/ { a++; ab += length($0) - 1 }
    END { printf "%d lines (%d bytes) removed, %d lines (%d bytes) added", r, rb, a, ab }')"
  desc=("pg: pgbench scale $scale ($((100000 * scale)) accounts) + $events events; day 1 dump $IN1 bytes ($(mib "$IN1") MiB)"
    "    day 2: $tx pgbench transactions, $updated events updated, $((events / 200)) added; dump $IN2 bytes ($(mib "$IN2") MiB)"
    "    diff day 1 -> day 2: $diffstat")
}

gen_redis() {
  local d="$WORK/redis" keys changes
  keys=$((size * 2640))
  redis_start
  echo "macro: redis: $keys keys"
  awk -v keys="$keys" -v day=1 -f benches/data/redis.awk | rcli --pipe >"$WORK/log.redis.load" 2>&1 ||
    { tail -n 20 "$WORK/log.redis.load" >&2; die "loading Redis failed"; }
  grep -q '^errors: 0,' "$WORK/log.redis.load" || { cat "$WORK/log.redis.load" >&2; die "Redis refused commands"; }
  redis_settle
  redis_save "$d/day1.rdb"
  awk -v keys="$keys" -v day=2 -f benches/data/redis.awk >"$d/day2.resp"
  changes="$(grep -c '^\*' "$d/day2.resp")"
  rcli --pipe <"$d/day2.resp" >"$WORK/log.redis.day2" 2>&1 ||
    { tail -n 20 "$WORK/log.redis.day2" >&2; die "changing Redis failed"; }
  grep -q '^errors: 0,' "$WORK/log.redis.day2" || { cat "$WORK/log.redis.day2" >&2; die "Redis refused commands"; }
  redis_settle
  redis_save "$d/day2.rdb"
  stop_servers
  [[ "${KEEP:-0}" == 1 ]] || discard "$d/server" "$d/day2.resp"
  IN1="$(stat -c %s "$d/day1.rdb")" IN2="$(stat -c %s "$d/day2.rdb")" FILES1=0 FILES2=0
  SUM2="$(sha256sum <"$d/day2.rdb" | cut -d' ' -f1)"
  local first
  first="$(cmp "$d/day1.rdb" "$d/day2.rdb" 2>/dev/null | awk '{ print $5 }' | tr -d , || true)"
  desc=("redis: $keys keys (40 % JSON session strings, 30 % hashes of 8 fields, 20 % JSON records, 10 % counters); day 1 RDB $IN1 bytes ($(mib "$IN1") MiB)"
    "    day 2: $changes keys (~1 %) changed; RDB $IN2 bytes; first difference at byte ${first:-none}")
}

# manifest DIR: every file's path (relative to DIR) and SHA-256, sorted, hashed.
manifest() {
  (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum) | sha256sum | cut -d' ' -f1
}
# tree_sum DIR: "FILES BYTES" of the regular files under DIR.
tree_sum() { find "$1" -type f -printf '%s\n' | awk '{ n++; b += $1 } END { printf "%d %.0f\n", n, b }'; }

# big FILE MIB N: MIB MiB of AES-128-CTR keystream (fixed key, IV N): incompressible, deterministic.
big() {
  head -c "$(($2 * 1048576))" /dev/zero |
    openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f -iv "$(printf '%032x' "$3")" -out "$1"
}

gen_tree() {
  local d="$WORK/tree" files big_mib k modified added
  files=$((size * 250 / 3))
  big_mib=$((size * 64 / 600))
  ((big_mib >= 1)) || big_mib=1
  echo "macro: tree: $files small files, 4 x $big_mib MiB"
  mkdir -p "$d/day1/media"
  awk -v root="$d/day1" -v files="$files" -v day=0 -f benches/data/tree.awk | xargs -d '\n' mkdir -p
  awk -v root="$d/day1" -v files="$files" -v day=1 -f benches/data/tree.awk
  for k in 0 1 2 3; do big "$d/day1/media/archive-$k.bin" "$big_mib" "$k"; done
  find "$d/day1" -exec touch -h -d '2024-03-01 12:00:00' {} +
  # Day 2 shares day 1's unchanged files (hard links: same inode, size, mtime and ctime); a
  # changed file is a new file renamed over its link.
  cp -al "$d/day1" "$d/day2"
  awk -v root="$d/day2" -v files="$files" -v day=2 -f benches/data/tree.awk >"$d/changed"
  while IFS= read -r f; do
    if [[ $f == *.new ]]; then mv -f "$f" "${f%.new}"; fi
  done <"$d/changed"
  rm -f "$d/day2/media/archive-2.bin"
  big "$d/day2/media/archive-2.bin" "$big_mib" 12
  modified="$(grep -c '\.new$' "$d/changed" || true)"
  added="$(grep -vc '\.new$' "$d/changed" || true)"
  { sed 's/\.new$//' "$d/changed"; echo "$d/day2/media/archive-2.bin"; } |
    xargs -d '\n' touch -d '2024-03-02 12:00:00'
  find "$d/day2" -type d -exec touch -d '2024-03-02 12:00:00' {} +
  local s1 s2
  s1="$(tree_sum "$d/day1")" s2="$(tree_sum "$d/day2")"
  FILES1="${s1% *}" IN1="${s1#* }" FILES2="${s2% *}" IN2="${s2#* }"
  SUM2="$(manifest "$d/day2")"
  TREE_CUR=none
  desc=("tree: $files small files (1-16 KiB text, logs, NDJSON, CSV) + 4 x $big_mib MiB incompressible; day 1 $FILES1 files, $IN1 bytes ($(mib "$IN1") MiB)"
    "    day 2: $modified small files modified, $added added, 1 large file replaced; $FILES2 files, $IN2 bytes ($(mib "$IN2") MiB)")
}

# tree_is day1|day2: makes $WORK/tree/data (the path every tool backs up) that day's tree.
tree_is() {
  local d="$WORK/tree"
  [[ $TREE_CUR == "$1" ]] && return
  if [[ $TREE_CUR != none ]]; then mv "$d/data" "$d/$TREE_CUR"; fi
  mv "$d/$1" "$d/data"
  TREE_CUR="$1"
}

# --- Measuring --------------------------------------------------------------------------------

init_repo() { # init_repo TOOL REPO
  case "$1" in
    cairn) quietly "$1.init" "$CAIRN" init --repo "$2" ;;
    restic) quietly "$1.init" restic init --repo "$2" --repository-version 2 ;;
    borg) quietly "$1.init" borg init -e repokey "$2" ;;
  esac
}

# backup_cmd TOOL REPO ARCHIVE SOURCE NAME: sets `cmd` to the backup of SOURCE, a directory or
# "-" for standard input (stored as NAME); ARCHIVE names borg's archive.
backup_cmd() {
  local tool="$1" r="$2" archive="$3" src="$4" name="${5:-}"
  case "$tool:$src" in
    cairn:-)
      cmd=("$CAIRN" backup --repo "$r" --stdin --stdin-name "$name")
      # What a `type = "redis"` store of cairn.toml picks for its RDB.
      if [[ "$name" == *.rdb ]]; then cmd+=(--chunker redis); fi
      ;;
    cairn:*) cmd=("$CAIRN" backup --repo "$r" "$src") ;;
    restic:-) cmd=(restic --repo "$r" backup --stdin --stdin-filename "$name" --host bench --compression auto) ;;
    restic:*) cmd=(restic --repo "$r" backup --host bench --compression auto "$src") ;;
    borg:-) cmd=(borg create --compression 'zstd,3' --stdin-name "$name" "$r::$archive" -) ;;
    borg:*) cmd=(borg create --compression 'zstd,3' "$r::$archive" "$src") ;;
  esac
}

check_cmd() { # check_cmd TOOL REPO: sets `cmd` to the full verification of REPO
  case "$1" in
    cairn) cmd=("$CAIRN" check --repo "$2" --read-data) ;;
    restic) cmd=(restic --repo "$2" check --read-data) ;;
    borg) cmd=(borg check --verify-data "$2") ;;
  esac
}

# run_stream TOOL SET NAME EXT: the five operations on $WORK/SET/day{1,2}.EXT through stdin.
run_stream() {
  local tool="$1" set="$2" name="$3" ext="$4" cmd=()
  local d="$WORK/$set" r="$WORK/$set/$tool-repo"
  discard "$r" # a round before, with KEEP=1
  init_repo "$tool" "$r"
  MEASURE_FILES=0
  MEASURE_BYTES="$IN1"
  backup_cmd "$tool" "$r" day1 - "$name"
  WARM=("$d/day1.$ext")
  measure "$tool" backup "$r" "$d/day1.$ext" /dev/null "${cmd[@]}"
  backup_cmd "$tool" "$r" day1-again - "$name"
  measure "$tool" again "$r" "$d/day1.$ext" /dev/null "${cmd[@]}"
  MEASURE_BYTES="$IN2"
  backup_cmd "$tool" "$r" day2 - "$name"
  WARM=("$d/day2.$ext")
  measure "$tool" day2 "$r" "$d/day2.$ext" /dev/null "${cmd[@]}"
  case "$tool" in
    cairn) cmd=("$CAIRN" dump --repo "$r" latest "$name") ;;
    restic) cmd=(restic --repo "$r" dump latest "/$name") ;;
    borg) cmd=(borg extract --stdout "$r::day2" "$name") ;;
  esac
  WARM=("$r")
  measure "$tool" restore "$r" /dev/null "$d/out.$ext" "${cmd[@]}"
  local got
  got="$(sha256sum <"$d/out.$ext" | cut -d' ' -f1)"
  rm -f "$d/out.$ext"
  [[ "$got" == "$SUM2" ]] || die "$tool restored a $set stream that differs from day 2 ($got != $SUM2)"
  mark_last ok
  check_cmd "$tool" "$r"
  measure "$tool" check "$r" /dev/null /dev/null "${cmd[@]}"
  check_passed
  WARM=()
  [[ "${KEEP:-0}" == 1 ]] || discard "$r"
}

# run_tree TOOL: the five operations on the tree, backed up as the directory $WORK/tree/data.
run_tree() {
  local tool="$1" cmd=() d="$WORK/tree"
  local r="$d/$tool-repo" t="$d/restore-$tool" src="$d/data" root
  discard "$r" # a round before, with KEEP=1
  init_repo "$tool" "$r"
  tree_is day1
  MEASURE_BYTES="$IN1" MEASURE_FILES="$FILES1"
  backup_cmd "$tool" "$r" day1 "$src"
  WARM=("$src")
  measure "$tool" backup "$r" /dev/null /dev/null "${cmd[@]}"
  backup_cmd "$tool" "$r" day1-again "$src"
  measure "$tool" again "$r" /dev/null /dev/null "${cmd[@]}"
  tree_is day2
  MEASURE_BYTES="$IN2" MEASURE_FILES="$FILES2"
  backup_cmd "$tool" "$r" day2 "$src"
  measure "$tool" day2 "$r" /dev/null /dev/null "${cmd[@]}"
  mkdir "$t"
  case "$tool" in
    cairn) cmd=("$CAIRN" restore --repo "$r" latest --target "$t") root="$t/data" ;;
    restic) cmd=(restic --repo "$r" restore latest --target "$t") root="$t$src" ;;
    borg) cmd=(env -C "$t" borg extract "$r::day2") root="$t/${src#/}" ;;
  esac
  WARM=("$r")
  measure "$tool" restore "$r" /dev/null /dev/null "${cmd[@]}"
  [[ -d "$root" ]] || die "$tool restored no $root; $(find "$t" -maxdepth 4 | head -n 5)"
  local got
  got="$(manifest "$root")"
  [[ "$got" == "$SUM2" ]] || die "$tool restored a tree that differs from day 2 (in $t)"
  discard "$t"
  mark_last ok
  MEASURE_FILES=0
  check_cmd "$tool" "$r"
  measure "$tool" check "$r" /dev/null /dev/null "${cmd[@]}"
  check_passed
  WARM=()
  [[ "${KEEP:-0}" == 1 ]] || discard "$r"
}

for set in "${sets[@]}"; do
  echo
  t0=$SECONDS
  mkdir -p "$WORK/$set"
  "gen_$set"
  t1=$SECONDS
  printf '%s\n' "${desc[@]}"
  echo "macro: $set: data generated in $((t1 - t0)) s; measuring"
  for ((round = 1; round <= REPEAT; round++)); do
    ((REPEAT == 1)) || echo "macro: $set: round $round of $REPEAT"
    for t in "${tools[@]}"; do
      case "$set" in
        pg) run_stream "$t" pg dump.sql sql ;;
        redis) run_stream "$t" redis dump.rdb rdb ;;
        tree) run_tree "$t" ;;
      esac
    done
  done
  spread=""
  if ((REPEAT > 1)); then
    median_rows >"$WORK/spread.$set"
    spread="$(cat "$WORK/spread.$set")"
  fi
  {
    echo
    printf '%s\n' "${desc[@]}"
    echo "    generated in $((t1 - t0)) s, measured in $((SECONDS - t1)) s"
    echo
    if [[ $set == tree ]]; then report_table files; else report_table streams; fi
    if [[ -n $spread ]]; then
      echo "wall over $REPEAT rounds, fastest / median / slowest (seconds):"
      echo "$spread"
    fi
    report_ratios "${tools[@]}"
  } >"$WORK/report.$set"
  rows=()
  [[ "${KEEP:-0}" == 1 ]] || discard "${WORK:?}/$set"
done

# --- Report -----------------------------------------------------------------------------------
echo
echo "=== benches/macro.sh: $((SECONDS - started)) s in all; load average at end $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%s\n' "${header[@]}"
echo "MiB = 2^20 bytes; CPU = user + sys; RSS = peak resident memory (GNU time). MiB/s and"
echo "MiB/CPU-s count MiB of input (day 1 for backup and again, day 2 for day2 and restore),"
echo "except for check: MiB of repository (repo MiB), the bytes it reads and verifies. 'added' is"
echo "the repository's growth during the operation (added% of the input). result: the restore"
echo "matched day 2 (SHA-256 of the stream; every path and SHA-256 of the tree); check found no damage."
for set in "${sets[@]}"; do cat "$WORK/report.$set"; done
