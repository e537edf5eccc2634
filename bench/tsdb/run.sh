#!/usr/bin/env bash
# Storage benchmark: append throughput, memory per active series and bytes per sample on
# a realistic GPU-fleet data set, plus bytes per sample of promtool's blocks built from
# the same data. Run from the repository root:
#
#   bench/tsdb/run.sh [SERIES] [SAMPLES] [PROMTOOL_SERIES]
#
# Defaults: 1,000,000 series x 120 samples for Kiln's ingest; 20,000 series x 120
# samples for the promtool comparison (an OpenMetrics file of 1M series would be ~20 GB).
# Needs `promtool` (Debian package `prometheus`) for the comparison; skipped without it.
# Writes only under $BENCH_DIR (default: a new temp dir), removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."

SERIES=${1:-1000000}
SAMPLES=${2:-120}
PROM_SERIES=${3:-20000}
BENCH_DIR=${BENCH_DIR:-$(mktemp -d)}
trap 'rm -rf "$BENCH_DIR"' EXIT

cargo build --release -q -p kiln-tsdb --example tsdb_bench
cargo build --release -q -p kiln
BIN=target/release/examples/tsdb_bench
KILN=target/release/kiln

echo "## Kiln ingest: $SERIES series x $SAMPLES samples (one thread, WAL on)"
"$BIN" --series "$SERIES" --samples "$SAMPLES" --dir "$BENCH_DIR/kiln-ingest"
rm -rf "$BENCH_DIR/kiln-ingest"

if ! command -v promtool >/dev/null; then
    echo "promtool not found: skipping the comparison with promtool's blocks"
    exit 0
fi

echo
echo "## Bytes per sample from the same OpenMetrics input: $PROM_SERIES series x $SAMPLES samples"
"$BIN" --series "$PROM_SERIES" --samples "$SAMPLES" --openmetrics "$BENCH_DIR/fleet.om"
promtool tsdb create-blocks-from openmetrics "$BENCH_DIR/fleet.om" "$BENCH_DIR/promtool" >/dev/null
"$KILN" tsdb create-blocks-from openmetrics "$BENCH_DIR/fleet.om" "$BENCH_DIR/kiln" >/dev/null

# Sum of block sizes and samples from meta.json, per directory.
report() {
    local dir=$1 name=$2
    python3 - "$dir" "$name" <<'PY'
import json, os, sys
root, name = sys.argv[1], sys.argv[2]
size = samples = blocks = 0
for b in os.listdir(root):
    meta = os.path.join(root, b, "meta.json")
    if not os.path.exists(meta):
        continue
    blocks += 1
    samples += json.load(open(meta))["stats"]["numSamples"]
    for dp, _, files in os.walk(os.path.join(root, b)):
        size += sum(os.path.getsize(os.path.join(dp, f)) for f in files)
print(f"{name:9} {blocks} blocks, {samples} samples, {size} bytes, {size / max(samples, 1):.3f} bytes/sample")
PY
}
report "$BENCH_DIR/promtool" promtool
report "$BENCH_DIR/kiln" kiln
