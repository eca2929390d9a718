"""The real page in headless Chromium against the real server (a subprocess) and a fake microphone."""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from media_factory import tone, write_wav
from searchengine import open_index
from searchengine.media import SAMPLE_RATE, load_audio

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ESPEAK = Path("/usr/bin/espeak-ng")
REPO = Path(__file__).resolve().parents[1]
TOKEN = "browser-test-token"
RECORD_SECONDS = 2.8
# The tiny random speech encoder mostly hears a clip's length, so the recordings differ strongly in
# length; the fake microphone plays voice/apple.wav (3.0 s) and the page records ~RECORD_SECONDS of it.
RECORDINGS = {  # name: (spoken text, seconds, how to fit the speech to that length)
    "city": ("city lights at night", 1.0, "pad"),
    "apple": ("a red apple on a wooden table", 3.0, "pad"),
    "dog": ("a brown dog running on the beach", 7.0, "repeat"),
    "forest": ("tall green trees in a quiet forest", 12.0, "repeat"),
}
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-quic",
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]

if not CHROMIUM.exists():
    pytest.skip("/usr/bin/chromium is not installed", allow_module_level=True)


# ------------------------------------------------------------------ media

def _apple(d: ImageDraw.ImageDraw) -> None:
    d.rectangle((0, 0, 320, 240), fill=(176, 122, 78))
    d.rectangle((0, 170, 320, 240), fill=(140, 92, 55))
    d.ellipse((105, 60, 215, 170), fill=(206, 32, 41))
    d.polygon([(160, 62), (185, 30), (192, 40)], fill=(60, 150, 60))


def _beach(d: ImageDraw.ImageDraw) -> None:
    d.rectangle((0, 0, 320, 130), fill=(120, 190, 240))
    d.rectangle((0, 130, 320, 170), fill=(30, 110, 180))
    d.rectangle((0, 170, 320, 240), fill=(238, 214, 160))
    d.ellipse((235, 25, 285, 75), fill=(255, 215, 70))


def _city(d: ImageDraw.ImageDraw) -> None:
    d.rectangle((0, 0, 320, 240), fill=(18, 22, 52))
    for i, (w, h) in enumerate([(50, 150), (60, 190), (45, 120), (70, 170), (55, 140)]):
        x = 8 + i * 62
        d.rectangle((x, 240 - h, x + w, 240), fill=(40, 44, 80))
        for wy in range(250 - h, 230, 18):
            d.rectangle((x + 8, wy, x + 16, wy + 8), fill=(250, 210, 90))


def _forest(d: ImageDraw.ImageDraw) -> None:
    d.rectangle((0, 0, 320, 240), fill=(205, 230, 245))
    for x in range(-20, 340, 55):
        d.polygon([(x, 220), (x + 30, 60), (x + 60, 220)], fill=(34, 120, 60))
    d.rectangle((0, 215, 320, 240), fill=(90, 70, 40))


SCENES = {"apple": _apple, "beach": _beach, "city": _city, "forest": _forest}


