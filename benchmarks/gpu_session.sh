#!/usr/bin/env bash
# One prepared session on a GPU machine, under one deadline:
#   1. the tests that need CUDA (tests/test_latency.py: events, NVML energy, a run on cuda),
#   2. the dynamic-forward benchmark on CUDA (benchmarks/test_bench_dynamic.py, BENCH_DEVICE=cuda),
#   3. suites/mnist.toml and suites/noisy_mnist.toml at the study defaults (20 epochs per
#      stage, 5 seeds since issue 16, with the sum-2x equal-budget variants), several runs
#      sharing the GPU; latency is not timed here because the runs share the device,
#   4. if time is left: the seed-0 runs again with latency timed, one at a time, reusing the
#      checkpoints of step 3 (evaluation only).
# Measured on one H200 with 9 jobs per suite under MPS: 20-epoch base 108 s, firm 160 s per run;
# both suites at 3 seeds (84 runs) needed about 14 minutes; at 5 seeds with sum-2x (160 runs) expect about
# 27 minutes (a fresh $RES, so that every run records its exact accuracy-vs-early curve; the committed
# 3-seed runs predate those curves, and unpacking them into $RES would skip 66 runs without them):
# rerun the script on the same machine (finished runs are skipped) or raise the deadline where you can.
# The dropout factor of issue 16 is the same suites with STUDY_SET="--set model.dropout=[0.0,0.2,0.2]"
# into another RES folder.
# Results (run JSONs, summary.csv, exit outputs; no checkpoints) are packed into
# OUT_DIR/study.tgz; unpack them into results/ and run `bench report` there.
#
#   benchmarks/gpu_session.sh OUT_DIR [SECONDS] [JOBS_PER_SUITE]
#
# MNIST is read from $CASCADE_DATA_DIR, or from .gpudata/*.gz (the gzipped IDX files) when
# the machine only gets a copy of the repository. $CASCADE_GIT_COMMIT records the commit
# where the copy has no .git. $STUDY_SET adds --set overrides (a dry run on CPU, say:
#   STUDY_SET="--set train.epochs=1 --set dataset.train_size=600" benchmarks/gpu_session.sh /tmp/o 400 1).
set -u
OUTDIR=${1:?usage: gpu_session.sh OUT_DIR [SECONDS] [JOBS_PER_SUITE]}
DEADLINE=$(($(date +%s) + ${2:-540}))
JOBS=${3:-7}
PY=${PYTHON:-python3}
RES=${RES:-/tmp/cascade_study}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} OMP_WAIT_POLICY=PASSIVE
left() { echo $((DEADLINE - $(date +%s))); }
mkdir -p "$OUTDIR" "$RES"
LOG="$OUTDIR/session.log"
say() { echo "[$(date +%T) $(left)s left] $*" | tee -a "$LOG"; }

if [ -z "${CASCADE_DATA_DIR:-}" ] && [ -d .gpudata ]; then
  raw=/tmp/cascade_data/MNIST/raw
  mkdir -p $raw
  for f in .gpudata/*.gz; do gunzip -c "$f" >"$raw/$(basename "$f" .gz)"; done
  export CASCADE_DATA_DIR=/tmp/cascade_data
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,power.draw --format=csv 2>&1 | tee -a "$LOG"
$PY -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())" 2>&1 | tee -a "$LOG"

say "1. CUDA tests"
timeout 150 $PY -m pytest -q -p no:cacheprovider tests/test_latency.py tests/test_exits.py >"$OUTDIR/cuda_tests.log" 2>&1
tail -3 "$OUTDIR/cuda_tests.log" | tee -a "$LOG"

say "2. dynamic forward on CUDA"
BENCH_DEVICE=cuda timeout 120 $PY -m pytest -q -s -p no:cacheprovider benchmarks/test_bench_dynamic.py \
  -k "not profile" >>"$OUTDIR/cuda_tests.log" 2>&1
cp benchmarks/.results-cuda.json "$OUTDIR/bench_dynamic_cuda.json" 2>/dev/null || say "no benchmark result"

say "3. study suites, $JOBS jobs each"
# Many small training processes share one GPU far better through MPS (their kernels run side
# by side instead of taking turns); fall back to plain sharing when it cannot start.
mps=0
if command -v nvidia-cuda-mps-control >/dev/null 2>&1; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps_pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps_log
  mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
  if nvidia-cuda-mps-control -d && timeout 60 $PY -c "import torch; assert torch.ones(2, device='cuda').sum().item() == 2"; then
    mps=1
  else
    echo quit | nvidia-cuda-mps-control 2>/dev/null
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
  fi
fi
say "MPS: $mps"
pids=()
for s in mnist noisy_mnist; do
  timeout -k 20 $(($(left) - 75)) $PY -m bench.cli run "suites/$s.toml" --out "$RES/$s" --jobs "$JOBS" \
    --no-progress --no-report --set evaluation.latency=false ${STUDY_SET:-} >"$RES/$s.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for s in mnist noisy_mnist; do say "$s: $(ls "$RES/$s"/runs/*/*.json 2>/dev/null | wc -l) run files"; tail -2 "$RES/$s.log" | tee -a "$LOG"; done

if [ $mps = 1 ]; then
  echo quit | nvidia-cuda-mps-control
  sleep 2
  unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
fi

say "4. latency of the seed-0 runs, one at a time"
for s in mnist noisy_mnist; do
  [ "$(left)" -gt 60 ] || break
  mkdir -p "$RES/${s}_latency"
  ln -sfn "$RES/$s/checkpoints" "$RES/${s}_latency/checkpoints"
  timeout -k 10 $(($(left) - 30)) $PY -m bench.cli run "suites/$s.toml" --out "$RES/${s}_latency" --jobs 1 \
    --no-progress --no-report --set "suite.seeds=[0]" ${STUDY_SET:-} >"$RES/${s}_latency.log" 2>&1
  say "$s latency: $(ls "$RES/${s}_latency"/runs/*/*.json 2>/dev/null | wc -l) run files"
done

tar czf "$OUTDIR/study.tgz" -C "$RES" --exclude=checkpoints . && say "packed $(du -h "$OUTDIR/study.tgz" | cut -f1)"
