#!/usr/bin/env bash
# Every GPU check in one call, in the order the next decision needs it (issue 12):
#
#   OUT=/some/folder bash scripts/gpu_check.sh        # device tool: timeout_s 480
#
# 1. install ganbench from this checkout without network (the GPU image has torch, triton,
#    pluggy, pandas, matplotlib, pillow, tqdm, tabulate, pytest);
# 2. the SAGAN step table at 64x64, batch 64 (scripts/step_table.py): the textbook's own step,
#    ganbench's eager step and its CUDA graph, fp32 and bf16, each kernel (triton-block is the
#    fused attention block), with kernels and host launches per step from torch.profiler and
#    speedup_vs_textbook; this is the table the issue's ">= 3x the textbook" is read from;
# 3. CUDA tests: the graphed step against eager after K steps (tests/training/test_steps.py), the
#    kernel and block tests (fp32 included), the attention plugins;
# 4. attention per call and per CUDA-graph replay at every textbook shape and N=4096 (bf16);
# 5. the fp32 verdict (which arithmetic triton-attn's fp32 path used);
# 6. triton-attn's variants at N=4096 and at the small-N sites (backwards, exp2, prebind);
# 7. one `ganbench run` with --baseline textbook --cuda-graph (the CLI path end to end);
# 8. the whole step compiled (`--compile step`, issue 23) against the textbook row, bf16, with
#    its compile_s and graph breaks (the CUDA half of "works on the CPU and on CUDA");
# then a summary, printed last (the device tool returns the tail). Each step has its own time
# limit so one hang cannot eat the lease; the defaults add up to 7.5 minutes
# (device tool: timeout_s 480). Everything lands in
# $OUT (tables, logs, one tar.gz of the run folders).
# GPU_CHECK_DEVICE=cpu runs a tiny version of the same steps on the CPU (to test the script).
set -u
T_STEP=${T_STEP:-120} T_TESTS=${T_TESTS:-60} T_BENCH=${T_BENCH:-60} T_DIAG=${T_DIAG:-20}
T_SWEEP=${T_SWEEP:-45} T_TRAIN=${T_TRAIN:-55} T_COMPILE=${T_COMPILE:-90}
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
if ! $PY -c "import ganbench.training.steps, ganbench.kernels.attention" 2>/dev/null; then
  $PY -m pip install -q --no-deps --no-build-isolation --no-index -e . 2>&1 | tail -3 | tee -a "$LOG"
fi
$PY -c "import ganbench; print('ganbench', ganbench.__version__)" 2>&1 | tee -a "$LOG"

if [ "$DEVICE" = cuda ]; then
  STEP_ARGS="--device cuda --image-size 64 --batch 64 --steps 60 --warmup 10 --dtypes fp32,bf16 --kernels eager-attn,sdpa-attn,triton-attn,triton-block"
  TEST_SEL="-m cuda"
  PAR=""; $PY -c "import xdist" 2>/dev/null && PAR="-n 8"  # 16 cores compile in parallel
  BENCH_ARGS="--device cuda --shapes all"
  SWEEP_ARGS="--device cuda --repeats 20 --warmup 3"
  RUN_ARGS="--device cuda --steps 150 --image-size 64 --batch-size 64 --eval-n 1000 --dtype bf16"
  KERNELS="sdpa-attn,triton-attn,triton-block"
  COMPILE_ARGS="--device cuda --steps 60 --warmup 10 --image-size 64 --batch-size 64 --dtype bf16"
else
  export TRITON_INTERPRET=1
  STEP_ARGS="--device cpu --image-size 32 --batch 8 --steps 4 --warmup 1 --dtypes fp32 --kernels eager-attn,sdpa-attn"
  PAR=""
  BENCH_ARGS="--device cpu --quick --shapes textbook --kernels eager-attn,sdpa-attn"
  SWEEP_ARGS="--device cpu --quick"
  RUN_ARGS="--device cpu --steps 4 --warmup 1 --image-size 32 --batch-size 8 --metrics none"
  KERNELS="sdpa-attn"
  COMPILE_ARGS="--device cpu --steps 4 --warmup 2 --image-size 32 --batch-size 8 --dtype fp32"
  T_COMPILE=${T_COMPILE_CPU:-300}  # inductor's C++ compile of SAGAN's step: ~100 s on 2 cores
fi

step "SAGAN step table (textbook / eager / graphed; fp32, bf16; each kernel)"
timeout $T_STEP $PY scripts/step_table.py $STEP_ARGS --out "$OUT/step-table" \
    > "$OUT/step-table.log" 2>&1; tail -25 "$OUT/step-table.log" | tee -a "$LOG"

