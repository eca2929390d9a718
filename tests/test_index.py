"""The library end to end on a tiny bundle: index, search in every direction, incremental runs, bad files,
bundle binding and crash recovery. Real FAISS, real decoders, and real metadata databases: every test
runs on SQLite in the index folder and on a PostgreSQL server (given by SEARCHENGINE_DB)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import text

from media_factory import make_image, tone, write_wav
from pg_server import hold_writer_lock
from searchengine import open_index
from searchengine.errors import BundleMismatch, IndexStateError, PathNotFound, QueryError
from searchengine.media import load_audio, load_image
from searchengine.store.vectors import VectorStore


@pytest.fixture(autouse=True)
def backend(db):
    """Both metadata backends: PostgreSQL through the environment, as `searchengine --db` would be.

    Its own MonkeyPatch: tests that undo theirs mid-way must keep this one.
    """
    with pytest.MonkeyPatch.context() as patch:
        if db:
            patch.setenv("SEARCHENGINE_DB", db)
        yield db


@pytest.fixture
def idx(index_dir, tiny_bundle, media_dir):
    index = open_index(index_dir, tiny_bundle)
    report = index.index([media_dir])
    assert (report.added, report.embedded, report.skipped) == (6, 6, [])
    yield index
    index.close()


def paths(hits):
    return [h.path for h in hits]


def test_index_reports_progress_and_search_returns_a_result(tiny_bundle, media_dir, tmp_path):
    events = []
    with open_index(tmp_path / "index", tiny_bundle) as index:
        report = index.index([media_dir], progress=events.append)
        result = index.search(text="a photo", k=4)
    assert report.embedded == 6 and events[0].stage == "scanning" and events[0].done == 0
    embedding = [e.done for e in events if e.stage == "embedding"]
    assert embedding[0] == 0 and embedding == sorted(embedding)  # it only moves forward
    assert events[-1].stage == "embedding" and events[-1].done == events[-1].total == 6
    assert result.transcript is None and len(result) == 4 and list(result) == result.hits
    assert result.to_dict()["hits"][0]["path"] == result[0].path


def test_same_file_is_the_top_hit_in_each_modality(idx, media_dir):
    image = media_dir / "photos" / "b.jpg"
    hits = idx.search(image=image, kind="image", k=3)
    assert hits[0].path == str(image) and hits[0].cosine == pytest.approx(1.0, abs=1e-4)
    clip = media_dir / "voice" / "clip1.wav"
    hits = idx.search(audio=clip, kind="audio", k=3)
    assert hits[0].path == str(clip) and hits[0].duration == pytest.approx(1.3, abs=0.01)


@pytest.mark.parametrize("query,kind", [("audio", "image"), ("image", "audio"), ("text", "image"),
                                        ("text", "audio"), ("audio", "any")])
def test_cross_modal_ranking_matches_brute_force(idx, media_dir, query, kind):
    bundle = idx.bundle
    if query == "audio":
        q = bundle.encode_speech([load_audio(media_dir / "voice" / "clip0.wav").samples])[0]
        hits = idx.search(audio=media_dir / "voice" / "clip0.wav", kind=kind, k=10)
    elif query == "image":
        q = bundle.encode_images([load_image(media_dir / "photos" / "a.png")])
        hits = idx.search(image=media_dir / "photos" / "a.png", kind=kind, k=10)
    else:
        q = bundle.encode_texts(["a dog on a beach"])
        hits = idx.search(text="a dog on a beach", kind=kind, k=10)
    files = sorted(p for p in media_dir.rglob("*") if p.suffix in {".png", ".jpg", ".webp", ".wav"})
    wanted = [p for p in files if kind == "any" or (p.suffix == ".wav") == (kind == "audio")]
    truth = {str(p): float(q[0] @ _embed(bundle, p)[0]) for p in wanted}
    assert sorted(paths(hits)) == sorted(truth)
    assert all(abs(h.cosine - truth[h.path]) < 1e-4 for h in hits)
    others = [h.score for h in hits if not h.is_query]  # an indexed copy of the query leads, marked
    assert others == sorted(others, reverse=True) and all(h.is_query for h in hits[:len(hits) - len(others)])
    for group in ("image", "audio"):  # within one kind the calibrated order is the cosine order
        ranked = [h.path for h in hits if h.kind == group]
        assert ranked == sorted(ranked, key=lambda p: -truth[p])


def _embed(bundle, path):
    if path.suffix == ".wav":
        return bundle.encode_speech([load_audio(path).samples])[0]
    return bundle.encode_images([load_image(path)])


def test_queries_from_bytes_pil_and_waveforms(idx, media_dir):
    image = media_dir / "photos" / "a.png"
    clip = media_dir / "voice" / "clip2.wav"
    assert idx.search(image=image.read_bytes(), k=1)[0].path == str(image)
    assert idx.search(image=Image.open(image), k=1)[0].path == str(image)
    assert idx.search(audio=clip.read_bytes(), kind="audio", k=1)[0].path == str(clip)
    assert idx.search(audio=load_audio(clip).samples, kind="audio", k=1)[0].path == str(clip)


def test_second_run_embeds_nothing(idx, media_dir):
    report = idx.index([media_dir])
    assert (report.added, report.updated, report.removed, report.unchanged, report.embedded) == (0, 0, 0, 6, 0)


def test_touched_but_identical_file_is_not_reembedded(idx, media_dir):
    target = media_dir / "photos" / "a.png"
    target.write_bytes(target.read_bytes())  # new mtime, same bytes
    report = idx.index([media_dir])
    assert (report.unchanged, report.embedded, report.updated) == (6, 0, 0)
    assert idx.index([media_dir]).unchanged == 6  # and the new mtime was recorded


def test_changed_file_is_reembedded(idx, media_dir):
    target = media_dir / "photos" / "a.png"
    make_image(target, 99)
    report = idx.index([media_dir])
    assert (report.updated, report.embedded, report.added) == (1, 1, 0)
    hit = idx.search(image=target, kind="image", k=1)[0]
    assert hit.path == str(target) and hit.cosine == pytest.approx(1.0, abs=1e-4)
    assert idx.status().vectors["image"] == 3  # the old vector went with its content


def test_deleted_file_is_removed(idx, media_dir):
    (media_dir / "voice" / "clip0.wav").unlink()
    report = idx.index([media_dir])
    assert report.removed == 1
    assert str(media_dir / "voice" / "clip0.wav") not in paths(idx.search(text="x", k=10))
    assert idx.status().vectors["audio"] == 2 and idx.status().files["audio"] == 2


def test_identical_content_embedded_once_both_paths_found(idx, media_dir):
    copy = media_dir / "copies" / "same.jpg"
    copy.parent.mkdir()
    shutil.copy(media_dir / "photos" / "b.jpg", copy)
    report = idx.index([media_dir])
    assert (report.added, report.embedded) == (1, 0)
    top = idx.search(image=copy, kind="image", k=2)
    assert set(paths(top)) == {str(copy), str(media_dir / "photos" / "b.jpg")}
    assert idx.status().vectors["image"] == 3 and idx.status().files["image"] == 4


def test_duplicates_in_one_run_share_one_embedding(index_dir, tiny_bundle, tmp_path):
    for name in ("one.wav", "two.wav"):
        write_wav(tmp_path / "m" / name, tone(5))
    with open_index(index_dir, tiny_bundle) as index:
        report = index.index([tmp_path / "m"])
        assert (report.added, report.embedded) == (2, 1)


def make_bad_files(root):
    root.mkdir(parents=True, exist_ok=True)
    (root / "zero.jpg").write_bytes(b"")
    good = make_image(root / "tmp.png", 4, size=(300, 300)).read_bytes()
    (root / "tmp.png").unlink()
    (root / "truncated.png").write_bytes(good[: len(good) // 3])
    (root / "text.wav").write_text("this is not audio")
    write_wav(root / "audio_named.jpg", tone(1))  # wrong extension
    Image.new("RGB", (4, 4)).save(root / "icon.png", format="ICO")  # unsupported format, misnamed
    Image.new("L", (12000, 10000)).save(root / "bomb.png")  # 120 MP: over the decompression limit
    return {"zero.jpg", "truncated.png", "text.wav", "audio_named.jpg", "icon.png", "bomb.png"}


def test_bad_files_are_skipped_with_reasons_and_nothing_is_lost(idx, media_dir):
    bad = make_bad_files(media_dir / "bad")
    report = idx.index([media_dir])
    assert {s.path.rsplit("/", 1)[1] for s in report.skipped} == bad
    assert all(s.reason for s in report.skipped)
    reasons = {s.path.rsplit("/", 1)[1]: s.reason for s in idx.status().skipped}
    assert set(reasons) == bad and "too large" in reasons["bomb.png"]
    assert "unsupported" in reasons["icon.png"]
    assert idx.status().files == {"image": 3, "audio": 3}
    again = idx.index([media_dir])  # still reported, not retried
    assert (again.unchanged, again.embedded, len(again.skipped)) == (6, 0, len(bad))


def test_fixed_bad_file_gets_indexed(idx, media_dir):
    make_bad_files(media_dir / "bad")
    idx.index([media_dir])
    make_image(media_dir / "bad" / "zero.jpg", 8, fmt="JPEG")
    report = idx.index([media_dir])
    assert report.added == 1 and "zero.jpg" not in {s.path.rsplit("/", 1)[1] for s in idx.status().skipped}


def test_other_bundle_refused_until_rebuild(idx, index_dir, other_bundle, media_dir):
    idx.close()
    with pytest.raises(BundleMismatch, match="--rebuild"):
        open_index(index_dir, other_bundle)
    with open_index(index_dir, other_bundle, rebuild=True) as rebuilt:
        report = rebuilt.index([media_dir])
        assert (report.added, report.embedded) == (6, 6)
        assert rebuilt.status().bundle.name == "other"


def test_reopening_uses_the_recorded_bundle(idx, index_dir, media_dir):
    idx.close()
    with open_index(index_dir) as again:
        assert again.search(image=media_dir / "photos" / "a.png", k=1)[0].path.endswith("a.png")


def test_crash_before_faiss_save_is_reconciled(index_dir, tiny_bundle, media_dir, monkeypatch):
    def crash(self):
        raise RuntimeError("simulated crash between the SQLite commit and the FAISS write")

    monkeypatch.setattr(VectorStore, "save", crash)
    with open_index(index_dir, tiny_bundle) as index, pytest.raises(RuntimeError):
        index.index([media_dir])
    monkeypatch.undo()
    assert not (index_dir / "image.faiss").exists()
    with open_index(index_dir) as index:
        assert index.status().vectors == {"image": 3, "audio": 3}  # rebuilt from SQLite
        assert index.search(image=media_dir / "photos" / "a.png", k=1)[0].path.endswith("a.png")
        assert index.index([media_dir]).embedded == 0


def test_crash_mid_run_resumes_on_next_run(index_dir, tiny_bundle, media_dir, monkeypatch):
    from searchengine.bundles.bundle import Bundle

    real = Bundle.encode_pixels
    calls = {"n": 0}

    def flaky(self, pixels):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the process dies after the first batch was committed
        return real(self, pixels)

    monkeypatch.setattr(Bundle, "encode_pixels", flaky)
    with open_index(index_dir, tiny_bundle) as index, pytest.raises(KeyboardInterrupt):
        index.index([media_dir], batch_size=1)
    monkeypatch.undo()
    with open_index(index_dir) as index:
        report = index.index([media_dir])
        assert report.unchanged >= 1 and report.added + report.unchanged == 6
        assert index.status().vectors == {"image": 3, "audio": 3}


def test_dangling_faiss_ids_are_dropped(idx, index_dir, media_dir):
    with idx.metadata.engine.begin() as con:  # as if a run crashed after its commit, before its FAISS save
        con.execute(text("delete from files where path like :p"), {"p": "%a.png"})
        con.execute(text("delete from contents where id not in (select content_id from files)"))
    idx.close()
    with open_index(index_dir) as index:
        assert index.status().vectors["image"] == 2
        assert all(not p.endswith("a.png") for p in paths(index.search(text="x", k=10)))
        report = index.index([media_dir])
        assert (report.added, report.embedded) == (1, 1)


def test_bad_queries(idx, media_dir):
    with pytest.raises(QueryError):
        idx.search()
    with pytest.raises(QueryError):
        idx.search(text="a", image=media_dir / "photos" / "a.png")
    with pytest.raises(QueryError):
        idx.search(text="a", kind="video")
    with pytest.raises(QueryError):
        idx.search(text="   ")


def test_one_writer_at_a_time(idx, media_dir):
    with hold_writer_lock(idx), pytest.raises(IndexStateError, match="another index run is writing to"):
        idx.index([media_dir])
    assert idx.index([media_dir]).unchanged == 6  # released with its holder


def test_empty_index_searches_return_nothing(index_dir, tiny_bundle):
    with open_index(index_dir, tiny_bundle) as index:
        assert index.search(text="anything").hits == []
        assert index.status().files == {}


def test_a_missing_root_the_index_knows_nothing_of_is_an_error(idx, media_dir, tmp_path):
    before = idx.status().files
    with pytest.raises(PathNotFound, match=str(tmp_path / "nowhere")):
        idx.index([media_dir, tmp_path / "nowhere"])
    assert idx.status().files == before  # refused before anything changed


def test_vectors_are_unit_float32(idx, media_dir):
    vecs = idx.bundle.encode_images([load_image(media_dir / "photos" / "a.png")])
    assert vecs.dtype == np.float32 and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)


def test_rebuild_with_the_same_bundle_reembeds_everything(idx, index_dir, media_dir):
    idx.close()
    with open_index(index_dir, rebuild=True) as again:
        report = again.index([media_dir])
        assert (report.added, report.embedded) == (6, 6)
        assert again.status().bundle.name == "tiny"


def test_encoder_failure_skips_only_the_culprit(index_dir, tiny_bundle, media_dir, monkeypatch):
    from searchengine.bundles.bundle import Bundle

    make_image(media_dir / "photos" / "odd.png", 7, size=(13, 7))
    real = Bundle.encode_pixels
    odd = {}

    def picky(self, pixels):  # images reach the tower prepared: the culprit is known by its pixels
        if "pixels" not in odd:
            odd["pixels"] = self.prepare_image(load_image(media_dir / "photos" / "odd.png", min_side=self.image_size))
        if any(np.array_equal(p, odd["pixels"]) for p in pixels):
            raise ValueError("cannot embed this one")
        return real(self, pixels)

    monkeypatch.setattr(Bundle, "encode_pixels", picky)
    with open_index(index_dir, tiny_bundle) as index:
        report = index.index([media_dir])
        assert [s.path.rsplit("/", 1)[1] for s in report.skipped] == ["odd.png"]
        assert "encoder failed: ValueError" in report.skipped[0].reason
        assert index.status().files == {"image": 3, "audio": 3}
