#!/usr/bin/env bash
# Benchmark: fixtures/templates/cloud (a qcow2 overlay on the Debian cloud image of
# fixtures/cloud-image, a cloud-init NoCloud seed CD, one shell provisioner) built by kiln and by
# Packer 1.6.6 in one run under TCG, in two modes: the template's default (use_backing_file: no
# conversion at the end) and a copy of the base image (use_backing_file=false: qemu-img copies it
# first and compacts it last). Prints, per mode, the whole build's wall time and its stages for
# each tool and the ratio packer/kiln. Not a test: timings depend on the machine and its load.
#
# Usage: bench/cloud_image/run.sh [MODES]   (default "overlay copy")
# Environment: ROUNDS (default 1; the order of the two tools alternates from round to round and
# each figure is the median over the rounds), KILN_BIN (default target/release/kiln, built if
# missing), PACKER_BIN (default packer), KEEP=1 keeps the work directory with both tools'
# timestamped logs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
modes="${1:-overlay copy}"
rounds="${ROUNDS:-1}"
packer="${PACKER_BIN:-packer}"
kiln="${KILN_BIN:-$repo/target/release/kiln}"
command -v "$packer" >/dev/null || { echo "packer not found (set PACKER_BIN)" >&2; exit 1; }
if [ ! -x "$kiln" ]; then
    (cd "$repo" && cargo build -q --release --bin kiln >&2)
fi
base="$("$repo/fixtures/cloud-image/build.sh")/debian-cloud.qcow2"
template="$repo/fixtures/templates/cloud"
work="$(mktemp -d)"
if [ "${KEEP:-0}" = 1 ]; then echo "logs in $work" >&2; else trap 'rm -rf "$work"' EXIT; fi

# run NAME DIR CMD... — runs a build in DIR with each output line timestamped into DIR/log.
run() {
    local name=$1 dir=$2; shift 2
    mkdir -p "$dir"
    echo "== $name: $*" >&2
    (cd "$dir" && date +%s.%N >start && "$@" 2>&1 | while IFS= read -r line; do
        printf '%s %s\n' "$(date +%s.%N)" "$line"; done >log; date +%s.%N >end)
    grep -q "Build 'qemu.cloud' finished" "$dir/log" || {
        echo "$name failed; its output:" >&2; cut -d' ' -f2- "$dir/log" >&2; exit 1; }
}

echo "$("$packer" version | head -1) vs kiln $("$kiln" version | head -1 | awk '{print $2}'); $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in $modes; do
    case "$mode" in
        overlay) vars=(-var "base_image=$base") ;;
        copy) vars=(-var "base_image=$base" -var use_backing_file=false) ;;
        *) echo "unknown mode $mode (overlay or copy)" >&2; exit 1 ;;
    esac
    for round in $(seq "$rounds"); do
        packer_run=(run "packer $mode #$round" "$work/packer-$mode-$round" env CHECKPOINT_DISABLE=1
            PACKER_CACHE_DIR="$work/cache" "$packer" build -color=false "${vars[@]}" "$template")
        kiln_run=(run "kiln $mode #$round" "$work/kiln-$mode-$round" env KILN_CACHE_DIR="$work/cache"
            "$kiln" build -color=false "${vars[@]}" "$template")
        if [ $((round % 2)) = 1 ]; then "${packer_run[@]}"; "${kiln_run[@]}"; else "${kiln_run[@]}"; "${packer_run[@]}"; fi
    done
    python3 - "$mode" "$rounds" "$work" <<'PY'
import statistics, sys
mode, rounds, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
# Stage boundaries: the first line containing each text (the same in both tools' output).
marks = [("setup", None), ("boot -> SSH up", "Waiting for SSH to become available"),
         ("provisioning", "Connected to SSH"), ("shutdown", "Gracefully halting virtual machine"),
         ("conversion", "Converting hard drive")]
def stages(d):
    start, end = float(open(f"{d}/start").read()), float(open(f"{d}/end").read())
    lines = [l.rstrip("\n").split(" ", 1) for l in open(f"{d}/log")]
    at = [start] + [next((float(t) for t, text in lines if m in text), None) for _, m in marks[1:]]
    # A stage that did not happen (no conversion with use_backing_file) takes no time.
    for i in range(len(at) - 1, 0, -1):
        if at[i] is None:
            at[i] = at[i + 1] if i + 1 < len(at) else end
    out = {name: at[i + 1] - at[i] if i + 1 < len(at) else end - at[i] for i, (name, _) in enumerate(marks)}
    out["whole build"] = end - start
    return out
def median(tool):
    runs = [stages(f"{work}/{tool}-{mode}-{r}") for r in range(1, rounds + 1)]
    return {name: statistics.median(run[name] for run in runs) for name in runs[0]}
p, k = median("packer"), median("kiln")
print(f"\n{mode} (median of {rounds}): {'stage':<16}{'packer s':>10}{'kiln s':>10}{'packer/kiln':>13}")
for name in [m for m, _ in marks] + ["whole build"]:
    ratio = f"{p[name] / k[name]:.2f}" if k[name] >= 0.05 else "-"
    print(f"{mode}: {name:<16}{p[name]:>10.1f}{k[name]:>10.1f}{ratio:>13}")
sys.stdout.flush()
PY
done
