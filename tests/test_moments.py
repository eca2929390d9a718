"""Long recordings become moments: segmentation on generated speech, the store's lifecycle, search with
timestamps through the library, the CLI and the API."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from media_factory import make_image, tone, write_wav
from searchengine.cli import cli
from searchengine.errors import ArgumentError
from searchengine.index import open_index
from searchengine.media import load_audio
from searchengine.moments import Span, bound, fixed_windows, moment_spans, moments_after, slice_of
from speech_factory import SENTENCES, long_recording

RATE = 16_000
# Pauses before each sentence: between 6 and 12 s, so no two sentences join into one moment.
PARTS = [(6.0, SENTENCES[0]), (9.0, SENTENCES[1]), (12.0, SENTENCES[2]), (7.0, SENTENCES[3])]


@pytest.fixture(scope="module")
def memo():
    """(samples as the indexer decodes them, speech truth [(start, end)]) of a ~50-s memo."""
    samples, truth = long_recording(PARTS)
    return samples, truth


# ------------------------------------------------------------------ segmentation

def test_speech_regions_of_generated_audio_become_moments_at_the_right_times(memo):
    samples, truth = memo
    spans = moment_spans(samples, after=25)
    assert len(spans) == len(truth)
    for span, (start, end) in zip(spans, truth):
        assert abs(span.start - start) < 0.5 and abs(span.end - end) < 0.8  # the detector pads a little
        assert 3.0 <= span.length <= 20.0


def test_short_recordings_stay_whole_and_the_threshold_is_a_setting(memo, monkeypatch):
    samples, _ = memo
    assert moment_spans(samples[:20 * RATE], after=25) is None
    assert moments_after() == 25.0
    monkeypatch.setenv("SEARCHENGINE_MOMENTS_AFTER", "40")
    assert moments_after() == 40.0 and moments_after(30) == 30.0  # the flag wins
    with pytest.raises(ArgumentError, match="moments_after"):
        moments_after("soon")


def test_bounds_join_close_regions_cut_long_ones_and_widen_short_ones():
    regions = [Span(1.0, 2.0), Span(2.5, 4.0), Span(10.0, 55.0), Span(60.0, 60.5)]
    spans = bound(regions, duration=61.0)
    assert spans[0] == Span(1.0, 4.0)  # a 0.5-s pause joins, and 3 s is long enough
    assert [s.length for s in spans[1:4]] == pytest.approx([15.0, 15.0, 15.0])  # 45 s cut in three
    assert spans[4] == Span(58.0, 61.0)  # half a second widened to 3 s, kept inside the file
    assert fixed_windows(50.0) == [Span(0.0, 16.667), Span(16.667, 33.333), Span(33.333, 50.0)]


def test_a_long_recording_without_speech_is_cut_into_fixed_windows():
    spans = moment_spans(tone(3, 45.0), after=25)
    assert spans and spans[0].start == 0 and spans[-1].end == pytest.approx(45.0)
    assert all(s.length <= 20.0 for s in spans)


# ------------------------------------------------------------------ index and search

@pytest.fixture
def media(tmp_path, memo):
    root = tmp_path / "media"
    write_wav(root / "memos" / "holiday.wav", memo[0])
    write_wav(root / "memos" / "short.wav", tone(5, 2.0))
    make_image(root / "photo.png", 1)
    return root


def decoded(path) -> np.ndarray:
    return load_audio(path).samples


def moment_query(tmp_path, recording, span: Span, name="query.wav"):
    """A WAV holding exactly one moment's samples (as decoded from the indexed file, so bit-identical)."""
    return write_wav(tmp_path / name, slice_of(decoded(recording), span))


def test_a_moment_in_the_middle_is_found_with_its_start_and_end(tmp_path, tiny_bundle, media):
    memo = media / "memos" / "holiday.wav"
    spans = moment_spans(decoded(memo), after=25)
    with open_index(tmp_path / "index", tiny_bundle) as idx:
        report = idx.index([media])
        assert not report.warnings  # the whole recording is searchable: no "only the first 30 s"
        assert idx.status().vectors == {"image": 1, "audio": 2, "moment": 4}
        query = moment_query(tmp_path, memo, spans[2])
        top = idx.search(audio=query, kind="audio", k=5).hits
        assert top[0].path == str(memo) and (top[0].start, top[0].end) == (spans[2].start, spans[2].end)
        assert top[0].cosine > 0.999
        assert [h.path for h in top].count(str(memo)) == 1  # best moment per file by default
        short = next(h for h in top if h.path.endswith("short.wav"))
        assert (short.start, short.end) == (0.0, pytest.approx(2.0))  # a short recording is one moment
        every = idx.search(audio=query, kind="audio", k=10, moments=True).hits
        starts = sorted(h.start for h in every if h.path == str(memo))
        assert starts == [s.start for s in spans]
        assert idx.search(image=media / "photo.png", kind="image").hits[0].start is None


@pytest.mark.weights  # Whisper from its weight package
def test_each_moment_is_written_down_when_the_index_transcribes(tmp_path, tiny_bundle, media):
    memo = media / "memos" / "holiday.wav"
    span = moment_spans(decoded(memo), 25)[1]  # "Two ducks swim on a quiet lake at sunset."
    with open_index(tmp_path / "index", tiny_bundle) as idx:
        idx.index([media], transcribe=True)
        top = idx.search(audio=moment_query(tmp_path, memo, span), kind="audio").hits[0]
    said = top.transcript.lower()
    assert top.start == span.start and "lake" in said and "sunset" in said and "bicycle" not in said


