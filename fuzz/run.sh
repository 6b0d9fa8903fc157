#!/usr/bin/env bash
# Runs fuzz targets for $1 seconds each (default 300), two at a time (the
# dev machines have 2 cores), on stable via RUSTC_BOOTSTRAP. Further
# arguments pick targets (default: all). Seeds the
# metainfo/bencode corpora from the committed .torrent fixtures. Logs go to
# fuzz/logs/<target>.log; a crash makes the script exit non-zero.
set -u
cd "$(dirname "$0")"
secs=${1:-300}
shift || true
mkdir -p logs corpus/metainfo corpus/bencode
cp ../crates/bt-proto/tests/fixtures/*.torrent corpus/metainfo/
cp ../crates/bt-proto/tests/fixtures/*.torrent corpus/bencode/

dict_for() {
  case $1 in
    magnet) echo "-dict=dicts/magnet.dict" ;;
    tracker_http) echo "-dict=dicts/tracker_http.dict" ;;
    pex) echo "-dict=dicts/pex.dict" ;;
    lsd) echo "-dict=dicts/lsd.dict" ;;
    wire|wire_v2|tracker_udp|mse) echo "" ;;
    dht_mainline) echo "-dict=dicts/krpc.dict" ;;
    *) echo "-dict=dicts/bencode.dict" ;;
  esac
}

run() {
  local t=$1
  mkdir -p "corpus/$t"
  # dht_mainline sends datagrams to a real mainline node: run it in a
  # network namespace of its own with only loopback, so no fuzzed message
  # can make the node send anything off the machine.
  local prefix=()
  [ "$t" = dht_mainline ] && prefix=(unshare -n sh -c 'ip link set lo up && exec "$@"' sh)
  # shellcheck disable=SC2046
  RUSTC_BOOTSTRAP=1 "${prefix[@]}" cargo fuzz run "$t" "corpus/$t" -- $(dict_for "$t") \
    -max_total_time="$secs" -print_final_stats=1 >"logs/$t.log" 2>&1
  local rc=$?
  echo "$t exit=$rc $(grep -E '^Done [0-9]+ runs' "logs/$t.log")"
  return $rc
}

RUSTC_BOOTSTRAP=1 cargo fuzz build || exit 1
status=0
[ $# -eq 0 ] && set -- bencode metainfo magnet wire extension metadata tracker_http tracker_udp pex lsd mse wire_v2 dht_mainline
while [ $# -gt 0 ]; do
  run "$1" & a=$!
  if [ $# -gt 1 ]; then run "$2" & b=$!; else b=; fi
  wait $a || status=1
  [ -n "$b" ] && { wait "$b" || status=1; }
  shift; [ $# -gt 0 ] && shift
done
exit $status
