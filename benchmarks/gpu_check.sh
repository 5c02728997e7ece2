#!/usr/bin/env bash
# One prepared GPU check (<= 5 minutes on an H100/H200-class card): the paper-scale training step
# (ResNet-50 at 224 px + BERT-base, random weights, no download) in bf16 at batch 32, 128, 256;
# pairs/s against ~3,300 (realistic 1x H100) and 22 (the reference code); peak GPU memory.
# Prints one JSON line last and saves benchmarks/results/gpu_check.json.
#   bash benchmarks/gpu_check.sh                 # on the GPU machine
#   bash benchmarks/gpu_check.sh --cpu-smoke     # tiny sizes on the CPU: tests the script
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec timeout 300 "$PY" benchmarks/gpu_check.py "$@"
