#!/usr/bin/env bash
# GPU check, under 8 minutes: FL rounds/s on CUDA, sequential vs vectorized clients
# (federate.vectorize), at cohorts 10 and 100 of the bench_fl workload, with the ratios and their
# goals (>= 5x at cohort 10, >= 10x at cohort 100); then synthesis images/s and estimated MFU of
# an SD-2.1-sized UNet at 512^2 and SDXL's UNet at 1024^2, batch 16, 25 steps, bf16, random
# weights built from config (benchmarks/bench_denoiser.py; `--tiny --cpu` dry-runs it anywhere).
#
#   bash benchmarks/gpu_check.sh
#
# It needs torch with CUDA, numpy, tqdm and the project's pure-Python needs (pydantic, PyYAML).
# On a machine that has torch but not pydantic, bring wheels for its Python into .whl/ first
# (the versions setup.cfg pins), e.g. for Python 3.12:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --platform manylinux_2_17_x86_64 -d .whl pydantic==2.14.4 pydantic-core==2.50.5 \
#     annotated-types==0.8.0 typing-inspection==0.4.5
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=python3
[ -x .venv/bin/python ] && PYTHON=.venv/bin/python
if ! "$PYTHON" -c "import pydantic, yaml" 2>/dev/null; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "gpu_check: $PYTHON cannot import pydantic/yaml and .whl/ holds no wheels; see this script's header" >&2
    exit 2
  fi
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gptfl-site .whl/*.whl
  export PYTHONPATH=/tmp/gptfl-site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
PYTHONUNBUFFERED=1 timeout 290 "$PYTHON" benchmarks/bench_fl.py --gpu --rounds 10 --repeats 1
PYTHONUNBUFFERED=1 timeout 200 "$PYTHON" benchmarks/bench_denoiser.py --batch 16 --steps 25