def test_moments_follow_the_file_dedup_change_and_removal(tmp_path, tiny_bundle, media, db):
    memo = media / "memos" / "holiday.wav"
    copy = media / "copy" / "same.wav"
    copy.parent.mkdir()
    shutil.copy(memo, copy)
    with open_index(tmp_path / "index", tiny_bundle, db=db) as idx:
        idx.index([media])
        assert idx.status().vectors["moment"] == 4  # two paths, one content: its moments are shared
        query = moment_query(tmp_path, memo, moment_spans(decoded(memo), 25)[1])
        paths = {h.path for h in idx.search(audio=query, kind="audio", k=5).hits[:2]}
        assert paths == {str(memo), str(copy)}
        before = set(idx.vectors["moment"].ids().tolist())
        longer, _ = long_recording(PARTS[:2] + [(8.0, SENTENCES[3])], seed=7)
        write_wav(copy, longer)  # the copy changes: its own content, with moments of its own
        idx.index([media])
        after = set(idx.vectors["moment"].ids().tolist())
        assert len(after) == 4 + 3 and before < after
        memo.unlink()
        idx.index([media])  # the original's content goes, and its moments with it
        assert set(idx.vectors["moment"].ids().tolist()) == after - before
        assert idx.metadata.vector_counts()["moment"] == 3
        copy.unlink()
        idx.index([media])
        assert idx.vectors["moment"].count == 0 and idx.metadata.vector_counts()["moment"] == 0


def test_a_lost_moment_file_is_rebuilt_from_the_database(tmp_path, tiny_bundle, media):
    memo = media / "memos" / "holiday.wav"
    with open_index(tmp_path / "index", tiny_bundle) as idx:
        idx.index([media])
    (tmp_path / "index" / "moment.faiss").unlink()  # as a crash before the first save leaves it
    with open_index(tmp_path / "index") as idx:
        assert idx.vectors["moment"].count == 4
        span = moment_spans(decoded(memo), 25)[3]
        top = idx.search(audio=moment_query(tmp_path, memo, span), kind="audio").hits[0]
        assert top.start == span.start


def test_an_index_from_before_moments_migrates_in_place(tmp_path, tiny_bundle, media, db):
    from test_search_controls import _downgrade

    with open_index(tmp_path / "index", tiny_bundle, db=db) as idx:
        idx.index([media], moments_after=1000)  # nothing is long enough: no moments, as an older engine
        _downgrade(idx.metadata.engine, "0004")
    with open_index(tmp_path / "index", db=db) as idx:  # opening migrates to 0005
        hit = idx.search(audio=media / "memos" / "holiday.wav", kind="audio").hits[0]
        assert hit.path.endswith("holiday.wav") and hit.start == 0.0
        assert idx.status().vectors == {"image": 1, "audio": 2}
        write_wav(media / "memos" / "holiday.wav", 0.9 * decoded(media / "memos" / "holiday.wav"))
        idx.index([media])  # the changed recording is embedded again, now as moments
        assert idx.status().vectors == {"image": 1, "audio": 2, "moment": 4}


# ------------------------------------------------------------------ CLI and API

def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def test_cli_json_and_table_show_the_moment(tmp_path, tiny_bundle, media):
    memo = media / "memos" / "holiday.wav"
    index = tmp_path / "index"
    assert run("index", media, "--index", index, "--bundle", tiny_bundle).exit_code == 0
    span = moment_spans(decoded(memo), 25)[1]
    query = moment_query(tmp_path, memo, span)
    out = run("search", "--audio", query, "--kind", "audio", "--index", index, "--json")
    assert out.exit_code == 0, out.output
    top = json.loads(out.stdout)["hits"][0]
    assert top["path"] == str(memo) and (top["start"], top["end"]) == (span.start, span.end)
    table = run("search", "--audio", query, "--kind", "audio", "--index", index)
    first = next(line for line in table.output.splitlines() if "holiday.wav" in line)
    assert f"{int(span.start) // 60:02d}:{int(span.start) % 60:02d}–" in first
    every = json.loads(run("search", "--audio", query, "--kind", "audio", "--index", index, "--json",
                           "--moments", "-k", "10").stdout)["hits"]
    assert sum(h["path"] == str(memo) for h in every) == 4


def test_api_hits_carry_start_and_end(tmp_path, tiny_bundle, media):
    from fastapi.testclient import TestClient

    from searchengine.server.app import create_app

    memo = media / "memos" / "holiday.wav"
    span = moment_spans(decoded(memo), 25)[2]
    query = moment_query(tmp_path, memo, span)
    with open_index(tmp_path / "index", tiny_bundle) as idx:
        idx.index([media])
        with TestClient(create_app(idx)) as client:
            r = client.post("/api/search", files={"audio": ("q.wav", query.read_bytes())}, data={"kind": "audio"})
            assert r.status_code == 200, r.text
            top = r.json()["hits"][0]
            assert top["path"] == str(memo) and (top["start"], top["end"]) == (span.start, span.end)
            r = client.post("/api/search", files={"audio": ("q.wav", query.read_bytes())},
                            data={"kind": "audio", "moments": "true", "k": "10"})
            assert sum(h["path"] == str(memo) for h in r.json()["hits"]) == 4
            ranged = client.get(top["media_url"], headers={"Range": "bytes=1000-1999"})
            assert ranged.status_code == 206 and len(ranged.content) == 1000  # seeking fetches the middle
