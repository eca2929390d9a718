#!/usr/bin/env bash
# The recipe of the shipped bundle searchengine/bundled/stamp-scenes-small, end to end:
#   1. build the stamp-scenes world (seed 0, 6000 scenes, 40 objects, every voice; test voices and
#      test object combinations are never in train),
#   2. train the image/text towers on it from scratch (InfoNCE), then the speech encoder with the
#      towers frozen (--from-bundle): a pretrained Whisper encoder, frozen, whose features are cached
#      once, under two heads whose vectors are averaged (a 16-query attention pool + projection, and
#      the same 16 query means read as soft word tokens by a copy of the text tower), each aligned to
#      the images (InfoNCE) and distilled to the caption's text embedding; both runs resume from
#      checkpoint.pt if interrupted,
#   3. evaluate on the held-out test split (learned vs Whisper cascade vs text oracle),
#   4. copy the four bundle files into the package.
# The Whisper front end is not copied: it comes from a hash-pinned weight package
# (requirements/weights.txt).
#
# Usage: scripts/build_bundled_model.sh   (about 90 min on 2 CPU cores; the world is 12 min of it)
# Env:   PYTHON (default .venv/bin/python), WORK (default data), DEVICE (default: cuda if present),
#        FRONTEND (default base)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
WORK=${WORK:-data}
WORLD=$WORK/ss-s0-6000
TOWERS=$WORK/runs/towers
OUT=$WORK/runs/stamp-scenes-small
DEST=searchengine/bundled/stamp-scenes-small
DEVICE_ARGS=()
if [[ -n "${DEVICE:-}" ]]; then DEVICE_ARGS=(--device "$DEVICE"); fi

WORLD_ARGS=(--seed 0 --scenes 6000 --objects 40 --size 128 --fractions 0.9 0.05 0.05 --jobs 2)
TOWER_ARGS=(--seed 0 --epochs 30 --speech-epochs 0)
SPEECH_ARGS=(--seed 0 --frontend "${FRONTEND:-base}" --speech-epochs 20 --augment-copies 2 --pool attention+text --pool-queries 16
             --distill-weight 30 --name stamp-scenes-small)
se() { "$PYTHON" -m searchengine "$@"; }

if [[ ! -f "$WORLD/manifest.jsonl" ]]; then
  "$PYTHON" scripts/make_stamp_scenes.py --out "$WORLD" "${WORLD_ARGS[@]}" | tail -n 1 > "$WORLD.summary.json"
fi
mkdir -p "$WORK/runs"
se train "$WORLD/manifest.jsonl" --out "$TOWERS" "${TOWER_ARGS[@]}" "${DEVICE_ARGS[@]}" --json > "$TOWERS.train.json"
se train "$WORLD/manifest.jsonl" --out "$OUT" --from-bundle "$TOWERS" "${SPEECH_ARGS[@]}" "${DEVICE_ARGS[@]}" \
  --json > "$OUT.train.json"
se eval "$WORLD/manifest.jsonl" --bundle "$OUT" --split test "${DEVICE_ARGS[@]}" --json > "$OUT.eval-test.json"
se eval "$WORLD/manifest.jsonl" --bundle "$OUT" --split test "${DEVICE_ARGS[@]}"  # the table (transcripts cached)

mkdir -p "$DEST"
cp "$OUT"/bundle.json "$OUT"/clip.pt "$OUT"/speech.json "$OUT"/speech.pt "$DEST"/
ls -l "$DEST"
