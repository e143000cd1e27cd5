#!/usr/bin/env bash
# The prepared GPU check (≤ 8 minutes on one GPU; nothing from the Hub): bf16 step time of AnchorGaussianRewardTrainer
# vs TRL's RewardTrainer, padding-free vs padded tokens/s, peak GPU memory, GRPO reward-function and best-of-N scoring
# throughput for Qwen2-style 0.5B and 1.5B models built from configs. Writes gpu_check.json and gpu_check.md.
#
#   bash benchmarks/gpu_check.sh [OUTPUT_DIR]            # default outputs/gpu_check
#   bash benchmarks/gpu_check.sh --smoke [OUTPUT_DIR]    # the same code on the CPU with tiny sizes
#
# PYTHON selects the interpreter (default: .venv/bin/python when present, else python).
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=()
if [[ "${1:-}" == "--smoke" ]]; then SMOKE=(--smoke); shift; fi
OUTPUT_DIR="${1:-outputs/gpu_check}"
PYTHON="${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python)}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUTPUT_DIR"
# 8-minute budget; a run cut short still leaves its log.
timeout 480 "$PYTHON" benchmarks/gpu_check.py --output_dir "$OUTPUT_DIR" "${SMOKE[@]}" 2>&1 | tee "$OUTPUT_DIR/gpu_check.log"
