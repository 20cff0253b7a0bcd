#!/usr/bin/env bash
# GPU figures of the production path (issue 15) in one device call, on the lent H100/H200.
#
# Prepare here (once per session; both folders are git-ignored through .git/info/exclude):
#     bash ../shared/tools/gpu-wheels.sh        # .whl/ (openmm + openmm-cuda-13, ase, mdtraj, pydantic)
#                                               # .gpu-ref/ (cu2se.mtp, cu2se_1500.lammps-data)
# Then with the device tool:
#     run(command="bash benchmarks/gpu.sh", carry=[".whl", ".gpu-ref"], timeout_s=600)
#
# That machine has torch 2.11 (CUDA 13), no internet and no openmm-torch, so the MD rows use
# OpenMM's CUDA platform with PythonForce backends: `compiled` (the AOTInductor-compiled padded
# step, compiled there for CUDA on the first use) and `python` (TorchScript adapter).  Rows:
#   model alone and compiled MD at 1.5k, 12k, 100k and 1M atoms, float32 and float64,
#   python-backend MD at 1.5k and 100k atoms (float32), and a torch.profiler table of the model
#   alone at 1M atoms (float32).
# Files come back under $OUT: gpu_bench_float32.{json,md}, gpu_bench_float64.{json,md},
# gpu_bench_python.{json,md}, gpu_profile.txt (float32, 1M atoms), gpu_log.txt (8 files at most).  Goals (issue 15): >= 2e7 atom-steps/s at >= 1e5 atoms, >= 1000 MD steps/s at 1.5k.
set -uo pipefail
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_log.txt") 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 SUS2MD_CACHE_DIR=/tmp/sus2md-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, openmm; print('torch', torch.__version__, torch.cuda.get_device_name(0)); \
print('openmm', openmm.__version__, openmm.Platform.getPlatformByName('CUDA').getName())" || exit 1
M=(.gpu-ref/cu2se.mtp --structure .gpu-ref/cu2se_1500.lammps-data --species Cu,Se --device cuda --threads 1)
date
for dt in float32 float64; do  # one report per dtype: a timeout in one keeps the other
  prof=(); [ "$dt" = float32 ] && prof=(--profile "$OUT/gpu_profile.txt")
  timeout 240 python3 -m sus2md bench "${M[@]}" --sizes 1500,12000,100000,1000000 --dtypes $dt \
      --backends model,compiled --steps 20 --repeats 3 --warmup 3 \
      --json "$OUT/gpu_bench_$dt.json" --markdown "$OUT/gpu_bench_$dt.md" "${prof[@]}"
  echo "bench $dt exit $?"; date
done
timeout 90 python3 -m sus2md bench "${M[@]}" --sizes 1500,100000 --dtypes float32 --backends python \
    --steps 10 --repeats 2 --warmup 2 --json "$OUT/gpu_bench_python.json" --markdown "$OUT/gpu_bench_python.md"
echo "python-backend bench exit $?"
ls -la "$SUS2MD_CACHE_DIR/compiled" 2>/dev/null
date
