#!/usr/bin/env bash
# Uploads a directory of 2,000 files of 2 KiB with the file provisioner to the same running
# guest, once with kiln and once with Packer 1.6.6 (`packer build` of the same legacy-JSON
# template, null builder, Packer's default scp transfer), checks that every file arrived, and
# prints both times and their ratio. The guest is the fixture installer's system, installed
# once by kiln (install.pkr.hcl) and booted with plain QEMU (TCG) for both tools.
# Each tool uploads REPEATS times (alternating, into fresh directories); medians are compared.
# The guest's own `tar -x` of the same archive from a local file is printed as the floor no
# transfer can beat on this guest.
# Usage: bench/file_upload/run.sh [REPEATS] [FILES] [BYTES]     (defaults 3, 2000, 2048)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
repeats="${1:-3}"
files="${2:-2000}"
bytes="${3:-2048}"
cd "$repo"

iso="$(fixtures/installer/build.sh)/installer.iso"
# A release build, as users run it (a debug build spends seconds in unoptimised SSH crypto).
cargo build -q --release --bin kiln
kiln="${CARGO_TARGET_DIR:-$repo/target}/release/kiln"
work="$(mktemp -d)"
qemu_pid=""
cleanup() {
  [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== installing the guest with kiln (once)" >&2
(cd "$work" && "$kiln" build -color=false -var "iso_path=$iso" -var "output_directory=$work/guest" \
  "$here/install.pkr.hcl" >"$work/install.log" 2>&1) || { cat "$work/install.log"; exit 1; }

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
qemu-system-x86_64 -machine pc,accel=tcg -m 512 -display none -snapshot \
  -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net,netdev=n0 \
  -drive "file=$work/guest/guest.qcow2,if=virtio,format=qcow2" >/dev/null 2>&1 &
qemu_pid=$!
key="$work/key"
install -m 600 fixtures/installer/insecure_ed25519 "$key"
guest() {
  ssh -q -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes \
    -o ConnectTimeout=10 -i "$key" -p "$port" vagrant@127.0.0.1 "$@"
}
echo "== booting the guest (TCG)" >&2
for _ in $(seq 150); do guest true 2>/dev/null && break; sleep 2; done
guest true

python3 - "$work/files" "$files" "$bytes" <<'PY'
import os, sys
root, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    d = os.path.join(root, f"d{i // 200:02}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05}.txt"), "wb") as f:
        f.write(os.urandom(size))
PY
# Each tool's output is timestamped line by line; the upload is timed from its "Uploading" line
# to the next line.
timed() {
  while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done
}
upload_secs() {
  python3 - "$1" <<'PY'
import sys
lines = [l.rstrip("\n").split(" ", 1) for l in open(sys.argv[1])]
i = next((i for i, (_, l) in enumerate(lines) if "Uploading" in l), None)
if i is None or i + 1 >= len(lines):
    print("no upload line in:\n" + "".join(l + "\n" for _, l in lines), file=sys.stderr)
    sys.exit(1)
print(f"{float(lines[i + 1][0]) - float(lines[i][0]):.2f}")
PY
}
sum_of() { echo "cd $1 && find . -type f | sort | xargs sha256sum | sha256sum"; }
local_sum="$(cd "$work/files" && find . -type f | sort | xargs sha256sum | sha256sum)"
check() {
  local got
  got="$(guest "$(sum_of "$1/files")")"
  [ "$got" = "$local_sum" ] || { echo "$2: the files on the guest differ"; cat "$3"; exit 1; }
}

echo "== $("$kiln" version | head -1) and $(packer version | head -1), $repeats times each" >&2
kiln_times=() packer_times=()
for i in $(seq "$repeats"); do
  # sync first: the guest writing back the previous upload would slow the next one down.
  guest "mkdir -p /tmp/kiln$i /tmp/packer$i && sync"
  (cd "$work" && "$kiln" build -color=false -var "port=$port" -var "source=$work/files" \
    -var "destination=/tmp/kiln$i" "$here/upload.json" 2>&1) | timed >"$work/kiln$i.log"
  check "/tmp/kiln$i" kiln "$work/kiln$i.log"
  kiln_times+=("$(upload_secs "$work/kiln$i.log")")
  guest sync
  (cd "$work" && CHECKPOINT_DISABLE=1 PACKER_CACHE_DIR="$work/cache" packer build -color=false \
    -var "port=$port" -var "source=$work/files" -var "destination=/tmp/packer$i" \
    "$here/upload.json" 2>&1) | timed >"$work/packer$i.log"
  check "/tmp/packer$i" packer "$work/packer$i.log"
  packer_times+=("$(upload_secs "$work/packer$i.log")")
  echo "run $i: kiln ${kiln_times[-1]}s, packer ${packer_times[-1]}s" >&2
done

# The floor: the guest unpacking the same archive from its own disk, no network involved.
tar -cf "$work/files.tar" -C "$work" files
guest 'cat > /tmp/floor.tar && sync' <"$work/files.tar"
floor="$(guest 'mkdir -p /tmp/floor && cd /tmp/floor && time tar -x -o -f /tmp/floor.tar' 2>&1 |
  python3 -c 'import re, sys; m, s = re.search(r"real\s+(\d+)m\s*([\d.]+)s", sys.stdin.read()).groups(); print(f"{int(m) * 60 + float(s):.2f}")')"

python3 - "$files" "$bytes" "$floor" "${kiln_times[*]}" "${packer_times[*]}" <<'PY'
import statistics, sys
files, size, floor = sys.argv[1], sys.argv[2], float(sys.argv[3])
kiln = [float(x) for x in sys.argv[4].split()]
packer = [float(x) for x in sys.argv[5].split()]
k, p = statistics.median(kiln), statistics.median(packer)
print(f"files={files} bytes={size} runs={len(kiln)}")
print(f"kiln   upload: median {k:.2f}s  (runs: {', '.join(f'{x:.2f}' for x in kiln)})")
print(f"packer upload: median {p:.2f}s  (runs: {', '.join(f'{x:.2f}' for x in packer)})")
print(f"guest's own tar -x of the same files from its disk: {floor:.2f}s")
print(f"ratio (packer / kiln): {p / k:.1f}x")
PY
