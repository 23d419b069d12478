#!/usr/bin/env bash
# Whole-build benchmark: the same legacy JSON template (template.json: install the fixture ISO,
# provision over SSH, shut down, compact the qcow2) built by Packer 1.6.6 (Debian's `packer`)
# and by kiln, one after the other in one run, under TCG. Prints wall time and each stage
# (boot, boot command, wait for SSH, provisioning, shutdown, conversion) with kiln/Packer ratios.
#
#   bench/build/run.sh [REPEATS]      (default 1; needs packer, qemu-system-x86_64, python3)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
REPEATS=${1:-1}
command -v packer >/dev/null || { echo "bench/build: needs packer (apt-get install packer)" >&2; exit 1; }
ISO=$(bash "$REPO/fixtures/installer/build.sh")/installer.iso
(cd "$REPO" && cargo build --release --quiet --bin kiln)
KILN=${CARGO_TARGET_DIR:-$REPO/target}/release/kiln
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp "$HERE/template.json" "$WORK/"
export CHECKPOINT_DISABLE=1 PACKER_CACHE_DIR="$WORK/packer_cache" KILN_CACHE_DIR="$WORK/kiln_cache"
results="$WORK/results.jsonl"
for i in $(seq "$REPEATS"); do
  for tool in packer kiln; do
    dir="$WORK/$tool-$i"; mkdir -p "$dir"; cp "$HERE/template.json" "$dir/"
    bin=$([ "$tool" = packer ] && echo packer || echo "$KILN")
    (cd "$dir" && python3 "$HERE/stages.py" "$tool" "$dir/build.log" -- \
        "$bin" build -color=false -var "iso=$ISO" -var "http=$REPO/fixtures/http" template.json) >> "$results"
    echo "bench/build: $tool run $i done ($(tail -1 "$results"))" >&2
  done
done
python3 - "$results" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
def med(tool, key):
    vals = [r["total"] if key == "total" else r["stages"][key] for r in runs if r["name"] == tool]
    return statistics.median(vals)
keys = ["total"] + list(runs[0]["stages"])
print(f"{'stage':<14}{'Packer 1.6.6 s':>16}{'kiln s':>10}{'kiln/Packer':>13}")
for k in keys:
    p, k_ = med("packer", k), med("kiln", k)
    ratio = f"{k_ / p:.2f}x" if p > 0 else "-"
    print(f"{k:<14}{p:>16.1f}{k_:>10.1f}{ratio:>13}")
PY
