#!/usr/bin/env bash
# Run the whole test suite from a fresh clone: creates both environments, then
#   1. every test on the newest TRL (.venv), including the 2-process DeepSpeed ZeRO tests;
#   2. the trainer, model and PPO tests on TRL 1.12.0 (.venv-trl112), the last TRL with PPOTrainer.
# Extra arguments go to the first pytest run (e.g. `scripts/test.sh -k trainer`).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

scripts/setup-env.sh latest
scripts/setup-env.sh trl112

echo "== newest TRL: $(.venv/bin/python -c 'import trl; print(trl.__version__)')"
.venv/bin/python -m pytest tests "$@"

echo "== TRL $(.venv-trl112/bin/python -c 'import trl; print(trl.__version__)'): trainer, model, packing and PPO tests"
.venv-trl112/bin/python -m pytest tests/trainer tests/models tests/rewards/test_ppo.py
