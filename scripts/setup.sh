#!/usr/bin/env bash
# Installs whatever slak needs that is missing on a Debian 12 machine (run as root).
# Idempotent: a second run checks, finds everything, and returns in seconds.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Debian packages: the compiler stack, kernels backends, test tools and data.
packages=(
  build-essential cmake ninja-build ccache git pkg-config clang-format clang-22 libclang-rt-22-dev
  llvm-22-dev llvm-22-tools libmlir-22-dev mlir-22-tools
  pocl-opencl-icd ocl-icd-opencl-dev opencl-headers
  libhalide14-0-dev
  libsqlite3-dev sqlite3 libcli11-dev libgtest-dev libgmock-dev nlohmann-json3-dev libgloo-dev
  libpng-dev zlib1g-dev libzstd-dev libedit-dev libxml2-dev libcurl4-openssl-dev
  dataset-fashion-mnist python3-venv
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[setup] installing Debian packages: ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "[setup] error: missing packages (${missing[*]}) and not root; run this script as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Project-local Python environment: LibTorch comes from the torch wheel's cmake prefix.
torch_version="${SLAK_TORCH_VERSION:-2.11.0}"
venv="$root/.venv"
if [[ ! -x "$venv/bin/python" ]]; then
  echo "[setup] creating $venv"
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import torch,sys; sys.exit(0 if torch.__version__.startswith('$torch_version') else 1)" 2>/dev/null; then
  echo "[setup] installing torch==$torch_version into $venv (large download, once)"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q "torch==$torch_version" numpy
fi
# pytest runs the Python package's tests under ctest.
if ! "$venv/bin/python" -c "import pytest" 2>/dev/null; then
  echo "[setup] installing pytest into $venv"
  "$venv/bin/pip" install -q pytest
fi
echo "[setup] ok: $(ls /usr/lib/llvm-22/bin/mlir-opt >/dev/null && echo mlir-22) torch-$("$venv/bin/python" -c 'import torch;print(torch.__version__)')"
