"""The quick start's main job (scripts/demo.py) over the bundled model and the sample media."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE = str(Path(sys.executable).with_name("searchengine"))


def test_demo_answers_both_queries_and_reembeds_an_index_of_other_weights(tmp_path: Path) -> None:
    # An index built with other weights, as after an upgrade that ships a retrained bundle.
    other = tmp_path / "older-bundle"
    shutil.copytree(ROOT / "searchengine" / "bundled" / "stamp-scenes-small", other)
    (other / "NOTES").write_text("a different bundle fingerprint\n")
    index = tmp_path / "index"
    subprocess.run([ENGINE, "index", str(ROOT / "samples" / "media"), "--index", str(index), "--bundle", str(other)],
                   check=True, capture_output=True, timeout=600)
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), str(index)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "re-embedding everything" in done.stdout
    assert "added 48" in done.stdout
    assert done.stdout.count("samples/media/photos/") >= 3 and done.stdout.count('says: "') == 3
