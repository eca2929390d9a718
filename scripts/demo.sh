#!/usr/bin/env bash
# The main job, end to end and offline: install, index the sample photos and voice recordings with the
# bundled model, then find photos by voice and recordings by photo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
INDEX=${SEARCHENGINE_DEMO_INDEX:-.demo-index}
se() { .venv/bin/searchengine "$@"; }

echo "== indexing samples/media (photos + spoken captions) with the bundled model"
se index samples/media --index "$INDEX" --bundle stamp-scenes-small

echo
echo "== voice query: samples/queries/voice-query.wav — $(.venv/bin/python -c \
  'import json; print(json.load(open("samples/queries/queries.json"))["voice-query.wav"]["text"])')"
se search --audio samples/queries/voice-query.wav --kind image -k 3 --index "$INDEX"

echo
echo "== image query: samples/queries/image-query.jpg — shows $(.venv/bin/python -c \
  'import json; print(", ".join(json.load(open("samples/queries/queries.json"))["image-query.jpg"]["shows"]))')"
se search --image samples/queries/image-query.jpg --kind audio -k 3 --index "$INDEX"

echo
echo "Next: .venv/bin/searchengine serve --index $INDEX   (then open http://127.0.0.1:8000/)"
