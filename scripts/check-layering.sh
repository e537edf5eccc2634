#!/usr/bin/env bash
# Checks DESIGN.md's layering: a crate's normal dependencies may only point down.
# Layer numbers below; a crate may depend on crates of a strictly lower layer, plus the
# allowed sideways edges listed in SIDEWAYS.
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A LAYER=(
    [kiln-model]=0 [kiln-chunkenc]=0 [kiln-exposition]=0
    [kiln-storage]=1 [kiln-config]=1
    [kiln-promql]=2 [kiln-tsdb]=2
    [kiln-scrape]=3 [kiln-http-client]=3 [kiln-discovery]=3 [kiln-rules]=3 [kiln-remote]=3 [kiln-storeapi]=3 [kiln-compact]=3 [kiln-bucketstore]=3 [kiln-query]=3 [kiln-objstore]=3 [kiln-exporter]=3
    [kiln-server]=4
    [kiln]=5
)
# kiln-model is the base of L0: the other L0 crates may build on its types. The store
# gateway (kiln-bucketstore) and the compactor (kiln-compact) work on the bucket through
# kiln-objstore, as kiln-query does.
SIDEWAYS=" kiln-bucketstore->kiln-objstore kiln-compact->kiln-objstore kiln-remote->kiln-http-client kiln-rules->kiln-http-client kiln-rules->kiln-discovery kiln-scrape->kiln-http-client kiln-scrape->kiln-discovery kiln-discovery->kiln-http-client kiln-query->kiln-remote kiln-query->kiln-objstore kiln-exposition->kiln-model kiln-chunkenc->kiln-model "
# L0-L2 must not pull in an async runtime or an HTTP stack.
FORBIDDEN_LOW="tokio hyper axum reqwest"

fail=0
for dir in crates/*/; do
    crate=$(basename "$dir")
    layer=${LAYER[$crate]:-}
    if [[ -z "$layer" ]]; then
        echo "layering: crate $crate has no layer in scripts/check-layering.sh" >&2
        fail=1
        continue
    fi
    deps=$(cargo tree -p "$crate" -e normal --prefix none --format '{p}' 2>/dev/null | awk '{print $1}' | sort -u)
    for dep in $deps; do
        [[ "$dep" == "$crate" ]] && continue
        dlayer=${LAYER[$dep]:-}
        if [[ -n "$dlayer" ]] && (( dlayer >= layer )) && [[ "$SIDEWAYS" != *" $crate->$dep "* ]]; then
            echo "layering: $crate (L$layer) depends on $dep (L$dlayer)" >&2
            fail=1
        fi
        if (( layer <= 2 )) && [[ " $FORBIDDEN_LOW " == *" $dep "* ]]; then
            echo "layering: $crate (L$layer) depends on $dep, which L0-L2 must not" >&2
            fail=1
        fi
    done
done
if (( fail )); then
    exit 1
fi
echo "layering: ok"
