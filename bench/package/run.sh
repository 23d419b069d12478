#!/usr/bin/env bash
# Packaging benchmark: a 2 GiB qcow2 (mostly non-zero: system files, random data, some zeros)
# made into a libvirt Vagrant box by kiln and by Packer 1.6.6's vagrant post-processor, in one
# run, as a ratio; and kiln's compression throughput against the machine's own pigz and zstd -T0
# on the same file. Figures go to stdout and, as a table, to $OUT/results.md.
#
#   bash bench/package/run.sh            # KILN_BIN=… to use a built kiln; SIZE_MIB=… to change the disk;
#                                        # REPEATS=… rounds (default 3; the best of each is reported)
#
# Packer cannot take an `artifice` artifact into its libvirt box (1.6.6 crashes: the libvirt
# provider reads QEMU builder state that artifice does not carry), so Packer gets the disk through
# its qemu builder (`disk_image = true`, communicator none; the VM boots the installer fixture's
# kernel without an answer file, which powers off at once, since with no communicator Packer waits
# for the guest to stop by itself) and only its post-processor is timed, from its -timestamp-ui
# lines (whole seconds). kiln gets the same disk through `artifice`, and its whole `kiln build` is
# timed, so kiln's figure is the pessimistic one.
set -euo pipefail
if [ -n "${KILN_BIN:-}" ]; then KILN_BIN=$(realpath "$KILN_BIN"); fi  # the script changes directory
cd "$(dirname "$0")/../.."
repo=$(pwd)
OUT=${OUT:-${CARGO_TARGET_DIR:-$repo/target}/bench-package}
SIZE_MIB=${SIZE_MIB:-2048}
REPEATS=${REPEATS:-3}
mkdir -p "$OUT"
cd "$OUT"

need() { command -v "$1" >/dev/null || { echo "bench: $1 is missing (bash .ci/setup-host; KILN_WITH_PACKER=1 for packer)" >&2; exit 1; }; }
for t in qemu-img qemu-system-x86_64 packer pigz zstd tar; do need "$t"; done
installer=$(bash "$repo/fixtures/installer/build.sh")

if [ -z "${KILN_BIN:-}" ]; then
  (cd "$repo" && cargo build --release --bin kiln >&2)
  KILN_BIN="${CARGO_TARGET_DIR:-$repo/target}/release/kiln"
fi

# best NAME WALL CPU: keeps the fastest round's figures in NAME_s (wall seconds), NAME_cpu.
best() {
  local old="${1}_s"
  if [ -z "${!old:-}" ] || awk -v a="$2" -v b="${!old}" 'BEGIN { exit !(a < b) }'; then
    printf -v "${1}_s" '%s' "$2"
    printf -v "${1}_cpu" '%s' "$3"
  fi
}
# timed NAME CMD…: runs CMD and records its wall and CPU (user+sys) seconds with `best`.
timed() {
  local name=$1; shift
  local TIMEFORMAT='%R %U %S' t
  t=$( { time "$@" > /dev/null 2>&1; } 2>&1 ) || { echo "bench: $name failed" >&2; exit 1; }
  # Nobody fsyncs (kiln, Packer, pigz, zstd alike); write the output back here, untimed, so it
  # does not slow down whoever runs next.
  sync
  read -r wall user sys <<< "$t"
  best "$name" "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.1f", u + s }')"
}
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
kiln_run() { (cd kiln && "$KILN_BIN" build -color=false "$1" > "${1%.pkr.hcl}.log" 2>&1); }

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
    "boot_wait": "1s",
    "memory": 128,
    "vm_name": "disk.qcow2",
    "output_directory": "$OUT/packer/output",
    "qemuargs": [
      ["-kernel", "$installer/vmlinuz"],
      ["-initrd", "$installer/initrd.gz"],
      ["-append", "console=ttyS0,115200 quiet no_timer_check kiln.mode=install ks=http://10.0.2.2:9/none.cfg"]
    ]
  }],
  "post-processors": [{
    "type": "vagrant",
    "output": "$OUT/packer/bench.box"
  }]
}
EOF
# Each kiln run sits right beside the run it is compared with, so load from other work on the
# machine drifts as little as possible between the two; rounds repeat that, and the best of each
# contender counts (on a shared machine the slow runs measure the neighbours).
ts() { date -d "$(grep -m1 "$1" packer/packer.log | cut -d' ' -f1 | sed 's/:$//')" +%s; }
for round in $(seq "$REPEATS"); do
  echo "bench: round $round of $REPEATS" >&2
  rm -f kiln/*.box kiln/*.zst kiln/*.gz packer/bench.box
  timed kiln_box kiln_run box.pkr.hcl
  (cd packer && PACKER_CACHE_DIR="$OUT/packer/cache" CHECKPOINT_DISABLE=1 \
    packer build -force -timestamp-ui -color=false box.json > packer.log 2>&1) || { tail -20 packer/packer.log >&2; exit 1; }
  sync
  best packer_box "$(( $(ts "Build 'qemu' finished") - $(ts "Running post-processor: vagrant") ))" "–"
  timed kiln_gz kiln_run gz.pkr.hcl
  timed pigz sh -c "pigz -6 -c '$disk' > pigz.gz"
  timed kiln_zst kiln_run zst.pkr.hcl
  timed zstd sh -c "zstd -q -T0 -3 -c '$disk' > zstd.zst"
done

ratio=$(awk -v p="$packer_box_s" -v k="$kiln_box_s" 'BEGIN { printf "%.2f", p / k }')
pct() { awk -v ours="$1" -v theirs="$2" 'BEGIN { printf "%+.0f%%", (theirs / ours - 1) * 100 }'; }
size() { echo $(( $(stat -c %s "$1") >> 20 )); }
{
  echo "| what | wall s | CPU s | MB/s (of the $((bytes >> 20)) MiB qcow2) | output MiB |"
  echo "|---|---|---|---|---|"
  echo "| kiln vagrant (libvirt box, gzip 6) | $kiln_box_s | $kiln_box_cpu | $(mbps "$bytes" "$kiln_box_s") | $(size kiln/bench.box) |"
  echo "| Packer 1.6.6 vagrant post-processor (libvirt box, gzip 6) | $packer_box_s | – | $(mbps "$bytes" "$packer_box_s") | $(size packer/bench.box) |"
  echo "| kiln compress .gz (level 6) | $kiln_gz_s | $kiln_gz_cpu | $(mbps "$bytes" "$kiln_gz_s") | $(size kiln/disk.qcow2.gz) |"
  echo "| pigz -6 | $pigz_s | $pigz_cpu | $(mbps "$bytes" "$pigz_s") | $(size pigz.gz) |"
  echo "| kiln compress .zst (level 3) | $kiln_zst_s | $kiln_zst_cpu | $(mbps "$bytes" "$kiln_zst_s") | $(size kiln/disk.qcow2.zst) |"
  echo "| zstd -T0 -3 | $zstd_s | $zstd_cpu | $(mbps "$bytes" "$zstd_s") | $(size zstd.zst) |"
  echo
  echo "Packer / kiln for the box: **${ratio}x**. kiln's gzip vs pigz: $(pct "$pigz_s" "$kiln_gz_s") wall," \
       "$(pct "$pigz_cpu" "$kiln_gz_cpu") CPU; kiln's zstd vs zstd -T0: $(pct "$zstd_s" "$kiln_zst_s") wall," \
       "$(pct "$zstd_cpu" "$kiln_zst_cpu") CPU ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%F))."
} | tee results.md