def draw_scene(path: Path, name: str) -> Path:
    """A simple recognisable picture (nicer in the screenshot than noise)."""
    img = Image.new("RGB", (320, 240))
    SCENES[name](ImageDraw.Draw(img))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def speech(text: str, seconds: float, fit: str, seed: int, tmp: Path) -> np.ndarray:
    """`text` spoken by espeak-ng (a tone chord without it) at 16 kHz, padded or repeated to `seconds`."""
    if ESPEAK.exists():
        raw = tmp / f"espeak-{seed}.wav"
        subprocess.run([str(ESPEAK), "-w", str(raw), text], check=True, capture_output=True)
        voice = load_audio(raw).samples
    else:
        voice = tone(seed, min(seconds, 2.0))
    n = int(seconds * SAMPLE_RATE)
    if fit == "repeat":
        gap = np.zeros(SAMPLE_RATE // 4, np.float32)
        voice = np.tile(np.concatenate([voice, gap]), n // (voice.size + gap.size) + 1)
    out = np.zeros(n, np.float32)
    out[: min(n, voice.size)] = voice[:n]
    return 0.9 * out / max(1e-6, float(np.abs(out).max()))


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_bundle) -> dict:
    """Four pictures and four spoken recordings of different lengths, indexed with the tiny bundle."""
    base = tmp_path_factory.mktemp("browser")
    root = base / "media"
    for name in SCENES:
        draw_scene(root / "photos" / f"{name}.png", name)
    for seed, (name, (text, seconds, fit)) in enumerate(RECORDINGS.items()):
        write_wav(root / "voice" / f"{name}.wav", speech(text, seconds, fit, seed, base))
    with open_index(base / "index", tiny_bundle) as idx:
        report = idx.index([root])
    assert report.added == 8 and not report.skipped
    return {"root": root, "index": base / "index", "log": base / "server.log"}


# ------------------------------------------------------------------ server and browser

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_command() -> list[str]:
    """`python -m searchengine serve`, or the command object directly until cli.py registers it."""
    from searchengine.cli import cli

    if "serve" in cli.commands:
        return [sys.executable, "-m", "searchengine", "serve"]
    return [sys.executable, "-c", "from searchengine.server.command import serve_cmd; serve_cmd()"]


def wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}api/status?token={TOKEN}", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"server did not answer within {timeout} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(library):
    """The base URL of `searchengine serve` running over the library's index."""
    port = free_port()
    cmd = serve_command() + ["--index", str(library["index"]), "--port", str(port), "--token", TOKEN, "--device", "cpu"]
    with open(library["log"], "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(url, proc, library["log"])
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(library):
    """Chromium whose fake microphone plays one indexed recording once."""
    from playwright.sync_api import sync_playwright

    mic = library["root"] / "voice" / "apple.wav"
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, viewport={"width": 1280, "height": 900},
            args=CHROME_FLAGS + [f"--use-file-for-fake-audio-capture={mic}%noloop"])
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser, server):
    """A fresh tab on the search page, with the token in its URL."""
    tab = browser.new_page()
    uncaught = []
    tab.on("pageerror", lambda exc: uncaught.append(exc))
    tab.goto(f"{server}?token={TOKEN}")
    tab.wait_for_function("document.getElementById('index-status').textContent.includes('photos')")
    yield tab
    tab.close()
    assert not uncaught, f"uncaught errors in the page: {uncaught}"


def wait_for_search(page, count: int) -> dict:
    """Wait until the page finished its `count`-th search; returns the cards' data."""
    page.wait_for_function(f"document.getElementById('results').dataset.searchCount === '{count}'", timeout=30_000)
    tone_ = page.get_attribute("#status", "data-tone")
    assert tone_ == "ok", page.text_content("#status")
    return page.eval_on_selector_all(".card", "cards => cards.map(c => ({...c.dataset}))")


def screenshot(page, *names: str) -> None:
    """Full-page PNGs under the repository root, once the cards finished fading in."""
    page.wait_for_function("document.getAnimations().every(a => a.playState !== 'running')")
    for name in names:
        target = REPO / name
        target.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target), full_page=True)


# ------------------------------------------------------------------ the checks

def test_image_upload_shows_image_and_recording_cards(page, library):
    photo = library["root"] / "photos" / "apple.png"
    page.set_input_files("#image-input", str(photo))
    cards = wait_for_search(page, 1)
    kinds = [c["kind"] for c in cards]
    assert "image" in kinds and "audio" in kinds  # kind "both" is the default
    assert cards[0]["path"] == str(photo) and float(cards[0]["cosine"]) > 0.999 and cards[0]["isQuery"] == "true"
    assert page.locator(".card-query .query-badge").count() == 1  # the query itself, marked
    page.wait_for_function("[...document.querySelectorAll('.card-image img')].every(i => i.complete && i.naturalWidth > 0)")
    page.wait_for_function("[...document.querySelectorAll('.card-audio canvas')].every(c => c.dataset.drawn)")
    assert page.locator(".card-audio audio").count() == kinds.count("audio")
    assert page.locator("#query-preview img").count() == 1
    screenshot(page, "test-artifacts/browser-results.png")


