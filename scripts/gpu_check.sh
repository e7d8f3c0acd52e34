#!/usr/bin/env bash
# One prepared GPU check, run on a bare GPU machine in one call (default limits: ~6 minutes).
#
#   OUT=/some/folder bash scripts/gpu_check.sh
#
# In order of what the next decision needs most (kernels/attention/NOTES.md):
# 1. installs ganbench from this checkout without network (the GPU image already has torch,
#    triton, pluggy, pandas, matplotlib, pillow, tqdm, tabulate, pytest, pytest-benchmark);
# 2. says which arithmetic triton-attn's fp32 path uses (fp32-precision.txt);
# 3. runs the kernel and attention-plugin tests on CUDA (kernel-tests.txt, whole);
# 4. runs `ganbench bench attention` in bf16 over the textbook shapes and N=4096, both
#    triton-attn backwards, per-call and CUDA-graph times, accuracy columns;
# 5. sweeps triton-attn's tiles at N=4096 (bench-sweep.md; the variants are first guesses);
# 6. profiles triton-attn's kernels at N=4096 with Nsight Compute (ncu-attention.txt);
# 7. trains a short SAGAN with each attention kernel at 64x64, batch 64, bf16;
# and writes everything under $OUT (a log, the tables, one tar.gz of the run folders), ending
# with a short summary of all of it (summary.md, printed last: a lease's reply shows the tail).
# Each step has its own timeout so one hang cannot eat the whole lease. With this workplace's
# device tool: command "OUT=$OUT bash scripts/gpu_check.sh", timeout_s 420.
# GPU_CHECK_DEVICE=cpu runs a tiny version of the same steps on the CPU (to test the script).
set -u
# Per-step time limits (seconds) and the training length, overridable for a short lease.
# The defaults add up to 6 minutes.
T_DIAG=${T_DIAG:-25} T_TESTS=${T_TESTS:-70} T_BENCH=${T_BENCH:-90} T_SWEEP=${T_SWEEP:-40}
T_PROF=${T_PROF:-45} T_TRAIN=${T_TRAIN:-90} T_FP32=${T_FP32:-0}
STEPS=${STEPS:-150}
OUT=${OUT:-/tmp/gpu-check}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
mkdir -p "$OUT/work"
LOG="$OUT/log.txt"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg GANBENCH_LOAD_PLUGINS=""
PY=${PYTHON:-python3}
step() { echo; echo "=== $* ($(date +%T))" | tee -a "$LOG"; }

step "environment"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1 || true
  $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.cuda.is_available())"; } 2>&1 | tee -a "$LOG"

step "install"
if ! $PY -c "import ganbench.plugins.sagan, ganbench.kernels.attention" 2>/dev/null; then
  $PY -m pip install -q --no-deps --no-build-isolation --no-index -e . 2>&1 | tail -3 | tee -a "$LOG"
fi
$PY -c "import ganbench, ganbench.kernels.attention.triton_attn as t; print('ganbench', ganbench.__version__)" 2>&1 | tee -a "$LOG"

if [ "$DEVICE" = cuda ]; then
  step "fp32 arithmetic of triton-attn"
  timeout $T_DIAG $PY -m ganbench.kernels.attention.precision --device cuda 2>&1 \
      | tee "$OUT/fp32-precision.txt" | tee -a "$LOG"
  step "kernel tests on CUDA"
  # 8 pytest workers compile the kernels' many shape specialisations in parallel (16 cores).
  PAR=""; $PY -c "import xdist" 2>/dev/null && PAR="-n 8"
  timeout $T_TESTS $PY -m pytest -q -p no:cacheprovider tests/kernels tests/plugins/test_attention_plugins.py \
      -m cuda --tb=line -rf $PAR > "$OUT/kernel-tests.txt" 2>&1; tail -40 "$OUT/kernel-tests.txt" | tee -a "$LOG"
  BENCH_ARGS="--shapes all --variant triton-attn:backward=atomic"
  RUN_ARGS="--steps $STEPS --image-size 64 --batch-size 64 --eval-n 2000 --dtype bf16"
  # triton-attn before compile-attn: rows run in this order, and compile-attn's compilation is
  # the slowest; if the step's limit cuts the run, the row the issue asks about is already in.
  KERNELS=${KERNELS:-"eager-attn,sdpa-attn,triton-attn,compile-attn"}
