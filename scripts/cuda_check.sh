#!/usr/bin/env bash
# CUDA checks for a machine with a GPU whose python3 already has torch with CUDA (fx-conform
# itself need not be installed): the cuda-marked tests, the conformance tests with the
# CPU-vs-CUDA oracle, and a short campaign on CUDA. Wheels in .whl/ (z3-solver, expecttest)
# are installed into a private directory first when present.
#   scripts/cuda_check.sh [OUTDIR] [CAMPAIGN_SECONDS]
set -uo pipefail
out="${1:-cuda-check}"
budget="${2:-150}"
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/fx-conform-site .whl/*.whl
  export PYTHONPATH="/tmp/fx-conform-site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
workers=$(( $(nproc) > 12 ? 12 : $(nproc) ))
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' | tee "$out/env.log"
start=$(date +%s)
python3 -m pytest -p conform.plugin -q -m cuda -n 4 tests/unit 2>&1 | tail -15 | tee "$out/cuda-tests.log"
echo "cuda tests: $(( $(date +%s) - start )) s" | tee -a "$out/cuda-tests.log"
start=$(date +%s)
python3 -m pytest -p conform.plugin -q -n "$workers" tests/conformance --conform-device all \
  --conform-report /tmp/fx-conform-pytest-report 2>&1 | tail -25 | tee "$out/conformance-tests.log"
echo "conformance tests: $(( $(date +%s) - start )) s" | tee -a "$out/conformance-tests.log"
cp /tmp/fx-conform-pytest-report/summary.json "$out/conformance-summary.json" 2>/dev/null
start=$(date +%s)
python3 -m conform.cli run --device cuda --budget "$budget" --workers "$workers" --report /tmp/fx-conform-cuda 2>&1 \
  | grep -v -i warn | tail -40 | tee "$out/campaign.log"
echo "campaign: $(( $(date +%s) - start )) s" | tee -a "$out/campaign.log"
cp /tmp/fx-conform-cuda/summary.json "$out/campaign-summary.json" 2>/dev/null
cp /tmp/fx-conform-cuda/index.html "$out/campaign-index.html" 2>/dev/null
