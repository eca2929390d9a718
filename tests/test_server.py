"""The HTTP API in-process (FastAPI TestClient) over a real index of generated media."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image

from media_factory import encode_audio, make_image, tone, write_wav
from searchengine import open_index
from searchengine.cli.serve import page_url, serve_cmd
from searchengine.media import sniff
from searchengine.server.app import create_app

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """Three images (one large) and four recordings of clearly different lengths (one webm/opus)."""
    root = tmp_path_factory.mktemp("server_media")
    make_image(root / "photos" / "big.png", 1, size=(640, 480))
    make_image(root / "photos" / "b.jpg", 2)
    make_image(root / "photos" / "c.webp", 3)
    for i in range(3):
        write_wav(root / "voice" / f"clip{i}.wav", tone(10 + i, 1.0 + 1.5 * i))
    encode_audio(root / "voice" / "memo.webm", tone(20, 6.0))
    return root


@pytest.fixture(scope="module")
def index(media, tiny_bundle, tmp_path_factory):
    """A real index over `media`, shared by the read-only tests."""
    with open_index(tmp_path_factory.mktemp("server_index") / "index", tiny_bundle) as idx:
        report = idx.index([media])
        assert report.added == 7 and not report.skipped
        yield idx


@pytest.fixture(scope="module")
def client(index):
    with TestClient(create_app(index)) as c:
        yield c


def upload(client, field: str, path: Path, **form) -> dict:
    """POST one file query and return the JSON (asserting 200)."""
    r = client.post("/api/search", files={field: (path.name, path.read_bytes())}, data=form)
    assert r.status_code == 200, r.text
    return r.json()


def hit_for(client, media: Path, rel: str) -> dict:
    """The hit of an indexed file, found by querying with the file itself."""
    path = media / rel
    field = "image" if path.suffix in (".png", ".jpg", ".webp") else "audio"
    top = upload(client, field, path, kind=field)["hits"][0]
    assert top["path"] == str(path)
    return top


def assert_error(r, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert isinstance(r.json()["error"], str) and r.json()["error"]
    return r.json()["error"]


# ------------------------------------------------------------------ page, status, docs

def test_page_and_assets_are_served(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'id="record"' in r.text and "static/app.js" in r.text
    for asset, ctype in (("app.js", "javascript"), ("style.css", "text/css")):
        r = client.get(f"/static/{asset}")
        assert r.status_code == 200 and ctype in r.headers["content-type"]
    for asset in ("/", "/static/app.js", "/static/style.css"):  # no CDN, no web fonts: there is no network
        assert not re.search(r"""(src=|href=|url\(|import |fetch\()["']?(https?:)?//""", client.get(asset).text)


def test_status_is_the_library_status(client, index):
    r = client.get("/api/status")
    assert r.status_code == 200
    assert r.json() == index.status().to_dict()
    assert r.json()["files"] == {"image": 3, "audio": 4}


def test_openapi_documents_the_routes(client):
    spec = client.get("/openapi.json").json()
    assert {"/api/search", "/api/media/{file_id}", "/api/thumb/{file_id}", "/api/status"} <= set(spec["paths"])
    form = spec["paths"]["/api/search"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"audio", "image", "text", "kind", "k"} <= set(form["properties"])


# ------------------------------------------------------------------ search

def test_image_search_returns_cli_fields_and_urls(client, media):
    hits = upload(client, "image", media / "photos" / "big.png")["hits"]
    top = hits[0]
    assert top["path"] == str(media / "photos" / "big.png") and Path(top["path"]).is_absolute()
    assert top["kind"] == "image" and math.isclose(top["cosine"], 1.0, abs_tol=1e-3) and top["is_query"]
    assert (top["width"], top["height"]) == (640, 480)
    assert top["media_url"] == f"/api/media/{top['id']}" and top["thumb_url"] == f"/api/thumb/{top['id']}"
    audio = [h for h in hits if h["kind"] == "audio"]
    assert len(hits) == 7 and audio and all("thumb_url" not in h and h["duration"] > 0 for h in audio)


def test_audio_search_finds_the_same_recording(client, media):
    hits = upload(client, "audio", media / "voice" / "clip1.wav", kind="audio")["hits"]
    assert hits[0]["path"] == str(media / "voice" / "clip1.wav") and hits[0]["cosine"] > 0.999
    assert all(h["kind"] == "audio" for h in hits)
    assert hits[0]["duration"] == pytest.approx(2.5)


def test_browser_webm_opus_upload_works(client, media, tmp_path):
    """What MediaRecorder sends: a webm/opus at 48 kHz, here made from an indexed clip's samples."""
    query = encode_audio(tmp_path / "recording.webm", tone(12, 4.0))
    hits = upload(client, "audio", query, kind="audio")["hits"]
    assert hits[0]["path"] == str(media / "voice" / "clip2.wav") and hits[0]["cosine"] > 0.95


def test_text_search_with_kind_and_k(client):
    r = client.post("/api/search", data={"text": "a red apple", "kind": "image", "k": "2"})
    assert r.status_code == 200
    hits = r.json()["hits"]
    assert len(hits) == 2 and all(h["kind"] == "image" for h in hits)
    assert hits[0]["score"] >= hits[1]["score"]


def test_default_k_is_twelve(client, media):
    hits = client.post("/api/search", data={"text": "anything"}).json()["hits"]
    assert len(hits) == 7  # everything indexed, under the default of 12


# ------------------------------------------------------------------ bad queries

@pytest.mark.parametrize("form", [
    {},  # no query
    {"kind": "image"},
    {"text": "a", "k": "0"},
    {"text": "a", "k": "-3"},
    {"text": "a", "k": "ten"},
    {"text": "a", "k": "1.5"},
    {"text": "a", "k": "100000"},
    {"text": "a", "kind": "video"},
    {"text": "   "},
])
def test_bad_queries_are_400(client, form):
    assert_error(client.post("/api/search", data=form), 400)


def test_several_queries_are_400(client, media):
    png = (media / "photos" / "b.jpg").read_bytes()
    r = client.post("/api/search", data={"text": "dog"}, files={"image": ("b.jpg", png)})
    assert "exactly one" in assert_error(r, 400)
    r = client.post("/api/search", files=[("image", ("b.jpg", png)), ("image", ("b.jpg", png))])
    assert_error(r, 400)


def test_file_fields_must_be_files(client):
    assert_error(client.post("/api/search", data={"audio": "not a file"}), 400)


def test_non_form_body_is_415(client):
    assert_error(client.post("/api/search", json={"text": "dog"}), 415)


def test_malformed_multipart_is_400(client):
    r = client.post("/api/search", content=b"--x\r\nnonsense", headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code in (400, 422) and "error" in r.json()


def test_missing_closing_boundary_is_malformed_not_no_query(client):
    body = b'--x\r\nContent-Disposition: form-data; name="text"\r\n\r\ndog\r\n'  # no --x-- at the end
    r = client.post("/api/search", content=body, headers={"content-type": "multipart/form-data; boundary=x"})
    assert assert_error(r, 400).startswith("malformed form data") and "exactly one" not in r.json()["error"]


# ------------------------------------------------------------------ wrong or broken uploads

def test_image_sent_as_audio_is_415(client, media):
    r = client.post("/api/search", files={"audio": ("b.jpg", (media / "photos" / "b.jpg").read_bytes())})
    assert "send it as `image`" in assert_error(r, 415)


def test_audio_sent_as_image_is_415(client, media):
    r = client.post("/api/search", files={"image": ("c.wav", (media / "voice" / "clip0.wav").read_bytes())})
    assert "send it as `audio`" in assert_error(r, 415)


@pytest.mark.parametrize("field", ["audio", "image"])
def test_text_file_upload_is_415(client, field):
    r = client.post("/api/search", files={field: ("notes.txt", b"shopping list: apples, pears\n")})
    assert "text file" in assert_error(r, 415)


def test_undecodable_uploads_are_422(client, media):
    garbage = bytes(range(256)) * 20
    assert "audio" in assert_error(client.post("/api/search", files={"audio": ("x.wav", garbage)}), 422)
    truncated = (media / "photos" / "big.png").read_bytes()[:300]
    assert "image" in assert_error(client.post("/api/search", files={"image": ("t.png", truncated)}), 422)
    assert_error(client.post("/api/search", files={"image": ("e.png", b"")}), 422)


def test_server_keeps_serving_after_errors(client, media):
    client.post("/api/search", files={"audio": ("x.wav", b"\x00" * 100)})
    assert upload(client, "image", media / "photos" / "b.jpg")["hits"]


# ------------------------------------------------------------------ upload limit

@pytest.fixture(scope="module")
def small_client(index):
    with TestClient(create_app(index, max_upload_bytes=4096)) as c:
        yield c


def test_upload_over_the_limit_is_413(small_client, media):
    wav = (media / "voice" / "clip0.wav").read_bytes()
    assert 4096 < len(wav) < 60_000  # over the file limit, under the limit on the whole form
    r = small_client.post("/api/search", files={"audio": ("clip0.wav", wav)})
    assert "limit" in assert_error(r, 413)


def test_huge_declared_length_is_413(small_client):
    r = small_client.post("/api/search", files={"audio": ("a.wav", b"\x01" * 300_000)})
    assert_error(r, 413)


def test_limit_is_enforced_while_reading_without_content_length(small_client):
    def body():
        yield b"--b\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a.wav\"\r\n\r\n"
        for _ in range(50):
            yield b"\x01" * 10_000
        yield b"\r\n--b--\r\n"

    r = small_client.post("/api/search", content=body(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert_error(r, 413)


def test_small_uploads_pass_the_limit(small_client, media):
    assert upload(small_client, "image", media / "photos" / "b.jpg")["hits"]


# ------------------------------------------------------------------ media, ranges, thumbnails

def test_media_streams_the_indexed_file(client, media):
    wav = media / "voice" / "clip0.wav"
    r = client.get(hit_for(client, media, "voice/clip0.wav")["media_url"])
    assert r.status_code == 200 and r.content == wav.read_bytes()
    assert r.headers["content-type"] == "audio/wav" and r.headers["accept-ranges"] == "bytes"
    webm = hit_for(client, media, "voice/memo.webm")
    assert client.get(webm["media_url"]).headers["content-type"] == "audio/webm"
    png = hit_for(client, media, "photos/big.png")
    assert client.get(png["media_url"]).headers["content-type"] == "image/png"


def test_range_requests_are_206_with_the_right_bytes(client, media):
    data = (media / "voice" / "clip2.wav").read_bytes()
    url = hit_for(client, media, "voice/clip2.wav")["media_url"]
    r = client.get(url, headers={"Range": "bytes=100-1099"})
    assert r.status_code == 206 and r.content == data[100:1100]
    assert r.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    assert r.headers["accept-ranges"] == "bytes"
    r = client.get(url, headers={"Range": "bytes=-64"})
    assert r.status_code == 206 and r.content == data[-64:]
    r = client.get(url, headers={"Range": f"bytes={len(data) - 10}-"})
    assert r.status_code == 206 and r.content == data[-10:]
    assert client.get(url, headers={"Range": f"bytes={len(data) + 5}-"}).status_code == 416


def test_thumbnail_is_a_small_jpeg_cached_on_disk(client, media, index):
    hit = hit_for(client, media, "photos/big.png")
    r = client.get(hit["thumb_url"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(r.content))
    assert img.format == "JPEG" and max(img.size) == 256 and img.size == (256, 192)
    cached = list((index.path / "thumbs").glob(f"{hit['id']}-*.jpg"))
    assert len(cached) == 1 and cached[0].read_bytes() == r.content
    mtime = cached[0].stat().st_mtime_ns
    assert client.get(hit["thumb_url"]).content == r.content
    assert cached[0].stat().st_mtime_ns == mtime  # served from the cache, not remade


def test_recordings_have_no_thumbnail(client, media):
    hit = hit_for(client, media, "voice/clip0.wav")
    assert "recording" in assert_error(client.get(f"/api/thumb/{hit['id']}"), 404)


@pytest.mark.parametrize("bad_id", ["999999", "-1", "0", "abc", "1.5", "1e3", "99999999999999999999999",
                                    "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "..", "%2E%2E", "1%00"])
@pytest.mark.parametrize("route", ["media", "thumb"])
def test_unknown_and_path_like_ids_are_404(client, route, bad_id):
    r = client.get(f"/api/{route}/{bad_id}")
    assert_error(r, 404)
    assert b"root:" not in r.content


def test_unknown_api_route_is_json_404(client):
    assert_error(client.get("/api/nothing-here"), 404)
    assert_error(client.get("/api/search"), 405)


def test_vanished_file_is_404(tiny_bundle, tmp_path):
    photo = make_image(tmp_path / "m" / "gone.png", 5)
    with open_index(tmp_path / "index", tiny_bundle) as idx:
        idx.index([tmp_path / "m"])
        with TestClient(create_app(idx)) as c:
            hit = c.post("/api/search", data={"text": "x"}).json()["hits"][0]
            assert c.get(hit["media_url"]).status_code == 200
            photo.unlink()
            assert "no longer on disk" in assert_error(c.get(hit["media_url"]), 404)
            assert_error(c.get(hit["thumb_url"]), 404)


# ------------------------------------------------------------------ access token

@pytest.fixture(scope="module")
def token_client(index):
    with TestClient(create_app(index, token=TOKEN)) as c:
        yield c


@pytest.mark.parametrize("request_args", [
    ("GET", "/api/status", {}),
    ("GET", "/api/media/1", {}),
    ("GET", "/api/thumb/1", {}),
    ("POST", "/api/search", {"data": {"text": "dog"}}),
])
def test_token_is_required_on_every_api_call(token_client, request_args):
    method, url, kwargs = request_args
    assert_error(token_client.request(method, url, **kwargs), 401)
    assert_error(token_client.request(method, url, headers={"Authorization": "Bearer wrong"}, **kwargs), 401)
    assert_error(token_client.request(method, url + "?token=wrong", **kwargs), 401)
    ok = token_client.request(method, url, headers={"Authorization": f"Bearer {TOKEN}"}, **kwargs)
    assert ok.status_code in (200, 404), ok.text  # 404: id 1 may be a recording (no thumbnail)
    assert token_client.request(method, f"{url}?token={TOKEN}", **kwargs).status_code == ok.status_code


def test_token_in_query_serves_media_for_img_and_audio_tags(token_client, media):
    hits = token_client.post("/api/search", data={"text": "x"}, headers={"Authorization": f"Bearer {TOKEN}"}).json()["hits"]
    image = next(h for h in hits if h["kind"] == "image")
    assert token_client.get(f"{image['thumb_url']}?token={TOKEN}").status_code == 200
    assert token_client.get(f"{image['media_url']}?token={TOKEN}").content == Path(image["path"]).read_bytes()


def test_page_and_openapi_need_no_token(token_client):
    assert token_client.get("/").status_code == 200  # the page reads the token from its own URL
    assert token_client.get("/static/app.js").status_code == 200
    assert token_client.get("/openapi.json").status_code == 200


def test_no_token_configured_means_open(client):
    assert client.get("/api/status").status_code == 200


# ------------------------------------------------------------------ helpers and the command

def test_sniff_recognises_common_formats(media):
    assert sniff((media / "photos" / "big.png").read_bytes()) == "image"
    assert sniff((media / "photos" / "b.jpg").read_bytes()) == "image"
    assert sniff((media / "photos" / "c.webp").read_bytes()) == "image"
    assert sniff((media / "voice" / "clip0.wav").read_bytes()) == "audio"
    assert sniff((media / "voice" / "memo.webm").read_bytes()) == "audio"
    assert sniff(b"hello world\n") == "text"
    assert sniff(bytes(range(256))) is None


def test_serve_command_help_and_url():
    result = CliRunner().invoke(serve_cmd, ["--help"])
    assert result.exit_code == 0
    for option in ("--index", "--host", "--port", "--token", "--max-upload-mb", "--read-timeout", "--max-uploads",
                   "--max-searches", "--device"):
        assert option in result.output
    assert page_url("127.0.0.1", 8000) == "http://127.0.0.1:8000/"
    assert page_url("0.0.0.0", 80) == "http://127.0.0.1:80/"
    assert page_url("::1", 8080) == "http://[::1]:8080/"
    assert CliRunner().invoke(serve_cmd, ["--port", "0"]).exit_code == 2
