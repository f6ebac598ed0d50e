#!/usr/bin/env bash
# Set up with the [dev] extra, then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# One command per line: with set -e, a failure inside an && list would not stop the script.
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy ingest retrieval planner answer ui rl_training
echo "== pytest"
# pytest exits 5 when it collects no test: that fails this script too.
.venv/bin/python -m pytest -p no:cacheprovider "$@"
