#!/usr/bin/env bash
# Compile and link the CUDA build of crispmoss._core with the nvcc on this machine (no GPU needed, none used).
# It proves that CRISPMOSS_CUDA=ON configures, that ggml-cuda and our core compile for the chosen
# architectures, and that the extension links against the CUDA runtime and cuBLAS.
#
#   scripts/check_cuda_build.sh                 # CMAKE_CUDA_ARCHITECTURES=90 into build/cuda
#   CUDA_ARCHS="86;90" JOBS=2 scripts/check_cuda_build.sh
#
# ggml-cuda has >150 translation units of heavy templates: on a shared 2-core machine expect one to two hours
# for the first build (it runs under nice -n 19); later runs are incremental. Each run appends to build/cuda/build.log.
#
# Toolkits without cuBLAS (e.g. a pip-installed nvcc): the matching nvidia-cublas wheel is installed into
# build/cuda/deps and handed to CMake. Toolkits without the libcuda stub: the build uses GGML_CUDA_NO_VMM=ON
# (ggml then does not link the driver library directly; its pool falls back to cudaMalloc).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD_DIR:-build/cuda}
ARCHS=${CUDA_ARCHS:-90}
JOBS=${JOBS:-2}
mkdir -p "$BUILD"
LOG=$BUILD/build.log
# Appended, so the first (long) build's timing survives incremental re-runs.
say() { echo "$*" | tee -a "$LOG"; }

NVCC=${NVCC:-$(command -v nvcc || true)}
[ -n "$NVCC" ] || { echo "check_cuda_build: no nvcc on PATH (set NVCC=...)" >&2; exit 2; }
# nvcc may be a wrapper script; its dry run names the real toolkit directory.
CUDA_HOME=${CUDA_HOME:-$("$NVCC" --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1)}
CUDA_HOME=$(cd "$CUDA_HOME" && pwd -P)
[ -x "$CUDA_HOME/bin/nvcc" ] || { echo "check_cuda_build: no toolkit at $CUDA_HOME" >&2; exit 2; }
CUDA_VER=$("$CUDA_HOME/bin/nvcc" --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')
CUDA_MAJOR=${CUDA_VER%%.*}
say "== check_cuda_build $(date -u +%FT%TZ)"
say "nvcc: $CUDA_HOME/bin/nvcc (CUDA $CUDA_VER)"
"$CUDA_HOME/bin/nvcc" --version | tee -a "$LOG"
say "CMAKE_CUDA_ARCHITECTURES=$ARCHS  jobs=$JOBS  host: $(nproc) cores, $(c++ --version | head -1)"

EXTRA=()
if [ ! -f "$CUDA_HOME/include/cublas_v2.h" ]; then
  DEPS=$ROOT/$BUILD/deps
  if [ "$CUDA_MAJOR" -ge 13 ]; then PKG="nvidia-cublas>=$CUDA_VER,<$CUDA_MAJOR.$(( ${CUDA_VER#*.} + 1 ))"
  else PKG="nvidia-cublas-cu$CUDA_MAJOR>=$CUDA_VER,<$CUDA_MAJOR.$(( ${CUDA_VER#*.} + 1 ))"; fi
  if ! ls "$DEPS"/nvidia/*/include/cublas_v2.h >/dev/null 2>&1; then
    say "toolkit has no cuBLAS: installing '$PKG' into $DEPS"
    python -m pip install -q --no-deps --target "$DEPS" "$PKG" 2>&1 | tee -a "$LOG"
  fi
  CUBLAS_INC=$(dirname "$(ls "$DEPS"/nvidia/*/include/cublas_v2.h | head -1)")
  CUBLAS_LIB=$(cd "$CUBLAS_INC/../lib" && pwd)
  say "cuBLAS from wheel: $CUBLAS_INC, $CUBLAS_LIB"
  EXTRA+=("-DCUDA_cublas_LIBRARY=$(ls "$CUBLAS_LIB"/libcublas.so.* | head -1)"
          "-DCUDA_cublasLt_LIBRARY=$(ls "$CUBLAS_LIB"/libcublasLt.so.* | head -1)"
          "-DCMAKE_CUDA_FLAGS=-I$CUBLAS_INC")
