#!/usr/bin/env bash
# On a machine with a real NVIDIA GPU: reads it through every backend that works there, under load,
# checks that they agree, times one sample of each, and saves fresh captures of the tools' output.
#
#   npm run build && scripts/gpu-smoke.sh [OUT_DIR]
#
# Node.js 20+ must be on PATH or given as NODE=/path/to/node (a GPU machine without network can get
# it as the official tarball carried along). The load is PyTorch when it is importable with CUDA,
# otherwise scripts/gpu-burn.cu compiled with nvcc. Captures go to OUT_DIR (default
# test/fixtures/real/captures-<date>), named like the other captures there.
set -uo pipefail
cd "$(dirname "$0")/.."
NODE=${NODE:-node}
OUT=${1:-test/fixtures/real/captures-$(date +%Y%m%d)}
SECONDS_UNDER_LOAD=${GPU_SMOKE_SECONDS:-20}
mkdir -p "$OUT"
[ -f dist/scripts/gpu-compare.js ] || { echo "dist/ is missing: run npm run build first" >&2; exit 2; }
command -v nvidia-smi >/dev/null || { echo "nvidia-smi not found: this is for a machine with an NVIDIA GPU" >&2; exit 2; }

name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr 'A-Z ' 'a-z-' | sed 's/nvidia-//; s/[^a-z0-9-]//g')
driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)
count=$(nvidia-smi -L | grep -c '^GPU ')
tag="${count}x-${name}_driver-${driver}"
echo "== $count GPU(s): $name, driver $driver"

capture() { # file, command...
  local file=$1; shift
  if "$@" > "$OUT/$file" 2> "$OUT/$file.stderr"; then echo "captured $file"; else echo "capture failed ($?): $*"; fi
  [ -s "$OUT/$file.stderr" ] || rm -f "$OUT/$file.stderr"
}
fields=$(nvidia-smi --help-query-gpu | grep -oE '^"[a-z_.A-Z0-9]+"' | tr -d '"' | paste -sd, -)

echo "== captures at idle"
capture "nvidia-smi-q-x_${tag}_idle.xml" nvidia-smi -q -x
capture "nvidia-smi-help-query-gpu_${tag}.txt" nvidia-smi --help-query-gpu
capture "query-gpu_csv_header-units_allfields_${tag}_idle.csv" nvidia-smi --query-gpu="$fields" --format=csv
capture "nvidia-smi-L_${tag}.txt" nvidia-smi -L

echo "== load for ${SECONDS_UNDER_LOAD}s"
if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  python3 - "$SECONDS_UNDER_LOAD" <<'PY' &
import sys, time, torch
end = time.time() + float(sys.argv[1])
a = torch.randn(8192, 8192, device='cuda'); b = torch.randn(8192, 8192, device='cuda')
while time.time() < end:
    a = (a @ b).clamp_(-1, 1)
    torch.cuda.synchronize()
print('torch load done')
PY
  load=$!
elif command -v nvcc >/dev/null; then
  nvcc -O2 -o "$OUT/gpu-burn" scripts/gpu-burn.cu && "$OUT/gpu-burn" "$SECONDS_UNDER_LOAD" &
  load=$!
else
  echo "neither PyTorch with CUDA nor nvcc: comparing at idle only"
  load=
fi
sleep 3

echo "== captures under load"
capture "nvidia-smi-q-x_${tag}_load.xml" nvidia-smi -q -x
capture "query-gpu_csv_header-units_allfields_${tag}_load.csv" nvidia-smi --query-gpu="$fields" --format=csv
capture "query-compute-apps_csv_${tag}_load.csv" nvidia-smi --query-compute-apps=timestamp,gpu_name,gpu_bus_id,gpu_serial,gpu_uuid,pid,process_name,used_gpu_memory --format=csv
capture "nvidia-smi-dmon_${tag}_load.txt" nvidia-smi dmon -c 5
capture "nvidia-smi-pmon_${tag}_load.txt" nvidia-smi pmon -c 5
if command -v dcgmi >/dev/null; then
  capture "dcgmi-discovery-l_${tag}.txt" dcgmi discovery -l
  capture "dcgmi-dmon_${tag}_load.txt" timeout 10 dcgmi dmon -e 100,101,140,150,155,203,204,250,251,252,1001,1002,1003,1004,1005 -d 1000 -c 5
fi

echo "== every backend, side by side"
"$NODE" dist/scripts/gpu-compare.js --seconds $((SECONDS_UNDER_LOAD + 8)) --json "$OUT/compare.json"
compare=$?
[ -n "${load:-}" ] && wait "$load"

echo "== one sample of each backend, timed"
"$NODE" dist/scripts/bench/gpu.js --real | tee "$OUT/sample-cost.txt"

echo "== done: captures and results in $OUT"
exit $compare
