#!/usr/bin/env bash
# Issue #14's GPU recipe for the first-stage restorer R: continue the shipped weights on one GPU for a fixed
# time, the training crops drawn and degraded by CPU worker processes (one core degrades about 250 a second).
# Under 8 minutes in all with the defaults (a 200-step probe, then BUDGET seconds of training).
#
#   scripts/gpu_train_restorer.sh pack   # here, once: data/gpu_photos, the photo set small enough to travel
#                                        # with the repository (training photos as JPEG quality 90, validation
#                                        # photos 95: 7.1 MB in all)
#   scripts/gpu_train_restorer.sh        # there (device run, carry data/gpu_photos, timeout_s 540): $OUT
#                                        # gets restorer.safetensors, checkpoint.json, probe.log and train.log
# The repository's tracked files (59.4 MB) and the packed photos just fit the 64 MiB a device run carries.
#
# Settings by environment: DEVICE (cuda), BUDGET (seconds of training, 360), BATCH (64), WORKERS (all cores but
# two), LR (peak, 2e-4), PROBE (steps timed to size the run, 200). The run's step count fills the budget at the
# probe's speed, so the cosine schedule ends when the time does. Judge the weights here with `evaluate`.
set -euo pipefail
cd "$(dirname "$0")/.."
photos=data/gpu_photos
if [ "${1:-}" = pack ]; then
  python - "$photos" <<'EOF'
import sys
from pathlib import Path
from PIL import Image
out = Path(sys.argv[1])
for split, quality in (("train", 90), ("val", 95)):
    (out / split).mkdir(parents=True, exist_ok=True)
    for path in sorted(Path("data/photos", split).glob("*.png")):
        Image.open(path).convert("RGB").save(out / split / (path.stem + ".jpg"), quality=quality)
print(f"{out}: {sum(f.stat().st_size for f in out.rglob('*.*')) / 1e6:.1f} MB")
EOF
  exit
fi
DEVICE=${DEVICE:-cuda} BUDGET=${BUDGET:-360} BATCH=${BATCH:-64} LR=${LR:-2e-4} PROBE=${PROBE:-200}
WORKERS=${WORKERS:-$(( $(nproc) > 2 ? $(nproc) - 2 : 0 ))}
results=${OUT:-runs/restorer-gpu-results}
run=$(mktemp -d)
mkdir -p "$results"
export PYTHONUNBUFFERED=1
# the workers hand their batches over in shared memory (about 35 MB a batch of 64, two in flight per worker);
# containers often give /dev/shm only 64 MB, so grow it where it is smaller than 4 GB
if [ "$WORKERS" -gt 0 ] && [ "$(df --output=size -k /dev/shm | tail -1)" -lt 4000000 ]; then
  mount -o remount,size=8G /dev/shm || echo "could not grow /dev/shm: lower WORKERS if the workers die"
fi
train() {  # steps, out folder
  python3 -m latentindigo train restorer --data "$photos" --out "$2" --init assets/restorer/restorer.safetensors \
    --blocks 1 1 11 --zoom 0.25 1 --steps "$1" --every $(( $1 / 4 > 0 ? $1 / 4 : 1 )) --batch "$BATCH" --crop 96 \
    --lr "$LR" --bf16 --device "$DEVICE" --workers "$WORKERS"
}
train "$PROBE" "$run/probe" > "$results/probe.log" 2>&1
steps=$(python3 -c "import json, sys; h = json.load(open(sys.argv[1]))['history']; \
print(max($PROBE, int($PROBE / h[-1]['seconds'] * $BUDGET) // 100 * 100))" "$run/probe/checkpoint.json")
echo "probe: $PROBE steps of $BATCH crops; training $steps steps on $DEVICE with $WORKERS workers" | tee "$results/train.log"
train "$steps" "$run/train" 2>&1 | tr '\r' '\n' | grep -a "^step \|resuming\|Error\|error" | tee -a "$results/train.log"
cp "$run/train/restorer.safetensors" "$run/train/checkpoint.json" "$results/"
