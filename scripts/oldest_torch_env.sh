#!/usr/bin/env bash
# A virtual environment with the oldest torch/torchvision pair that pyproject.toml accepts,
# and the lock's version of every other package: the book and the tests must pass in it too.
#
#     scripts/oldest_torch_env.sh [VENV]        # default: .venv-oldest
#     . .venv-oldest/bin/activate && OMP_NUM_THREADS=2 pytest tests --nbval-lax book
#
# The pair is read from pyproject.toml's lower bounds (torch>=X, torchvision>=Y in the train
# extra). torch's own CUDA libraries (nvidia-*, triton) are left to pip, since they differ
# between torch releases.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv-oldest}

lower_bound() {  # the version after "$1>=" in pyproject.toml
  local found
  found=$(grep -oE "\"$1>=[0-9][0-9.]*" pyproject.toml | head -n 1 | cut -d '=' -f 2)
  if [[ -z "$found" ]]; then
    echo "error: pyproject.toml has no lower bound \"$1>=X\"; add one, then rerun $0" >&2
    exit 1
  fi
  echo "$found"
}
torch_version=$(lower_bound torch)
torchvision_version=$(lower_bound torchvision)

requirements=$(mktemp)
trap 'rm -f "$requirements"' EXIT
grep -vE '^(torch|torchvision|triton|nvidia-[a-z0-9-]+)==' requirements.txt > "$requirements"
echo "torch==$torch_version" >> "$requirements"
echo "torchvision==$torchvision_version" >> "$requirements"

python3 -m venv "$venv"
"$venv/bin/python" -m pip install -r "$requirements"
"$venv/bin/python" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
