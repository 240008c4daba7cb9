#!/usr/bin/env bash
# Incremental developer build: compiles crispmoss._core into build/dev and drops the module next to the
# Python sources, so `PYTHONPATH=python pytest` runs the working tree. Builds are serialised with a lock
# because several people may share one checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 9>/tmp/crispmoss-dev-build.lock
flock 9
if [ ! -f build/dev/build.ninja ]; then
  cmake -S . -B build/dev -G Ninja -DCRISPMOSS_PYTHON=ON -DCMAKE_BUILD_TYPE=Release \
        -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" >/dev/null
fi
cmake --build build/dev --target _core -j "${JOBS:-2}"
# Replace the module by rename, never in place: processes that have it loaded keep their (old) inode.
for so in build/dev/_core*.so; do
  cp -f "$so" "python/crispmoss/.$(basename "$so").tmp"
  mv -f "python/crispmoss/.$(basename "$so").tmp" "python/crispmoss/$(basename "$so")"
done
