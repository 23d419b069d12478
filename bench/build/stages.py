#!/usr/bin/env python3
"""Runs a build command, stamps each output line with a monotonic clock, and prints the
whole-build wall time and the stages both Packer and kiln announce with the same lines:
boot (VM start to typing), boot command, wait for SSH, provisioning, shutdown, conversion.

usage: stages.py NAME LOGFILE -- COMMAND...   (prints one JSON object on stdout)"""
import json
import subprocess
import sys
import time

# (stage, the line that starts it); each stage ends where the next one starts.
MARKERS = [
    ("boot", "Starting VM"),
    ("boot command", "Typing the boot command"),
    ("wait for SSH", "Waiting for SSH to become available"),
    ("provisioning", "Provisioning with"),
    ("shutdown", "Gracefully halting virtual machine"),
    ("conversion", "Converting hard drive"),
]


def main():
    name, log = sys.argv[1], sys.argv[2]
    cmd = sys.argv[sys.argv.index("--") + 1:]
    t0 = time.monotonic()
    seen = {}
    with open(log, "w") as out:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in p.stdout:
            t = time.monotonic() - t0
            out.write(f"{t:9.3f} {line}")
            for stage, marker in MARKERS:
                if marker in line and stage not in seen:
                    seen[stage] = t
        rc = p.wait()
    total = time.monotonic() - t0
    if rc != 0:
        sys.exit(f"{name}: build failed (exit {rc}), see {log}")
    missing = [s for s, _ in MARKERS if s not in seen]
    if missing:
        sys.exit(f"{name}: no line for {missing}, see {log}")
    stages = {}
    for i, (stage, _) in enumerate(MARKERS):
        end = seen[MARKERS[i + 1][0]] if i + 1 < len(MARKERS) else total
        stages[stage] = round(end - seen[stage], 2)
    print(json.dumps({"name": name, "total": round(total, 2), "stages": stages}))


if __name__ == "__main__":
    main()
