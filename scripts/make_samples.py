"""Build the small sample media folder used by the quick start (deterministic from a seed).

samples/media/photos/*.jpg and samples/media/recordings/*.wav: stamp scenes and one spoken caption each
(the recording describes the photo of the same number). samples/queries/: a voice query (another voice
describing one of the indexed photos; the clip itself is not indexed) and an image query (a scene that
is not indexed). The vocabulary matches the bundled model's (same --objects / --object-seed).

    python scripts/make_samples.py [--out samples] [--seed 101]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from stampscenes.build import BuildConfig, build  # installed by scripts/setup.sh --dev (pip install -e scripts)
from stampscenes.voices import all_voices, synthesize

ROOT = Path(__file__).resolve().parents[1]
QUERY_VOICE = "festival:cmu_us_slt_arctic_hts"


def build_world(out: Path, args: argparse.Namespace) -> list[dict]:
    """Run the stamp-scenes builder and return its manifest lines."""
    build(BuildConfig(out=out, seed=args.seed, scenes=args.scenes + 1, objects=args.objects,
                      object_seed=args.object_seed, size=args.size, captions_per_image=2, jobs=2))
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def by_image(lines: list[dict]) -> dict[str, list[dict]]:
    """Manifest lines grouped by image, in file order."""
    groups: dict[str, list[dict]] = {}
    for line in lines:
        groups.setdefault(line["image"], []).append(line)
    return groups


def copy_media(world: Path, groups: dict[str, list[dict]], out: Path) -> list[dict]:
    """Photo + first spoken caption per indexed scene; returns the samples' own manifest."""
    manifest = []
    for number, (image, captions) in enumerate(groups.items(), 1):
        photo, recording = f"photos/scene-{number:02d}.jpg", f"recordings/scene-{number:02d}.wav"
        for src, dst in ((image, photo), (captions[0]["audio"], recording)):
            (out / "media" / dst).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(world / src, out / "media" / dst)
        manifest.append({"image": photo, "audio": recording, "text": captions[0]["text"],
                         "voice": captions[0]["voice"], "split": "test"})
    return manifest


def write_queries(world: Path, groups: dict[str, list[dict]], held_out: list[dict], out: Path) -> dict:
    """The voice query describes indexed scene 3 in a voice the bundled model never trained on (festival
    slt); the image query is a scene that is not indexed."""
    queries = out / "queries"
    queries.mkdir(parents=True, exist_ok=True)
    spoken = list(groups.values())[2][1]
    voice = next(v for v in all_voices() if v.id == QUERY_VOICE)
    synthesize(voice, spoken["text"], queries / "voice-query.wav")
    shutil.copy(world / held_out[0]["image"], queries / "image-query.jpg")
    info = {"voice-query.wav": {"text": spoken["text"], "voice": voice.id, "describes": "media/photos/scene-03.jpg"},
            "image-query.jpg": {"shows": held_out[0]["objects"], "caption": held_out[0]["text"]}}
    (queries / "queries.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "samples")
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--objects", type=int, default=40)
    parser.add_argument("--object-seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        groups = by_image(build_world(Path(tmp), args))
        held_out = groups.pop(list(groups)[-1])
        shutil.rmtree(args.out, ignore_errors=True)
        manifest = copy_media(Path(tmp), groups, args.out)
        (args.out / "media" / "manifest.jsonl").write_text("".join(json.dumps(m) + "\n" for m in manifest))
        print(json.dumps(write_queries(Path(tmp), groups, held_out, args.out), indent=2))


if __name__ == "__main__":
    main()