else
  step "fp32 arithmetic of triton-attn (CPU, interpreter)"
  TRITON_INTERPRET=1 $PY -m ganbench.kernels.attention.precision --device cpu 2>&1 \
      | tee "$OUT/fp32-precision.txt" | tee -a "$LOG"
  step "kernel tests (CPU, interpreter)"
  TRITON_INTERPRET=1 timeout 150 $PY -m pytest -q -p no:cacheprovider tests/kernels -k "not cuda" \
      -x -rf > "$OUT/kernel-tests.txt" 2>&1; tail -3 "$OUT/kernel-tests.txt" | tee -a "$LOG"
  BENCH_ARGS="--quick --shapes textbook"
  RUN_ARGS="--steps 6 --warmup 2 --image-size 32 --batch-size 16 --eval-n 200"
  KERNELS="eager-attn,sdpa-attn"
fi

step "attention benchmark bf16"
timeout $T_BENCH $PY -m ganbench bench attention --device "$DEVICE" --dtype bf16 $BENCH_ARGS \
    --out "$OUT/work/bench-bf16" 2>&1 | tail -30 | tee -a "$LOG"

step "triton-attn tile sweep, N=4096"
if [ "$DEVICE" = cuda ]; then
  # One change from _config's defaults per variant (N=4096: BLOCK_N 64, FWD_BLOCK_M 128 with
  # 8 warps, BWD_BLOCK_M 64 with 4 warps, stages 3/2), plus the atomic backward with the best
  # guess for it; kernels/attention/NOTES.md says what each tests.
  timeout $T_SWEEP $PY -m ganbench bench attention --device cuda --dtype bf16 --shapes scaled \
      --repeats 20 --warmup 3 --kernels triton-attn \
      --variant triton-attn:block_n=128 --variant triton-attn:block_n=32 \
      --variant triton-attn:fwd_block_m=64,fwd_warps=4 --variant triton-attn:bwd_warps=8 \
      --variant triton-attn:fwd_stages=4,bwd_stages=3 \
      --variant triton-attn:backward=atomic,bwd_block_m=128,bwd_warps=8 \
      --out "$OUT/work/bench-sweep" 2>&1 | tail -20 | tee -a "$LOG"
else
  echo "skipped: CUDA only (the interpreter's times say nothing about tiles)" | tee -a "$LOG"
fi

step "Nsight Compute profile of triton-attn, N=4096"
if [ "$DEVICE" = cuda ] && command -v ncu >/dev/null; then
  # Only the launches between cudaProfilerStart/Stop (one fwd+bwd per backward variant, after
  # warm-up); --clock-control none: leave the card's clocks as found (ran here on 2026-11-04).
  timeout $T_PROF ncu --profile-from-start off --clock-control none --nvtx --print-summary none \
      -k regex:"_fwd_kernel|_bwd_dkdv_kernel|_bwd_dq_kernel" \
      --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
      --section Occupancy --section LaunchStats --section WarpStateStats \
      $PY scripts/profile_attention.py --N 4096 --dqk 8 --dv 64 --batch 64 \
      > "$OUT/ncu-attention.txt" 2>&1; grep -E "backward=|_kernel|Duration|Throughput|Registers|Achieved Occupancy" \
      "$OUT/ncu-attention.txt" | head -60 | tee -a "$LOG"
else
  echo "skipped: needs CUDA and ncu" | tee -a "$LOG"
fi

# SAGAN only: DCGAN's GPU row is in results/gpu-h100-80gb/, and each combination costs ~15-20 s
# of process start, data and evaluation besides its steps.
step "training: sagan with each kernel"
timeout $T_TRAIN $PY -m ganbench run --plugins "sagan,$KERNELS" --device "$DEVICE" $RUN_ARGS \
    --quiet --out "$OUT/work/train" 2>&1 | tail -5 | tee -a "$LOG"
$PY -m ganbench report "$OUT/work/train" 2>&1 | tee -a "$LOG"

[ "$T_FP32" -gt 0 ] && step "attention benchmark fp32" && timeout $T_FP32 $PY -m ganbench bench attention --device "$DEVICE" --dtype fp32 $BENCH_ARGS \
    --out "$OUT/work/bench-fp32" 2>&1 | tail -30 | tee -a "$LOG"

step "pack"
for d in bench-bf16 bench-sweep bench-fp32; do
  cp "$OUT/work/$d/attention-bench.md" "$OUT/$d.md" 2>/dev/null || true
  cp "$OUT/work/$d/attention-bench.csv" "$OUT/$d.csv" 2>/dev/null || true
done
cp "$OUT/work/train/results.csv" "$OUT/train-results.csv" 2>/dev/null || true
tar -czf "$OUT/gpu-check.tar.gz" --exclude=models -C "$OUT/work" . && rm -rf "$OUT/work"
ls -la "$OUT" | tee -a "$LOG"

step "summary (also in $OUT/summary.md)"
$PY scripts/gpu_summary.py "$OUT" 2>&1 | tee -a "$LOG"
