#!/usr/bin/env bash
# Install PyTorch without pulling a multi-GB CUDA build onto a machine that has no NVIDIA GPU.
#
#   PY=.venv/bin/python bash scripts/install_torch.sh
#   TORCH_SPEC="torch==2.13.0" PY=... bash scripts/install_torch.sh   # force a version or build
#
# Order: torch already importable -> nothing to do; TORCH_SPEC -> exactly that; an NVIDIA GPU
# or a non-Linux OS -> PyPI's default build (CUDA on Linux, CPU/MPS on macOS and Windows);
# Linux without a GPU -> a CPU wheel from a local wheelhouse (PIP_FIND_LINKS) if one is there,
# else from PyTorch's CPU index.
set -euo pipefail
PY=${PY:-python3}
pip_install() { "$PY" -m pip install --disable-pip-version-check "$@"; }

if "$PY" -c "import torch" 2>/dev/null; then
  echo "torch $("$PY" -c 'import torch; print(torch.__version__)') is already installed"
  exit 0
fi
if [ -n "${TORCH_SPEC:-}" ]; then
  pip_install "$TORCH_SPEC"
elif command -v nvidia-smi >/dev/null 2>&1 || [ "$(uname -s)" != "Linux" ]; then
  pip_install "torch>=2.4"
elif pip_install --no-index "torch>=2.4" 2>/dev/null; then
  echo "installed torch from the local wheelhouse"
else
  pip_install --index-url https://download.pytorch.org/whl/cpu "torch>=2.4"
fi
