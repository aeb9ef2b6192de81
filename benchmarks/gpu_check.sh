#!/usr/bin/env bash
# GPU check, one command, under 8 minutes on an H100: Stable-Diffusion-2.1-size components with random
# weights in fp16 (no download), per-mode time and peak GPU memory at 512x512 (50 steps) and at 2048x2048
# (tiled), the INN step's operations and time at 512, and the time to calibrate a LatentINN for that VAE.
#
#   benchmarks/gpu_check.sh            # results as JSON in $OUT (default benchmarks/results) and on stdout
#
# A machine without diffusers or PyWavelets can be given their wheels in .whl/ (see the README).
set -euo pipefail
cd "$(dirname "$0")/.."
results=${OUT:-benchmarks/results}
mkdir -p "$results"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
if ! python3 -c "import diffusers, pywt" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"

python3 benchmarks/bench_inn_step.py --prior sd21-random --device cuda --size 512 --json "$results/gpu_inn_step.json"
python3 benchmarks/bench_sampler.py --device cuda --size 512 --steps 50 --repeats 2 \
  --methods sdedit latent pixel dps --json "$results/gpu_512.json"
python3 benchmarks/bench_sampler.py --device cuda --size 2048 --steps 50 \
  --methods sdedit latent --json "$results/gpu_2048.json"

SECONDS=0
HF_HOME=$(mktemp -d) python3 -m latentindigo calibrate --prior sd21-random --device cuda --steps 600 --batch 8 \
  --crop 256 | tee "$results/gpu_calibrate.txt"
echo "calibration seconds (including building the random prior): $SECONDS" | tee -a "$results/gpu_calibrate.txt"
