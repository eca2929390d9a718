"""The quick-start queries over the sample media, through the `searchengine` command (run by demo.sh)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
ENGINE = str(Path(sys.executable).with_name("searchengine"))
BUNDLE_CHANGED = 3  # the CLI's exit code for an index built with other weights


def engine(*args: str, capture: bool = False) -> str:
    """Run one searchengine command; stop the demo if it fails."""
    done = subprocess.run([ENGINE, *args], check=True, text=True, stdout=subprocess.PIPE if capture else None)
    return done.stdout or ""


def index_samples(index: str) -> None:
    """Index the sample folder; a demo index left by an older bundle is re-embedded, not an error."""
    # --transcribe: Whisper writes down each recording beside the learned encoder (shown as "says:").
    args = ["index", str(SAMPLES / "media"), "--index", index, "--bundle", "stamp-scenes-small", "--transcribe"]
    done = subprocess.run([ENGINE, *args], text=True, stderr=subprocess.PIPE)
    if done.returncode == BUNDLE_CHANGED:
        print("   (the bundled model changed since this demo index was built: re-embedding everything)", flush=True)
        engine(*args, "--rebuild")
    elif done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(done.returncode)


def main(index: str) -> None:
    queries = json.loads((SAMPLES / "queries" / "queries.json").read_text())
    print("== indexing samples/media (photos + spoken captions) with the bundled model; Whisper writes down "
          "the recordings", flush=True)
    index_samples(index)
    voice = queries["voice-query.wav"]
    print(f'\n== voice → photos: samples/queries/voice-query.wav ({voice["voice"]}): "{voice["text"]}"', flush=True)
    engine("search", "--audio", str(SAMPLES / "queries" / "voice-query.wav"), "--kind", "image", "-k", "3", "--index", index)
    print(f"   (the photo it describes: samples/{voice['describes']})")
    image = queries["image-query.jpg"]
    print(f"\n== photo → recordings: samples/queries/image-query.jpg (shows {', '.join(image['shows'])})")
    hits = json.loads(engine("search", "--image", str(SAMPLES / "queries" / "image-query.jpg"), "--kind", "audio",
                             "-k", "3", "--index", index, "--json", capture=True))["hits"]
    for rank, hit in enumerate(hits, 1):
        said = f'says: "{hit["transcript"]}"' if hit.get("transcript") is not None else "(not written down)"
        print(f"{rank:>3}  {hit['score']:.3f}  {hit['path']}\n        {said}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT / ".demo-index"))
