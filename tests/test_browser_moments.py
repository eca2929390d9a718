"""The page's player for a long recording: it starts at the matching moment and the waveform shows its range.

Reuses the browser and server fixtures of test_browser.py over a library of its own: a photo, a short
recording, and a 45-s memo whose only speech is at 30 s, so its one moment is known.
"""

from __future__ import annotations

import pytest

from media_factory import tone, write_wav
from searchengine import open_index
from searchengine.cli.library import clock
from speech_factory import long_recording
from test_browser import CHROMIUM, browser, draw_scene, page, server, wait_for_search  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser

if not CHROMIUM.exists():
    pytest.skip("/usr/bin/chromium is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_bundle) -> dict:
    """The fixtures' library: photos/, voice/apple.wav (the fake microphone's) and a long memo."""
    base = tmp_path_factory.mktemp("browser_moments")
    root = base / "media"
    draw_scene(root / "photos" / "beach.png", "beach")
    write_wav(root / "voice" / "apple.wav", tone(4, 2.0))
    samples, truth = long_recording([(30.0, "Two ducks swim on a quiet lake at sunset.")], tail=12.0)
    write_wav(root / "voice" / "memo.wav", samples)
    with open_index(base / "index", tiny_bundle) as idx:
        idx.index([root])
        memo = idx.metadata.content_id(_digest(root / "voice" / "memo.wav"), "audio")
        moments = idx.metadata.moments.of_content(memo)
    assert len(moments) == 1 and abs(moments[0].start - truth[0][0]) < 0.5
    return {"root": root, "index": base / "index", "log": base / "server.log", "moment": moments[0],
            "duration": samples.size / 16_000}


def _digest(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_player_starts_at_the_moment_and_the_waveform_shows_it(page, library):
    moment, memo = library["moment"], library["root"] / "voice" / "memo.wav"
    page.click("label[for=kind-audio]")
    page.set_input_files("#image-input", str(library["root"] / "photos" / "beach.png"))
    cards = wait_for_search(page, 1)
    card = next(c for c in cards if c["path"] == str(memo))
    assert (float(card["start"]), float(card["end"])) == pytest.approx((moment.start, moment.end))
    selector = f".card[data-id='{card['id']}']"
    assert page.locator(f"{selector} .moment").text_content() == f"{clock(moment.start)}–{clock(moment.end)}"
    page.eval_on_selector(f"{selector} audio", "a => a.load()")
    page.wait_for_function(f"document.querySelector(\"{selector} audio\").readyState >= 1", timeout=15_000)
    now = page.eval_on_selector(f"{selector} audio", "a => a.currentTime")
    assert now == pytest.approx(moment.start, abs=0.3)  # seeked into the middle of the file
    page.wait_for_function(f"document.querySelector(\"{selector} canvas\").dataset.rangeFrom !== undefined")
    span = page.eval_on_selector(f"{selector} canvas", "c => [+c.dataset.rangeFrom, +c.dataset.rangeTo]")
    duration = library["duration"]
    assert span == pytest.approx([moment.start / duration, moment.end / duration], abs=0.01)
    short = next(c for c in cards if c["path"].endswith("apple.wav"))
    assert float(short["start"]) == 0.0  # a short recording plays from its beginning
