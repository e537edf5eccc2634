#!/usr/bin/env bash
# The 30-day dashboard query at raw, 5m and 1h resolution through `kiln store`, and
# against a real Prometheus holding the same 30 days raw (issue 15's benchmark).
#
#   scripts/bench-downsampled.sh [--kiln-bin target/release/kiln] [--series 40] [--days 30]
#
# The data (GPU utilisation gauges and a training-steps counter, one sample every 15 s)
# is backfilled into a data directory, uploaded to a directory bucket and compacted
# twice by `kiln compact` (2h -> 14d blocks, then 5m and 1h versions); Prometheus opens
# a copy of the same data directory. Each query is run 5 times after one warm-up run;
# the median is reported. Needs python3 and Prometheus (Debian's `prometheus`).
set -euo pipefail
cd "$(dirname "$0")/.."

KILN=target/release/kiln
SERIES=40
DAYS=30
while [[ $# -gt 0 ]]; do
    case "$1" in
        --kiln-bin) KILN=$2; shift 2 ;;
        --series) SERIES=$2; shift 2 ;;
        --days) DAYS=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
KILN=$(realpath "$KILN")
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# 2023-10-26 00:00 UTC, on a 14-day boundary from the epoch (the compactor's windows).
START=1698278400
END=$((START + DAYS * 86400))
echo "input: $SERIES GPU gauges and $((SERIES / 8)) counters, 15 s apart, $DAYS days"
python3 - "$WORK/in.om" "$SERIES" "$DAYS" "$START" <<'PY'
import math, sys
path, series, days, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
steps = days * 86400 // 15
with open(path, "w") as f:
    f.write("# TYPE gpu_utilization gauge\n")
    for s in range(series):
        lines = []
        for i in range(steps):
            v = 50 + 45 * math.sin(i / 240.0 + s) * math.cos(i / 5000.0)
            lines.append(f'gpu_utilization{{gpu="{s % 8}",node="n{s // 8}"}} {v:.2f} {start + i * 15}\n')
        f.write("".join(lines))
    f.write("# TYPE training_steps counter\n")
    for s in range(series // 8):
        c = 0
        lines = []
        for i in range(steps):
            if i % 20000 == 0:
                c = 0
            c += 1 + (i + s) % 3
            lines.append(f'training_steps_total{{job="train-{s}"}} {c} {start + i * 15}\n')
        f.write("".join(lines))
    f.write("# EOF\n")
PY
"$KILN" tsdb create-blocks-from openmetrics -q "$WORK/in.om" "$WORK/data" >/dev/null
rm -f "$WORK/in.om"
cp -r "$WORK/data" "$WORK/prom-data"
mkdir -p "$WORK/bucket"
printf 'type: FILESYSTEM\nconfig:\n  directory: %s\n' "$WORK/bucket" > "$WORK/bucket.yml"
"$KILN" tools bucket --objstore.config-file "$WORK/bucket.yml" upload-blocks \
    --shipper.upload-compacted --path "$WORK/data" --label cluster=bench >/dev/null
for _ in 1 2; do
    "$KILN" compact --objstore.config-file "$WORK/bucket.yml" --data-dir "$WORK/compact" \
        --consistency-delay 0s --delete-delay 0s 2>>"$WORK/compact.log"
done
"$KILN" tools bucket --objstore.config-file "$WORK/bucket.yml" ls -o wide | sed -E 's/^[0-9A-Z]+ -- //' | cut -c1-120

"$KILN" store --objstore.config-file "$WORK/bucket.yml" --data-dir "$WORK/store" \
    --http-address 127.0.0.1:0 --grpc-address 127.0.0.1:0 >/dev/null 2>"$WORK/store.log" &
PIDS+=($!)
until grep -q "Listening on" "$WORK/store.log"; do sleep 0.05; done
STORE_PORT=$(grep "Listening on" "$WORK/store.log" | sed -E 's/.*address=[^ ]*:([0-9]+).*/\1/')
PROM_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'global:\n  scrape_interval: 1h\n' > "$WORK/prometheus.yml"
prometheus --config.file "$WORK/prometheus.yml" --storage.tsdb.path "$WORK/prom-data" \
    --web.listen-address "127.0.0.1:$PROM_PORT" --storage.tsdb.retention.time 100y \
    >/dev/null 2>"$WORK/prom.log" &
PIDS+=($!)
until curl -sf "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null; do sleep 0.2; done

median() {
    local url=$1
    curl -sf "$url" >/dev/null
    for _ in 1 2 3 4 5; do
        local t0 t1
        t0=$(date +%s.%N)
        curl -sf "$url" >/dev/null
        t1=$(date +%s.%N)
        python3 -c "print($t1-$t0)"
    done | sort -g | sed -n 3p
}
enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$1"; }
# A 30-day panel: 1h steps (720 points).
STEP=3600
printf '%-58s %10s %10s %10s %12s\n' "query (30 days, 1h step)" "raw" "5m" "1h" "Prometheus"
for q in 'avg by (node) (avg_over_time(gpu_utilization[1h]))' \
         'max by (node) (max_over_time(gpu_utilization[1h]))' \
         'sum(rate(training_steps_total[1h]))'; do
    e=$(enc "$q")
    path="/api/v1/query_range?query=$e&start=$START&end=$END&step=$STEP"
    row=()
    for res in raw 5m 1h; do
        row+=("$(median "http://127.0.0.1:$STORE_PORT$path&max_source_resolution=$res")")
    done
    prom=$(median "http://127.0.0.1:$PROM_PORT$path")
    printf '%-58s %9.3fs %9.3fs %9.3fs %11.3fs\n' "$q" "${row[0]}" "${row[1]}" "${row[2]}" "$prom"
done
