"""The error contract: every public entry point answers bad arguments with a typed SearchEngineError."""

from __future__ import annotations

import numpy as np
import pytest

from searchengine import errors, load_bundle, open_index
from searchengine.media import load_audio, load_image


@pytest.fixture(scope="module")
def idx(tiny_bundle, tmp_path_factory):
    from media_factory import make_image, tone, write_wav

    media = tmp_path_factory.mktemp("errors_media")
    make_image(media / "a.png", 1)
    write_wav(media / "v.wav", tone(1, 1.0))
    with open_index(tmp_path_factory.mktemp("errors_index") / "index", tiny_bundle) as index:
        index.index([media])
        yield index


@pytest.mark.parametrize("kwargs, error", [
    ({}, errors.QueryError),
    ({"text": "a", "image": b"x"}, errors.QueryError),
    ({"text": 5}, errors.QueryError),
    ({"text": "   "}, errors.QueryError),
    ({"text": "a", "kind": "video"}, errors.QueryError),
    ({"text": "a", "k": 0}, errors.QueryError),
    ({"text": "a", "k": "3"}, errors.QueryError),
    ({"text": "a", "k": True}, errors.QueryError),
    ({"image": 123}, errors.UnsupportedMedia),
    ({"image": b""}, errors.DecodeError),
    ({"image": "/no/such/photo.jpg"}, errors.DecodeError),
    ({"audio": b"not audio at all"}, errors.DecodeError),
    ({"audio": np.zeros((2, 2, 2), np.float32)}, errors.DecodeError),
    ({"audio": np.array(["a", "b"])}, errors.DecodeError),
    ({"audio": [0.0, 0.1]}, errors.UnsupportedMedia),
])
def test_search_rejects_bad_arguments_with_typed_errors(idx, kwargs, error):
    with pytest.raises(error):
        idx.search(**kwargs)


def test_query_errors_are_argument_errors():
    assert issubclass(errors.QueryError, errors.ArgumentError)
    assert issubclass(errors.ArgumentError, errors.SearchEngineError)


@pytest.mark.parametrize("paths", [123, [None], [3.5]])
def test_index_rejects_paths_that_are_not_paths(idx, paths):
    with pytest.raises(errors.ArgumentError):
        idx.index(paths)


def test_media_rejects_unknown_ids(idx):
    for bad in (10**9, "1", None):
        with pytest.raises(errors.SearchEngineError):
            idx.media(bad)


def test_open_index_rejects_bad_paths(tmp_path):
    with pytest.raises(errors.ArgumentError):
        open_index(123)
    with pytest.raises(errors.IndexStateError):
        open_index(tmp_path / "missing", create=False)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(errors.IndexStateError):
        open_index(tmp_path / "a-file")


def test_an_unknown_bundle_is_reported_when_first_used(tmp_path):
    with open_index(tmp_path / "index", "no-such-bundle") as index:  # opening loads no model
        with pytest.raises(errors.BundleNotFound):
            index.index([tmp_path])


def test_load_bundle_rejects_unknown_names_and_broken_folders(tmp_path):
    with pytest.raises(errors.BundleNotFound):
        load_bundle("no-such-bundle")
    (tmp_path / "bundle.json").write_text("{not json")
    with pytest.raises(errors.BundleError):
        load_bundle(tmp_path)


def test_an_unknown_device_is_an_argument_error(tiny_bundle, tmp_path):
    with pytest.raises(errors.ArgumentError, match="unknown device"):
        load_bundle(tiny_bundle, device="gpu0")
    with open_index(tmp_path / "index", tiny_bundle, device="tpu") as index:
        with pytest.raises(errors.ArgumentError):
            index.search(text="x") if index.vectors else index.index([tmp_path])


def test_encoders_reject_malformed_waveforms(tiny_bundle):
    bundle = load_bundle(tiny_bundle, device="cpu")
    with pytest.raises(errors.MediaError):
        bundle.encode_speech([np.zeros((2, 16000), np.float32)])


def test_speech_encoder_settings_are_checked_with_bundle_errors():
    from searchengine.bundles.speech import SpeechEncoderConfig

    for bad in ({"pool": "bogus"}, {"embed_dim": 0}, {"pool": "text"}, {"frontend": None, "heads": 0},
                {"pool_queries": 0}, {"max_seconds": 31.0}):
        with pytest.raises(errors.BundleError):
            SpeechEncoderConfig(**bad)


def test_media_decoders_reject_sources_of_the_wrong_type():
    with pytest.raises(errors.UnsupportedMedia):
        load_image(3.5)
    with pytest.raises(errors.UnsupportedMedia):
        load_audio({"samples": []})
