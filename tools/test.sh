#!/usr/bin/env bash
# Builds dsv2 (if needed) and runs the whole test suite with ctest.
# Usage: bash tools/test.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
if [[ ! -f "$BUILD/build.ninja" ]]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$BUILD"
ctest --test-dir "$BUILD" --output-on-failure -j2