step "CUDA tests: graphed step vs eager, kernels and block (fp32 included), attention plugins"
if [ "$DEVICE" = cuda ]; then
  timeout $T_TESTS $PY -m pytest -q -p no:cacheprovider tests/training/test_steps.py tests/kernels \
      tests/plugins/test_attention_plugins.py tests/plugins/test_sagan_with_kernels.py \
      $TEST_SEL --tb=line -rf $PAR > "$OUT/cuda-tests.txt" 2>&1
else
  timeout $T_TESTS $PY -m pytest -q -p no:cacheprovider tests/training/test_steps.py -k graph \
      --tb=line -rf > "$OUT/cuda-tests.txt" 2>&1
fi
tail -30 "$OUT/cuda-tests.txt" | tee -a "$LOG"

step "attention per call and per graph replay, every textbook shape and N=4096 (bf16)"
timeout $T_BENCH $PY -m ganbench bench attention --dtype bf16 $BENCH_ARGS \
    --out "$OUT/work/bench-bf16" 2>&1 | tail -30 | tee -a "$LOG"

step "fp32 verdict of triton-attn"
timeout $T_DIAG $PY -m ganbench.kernels.attention.precision --device "$DEVICE" 2>&1 \
    | tee "$OUT/fp32-precision.txt" | tee -a "$LOG"

step "triton-attn variants: N=4096 and the small-N sites"
if [ "$DEVICE" = cuda ]; then
  # The default plan is small-n for N <= 256 and tiled + one-launch backward above; each
  # variant below changes one thing (kernels/attention/NOTES.md says what each tests).
  timeout $T_SWEEP $PY -m ganbench bench attention --dtype bf16 --shapes all $SWEEP_ARGS \
      --kernels triton-attn \
      --variant triton-attn:backward=two-kernel --variant triton-attn:backward=atomic \
      --variant triton-attn:variant=tiled --variant triton-attn:exp2=false \
      --variant triton-attn:prebind=false \
      --out "$OUT/work/bench-sweep" 2>&1 | tail -30 | tee -a "$LOG"
else
  # batch 1: the interpreter's time grows with the batch; this only tests the step runs
  timeout 90 $PY -m ganbench bench attention --dtype fp32 --shapes textbook $SWEEP_ARGS \
      --batch 1 --kernels triton-attn --variant triton-attn:variant=tiled \
      --out "$OUT/work/bench-sweep" 2>&1 | tail -12 | tee -a "$LOG"
fi

step "ganbench run --baseline textbook --cuda-graph"
GRAPH=""; [ "$DEVICE" = cuda ] && GRAPH="--cuda-graph"
timeout $T_TRAIN $PY -m ganbench run --plugins "sagan,$KERNELS" --baseline textbook $GRAPH \
    $RUN_ARGS --quiet --out "$OUT/work/train" 2>&1 | tail -5 | tee -a "$LOG"
$PY -m ganbench report "$OUT/work/train" 2>&1 | tee -a "$LOG"

step "the whole step compiled (--compile step) against the textbook row"
timeout $T_COMPILE $PY -m ganbench run --plugins sagan --compile step --baseline textbook \
    $COMPILE_ARGS --metrics none --quiet --out "$OUT/work/compile-step" 2>&1 | tail -5 | tee -a "$LOG"
$PY - "$OUT/work/compile-step/results.csv" <<'PYEOF' 2>&1 | tee -a "$LOG"
import sys, pandas as pd
df = pd.read_csv(sys.argv[1])
cols = [c for c in ("combo", "status", "step_ms_median", "img_per_s", "speedup_vs_textbook",
                    "compile_s", "compile_graph_breaks", "compile_scope", "error") if c in df]
print(df[cols].to_string(index=False))
PYEOF

step "pack"
for d in bench-bf16 bench-sweep; do
  cp "$OUT/work/$d/attention-bench.md" "$OUT/$d.md" 2>/dev/null || true
  cp "$OUT/work/$d/attention-bench.csv" "$OUT/$d.csv" 2>/dev/null || true
done
cp "$OUT/work/train/results.csv" "$OUT/train-results.csv" 2>/dev/null || true
cp "$OUT/work/compile-step/results.csv" "$OUT/compile-step-results.csv" 2>/dev/null || true
tar -czf "$OUT/gpu-check.tar.gz" --exclude=models --exclude=checkpoints -C "$OUT/work" . \
    && rm -rf "$OUT/work"
ls -la "$OUT" | tee -a "$LOG"

step "summary (also in $OUT/summary.md)"
$PY scripts/gpu_summary.py "$OUT" 2>&1 | tee -a "$LOG"
