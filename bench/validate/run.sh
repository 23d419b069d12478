#!/usr/bin/env bash
# Benchmark: `kiln validate` on the bento corpus (HCL2, every x86_64 Linux/Windows var-file)
# against `packer validate -syntax-only` on the templates Packer 1.6.6 accepts (bento's legacy
# JSON templates, since 1.6.6 rejects the HCL2 ones' required_plugins). Prints the mean time per
# invocation of each and the ratio. Not a test: timings depend on the machine.
#
# Environment: KILN_BIN (default: target/release/kiln, built if missing), PACKER_BIN (default:
# packer), KILN_CORPUS_DIR (default: ../shared/corpus beside the repository), ROUNDS (default 3).
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
corpus="${KILN_CORPUS_DIR:-$repo/../shared/corpus}"
rounds="${ROUNDS:-3}"
packer="${PACKER_BIN:-packer}"
kiln="${KILN_BIN:-$repo/target/release/kiln}"

[ -d "$corpus/bento/packer_templates" ] || { echo "corpus not found at $corpus (set KILN_CORPUS_DIR)" >&2; exit 1; }
command -v "$packer" >/dev/null || { echo "packer not found (set PACKER_BIN)" >&2; exit 1; }
if [ ! -x "$kiln" ]; then
  (cd "$repo" && cargo build --release --bin kiln >&2)
fi

now() { date +%s.%N; }

# kiln: each x86_64 Linux / Windows var-file, as bento users run it.
cd "$corpus/bento"
mapfile -t varfiles < <(ls os_pkrvars/*/*-x86_64.pkrvars.hcl | grep -v -e /macos/ -e /freebsd/ -e /solaris/)
kiln_runs=0
start=$(now)
for _ in $(seq "$rounds"); do
  for f in "${varfiles[@]}"; do
    "$kiln" validate "-only=qemu.*,virtualbox-iso.*,vmware-iso.*" "-var-file=$f" packer_templates >/dev/null 2>&1 \
      || { echo "kiln validate failed on $f" >&2; exit 1; }
    kiln_runs=$((kiln_runs + 1))
  done
done
kiln_total=$(echo "$(now) - $start" | bc -l)

# packer: every legacy JSON bento template that Packer 1.6.6 accepts.
cd "$corpus/bento-legacy-json/packer_templates"
mapfile -t templates < <(ls */*.json)
accepted=()
for t in "${templates[@]}"; do
  if (cd "$(dirname "$t")" && "$packer" validate -syntax-only "$(basename "$t")" >/dev/null 2>&1); then
    accepted+=("$t")
  fi
done
packer_runs=0
start=$(now)
for _ in $(seq "$rounds"); do
  for t in "${accepted[@]}"; do
    (cd "$(dirname "$t")" && "$packer" validate -syntax-only "$(basename "$t")" >/dev/null 2>&1)
    packer_runs=$((packer_runs + 1))
  done
done
packer_total=$(echo "$(now) - $start" | bc -l)

# kiln on the same legacy JSON templates, once the JSON converter is in (skipped otherwise).
same_line=""
if (cd "$(dirname "${accepted[0]}")" && "$kiln" validate -syntax-only "$(basename "${accepted[0]}")" >/dev/null 2>&1); then
  same_runs=0
  start=$(now)
  for _ in $(seq "$rounds"); do
    for t in "${accepted[@]}"; do
      (cd "$(dirname "$t")" && "$kiln" validate -syntax-only "$(basename "$t")" >/dev/null 2>&1) || true
      same_runs=$((same_runs + 1))
    done
  done
  same_total=$(echo "$(now) - $start" | bc -l)
  same_mean=$(echo "$same_total / $same_runs * 1000" | bc -l)
  same_line=$(printf 'kiln validate -syntax-only (same JSON):   %4d runs, %8.2f s total, %7.2f ms/run' \
    "$same_runs" "$same_total" "$same_mean")
fi

kiln_mean=$(echo "$kiln_total / $kiln_runs * 1000" | bc -l)
packer_mean=$(echo "$packer_total / $packer_runs * 1000" | bc -l)
printf 'kiln validate (full, HCL2 bento):        %4d runs, %8.2f s total, %7.2f ms/run\n' "$kiln_runs" "$kiln_total" "$kiln_mean"
printf 'packer 1.6.6 validate -syntax-only (JSON): %4d runs, %8.2f s total, %7.2f ms/run\n' "$packer_runs" "$packer_total" "$packer_mean"
[ -n "$same_line" ] && echo "$same_line"
printf 'ratio packer syntax-only / kiln full validate, per run: %.2fx\n' "$(echo "$packer_mean / $kiln_mean" | bc -l)"
if [ -n "$same_line" ]; then
  printf 'ratio packer / kiln, both -syntax-only on the same JSON: %.2fx\n' "$(echo "$packer_mean / $same_mean" | bc -l)"
fi
