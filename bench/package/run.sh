#!/usr/bin/env bash
# Packaging benchmark: a 2 GiB qcow2 (mostly non-zero: system files, random data, some zeros)
# made into a libvirt Vagrant box by kiln and by Packer 1.6.6's vagrant post-processor, in one
# run, as a ratio; and kiln's compression throughput against the machine's own pigz and zstd -T0
# on the same file. Figures go to stdout and, as a table, to $OUT/results.md.
#
#   bash bench/package/run.sh            # KILN_BIN=… to use a built kiln; SIZE_MIB=… to change the disk
#
# Packer cannot take an `artifice` artifact into its libvirt box (1.6.6 crashes: the libvirt
# provider reads QEMU builder state that artifice does not carry), so Packer gets the disk through
# its qemu builder (`disk_image = true`, communicator none: QEMU starts and is halted at once) and
# only its post-processor is timed, from its -timestamp-ui lines (whole seconds). kiln gets the same
# disk through `artifice`, and its whole `kiln build` is timed, so kiln's figure is the
# pessimistic one.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
OUT=${OUT:-${CARGO_TARGET_DIR:-$repo/target}/bench-package}
SIZE_MIB=${SIZE_MIB:-2048}
mkdir -p "$OUT"
cd "$OUT"

need() { command -v "$1" >/dev/null || { echo "bench: $1 is missing (bash .ci/setup-host; KILN_WITH_PACKER=1 for packer)" >&2; exit 1; }; }
for t in qemu-img packer pigz zstd tar; do need "$t"; done

if [ -z "${KILN_BIN:-}" ]; then
  (cd "$repo" && cargo build --release --bin kiln >&2)
  KILN_BIN="${CARGO_TARGET_DIR:-$repo/target}/release/kiln"
fi

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
mbps() { awk -v bytes="$1" -v s="$2" 'BEGIN { printf "%.0f", bytes / 1048576 / s }'; }

# The disk: 20% random (like compressed packages and media), 70% real system files (binaries,
# libraries, text from /usr), 10% left as zeros; made once and reused.
disk="$OUT/disk.qcow2"
if [ ! -s "$disk" ]; then
  echo "bench: making a ${SIZE_MIB} MiB disk" >&2
  raw="$OUT/disk.raw"
  rnd=$((SIZE_MIB * 20 / 100)); sys=$((SIZE_MIB * 70 / 100))
  truncate -s "${SIZE_MIB}M" "$raw"
  head -c "$((rnd << 20))" /dev/urandom | dd of="$raw" conv=notrunc bs=1M status=none
  # /usr as tar, repeated (a bounded number of times: tar dies of SIGPIPE once head has enough)
  # if it is smaller than wanted, cut to size.
  (for _ in 1 2 3 4; do tar -cf - /usr/lib /usr/share /usr/bin 2>/dev/null || true; done) | head -c "$((sys << 20))" \
    | dd of="$raw" conv=notrunc bs=1M seek="$rnd" iflag=fullblock status=none || true
  qemu-img convert -O qcow2 "$raw" "$disk"
  rm -f "$raw"
fi
bytes=$(stat -c %s "$disk")
echo "bench: disk $(qemu-img info "$disk" | awk -F': ' '/virtual size/ {print $2}'), file $((bytes >> 20)) MiB" >&2

# Warm the page cache so the first contender does not pay for the disk read alone.
cat "$disk" > /dev/null

