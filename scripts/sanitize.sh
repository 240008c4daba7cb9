#!/usr/bin/env bash
# Sanitizer runs of the Python extension (gcc's ASan+UBSan or TSan runtimes preloaded into Python).
#
#   scripts/sanitize.sh asan [pytest args...]   build/asan: ASan + UBSan build; runs the tiny-model tests
#   scripts/sanitize.sh tsan [pytest args...]   build/tsan: TSan build (ggml without OpenMP); runs the threaded
#                                               workload (4 Python threads x 2 sessions on one model), then tests
#
# Without pytest args each mode runs its default list (tests that use no PyTorch reference: an uninstrumented
# torch under a preloaded sanitizer runtime is slow and reports nothing about our code). The module is staged
# with the Python sources in build/<mode>/pkg, so the dev build in python/crispmoss is never touched.
# Suppressions (written below into build/<mode>/*.supp) list only reports from code that is not ours, each
# with its reason.
# Prints the build and run times; exits non-zero on any sanitizer report or test failure.
# Env: JOBS (build parallelism, default 2), TESTS (override the default test list).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
mode=${1:-}
shift || true
case "$mode" in
  asan) flag=CRISPMOSS_SANITIZE_ADDRESS; rt="libasan.so libubsan.so" ;;
  tsan) flag=CRISPMOSS_SANITIZE_THREAD; rt="libtsan.so" ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
B=build/$mode

t0=$(date +%s)
if [ ! -f $B/build.ninja ]; then
  cmake -S . -B $B -G Ninja -DCRISPMOSS_PYTHON=ON -D$flag=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_C_COMPILER=gcc -DCMAKE_CXX_COMPILER=g++ \
        -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" >/dev/null
fi
# Only errors: ggml's AVX-512 sources warn by the hundred under -O2 -g.
cmake --build $B --target _core -j "${JOBS:-2}" > $B/build.log 2>&1 || { grep -E -A5 'error|FAILED' $B/build.log; exit 1; }
t1=$(date +%s)

# Stage: the Python sources (links, so edits show) and this build's module.
PKG=$B/pkg/crispmoss
mkdir -p "$PKG"
find "$PKG" -maxdepth 1 -name '*.so' -delete
for f in python/crispmoss/*; do
  case "$f" in *.so) continue ;; esac
  ln -sfn "$ROOT/$f" "$PKG/$(basename "$f")"
done
cp -f $B/_core*.so "$PKG/"

# The interpreter itself: a launcher script (pyenv's shim is bash) would run under the runtime too, and bash
# under a preloaded TSan crashes.
PY=$(python -c 'import sys; print(sys.executable)')
preload=""
for lib in $rt; do preload="$preload $(gcc -print-file-name=$lib)"; done
export LD_PRELOAD="${preload# }"
export PYTHONPATH=$ROOT/$B/pkg CRISPMOSS_TEST_INSTALLED=1
SUPP=$ROOT/$B
cat > $SUPP/ubsan.supp <<'EOF'
# (none needed so far)
EOF
cat > $SUPP/tsan.supp <<'EOF'
# (none needed so far)
EOF
# Python and numpy are not built with ASan: leak checking would report the interpreter's own arenas.
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=0:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:suppressions=$SUPP/ubsan.supp
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$SUPP/tsan.supp:report_signal_unsafe=0
status=0

if [ "$mode" = tsan ]; then
  t2=$(date +%s)
  "$PY" - <<'EOF' || status=1
# 4 Python threads x 2 sessions each on one shared Model: concurrent set_audio (mel + encoder), generate with
# streaming callbacks, and tokenizer calls, all with the GIL released in the core.
import glob, os, sys, threading
import numpy as np
import crispmoss
from crispmoss.convert import convert
from crispmoss.testing import make_checkpoint

tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"), "crispmoss-tsan")
gguf = os.path.join(tmp, "moss_transcribe.gguf")
if not os.path.exists(gguf):
    hf = make_checkpoint("moss_transcribe", os.path.join(tmp, "hf"), seed=0, sizes="tiny")
    convert(hf, gguf, outtype="f16", progress=False)
m = crispmoss.Model(gguf, 2)
rng = np.random.default_rng(0)
clips = [(0.1 * rng.standard_normal(16000 * (1 + i % 3))).astype(np.float32) for i in range(8)]
errors = []

def work(t):
    try:
        sessions = [m.session(clips[2 * t]), m.session(clips[2 * t + 1])]
        for rnd in range(2):
            for s in sessions:
                pieces = []
                r = s.transcribe(max_new_tokens=6, callback=pieces.append)
                assert len(r.tokens) <= 6
                m.tokenize("hello <|im_end|> world %d" % t)
            sessions[rnd % 2]._set_samples(clips[(2 * t + 3) % 8])
    except BaseException as e:  # reported below
        errors.append(e)

threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
for th in threads: th.start()
for th in threads: th.join()
if errors:
    raise errors[0]
print("tsan workload: 4 threads x 2 sessions ok")
EOF
  echo "tsan workload: $(( $(date +%s) - t2 )) s"
fi

if [ $# -gt 0 ]; then
  args=("$@")
elif [ -n "${TESTS:-}" ]; then
  # shellcheck disable=SC2206
  args=($TESTS)
elif [ "$mode" = asan ]; then
  # Deselected: a load-time budget (ASan makes everything slower) and a child process started with a cleaned
  # environment (no LD_PRELOAD, so the ASan module cannot load in it).
  args=(tests/test_hostile_gguf.py tests/test_bad_audio.py tests/test_interrupt.py tests/test_tokenizer.py
        tests/test_audio.py tests/test_session.py tests/test_sampling.py tests/test_longform.py tests/test_threads.py
        tests/test_formats.py tests/test_cli.py tests/test_gemv.py
        --deselect tests/test_tokenizer.py::test_load_time
        --deselect tests/test_longform.py::test_ten_minutes_in_bounded_memory)
else
  args=(tests/test_threads.py tests/test_session.py tests/test_interrupt.py)
fi
t3=$(date +%s)
"$PY" -m pytest -q -p no:cacheprovider "${args[@]}" || status=1
t4=$(date +%s)
echo "sanitize.sh $mode: build $(( t1 - t0 )) s, tests $(( t4 - t3 )) s, status $status"
exit $status
