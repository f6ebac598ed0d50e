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
# Two workers (EVIDEX_TEST_WORKERS), each test file on one worker (its module fixtures built
# once): the suite waits on subprocesses, servers and the browser as much as it computes.
workers="${EVIDEX_TEST_WORKERS:-2}"
if [ "$workers" -gt 1 ] && .venv/bin/python -c "import xdist" 2>/dev/null; then
  set -- -n "$workers" --dist loadfile "$@"
fi
.venv/bin/python -m pytest -p no:cacheprovider "$@"
