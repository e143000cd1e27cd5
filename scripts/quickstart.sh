#!/usr/bin/env bash
# The main job on its embedded default, offline: creates .venv if needed, then trains BT / Gaussian /
# Gaussian+anchors on the packaged MiniLM and prints the comparison table. Arguments go to `trl-anchor quickstart`
# (e.g. `--data_dir ../shared/data/caption_contest` for the real crowd votes).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
scripts/setup-env.sh latest
exec .venv/bin/trl-anchor quickstart "$@"
