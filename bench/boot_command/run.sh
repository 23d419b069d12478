#!/usr/bin/env bash
# Times typing the same 250-character boot command (every printable ASCII character) into the
# boot-echo guest (isolinux prompt under QEMU/TCG): kiln over QMP and over VNC at their default
# key intervals, and Packer 1.6.6's qemu builder over VNC. Each run checks on the serial console
# that the text arrived intact. Usage: bench/boot_command/run.sh [REPEATS]   (default 3)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
repeats="${1:-3}"
cd "$repo"

iso="$(fixtures/boot-echo/build.sh)/boot-echo.iso"
cargo build -q --example type_bench
bench="${CARGO_TARGET_DIR:-$repo/target}/debug/examples/type_bench"

echo "== kiln over QMP (default interval)"
"$bench" qmp "" "$repeats"
echo "== kiln over VNC (Packer's default 100 ms per key event)"
"$bench" vnc "" 1

echo "== Packer $(packer version | head -1) over VNC"
if ! command -v packer >/dev/null; then echo "packer not installed: skipped"; exit 0; fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
command="$(python3 -c 'print("".join(chr(c) for c in range(0x20, 0x7f)) * 3, end="")' | head -c 250)"
json_command="$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1])[1:-1])' "$command")"
python3 - "$here/packer-template.json.in" "$work/template.json" "$iso" "$work" "$json_command" <<'PY'
import sys
src, dst, iso, work, cmd = sys.argv[1:]
t = open(src).read().replace("@ISO@", iso).replace("@WORK@", work).replace("@COMMAND@", cmd)
open(dst, "w").write(t)
PY
# Timestamp Packer's UI lines; typing time = from "Typing the boot command" to the next line.
(cd "$work" && CHECKPOINT_DISABLE=1 PACKER_CACHE_DIR="$work/cache" packer build -color=false template.json 2>&1) |
    while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done >"$work/packer.log" || true
python3 - "$work/packer.log" "$work/serial.log" "$command" <<'PY'
import sys
log, serial, command = sys.argv[1:]
lines = [l.rstrip("\n").split(" ", 1) for l in open(log)]
start = next((i for i, (_, l) in enumerate(lines) if "Typing the boot command" in l), None)
if start is None or start + 1 >= len(lines):
    print("packer did not type the boot command; its output:")
    print("".join(l + "\n" for _, l in lines))
    sys.exit(1)
secs = float(lines[start + 1][0]) - float(lines[start][0])
data = open(serial, "rb").read().decode("latin-1")
typed = data.split("boot: ", 1)[1].replace("\r\r\n\x1b[K", "") if "boot: " in data else ""
print(f"transport=PackerVnc interval=100ms sent_s={secs:.3f} intact={typed.startswith(command) and len(typed) == len(command)}")
PY
