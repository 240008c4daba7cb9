#!/usr/bin/env bash
# Cross-compiles the C++ core and ggml for 64-bit Windows with Debian's mingw-w64 toolchain, so portability is
# checked here rather than first on a Windows CI runner. Not part of the test suite (it takes minutes).
#
# What it builds is what the Windows wheel builds, minus the pybind11 module (that needs Windows' Python
# headers and import library): ggml as DLLs with its CPU backend for every ISA level (CRISPMOSS_PORTABLE=ON),
# the whole core as the static library crispmoss_core, and crispmoss-tool.exe, which links every core object
# (so an unresolved symbol anywhere fails the link). Before compiling it checks that no file in cpp/ outside
# cpp/fuzz/ and cpp/platform/ includes a POSIX-only header or uses a GCC overflow builtin.
#
#   scripts/check_windows_build.sh                    # full check into build/windows (every CPU variant;
#                                                     # ~30-60 min on 2 busy cores, seconds when unchanged)
#   CPU_VARIANTS=one scripts/check_windows_build.sh   # one baseline CPU backend, build/windows-one: ~3 min
#
# Where wine is installed it also runs crispmoss-tool.exe: quantizing a small synthetic GGUF must give the same
# bytes as this machine's crispmoss (when importable), and a truncated file must be refused (SKIP_WINE=1: don't).
# Exit status: 0 when everything passed, non-zero on the first failure.
# Requires: g++-mingw-w64-x86-64 (x86_64-w64-mingw32-g++-posix), cmake, ninja; ggml/vendor (python ggml/fetch_ggml.py).
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=${JOBS:-2}
case "${CPU_VARIANTS:-all}" in
  all) variants=ON; BUILD=${BUILD:-build/windows} ;;
  one) variants=OFF; BUILD=${BUILD:-build/windows-one} ;;  # its own folder: no stale DLLs of the other kind
  *) echo "CPU_VARIANTS must be 'all' or 'one'" >&2; exit 2 ;;
esac

for tool in x86_64-w64-mingw32-g++-posix x86_64-w64-mingw32-gcc-posix cmake ninja; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install g++-mingw-w64-x86-64 cmake ninja-build)" >&2; exit 1; }
done
[ -f ggml/vendor/CMakeLists.txt ] || { echo "ggml/vendor is missing: run 'python ggml/fetch_ggml.py'" >&2; exit 1; }

echo "== portability rules (cpp/ outside fuzz/ and platform/)"
bad=$(grep -rnE '#include <(sys/[a-z_]+|unistd|fcntl|pthread|dlfcn)\.h>|__builtin_(mul|add|sub)_overflow|\bsysconf\b|\bmadvise\b|\bmmap\b' \
        --include='*.cpp' --include='*.h' cpp | grep -vE '^cpp/(fuzz|platform)/' || true)
if [ -n "$bad" ]; then
  echo "$bad" >&2
  echo "POSIX-only code outside cpp/platform/ (or a GCC builtin): use cpp/platform/ or cpp/checked.h" >&2
  exit 1
fi
echo "ok"

launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
echo "== configure ($BUILD, CPU variants: ${CPU_VARIANTS:-all})"
cmake -S . -B "$BUILD" -G Ninja \
  -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/mingw-w64-x86_64.cmake" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCRISPMOSS_PORTABLE=ON -DCRISPMOSS_CPU_VARIANTS=$variants -DCRISPMOSS_NATIVE=OFF \
  -DCRISPMOSS_TOOLS=ON -DCRISPMOSS_PYTHON=OFF "${launcher[@]}" >"$BUILD.configure.log" 2>&1 \
  || { tail -40 "$BUILD.configure.log" >&2; exit 1; }

echo "== build (crispmoss_core, crispmoss-tool.exe, ggml DLLs)"
cmake --build "$BUILD" --target crispmoss-tool -j "$JOBS"

# The wheel's layout: the executable (there: the extension) and every ggml DLL in one folder.
stage="$BUILD/stage"
rm -rf "$stage" && mkdir -p "$stage"
cp "$BUILD/crispmoss-tool.exe" "$BUILD"/bin/*.dll "$stage/"
exe="$stage/crispmoss-tool.exe"
file "$exe"
echo "DLLs: $(cd "$stage" && ls *.dll | tr '\n' ' ')"
echo "crispmoss-tool.exe imports: $(x86_64-w64-mingw32-objdump -p "$exe" | sed -n 's/^\s*DLL Name: //p' | sort | tr '\n' ' ')"

# Run it where wine is installed (apt-get install wine64): quantize a small synthetic model, compare the bytes
# with this machine's crispmoss when that is importable, and check that a truncated copy is refused.
wine=$(command -v wine || command -v wine64 || { [ -x /usr/lib/wine/wine64 ] && echo /usr/lib/wine/wine64; } || true)
if [ "${SKIP_WINE:-0}" = 1 ] || [ -z "$wine" ] || ! python -c "import gguf, numpy" 2>/dev/null; then
  echo "== not run (no wine, no python with gguf, or SKIP_WINE=1): built only"
else
  echo "== run under wine ($wine)"
  rt=$(dirname "$(x86_64-w64-mingw32-g++-posix -print-libgcc-file-name)")
  export WINEPATH="$rt;/usr/x86_64-w64-mingw32/lib" WINEDEBUG=-all
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python - "$tmp/in.gguf" <<'PY'
import sys, gguf, numpy as np
rng = np.random.default_rng(0)
w = gguf.GGUFWriter(sys.argv[1], "moss_transcribe")
w.add_tensor("enc.blk.0.attn.q.weight", rng.standard_normal((64, 256)).astype(np.float16))
w.add_tensor("llm.blk.0.ffn.up.weight", rng.standard_normal((512, 256)).astype(np.float32))
w.add_tensor("llm.blk.0.ffn.down.weight", rng.standard_normal((256, 288)).astype(np.float16))
w.add_tensor("llm.final_norm.weight", np.ones(256, np.float32))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
PY
  # ggml scores the CPU variants found next to the executable and loads the best one, as in the wheel.
  backends=$("$wine" "$exe" backends | tr -d '\r')
  echo "$backends"
  grep -q '^backend cpu$' <<<"$backends" || { echo "no CPU backend loaded" >&2; exit 1; }
  "$wine" "$exe" inspect "$tmp/in.gguf"
  for t in q8_0 q4_k f16; do
    "$wine" "$exe" quantize "$tmp/in.gguf" "$tmp/win.$t.gguf" $t 2
    if python -c "import crispmoss._core" 2>/dev/null; then
      python -c "import crispmoss, sys; crispmoss.quantize(sys.argv[1], sys.argv[2], sys.argv[3], progress=False)" \
        "$tmp/in.gguf" "$tmp/native.$t.gguf" $t
      cmp "$tmp/win.$t.gguf" "$tmp/native.$t.gguf"
      echo "$t: identical to this machine's crispmoss.quantize"
    fi
  done
  head -c 3000 "$tmp/in.gguf" >"$tmp/cut.gguf"
  if msg=$("$wine" "$exe" quantize "$tmp/cut.gguf" "$tmp/cut.q8_0.gguf" q8_0 2>&1); then
    echo "a truncated file was accepted" >&2
    exit 1
  fi
  case "$msg" in
    *"malformed GGUF file"*) echo "truncated input refused: ${msg##*: }" ;;
    *) echo "unexpected failure for a truncated file: $msg" >&2; exit 1 ;;
  esac
fi
echo "windows cross-compile check: OK"
