#!/usr/bin/env bash
# Benchmark: the layer cache (`kiln build -cache`) on fixtures/templates/layers — the Debian cloud
# image of fixtures/cloud-image with its cloud-init seed, then three provisioners: a shell
# command, a 2,000-file directory uploaded with the file provisioner, and a script. Under TCG, in
# one run, it times:
#   kiln -cache:  a cold build (saves the layers), a rebuild after editing the last script, and
#                 an unchanged rebuild;
#   kiln without -cache and Packer 1.6.6: the same edit-rebuild, which for them is a whole build.
# Prints each median and the ratios. Not a test: timings depend on the machine and its load.
#
# Usage: bench/layer_cache/run.sh
# Environment: ROUNDS (default 1; medians over the rounds), KILN_BIN (default
# target/release/kiln, built if missing), PACKER_BIN (default packer; NO_PACKER=1 skips it),
# KEEP=1 keeps the work directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
rounds="${ROUNDS:-1}"
packer="${PACKER_BIN:-packer}"
kiln="${KILN_BIN:-$repo/target/release/kiln}"
if [ "${NO_PACKER:-0}" != 1 ]; then
    command -v "$packer" >/dev/null || { echo "packer not found (set PACKER_BIN or NO_PACKER=1)" >&2; exit 1; }
fi
if [ ! -x "$kiln" ]; then
    (cd "$repo" && cargo build -q --release --bin kiln >&2)
fi
base="$("$repo/fixtures/cloud-image/build.sh")/debian-cloud.qcow2"
template="$repo/fixtures/templates/layers"
work="$(mktemp -d)"
if [ "${KEEP:-0}" = 1 ]; then echo "work directory: $work" >&2; else trap 'rm -rf "$work"' EXIT; fi

# The 2,000-file upload: 40 directories of 50 small files.
files="$work/files"
for d in $(seq 40); do
    mkdir -p "$files/d$d"
    for f in $(seq 50); do echo "file $d/$f" > "$files/d$d/f$f.txt"; done
done
script="$work/last.sh"
cp "$template/last.sh" "$script"

# timed NAME CMD... — runs CMD in $work/NAME, prints its wall time in seconds on stdout.
timed() {
    local name=$1; shift
    mkdir -p "$work/$name"
    local start end
    start=$(date +%s.%N)
    (cd "$work/$name" && "$@" >log 2>&1) || { echo "$name failed:" >&2; tail -30 "$work/$name/log" >&2; exit 1; }
    end=$(date +%s.%N)
    python3 -c "print(f'{$end - $start:.1f}')"
}
vars=(-var "base_image=$base" -var "files_dir=$files" -var "last_script=$script")

echo "kiln $("$kiln" version | head -1 | awk '{print $2}')$([ "${NO_PACKER:-0}" = 1 ] || echo " vs $("$packer" version | head -1)"); $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
results="$work/results"
for round in $(seq "$rounds"); do
    cache="$work/cache-$round"
    cp "$template/last.sh" "$script"
    k=(env KILN_CACHE_DIR="$cache" "$kiln" build -color=false -cache "${vars[@]}")
    echo "cold $(timed "cold-$round" "${k[@]}" -var output_directory=out "$template")" >> "$results"
    echo 'echo "edited at round '"$round"'" > /opt/kiln/edited' >> "$script"
    echo "edit $(timed "edit-$round" "${k[@]}" -var output_directory=out "$template")" >> "$results"
    grep -q "Using cached layer after provisioner 2" "$work/edit-$round/log" || { echo "the edit-rebuild did not start from the layer after provisioner 2" >&2; exit 1; }
    echo "unchanged $(timed "same-$round" "${k[@]}" -var output_directory=out "$template")" >> "$results"
    echo "nocache $(timed "nocache-$round" env KILN_CACHE_DIR="$cache" "$kiln" build -color=false "${vars[@]}" -var output_directory=out "$template")" >> "$results"
    if [ "${NO_PACKER:-0}" != 1 ]; then
        echo "packer $(timed "packer-$round" env CHECKPOINT_DISABLE=1 PACKER_CACHE_DIR="$work/pcache" "$packer" build -color=false "${vars[@]}" -var output_directory=out "$template")" >> "$results"
    fi
done
python3 - "$results" "$rounds" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
m = {k: statistics.median(float(v) for n, v in rows if n == k) for k in {n for n, _ in rows}}
print(f"layer cache, median of {sys.argv[2]} round(s), seconds:")
for k, what in [("cold", "kiln -cache, cold build (saves 4 layers)"),
                ("edit", "kiln -cache, rebuild after editing the last script"),
                ("unchanged", "kiln -cache, unchanged rebuild"),
                ("nocache", "kiln without -cache, the edit-rebuild (a whole build)"),
                ("packer", "Packer 1.6.6, the edit-rebuild (a whole build)")]:
    if k in m:
        print(f"  {what:<58}{m[k]:>7.1f}")
print(f"  edit-rebuild / kiln cold build:            {m['edit'] / m['cold']:.3f}")
print(f"  edit-rebuild / kiln without cache:         {m['edit'] / m['nocache']:.3f}")
if "packer" in m:
    print(f"  edit-rebuild / Packer 1.6.6:               {m['edit'] / m['packer']:.3f}")
    print(f"  Packer 1.6.6 / kiln -cache edit-rebuild:   {m['packer'] / m['edit']:.1f}x")
PY
