#!/usr/bin/env bash
# Benchmark: SHA-256 of a 2 GiB file with kiln's checksum code (bench_checksum, the function that
# verifies local and cached ISOs; downloads hash with the same loop as the bytes arrive) against
# coreutils' `sha256sum`, in one run. Both read the same file, warm in the page cache, so the
# figure is hashing throughput; ROUNDS runs of each, best time kept. Prints both and the ratio.
# Not a test: timings depend on the machine and its load.
#
# Environment: SIZE_MIB (default 2048), ROUNDS (default 3), WORK (default: a temporary directory
# under target/, removed afterwards).
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
size_mib="${SIZE_MIB:-2048}"
rounds="${ROUNDS:-3}"
work="${WORK:-$(mktemp -d "$repo/target/bench-checksum.XXXXXX")}"
trap 'rm -rf "$work"' EXIT

(cd "$repo" && cargo build --release --example bench_checksum >&2)
bench="$repo/target/release/examples/bench_checksum"

file="$work/input.img"
# Incompressible content, written once (a sparse or zero file could be special-cased by a tool).
head -c "$((size_mib * 1024 * 1024))" /dev/urandom >"$file"
cat "$file" >/dev/null # warm the page cache for both tools alike

now() { date +%s.%N; }
best() { printf '%s\n' "$@" | sort -g | head -1; }

kiln_times=() sum_times=()
for _ in $(seq "$rounds"); do
  read -r kiln_hex kiln_secs < <("$bench" "$file" sha256)
  kiln_times+=("$kiln_secs")
  start=$(now)
  sum_hex=$(sha256sum "$file" | cut -d' ' -f1)
  sum_times+=("$(echo "$(now) - $start" | bc -l)")
  [ "$kiln_hex" = "$sum_hex" ] || { echo "digests differ: kiln $kiln_hex, sha256sum $sum_hex" >&2; exit 1; }
done
k=$(best "${kiln_times[@]}")
s=$(best "${sum_times[@]}")
sha_ni=no
grep -qw sha_ni /proc/cpuinfo && sha_ni=yes

printf 'file: %s MiB, best of %s; CPU has SHA-NI: %s\n' "$size_mib" "$rounds" "$sha_ni"
printf 'kiln      %6.3f s  %7.0f MiB/s\n' "$k" "$(echo "$size_mib / $k" | bc -l)"
printf 'sha256sum %6.3f s  %7.0f MiB/s\n' "$s" "$(echo "$size_mib / $s" | bc -l)"
printf 'ratio (sha256sum time / kiln time): %.2fx\n' "$(echo "$s / $k" | bc -l)"
