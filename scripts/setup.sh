#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install evidex with the given extras, pinned through
# constraints.txt (torch==2.13.0, the CPU build). Re-running is cheap: nothing is reinstalled
# unless pyproject.toml, constraints.txt or the extras change.
#   EVIDEX_TORCH_INDEX=https://download.pytorch.org/whl/cpu  use PyTorch's CPU index, for
#   machines whose pip would otherwise download the multi-GB CUDA build of torch.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
py="${PYTHON:-python3}"
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "evidex needs Python 3.11 or newer: set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$py" -m venv .venv
stamp=".venv/.evidex-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)-${extras:-base}"
if [ ! -f "$stamp" ]; then
  pip_args=(-q --disable-pip-version-check -c constraints.txt)
  [ -n "${EVIDEX_TORCH_INDEX:-}" ] && pip_args+=(--extra-index-url "$EVIDEX_TORCH_INDEX")
  if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1 \
     && ! command -v clang++ >/dev/null 2>&1; then
    echo "evidex's embedded chat model needs llama-cpp-python, which pip builds from source:" >&2
    echo "install a C++ compiler first (Debian/Ubuntu: apt-get install build-essential cmake)" >&2
    exit 1
  fi
  echo "installing evidex${extras:+[$extras]} into .venv (the first run takes several minutes:" \
       "pip compiles llama-cpp-python)" >&2
  .venv/bin/python -m pip install "${pip_args[@]}" -e ".${extras:+[$extras]}"
  rm -f .venv/.evidex-*
  touch "$stamp"
fi