# --- kiln: null builder + artifice + vagrant (libvirt), gzip level 6 (Packer's default) ---
mkdir -p kiln && cat > kiln/box.pkr.hcl <<EOF
source "null" "bench" {
  communicator = "none"
}
build {
  sources = ["source.null.bench"]
  post-processors {
    post-processor "artifice" {
      files = ["$disk"]
    }
    post-processor "vagrant" {
      provider_override   = "libvirt"
      output              = "$OUT/kiln/bench.box"
      keep_input_artifact = true
    }
  }
}
EOF
cat > kiln/zst.pkr.hcl <<EOF
source "null" "bench" {
  communicator = "none"
}
build {
  sources = ["source.null.bench"]
  post-processors {
    post-processor "artifice" {
      files = ["$disk"]
    }
    post-processor "compress" {
      output              = "$OUT/kiln/disk.qcow2.zst"
      keep_input_artifact = true
    }
  }
}
EOF
sed -e 's/disk.qcow2.zst/disk.qcow2.gz/' kiln/zst.pkr.hcl > kiln/gz.pkr.hcl
rm -f kiln/*.box kiln/*.zst kiln/*.gz
kiln_run() { (cd kiln && "$KILN_BIN" build -color=false "$1" > "${1%.pkr.hcl}.log" 2>&1); }

t0=$(now); kiln_run box.pkr.hcl; t1=$(now); kiln_box=$(secs "$t0" "$t1")
t0=$(now); kiln_run gz.pkr.hcl; t1=$(now); kiln_gz=$(secs "$t0" "$t1")
t0=$(now); kiln_run zst.pkr.hcl; t1=$(now); kiln_zst=$(secs "$t0" "$t1")

# --- Packer 1.6.6: qemu builder on the same disk, then its vagrant post-processor ---
rm -rf packer && mkdir -p packer
cat > packer/box.json <<EOF
{
  "builders": [{
    "type": "qemu",
    "iso_url": "$disk",
    "iso_checksum": "none",
    "disk_image": true,
    "skip_compaction": true,
    "skip_resize_disk": true,
    "format": "qcow2",
    "accelerator": "tcg",
    "headless": true,
    "communicator": "none",
    "boot_wait": "0s",
    "memory": 128,
    "vm_name": "disk.qcow2",
    "output_directory": "$OUT/packer/output"
  }],
  "post-processors": [{
    "type": "vagrant",
    "output": "$OUT/packer/bench.box"
  }]
}
EOF
(cd packer && PACKER_CACHE_DIR="$OUT/packer/cache" CHECKPOINT_DISABLE=1 \
  packer build -timestamp-ui -color=false box.json > packer.log 2>&1) || { tail -20 packer/packer.log >&2; exit 1; }
ts() { date -d "$(grep -m1 "$1" packer/packer.log | cut -d' ' -f1 | sed 's/:$//')" +%s; }
p0=$(ts "Running post-processor: vagrant"); p1=$(ts "Build 'qemu' finished")
packer_box=$((p1 - p0))

# --- the machine's own tools on the same file ---
t0=$(now); pigz -6 -c "$disk" > pigz.gz; t1=$(now); pigz_s=$(secs "$t0" "$t1")
t0=$(now); zstd -q -T0 -3 -c "$disk" > zstd.zst; t1=$(now); zstd_s=$(secs "$t0" "$t1")

ratio=$(awk -v p="$packer_box" -v k="$kiln_box" 'BEGIN { printf "%.2f", p / k }')
pct() { awk -v ours="$1" -v theirs="$2" 'BEGIN { printf "%+.0f%%", (theirs / ours - 1) * 100 }'; }
size() { echo $(( $(stat -c %s "$1") >> 20 )); }
{
  echo "| what | seconds | MB/s (of the $((bytes >> 20)) MiB qcow2) | output MiB |"
  echo "|---|---|---|---|"
  echo "| kiln vagrant (libvirt box, gzip 6) | $kiln_box | $(mbps "$bytes" "$kiln_box") | $(size kiln/bench.box) |"
  echo "| Packer 1.6.6 vagrant post-processor (libvirt box, gzip 6) | $packer_box | $(mbps "$bytes" "$packer_box") | $(size packer/bench.box) |"
  echo "| kiln compress .gz (level 6) | $kiln_gz | $(mbps "$bytes" "$kiln_gz") | $(size kiln/disk.qcow2.gz) |"
  echo "| pigz -6 | $pigz_s | $(mbps "$bytes" "$pigz_s") | $(size pigz.gz) |"
  echo "| kiln compress .zst (level 3) | $kiln_zst | $(mbps "$bytes" "$kiln_zst") | $(size kiln/disk.qcow2.zst) |"
  echo "| zstd -T0 -3 | $zstd_s | $(mbps "$bytes" "$zstd_s") | $(size zstd.zst) |"
  echo
  echo "Packer / kiln for the box: **${ratio}x**. kiln's gzip vs pigz: $(pct "$pigz_s" "$kiln_gz") time;" \
       "kiln's zstd vs zstd -T0: $(pct "$zstd_s" "$kiln_zst") time ($(nproc) cores, $(date -u +%F))."
} | tee results.md
