#!/usr/bin/env bash
# GPU readiness in one script (about 8 minutes on one GPU): the CUDA tests, Res-SRDiff's sampler at paper sizes
# (256^2 prostate, 384^2 brain; batch 1 and 16; fp32 and bf16, then compiled bf16 in steps of their own, so that a
# slow compilation cannot cost the other figures) and a 100-step paper-prostate training smoke test on the demo
# data. It writes the figures into benchmarks/RESULTS.md (between
# the "gpu" markers) and the raw JSON into benchmarks/results/. Not part of CI.
#
#   bash benchmarks/gpu.sh                      # on a machine with a CUDA GPU, from the repository root
#   RES_SRDIFF_OFFICIAL=/path/to/Res-SRDiff bash benchmarks/gpu.sh    # also time the official code
#   GPU_SH_DRY_RUN=1 bash benchmarks/gpu.sh     # CPU, tiny sizes: checks the plumbing (report in results/gpu/)
#
# Each step has its own time limit, so a slow or failing step cannot take the whole budget; a failed step is
# reported in RESULTS.md and the script goes on.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=benchmarks/results/gpu
mkdir -p "$OUT"
LOG="$OUT/gpu.log"
: > "$LOG"
STATUS="$OUT/steps.tsv"
: > "$STATUS"
OFFICIAL=()
[ -n "${RES_SRDIFF_OFFICIAL:-}" ] && OFFICIAL=(--official "$RES_SRDIFF_OFFICIAL")

if [ -n "${GPU_SH_DRY_RUN:-}" ]; then
  DEVICE=cpu; PROSTATE=(--preset tiny --sizes 64 --batches 1,2); BRAIN=(--preset tiny --sizes 64 --batches 1)
  MODES=fp32,bf16; TRAIN=(--preset tiny --steps 10); TESTS=(tests/test_res_srdiff_cuda.py); LIMIT=300
  REPORT="$OUT/RESULTS.dry-run.md"; TEST_LIMIT=300; TRAIN_LIMIT=300; COMPILE_LIMIT=300
else
  DEVICE=cuda; PROSTATE=(--preset paper-prostate --sizes 256 --batches 1,16)
  BRAIN=(--preset paper-brain --sizes 384 --batches 1,16)
  MODES=fp32,bf16; TRAIN=(--preset paper-prostate --steps 100)
  TESTS=(tests/test_res_srdiff_cuda.py tests/test_metrics_calibration.py -k "cuda or CUDA"); LIMIT=70
  REPORT=benchmarks/RESULTS.md; TEST_LIMIT=60; TRAIN_LIMIT=75; COMPILE_LIMIT=100  # 475 s of limits in all
fi

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log it, record its status and duration
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS rc
  echo "== $name: $*" | tee -a "$LOG"
  timeout --kill-after=10 "$limit" "$@" >> "$LOG" 2>&1
  rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" >> "$STATUS"
  echo "   exit $rc after $((SECONDS - t0)) s" | tee -a "$LOG"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
} > "$OUT/device.txt" 2>&1
cat "$OUT/device.txt"

step "CUDA tests" "$TEST_LIMIT" "$PY" -m pytest -q -x -p no:cacheprovider "${TESTS[@]}"
step "sampler 256^2 prostate" "$LIMIT" "$PY" benchmarks/sampler_speed.py "${OFFICIAL[@]}" --device "$DEVICE" \
  --threads "$(nproc)" --modes "$MODES" --repeats 3 "${PROSTATE[@]}" --out "$OUT/sampler_prostate.json"
step "sampler 384^2 brain" "$LIMIT" "$PY" benchmarks/sampler_speed.py "${OFFICIAL[@]}" --device "$DEVICE" \
  --threads "$(nproc)" --modes "$MODES" --repeats 3 "${BRAIN[@]}" --out "$OUT/sampler_brain.json"
# compiled: without the official code (its time is in the rows above; the report takes the ratio from there)
step "sampler 256^2 prostate, compiled" "$COMPILE_LIMIT" "$PY" benchmarks/sampler_speed.py --device "$DEVICE" \
  --threads "$(nproc)" --modes compiled-bf16 --repeats 3 "${PROSTATE[@]}" --out "$OUT/sampler_prostate_compiled.json"
step "sampler 384^2 brain, compiled" "$COMPILE_LIMIT" "$PY" benchmarks/sampler_speed.py --device "$DEVICE" \
  --threads "$(nproc)" --modes compiled-bf16 --repeats 3 "${BRAIN[@]}" --out "$OUT/sampler_brain_compiled.json"
rm -rf "$OUT/smoke-work"
step "training smoke test" "$TRAIN_LIMIT" "$PY" benchmarks/train_smoke.py "${TRAIN[@]}" --device "$DEVICE" \
  --workdir "$OUT/smoke-work" --out "$OUT/train_smoke.json"

"$PY" benchmarks/gpu_report.py "$OUT" "$REPORT"
