#!/usr/bin/env bash
# The GPU check for a machine with one NVIDIA GPU (written for an H100), in about 5 minutes:
#   1. build cord in Release with CUDA into build-gpu (or use a bundle from bench/gpu/bundle.sh)
#   2. the gpu tests (CPU-vs-GPU model equivalence in fp32 and bf16, KV cache, NCCL)
#   3. a tiny text + align + eval pipeline on the GPU (bf16 autocast), then the CORD distill stage
#   4. a CORD step of the gpu config (jobs/distill_gpu.toml): its time split per phase
#   5. the GPU benchmarks of the gpu config (bf16 GEMM peak, training step and its phases,
#      KV-cached decoding) and a profile of the training step's kernels
#   6. bench/gpu/summarize_gpu.py: tokens/s, MFU against the GEMM peak of the same run
# Everything (logs, JSON) goes to OUT. The script goes on after a failing step and exits
# non-zero at the end if any step failed.
# Usage: bench/gpu/run.sh [OUT]            (default: $OUT, else bench/gpu/out)
# Environment: CORD_GPU_BUNDLE=DIR uses prebuilt binaries and libraries instead of building;
#              CORD_GPU_NO_BENCH=1 stops after the pipeline (no benchmarks, no summary).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-${OUT:-bench/gpu/out}}
mkdir -p "$out"
failed=()
step() {  # step NAME SECONDS COMMAND...: runs with a time limit, logs to OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  echo "=== $name: $*" | tee -a "$out/run.log"
  local start=$SECONDS
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$out/$name.log"
  echo "=== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$out/run.log"
  [ $rc -eq 0 ] || failed+=("$name")
}

torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
site=$(dirname "$(dirname "$torch_lib")")
nvidia_libs=$(ls -d "$site"/nvidia/*/lib 2>/dev/null | tr '\n' ':')
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
nvidia-smi > "$out/nvidia-smi.txt" 2>&1

if [ -n "${CORD_GPU_BUNDLE:-}" ]; then
  bin=$CORD_GPU_BUNDLE/bin
  libs=$CORD_GPU_BUNDLE/lib
  ldconfig -p | grep -q "libmpi.so.40 " || libs=$libs:$CORD_GPU_BUNDLE/mpi-lib
  export LD_LIBRARY_PATH=$torch_lib:$nvidia_libs$libs:${LD_LIBRARY_PATH:-}
  corpus=$CORD_GPU_BUNDLE/corpus_tiny.h5
  tests=$bin/cord_gpu_tests
  bench=$bin/cord_gpu_bench
  ldd "$bin/cord" "$tests" "$bench" | grep "not found" > "$out/missing_libs.txt" && failed+=("libraries")
else
  step build 900 bash -c "cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)') > /dev/null \
    && cmake --build build-gpu -j $(nproc) --target cord cord_gpu_tests cord_gpu_bench"
  bin=build-gpu
  tests=build-gpu/tests/cord_gpu_tests
  bench=build-gpu/bench/cord_gpu_bench
  corpus=$out/corpus_tiny.h5
  step corpus 120 "$bin/cord" corpus synth --config jobs/pipeline_tiny.toml --out "$corpus"
fi

step info 60 "$bin/cord" info --set runtime.device=cuda
step gpu_tests 300 "$tests" --gtest_output="json:$out/gpu_tests.json"
run_dir=$out/pipeline
gpu_sets=(--config jobs/pipeline_tiny.toml --set runtime.device=cuda --set "train.corpus=$corpus"
          --set "train.run_dir=$run_dir")
step train_text 300 "$bin/cord" train "${gpu_sets[@]}" --set train.stage=text
step train_align 300 "$bin/cord" train "${gpu_sets[@]}" --set train.stage=align
step eval 120 "$bin/cord" eval "${gpu_sets[@]}" --out "$run_dir/eval"
step distill 300 "$bin/cord" train "${gpu_sets[@]}" --set train.stage=distill --set train.distill.steps=20 \
  --set train.distill.global_batch=16 --set cord.max_new_tokens=48 --set train.log_every=5 --set train.val_items=16
finish() {  # finish NOTE: the verdict, exit 1 when a step failed
  if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}" | tee -a "$out/run.log"
    exit 1
  fi
  echo "all steps passed$1" | tee -a "$out/run.log"
  exit 0
}
[ "${CORD_GPU_NO_BENCH:-0}" = 1 ] && finish " (benchmarks not run)"
# The CORD step at ~105M parameters: 2 text and 2 align steps make its starting weights.
for stage in text align distill; do
  step "cord_step_$stage" 240 "$bin/cord" train --config jobs/distill_gpu.toml --set "train.corpus=$corpus" \
    --set "train.run_dir=$out/cord_step" --set "train.stage=$stage"
done
step bench 420 "$bench" --job jobs/model_gpu.toml --benchmark_out="$out/gpu_bench.json" --benchmark_out_format=json
step profile 120 "$bench" --job jobs/model_gpu.toml --profile "$out"
step summary 60 python3 bench/gpu/summarize_gpu.py "$out"
finish ""
