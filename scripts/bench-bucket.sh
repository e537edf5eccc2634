#!/usr/bin/env bash
# Store gateway and compactor figures for docs/performance.md (issue 15's benchmark):
# start-up time and memory of `kiln store` per 1,000 blocks (cold: empty data dir;
# warm: index-headers and metas kept), memory after a query that opens every block,
# compaction throughput of `kiln compact`, and bucket bytes per sample (raw and 5m).
#
#   scripts/bench-bucket.sh [--kiln-bin target/release/kiln] [--blocks 1000] [--series 20]
#
# Everything runs on loopback in a temporary directory (removed at the end) with a
# directory bucket. Needs python3 (to write the input).
set -euo pipefail
cd "$(dirname "$0")/.."

KILN=target/release/kiln
BLOCKS=1000
SERIES=20
while [[ $# -gt 0 ]]; do
    case "$1" in
        --kiln-bin) KILN=$2; shift 2 ;;
        --blocks) BLOCKS=$2; shift 2 ;;
        --series) SERIES=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
KILN=$(realpath "$KILN")
WORK=$(mktemp -d)
STORE_PID=""
cleanup() {
    [[ -n "$STORE_PID" ]] && kill "$STORE_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

HOURS=$((BLOCKS * 2))
START=1699833600
echo "input: $SERIES series, one sample a minute, $HOURS hours ($BLOCKS 2h blocks)"
python3 - "$WORK/in.om" "$SERIES" "$HOURS" "$START" <<'PY'
import math, sys
path, series, hours, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with open(path, "w") as f:
    f.write("# TYPE gpu_utilization gauge\n")
    for s in range(series):
        for i in range(hours * 60):
            v = 50 + 40 * math.sin(i / 97.0 + s)
            f.write(f'gpu_utilization{{gpu="{s}",node="n{s % 4}"}} {v:.3f} {start + i * 60}\n')
    f.write("# EOF\n")
PY
"$KILN" tsdb create-blocks-from openmetrics -q "$WORK/in.om" "$WORK/data" >/dev/null
mkdir -p "$WORK/bucket"
printf 'type: FILESYSTEM\nconfig:\n  directory: %s\n' "$WORK/bucket" > "$WORK/bucket.yml"
"$KILN" tools bucket --objstore.config-file "$WORK/bucket.yml" upload-blocks \
    --path "$WORK/data" --label cluster=bench --label replica=0 >/dev/null
n=$(find "$WORK/bucket" -maxdepth 2 -name meta.json | wc -l)
raw_bytes=$(du -sb "$WORK/bucket" | cut -f1)
samples=$((SERIES * HOURS * 60))
echo "bucket: $n blocks, $raw_bytes bytes, $(python3 -c "print(f'{$raw_bytes/$samples:.3f}')") bytes per raw sample (all files)"

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# Sets STORE_PID, PORT and READY (seconds to ready). Not run in a subshell: the store's
# PID must reach the caller, and its stdout must not hold a command substitution open.
start_store() {
    local log=$1
    local t0
    t0=$(date +%s.%N)
    "$KILN" store --objstore.config-file "$WORK/bucket.yml" --data-dir "$WORK/store" \
        --http-address 127.0.0.1:0 --grpc-address 127.0.0.1:0 >/dev/null 2>"$log" &
    STORE_PID=$!
    until grep -q "Listening on" "$log"; do
        kill -0 "$STORE_PID" 2>/dev/null || { cat "$log" >&2; exit 1; }
        sleep 0.01
    done
    local t1
    t1=$(date +%s.%N)
    PORT=$(grep "Listening on" "$log" | sed -E 's/.*address=[^ ]*:([0-9]+).*/\1/')
    READY=$(python3 -c "print(f'{$t1-$t0:.2f}')")
}
stop_store() { kill "$STORE_PID"; wait "$STORE_PID" 2>/dev/null || true; STORE_PID=""; }

start_store "$WORK/store1.log"
cold=$READY
cold_rss=$(rss_kib "$STORE_PID")
end=$((START + HOURS * 3600))
q0=$(date +%s.%N)
curl -sf "http://127.0.0.1:$PORT/api/v1/query_range?query=max(gpu_utilization)&start=$START&end=$end&step=3600" >/dev/null
q1=$(date +%s.%N)
open_rss=$(rss_kib "$STORE_PID")
headers=$(find "$WORK/store" -name index-header | wc -l)
header_bytes=$(find "$WORK/store" -name index-header -printf '%s\n' | awk '{s+=$1} END {print s+0}')
stop_store
start_store "$WORK/store2.log"
warm=$READY
warm_rss=$(rss_kib "$STORE_PID")
stop_store
echo "kiln store, $n blocks: ready in ${cold}s cold (empty data dir), ${warm}s warm; RSS ${cold_rss} KiB after start, ${warm_rss} KiB warm"
echo "  query over all $n blocks (max over ${HOURS}h, 1h step): $(python3 -c "print(f'{$q1-$q0:.2f}')")s, opening $headers index-headers ($header_bytes bytes on disk); RSS after ${open_rss} KiB"

c0=$(date +%s.%N)
"$KILN" compact --objstore.config-file "$WORK/bucket.yml" --data-dir "$WORK/compact" \
    --consistency-delay 0s --delete-delay 0s 2>"$WORK/compact.log"
c1=$(date +%s.%N)
# A second pass: downsamples to 1h the 5m blocks the first made, and deletes the 5m
# blocks of raw blocks that were compacted further (superseded).
"$KILN" compact --objstore.config-file "$WORK/bucket.yml" --data-dir "$WORK/compact" \
    --consistency-delay 0s --delete-delay 0s 2>>"$WORK/compact.log"
after=$(find "$WORK/bucket" -maxdepth 2 -name meta.json | wc -l)
read -r raw_after down_bytes hour_bytes < <(python3 - "$WORK/bucket" <<'PY'
import json, os, sys
root = sys.argv[1]
sizes = {0: 0, 300000: 0, 3600000: 0}
for d in os.listdir(root):
    meta = os.path.join(root, d, "meta.json")
    if not os.path.exists(meta):
        continue
    res = json.load(open(meta)).get("thanos", {}).get("downsample", {}).get("resolution", 0)
    total = sum(os.path.getsize(os.path.join(p, f)) for p, _, fs in os.walk(os.path.join(root, d)) for f in fs)
    sizes[res] = sizes.get(res, 0) + total
print(sizes[0], sizes[300000], sizes[3600000])
PY
)
windows=$((SERIES * HOURS * 12))
echo "kiln compact: $n blocks -> $after blocks in $(python3 -c "print(f'{$c1-$c0:.1f}')")s ($(python3 -c "print(f'{$samples/($c1-$c0)/1e6:.2f}')") M raw samples/s, compaction and downsampling together)"
hours1=$((SERIES * HOURS))
echo "  after a second pass: raw $(python3 -c "print(f'{$raw_after/$samples:.3f}')") bytes per sample (index included); 5m $(python3 -c "print(f'{$down_bytes/max($windows,1):.3f}')") bytes per 5m window; 1h $(python3 -c "print(f'{$hour_bytes/max($hours1,1):.3f}')") bytes per 1h window (each window: count, sum, min, max, counter; 5m and 1h cover the blocks long enough to downsample)"
