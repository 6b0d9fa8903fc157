#!/usr/bin/env bash
# Reproduce the benchmark table (BENCHMARKS.md, issue 4) in one command.
#
#   scripts/bench.sh [download1g|download4g|seed|all]...     (default: all)
#
#   download1g  swarm.py download --size 1G, 1 libtorrent seeder, clients
#               cmd(=riptide),aria2,transmission,qbittorrent,libtorrent,rqbit, --runs 3
#   download4g  swarm.py download --size 4G --files 8 --seeders 4, same clients, --runs 3
#   seed        scripts/bench_seed.py --runs 3: riptide vs transmission-daemon seeding 1G
#               to 4 aria2c leechers started together
#
# Steps: cargo build --release -p riptide, ../shared/bench/setup.sh (apt packages; rqbit is
# optional: RQBIT=1 scripts/bench.sh also installs it with cargo, otherwise it is left out of
# the clients when it is not on PATH), then the benchmarks. JSON lines go to
# bench-results/<date>/<time>-<step>.jsonl, stdout (JSON lines and tables) to <time>-<step>.txt
# and the harness's progress log to <time>-<step>.log next to them. A summary of the median
# tables is printed at the end. Exit code 0 only if every step succeeded.
#
# Environment (defaults reproduce the table; change them only for a quick smoke test):
#   RUNS=3  DL1_SIZE=1G  DL4_SIZE=4G  SEED_SIZE=1G  NO_BUILD=1 (skip cargo build)
#   NO_SETUP=1 (skip setup.sh)  DRY_RUN=1 (print the commands only)
#   BENCH_WORK=/tmp/riptide-bench (payload cache and run dirs)
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED="$(dirname "$ROOT")/shared"
SWARM="$SHARED/bench/swarm.py"
PY=/usr/bin/python3
RUNS=${RUNS:-3}
DL1_SIZE=${DL1_SIZE:-1G}
DL4_SIZE=${DL4_SIZE:-4G}
SEED_SIZE=${SEED_SIZE:-1G}
WORK=${BENCH_WORK:-/tmp/riptide-bench}
DRY_RUN=${DRY_RUN:-0}

die() { echo "bench.sh: error: $*" >&2; exit 1; }
note() { echo "bench.sh: $*" >&2; }

usage() {
  sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

steps=()
for a in "$@"; do
  case "$a" in
    download1g|download4g|seed) steps+=("$a") ;;
    all) steps+=(download1g download4g seed) ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown step '$a' (choose from download1g, download4g, seed, all)" ;;
  esac
done
[ "${#steps[@]}" -gt 0 ] || steps=(download1g download4g seed)

[ -d "$SHARED" ] || die "$SHARED is missing: the benchmark harness (shared/bench/swarm.py) must sit next to the checkout"
[ -f "$SWARM" ] || die "$SWARM is missing (the shared folder has no bench/swarm.py)"
[ -x "$PY" ] || die "$PY not found (the harness needs Debian's python3 with python3-libtorrent)"

run() {  # print, then run (unless DRY_RUN=1)
  printf '+'; printf ' %q' "$@"; printf '\n'
  [ "$DRY_RUN" = 1 ] && return 0
  "$@"
}

# 1. build
RIPTIDE="$ROOT/target/release/riptide"
if [ "${NO_BUILD:-0}" = 1 ]; then
  note "NO_BUILD=1: using the existing $RIPTIDE"
else
  (cd "$ROOT" && run cargo build --release -p riptide) || die "cargo build --release -p riptide failed"
fi
[ "$DRY_RUN" = 1 ] || [ -x "$RIPTIDE" ] || die "$RIPTIDE not found (build it or drop NO_BUILD=1)"

# 2. reference clients, tracker, tools
if [ "${NO_SETUP:-0}" = 1 ]; then
  note "NO_SETUP=1: not running setup.sh"
else
  run "$SHARED/bench/setup.sh" || die "$SHARED/bench/setup.sh failed"
fi
CLIENTS=cmd,aria2,transmission,qbittorrent,libtorrent,rqbit
if ! command -v rqbit >/dev/null 2>&1; then
  note "rqbit is not on PATH: leaving it out of the download clients (RQBIT=1 scripts/bench.sh installs it)"
  CLIENTS=cmd,aria2,transmission,qbittorrent,libtorrent
fi

# 3. benchmarks
OUT="$ROOT/bench-results/$(date +%Y-%m-%d)"
STAMP=$(date +%H%M%S)
[ "$DRY_RUN" = 1 ] || mkdir -p "$OUT" || die "cannot create $OUT"
CMD="$(printf '%q' "$RIPTIDE") download {torrent} --out {out} --port {peer_port}"

failed=()
bench() {  # bench NAME COMMAND...: stdout -> NAME.txt, stderr -> NAME.log (and the terminal)
  local name=$1; shift
  local base="$OUT/$STAMP-$name"
  echo
  echo "### $name"
  if [ "$DRY_RUN" = 1 ]; then
    run "$@" --json-out "$base.jsonl"
    return 0
  fi
  { printf '###'; printf ' %q' "$@" --json-out "$base.jsonl"; printf '\n'; } > "$base.txt"
  printf '+'; printf ' %q' "$@" --json-out "$base.jsonl"; printf '\n'
  "$@" --json-out "$base.jsonl" 2> >(tee -a "$base.log" >&2) | tee -a "$base.txt" | grep -v '^{'
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ]; then
    note "$name: exit code $rc (see $base.txt and $base.log)"
    failed+=("$name")
  fi
}

for s in "${steps[@]}"; do
  case "$s" in
    download1g)
      bench download1g "$PY" "$SWARM" download --work "$WORK" --size "$DL1_SIZE" --seeders 1 \
        --client "$CLIENTS" --cmd "$CMD" --runs "$RUNS" ;;
    download4g)
      bench download4g "$PY" "$SWARM" download --work "$WORK" --size "$DL4_SIZE" --files 8 --seeders 4 \
        --client "$CLIENTS" --cmd "$CMD" --runs "$RUNS" ;;
    seed)
      bench seed "$PY" "$ROOT/scripts/bench_seed.py" --work "$WORK" --size "$SEED_SIZE" --runs "$RUNS" \
        --riptide "$RIPTIDE" ;;
  esac
done

[ "$DRY_RUN" = 1 ] && exit 0
echo
echo "=================== summary ($OUT, $STAMP; cmd = riptide $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)) ==================="
for s in "${steps[@]}"; do
  f="$OUT/$STAMP-$s.txt"
  echo
  echo "## $s"
  # the median table(s) at the end of each step's output
  [ -f "$f" ] && sed -n '/^medians/,$p' "$f"
done
echo
echo "JSON lines: $OUT/$STAMP-*.jsonl"
if [ "${#failed[@]}" -gt 0 ]; then
  note "failed steps (some runs not ok): ${failed[*]}"
  exit 1
fi
