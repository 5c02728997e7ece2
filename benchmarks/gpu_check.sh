#!/usr/bin/env bash
# One prepared GPU check (about 5-8 minutes on an H100/H200-class card, no internet needed):
#  1. the paper-scale model step alone (ResNet-50 at 224 px + BERT-base, random weights, bf16,
#     channels_last) at batch 32, 128, 256: pairs/s and peak memory;
#  2. the kit's own path: rehearsal fixtures at real sizes in a temporary folder, then `fit` on the
#     CC3M copy (paper_rehearsal profile at 224 px, resnet50 + bert_base_random, bf16) at batch 32
#     and 128 for a fixed number of epochs (pairs/s, peak memory), then zero-shot evaluation on the
#     five Table 1 sets (seconds, images).
# Saves benchmarks/results/gpu_<card>.json (e.g. gpu_nvidia_h200.json) and prints it as the last line.
#   bash benchmarks/gpu_check.sh                 # on the GPU machine
#   bash benchmarks/gpu_check.sh --cpu-smoke     # tiny sizes on the CPU: tests the script's logic
# Not yet run on a GPU (see benchmarks/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec timeout 540 "$PY" benchmarks/gpu_check.py "$@"
