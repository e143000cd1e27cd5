#!/usr/bin/env bash
# Create (or reuse) a virtual environment with trl-anchor and its test dependencies, offline-capable after install.
#   scripts/setup-env.sh            -> .venv         newest TRL (the main environment)
#   scripts/setup-env.sh trl112     -> .venv-trl112  TRL 1.12.0, the last release with PPOTrainer
# Versions come from constraints/tested-*.txt; torch is the CPU build 2.13.0 (a plain `torch` could pull CUDA wheels).
set -euo pipefail
cd "$(dirname "$0")/.."

flavour="${1:-latest}"
case "$flavour" in
  latest) venv=.venv; pins=constraints/tested-latest.txt; extras="dev,deepspeed,peft,quickstart,eval" ;;
  trl112) venv=.venv-trl112; pins=constraints/tested-trl112.txt; extras="dev,deepspeed,peft,quickstart,eval" ;;
  *) echo "usage: $0 [latest|trl112]" >&2; exit 2 ;;
esac
python="${PYTHON:-python3}"

stamp="$venv/.trl-anchor-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt "$pins" ]; then
  exit 0
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "torch==2.13.0"
"$venv/bin/python" -m pip install --quiet -c "$pins" -e ".[${extras}]"
touch "$stamp"
