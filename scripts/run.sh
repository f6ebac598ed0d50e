#!/usr/bin/env bash
# The main job on the embedded defaults: set up, ingest a corpus, answer a sample question,
# then open the clinicians' chat (Streamlit, http://127.0.0.1:8501).
#   bash scripts/run.sh                      # pull a topic's abstracts live from PubMed
#   bash scripts/run.sh path/to/corpus.jsonl # or use local files (BEIR, PubMed XML, PMC, guidelines)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh ui
exec .venv/bin/evidex demo --chat "$@"
