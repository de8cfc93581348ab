#!/usr/bin/env bash
# Installs dsv2's build dependencies (Debian packages) and builds it into build/.
# Usage: bash tools/setup.sh [--no-apt]
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" != "--no-apt" ]]; then
  SUDO=""
  if [[ "$(id -u)" != 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends \
    build-essential cmake ninja-build ccache pkg-config \
    nlohmann-json3-dev libgtest-dev libgmock-dev libpcre2-dev libutf8proc-dev libopenblas-openmp-dev \
    libcpp-httplib-dev libhwy-dev libopenmpi-dev openmpi-bin libpng-dev >/dev/null
fi

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build