def test_recording_from_the_microphone_finds_that_recording(page, library):
    mic = library["root"] / "voice" / "apple.wav"
    page.click("label[for=kind-audio]")
    page.click("#record")
    page.wait_for_selector("#record[aria-pressed=true]")
    page.wait_for_timeout(RECORD_SECONDS * 1000)
    page.click("#record")
    page.wait_for_function("document.body.dataset.lastPeak !== undefined")
    body = page.eval_on_selector("body", "b => ({...b.dataset})")
    # A fake-capture file Chromium cannot read records zeros without any error: check the upload.
    assert float(body["lastPeak"]) > 0.1, f"the fake microphone recorded silence (is {mic} readable?): {body}"
    assert int(body["lastUploadBytes"]) > 2000 and body["lastUploadType"].startswith("audio/webm"), body
    cards = wait_for_search(page, 1)
    print("microphone query scores:", [(Path(c["path"]).name, c["score"]) for c in cards])
    assert all(c["kind"] == "audio" for c in cards) and len(cards) == 4
    assert cards[0]["path"] == str(mic)
    assert float(cards[0]["score"]) > float(cards[1]["score"])
    assert page.locator("#query-preview audio").count() == 1
    screenshot(page, "test-artifacts/browser-recording.png")


def test_text_search_renders_cards(page):
    page.fill("#text-input", "a red apple")
    page.press("#text-input", "Enter")
    cards = wait_for_search(page, 1)
    assert len(cards) == 8
    assert page.locator(".card .score").count() == 8
    assert "a red apple" in page.text_content("#query-preview")


def test_clicking_a_result_searches_with_it(page, library):
    page.fill("#text-input", "a beach")
    page.press("#text-input", "Enter")
    cards = wait_for_search(page, 1)
    first_image = next(c for c in cards if c["kind"] == "image")
    page.click(f".card[data-id='{first_image['id']}'] .card-hit")
    cards = wait_for_search(page, 2)
    assert cards[0]["path"] == first_image["path"] and float(cards[0]["cosine"]) > 0.999
    # a recording asks for the photos it describes
    recording = next(c for c in cards if c["kind"] == "audio")
    page.click(f".card[data-id='{recording['id']}'] .card-hit")
    cards = wait_for_search(page, 3)
    assert cards and all(c["kind"] == "image" for c in cards)
    assert "recording" in page.text_content("#status")


DROP_OR_PASTE = """async ([event, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], "beach.png", { type: "image/png" }));
  const init = { bubbles: true, cancelable: true };
  const e = event === "drop" ? new DragEvent("drop", { ...init, dataTransfer: data })
                             : new ClipboardEvent("paste", { ...init, clipboardData: data });
  (event === "drop" ? document.getElementById("drop-zone") : document).dispatchEvent(e);
}"""


@pytest.mark.parametrize("event", ["drop", "paste"])
def test_dropped_or_pasted_image_searches(page, library, event):
    photo = library["root"] / "photos" / "beach.png"
    page.evaluate(DROP_OR_PASTE, [event, base64.b64encode(photo.read_bytes()).decode()])
    cards = wait_for_search(page, 1)
    assert cards[0]["path"] == str(photo)


def test_page_without_token_says_so(browser, server):
    tab = browser.new_page()
    try:
        tab.goto(server)
        tab.wait_for_function("document.getElementById('index-status').dataset.tone === 'error'")
        assert "token" in tab.text_content("#index-status")
        tab.fill("#text-input", "dog")
        tab.press("#text-input", "Enter")
        tab.wait_for_function("document.getElementById('status').dataset.tone === 'error'")
        assert "token" in tab.text_content("#status")
    finally:
        tab.close()


