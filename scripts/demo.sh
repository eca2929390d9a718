#!/usr/bin/env bash
# The main job, end to end and offline: install, index the sample photos and voice recordings with the
# bundled model, then find photos by voice and recordings by photo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/python scripts/demo.py "${SEARCHENGINE_DEMO_INDEX:-.demo-index}"
echo
echo "Next: .venv/bin/searchengine serve --index ${SEARCHENGINE_DEMO_INDEX:-.demo-index}   (then open http://127.0.0.1:8000/)"