fi
if ! ls "$CUDA_HOME"/lib*/stubs/libcuda.so "$CUDA_HOME"/targets/*/lib/stubs/libcuda.so >/dev/null 2>&1 \
   && ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so '; then
  say "no libcuda (driver) stub in the toolkit: GGML_CUDA_NO_VMM=ON"
  EXTRA+=("-DGGML_CUDA_NO_VMM=ON")
fi

start=$(date +%s)
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCRISPMOSS_PYTHON=ON \
      -DCRISPMOSS_CUDA=ON -DCRISPMOSS_NATIVE=OFF \
      -DCMAKE_CUDA_COMPILER="$CUDA_HOME/bin/nvcc" -DCUDAToolkit_ROOT="$CUDA_HOME" \
      -DCMAKE_CUDA_ARCHITECTURES="$ARCHS" \
      -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
      "${EXTRA[@]}" 2>&1 | tee -a "$LOG"
nice -n 19 cmake --build "$BUILD" --target _core -j "$JOBS" 2>&1 | tee -a "$LOG"
end=$(date +%s)

SO=$(ls "$BUILD"/_core*.so | head -1)
say "built $SO in $(( end - start )) s"
say "dynamic dependencies:"; readelf -d "$SO" | grep NEEDED | tee -a "$LOG"
# Into files first: grep -q closing a pipe early would fail the pipeline under pipefail.
readelf -d "$SO" >"$BUILD/needed.txt"
grep -q 'NEEDED.*libcudart' "$BUILD/needed.txt" || { say "FAIL: _core does not link the CUDA runtime"; exit 1; }
grep -q 'NEEDED.*libcublas' "$BUILD/needed.txt" || { say "FAIL: _core does not link cuBLAS"; exit 1; }
# The Python module is stripped (pybind11 does so in Release): count the kernels in ggml-cuda's archive, and
# prove the backend is registered by importing the module. Without a GPU (or driver) it must load, list
# "cuda" among the compiled backends with no CUDA device, and leave everything to the CPU.
nm -C "$BUILD/ggml/src/ggml-cuda/libggml-cuda.a" 2>/dev/null >"$BUILD/symbols.txt" || true
say "ggml-cuda archive: $(grep -c ' T .*_kernel\|__device_stub' "$BUILD/symbols.txt" || true) kernel entry points"
PKG=$BUILD/pkg
rm -rf "$PKG" && mkdir -p "$PKG" && cp -r python/crispmoss "$PKG/" && rm -f "$PKG"/crispmoss/_core*.so
cp "$SO" "$PKG/crispmoss/"
if ! (cd /tmp && CRISPMOSS_TEST_INSTALLED=1 PYTHONPATH="$ROOT/$PKG" python -c '
import crispmoss
i = crispmoss.system_info()
print("system_info:", i["backends"], [(d["backend"], d["description"]) for d in i["devices"]])
assert crispmoss.__file__.startswith("'"$ROOT/$PKG"'"), crispmoss.__file__
assert "cuda" in i["backends"], "the CUDA backend is not compiled in"
') 2>&1 | tee -a "$LOG"; then
  say "FAIL: the CUDA build does not import, or has no CUDA backend"; exit 1
fi
say "import check: $PKG (run the suite on it: CRISPMOSS_TEST_INSTALLED=1 PYTHONPATH=$PKG pytest tests)"
# Every architecture asked for: in the fat binaries (cuobjdump, where the toolkit has it), else in the
# nvcc rules that built the objects (fatbins are compressed, so their bytes cannot be searched).
for a in ${ARCHS//;/ }; do
  a=${a%%-*}
  if [ -x "$CUDA_HOME/bin/cuobjdump" ]; then
    "$CUDA_HOME/bin/cuobjdump" --list-elf "$SO" | grep -q "sm_$a" || { say "FAIL: no sm_$a code in $SO"; exit 1; }
  else
    n=$(grep -c "arch=compute_$a,code=" "$BUILD/build.ninja" || true)
    [ "$n" -gt 0 ] || { say "FAIL: nothing compiled for sm_$a"; exit 1; }
    say "sm_$a: $n nvcc rules generate code for it (no cuobjdump in this toolkit)"
  fi
done
say "size of $SO: $(du -h "$SO" | cut -f1)"
say "OK: CUDA build of crispmoss._core compiled and linked (archs $ARCHS, CUDA $CUDA_VER)"