def test_bad_upload_shows_a_clear_error(page, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_bytes(b"this is not really a picture\n")
    page.set_input_files("#image-input", str(notes))
    page.wait_for_function("document.getElementById('results').dataset.searchCount === '1'")
    assert page.get_attribute("#status", "data-tone") == "error"
    assert "text file" in page.text_content("#status")
    assert "busy" not in page.eval_on_selector("body", "b => b.className")


# ------------------------------------------------------------------ steering: filters, paging, calibrated scores

def text_search(page, text: str, count: int) -> list[dict]:
    page.fill("#text-input", text)
    page.press("#text-input", "Enter")
    return wait_for_search(page, count)


def test_mixed_list_is_ranked_by_calibrated_score_and_shows_both_scores(page, server, library):
    cards = text_search(page, "a quiet forest", 1)
    assert {c["kind"] for c in cards} == {"image", "audio"} and len(cards) == 8
    scores = [float(c["score"]) for c in cards]
    assert scores == sorted(scores, reverse=True)
    api = page.request.post(f"{server}api/search?token={TOKEN}", multipart={"text": "a quiet forest", "kind": "any"})
    assert [h["path"] for h in api.json()["hits"]] == [c["path"] for c in cards]  # the engine's calibrated order
    first, path = page.locator(".card").first, Path(cards[0]["path"])
    assert first.locator(".score").text_content() == f"{scores[0]:.2f}"
    assert first.locator(".cosine").text_content() == f"cos {float(cards[0]['cosine']):.3f}"
    # The folder and the full name of each file, and a link to the original.
    assert (first.locator(".card-title").text_content(), first.locator(".card-folder").text_content()) == \
        (path.name, f"{path.parent}/")
    href = first.locator(".open-original").get_attribute("href")
    original = page.request.get(server.rstrip("/") + href)
    assert original.status == 200 and original.body() == path.read_bytes()


def settled(page, after: int) -> tuple[list[dict], int]:
    """Cards once a search after the `after`-th ended and none runs (one control's change may cancel another's)."""
    page.wait_for_function(f"+document.getElementById('results').dataset.searchCount > {after}"
                           " && !document.body.classList.contains('busy')", timeout=30_000)
    assert page.get_attribute("#status", "data-tone") == "ok", page.text_content("#status")
    return (page.eval_on_selector_all(".card", "cards => cards.map(c => ({...c.dataset}))"),
            int(page.get_attribute("#results", "data-search-count")))


def test_filter_controls_narrow_the_search(page, library):
    root, count = library["root"], [1]
    text_search(page, "a photo", 1)
    page.click("#filters summary")

    def apply(**values) -> list[dict]:
        """Fill controls (#filter-<name>), press Enter in the last one, return the cards once settled."""
        for name, value in values.items():
            page.fill(f"#filter-{name.replace('_', '-')}", value)
        page.press(f"#filter-{name.replace('_', '-')}", "Enter")
        cards, count[0] = settled(page, count[0])
        return cards

    cards = apply(under=str(root / "photos"))
    assert len(cards) == 4 and all(c["path"].startswith(str(root / "photos") + "/") for c in cards)
    assert page.text_content("#filter-count") == "1 active"
    assert {c["kind"] for c in apply(under="", types="wav")} == {"audio"}
    assert apply(since="2099-01-01") == [] and page.is_visible("#empty")  # every file here was written today
    assert len(apply(since="2000-01-01", until="2099-12-31")) == 4 and page.text_content("#filter-count") == "3 active"
    assert apply(min_score="99") == [] and "no good match" in page.text_content("#empty")
    page.click("#filter-clear")
    assert len(settled(page, count[0])[0]) == 8 and page.text_content("#filter-count") == ""


def test_more_button_fetches_the_next_page(browser, server):
    tab = browser.new_page()
    try:
        tab.goto(f"{server}?token={TOKEN}&k=3")  # pages of three
        tab.wait_for_function("document.getElementById('index-status').textContent.includes('photos')")
        first = text_search(tab, "a red apple", 1)
        assert len(first) == 3 and tab.is_visible("#more")
        tab.click("#more")
        assert len(wait_for_search(tab, 2)) == 6 and tab.is_visible("#more")
        tab.click("#more")
        cards = wait_for_search(tab, 3)
        assert len(cards) == 8 and not tab.is_visible("#more")
        assert [c["rank"] for c in cards] == [str(i) for i in range(1, 9)]
        assert len({c["path"] for c in cards}) == 8 and [c["path"] for c in cards[:3]] == [c["path"] for c in first]
        whole = tab.request.post(f"{server}api/search?token={TOKEN}", multipart={"text": "a red apple", "k": "8"})
        assert [h["path"] for h in whole.json()["hits"]] == [c["path"] for c in cards]
        screenshot(tab, "test-artifacts/browser-more.png")
    finally:
        tab.close()
