#!/usr/bin/env bash
# libFuzzer runs of the loader, tokenizer and mel front end (cpp/fuzz), built with clang + ASan + UBSan.
#
#   scripts/fuzz.sh [--time SECONDS] [--runs N] [target ...]
#                   targets: gguf ggml_gguf tokenizer mel (default: all; ggml_gguf is ggml's reader alone)
#
# Builds build/fuzz (ggml and the core instrumented too, so coverage reaches ggml's gguf reader), writes seed
# corpora once (cpp/fuzz/make_seeds.py), keeps each target's growing corpus in build/fuzz/corpus/<target> and
# any crashing input in build/fuzz/artifacts/<target>/. Prints one line per target and exits 1 when a target
# crashed, leaked, timed out or ran out of memory. --time 60 (the default) is the CI smoke test; with both
# --time and --runs a target stops at whichever comes first.
# Env: CLANG (clang binary; default the newest clang-NN installed), JOBS (build parallelism, default 2),
#      FUZZ_FLAGS (extra libFuzzer flags, e.g. "-seed=1 -use_value_profile=1").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

mode=()
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --time) mode+=(-max_total_time="$2"); shift 2 ;;
    --runs) mode+=(-runs="$2"); shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -eq 0 ] && targets=(gguf ggml_gguf tokenizer mel)
[ ${#mode[@]} -eq 0 ] && mode=(-max_total_time=60)

if [ -z "${CLANG:-}" ]; then
  for v in 19 18 17 16 15 14 ""; do
    if command -v "clang${v:+-$v}" >/dev/null && command -v "clang++${v:+-$v}" >/dev/null; then
      CLANG="clang${v:+-$v}"; break
    fi
  done
fi
if [ -z "${CLANG:-}" ]; then
  echo "fuzz.sh: no clang found (Debian: apt-get install clang libclang-rt-dev)" >&2
  exit 2
fi
CLANGXX=${CLANG/clang/clang++}

B=build/fuzz
SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
if [ ! -f $B/build.ninja ]; then
  cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER="$CLANG" -DCMAKE_CXX_COMPILER="$CLANGXX" \
        -DCMAKE_C_FLAGS="$SAN" -DCMAKE_CXX_FLAGS="$SAN" -DCMAKE_C_FLAGS_RELEASE="-O1" -DCMAKE_CXX_FLAGS_RELEASE="-O1" \
        -DCRISPMOSS_FUZZ=ON -DGGML_OPENMP=OFF >/dev/null
fi
cmake --build $B --target $(printf 'fuzz_%s ' "${targets[@]}") -j "${JOBS:-2}" > $B/build.log 2>&1 ||
  { grep -E -A5 'error|FAILED' $B/build.log; exit 1; }

SEEDS=$B/seeds
if [ ! -f $SEEDS/vocab.gguf ]; then
  python cpp/fuzz/make_seeds.py $SEEDS >/dev/null
fi

export CRISPMOSS_FUZZ_VOCAB=$ROOT/$SEEDS/vocab.gguf
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
printf '%-10s %12s %8s %8s %8s\n' target executions crashes corpus seconds
for t in "${targets[@]}"; do
  corpus=$B/corpus/$t
  art=$B/artifacts/$t
  mkdir -p "$corpus" "$art"
  extra=()
  case $t in
    # Timeouts are generous: on a loaded 2-core machine a normal load once stalled for 20 s (not reproducible).
    gguf) extra=(-dict=$SEEDS/gguf.dict -max_len=65536 -timeout=60) ;;
    ggml_gguf) extra=(-dict=$SEEDS/gguf.dict -max_len=65536 -timeout=60) ;;
    tokenizer) extra=(-max_len=4096 -timeout=60) ;;
    mel) extra=(-max_len=16384 -timeout=60) ;;  # 4,096 float samples: the frame loop needs no more
  esac
  # Findings only: libFuzzer also writes slow-unit-* files, which are reports, not failures.
  findings() { ls "$art" | grep -cE '^(crash|leak|timeout|oom)-' || true; }
  before=$(findings)
  log=$B/fuzz_$t.log
  start=$(date +%s)
  set +e
  # shellcheck disable=SC2086
  seeds=$SEEDS/$t
  [ "$t" = ggml_gguf ] && seeds=$SEEDS/gguf
  $B/cpp/fuzz/fuzz_$t "${mode[@]}" "${extra[@]}" -rss_limit_mb=4096 -print_final_stats=1 \
      -artifact_prefix="$art/" ${FUZZ_FLAGS:-} "$corpus" "$seeds" >"$log" 2>&1
  rc=$?
  set -e
  secs=$(( $(date +%s) - start ))
  execs=$(grep -h 'stat::number_of_executed_units' "$log" | awk '{s += $2} END {print s + 0}')
  crashes=$(( $(findings) - before ))
  printf '%-10s %12s %8s %8s %8s\n' "$t" "$execs" "$crashes" "$(ls "$corpus" | wc -l)" "$secs"
  if [ $rc -ne 0 ] || [ $crashes -ne 0 ]; then
    status=1
    echo "  fuzz_$t failed (rc $rc); log: $log; inputs: $art/" >&2
    grep -m5 -E 'ERROR|SUMMARY|runtime error' "$log" >&2 || true
  fi
done
exit $status
