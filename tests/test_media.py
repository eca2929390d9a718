"""Decoding: every listed image and audio format, orientation, limits, and typed errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from media_factory import AUDIO_FORMATS, encode_audio, make_image, tone, write_wav
from searchengine.errors import DecodeError, MediaTooLarge, UnsupportedMedia
from searchengine.media import SAMPLE_RATE, kind_of_path, load_audio, load_image, sniff, thumbnail_jpeg
from searchengine.types import Kind


@pytest.mark.parametrize("suffix", sorted(AUDIO_FORMATS))
def test_every_audio_format_decodes_to_mono_16k(tmp_path, suffix):
    samples = tone(7, seconds=1.5)
    path = tmp_path / f"clip{suffix}"
    write_wav(path, samples) if suffix == ".wav" else encode_audio(path, samples)
    clip = load_audio(path)
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert clip.duration == pytest.approx(1.5, abs=0.08)  # codecs pad a few ms
    assert 0.1 < np.abs(clip.samples).max() <= 1.0


def test_lossless_audio_round_trips(tmp_path):
    samples = tone(3, seconds=1.0)
    clip = load_audio(encode_audio(tmp_path / "a.flac", samples))
    assert np.corrcoef(clip.samples[: len(samples)], samples)[0, 1] > 0.999


def test_audio_from_bytes_and_arrays_resampled(tmp_path):
    path = write_wav(tmp_path / "a.wav", tone(1, 1.0))
    assert load_audio(path.read_bytes()).duration == pytest.approx(1.0, abs=0.01)
    at_48k = np.sin(2 * np.pi * 440 * np.arange(48000) / 48000).astype(np.float32)
    clip = load_audio(at_48k, sample_rate=48000)
    assert len(clip.samples) == pytest.approx(SAMPLE_RATE, abs=100)


@pytest.mark.parametrize("fmt,suffix", [("PNG", ".png"), ("JPEG", ".jpg"), ("WEBP", ".webp"), ("BMP", ".bmp"),
                                        ("GIF", ".gif"), ("TIFF", ".tiff"), ("HEIF", ".heic"), ("HEIF", ".heif")])
def test_every_image_format_decodes_to_rgb(tmp_path, fmt, suffix):
    path = make_image(tmp_path / f"x{suffix}", 5, size=(30, 20), fmt=fmt)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (30, 20)
    assert kind_of_path(path) == Kind.IMAGE


def test_heic_photo_keeps_its_colours_and_is_sniffed_as_an_image(tmp_path):
    path = tmp_path / "phone.heic"
    Image.new("RGB", (64, 48), (200, 20, 20)).save(path, format="HEIF")
    r, g, b = load_image(path).getpixel((10, 10))
    assert r > 170 and g < 60 and b < 60  # lossy, but still red
    assert sniff(path.read_bytes()) == "image"
    m4a = encode_audio(tmp_path / "memo.m4a", tone(2, 0.5))  # the same ISO container family, another brand
    assert sniff(m4a.read_bytes()) == "audio"


def test_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    r, g, b = load_image(tmp_path / "anim.gif").getpixel((4, 4))
    assert r > 200 and b < 50


def test_exif_orientation_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (10, 200, 10))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    assert load_image(tmp_path / "rot.jpg").size == (20, 40)


def test_transparency_composited_on_white(tmp_path):
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert load_image(tmp_path / "clear.png").getpixel((1, 1)) == (255, 255, 255)


def test_decompression_bomb_refused(tmp_path):
    Image.new("L", (2000, 2000)).save(tmp_path / "big.png")
    with pytest.raises(MediaTooLarge):
        load_image(tmp_path / "big.png", max_pixels=1_000_000)


@pytest.mark.parametrize("name,content", [("empty.jpg", b""), ("text.png", b"hello, not an image"),
                                          ("truncated.jpg", None)])
def test_bad_images_raise_decode_error(tmp_path, name, content):
    path = tmp_path / name
    if content is None:
        good = make_image(tmp_path / "good.jpg", 1, size=(200, 200)).read_bytes()
        content = good[: len(good) // 2]
    path.write_bytes(content)
    with pytest.raises(DecodeError):
        load_image(path)


def test_unsupported_image_format(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "x.ico", format="ICO")
    with pytest.raises(UnsupportedMedia):
        load_image((tmp_path / "x.ico").read_bytes())


@pytest.mark.parametrize("content", [b"", b"RIFF\x00\x00junk", b"\x89PNG\r\n\x1a\n not audio"])
def test_bad_audio_raises_decode_error(tmp_path, content):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(DecodeError):
        load_audio(path)


def test_image_named_as_audio_is_a_decode_error(tmp_path):
    path = tmp_path / "photo.mp3"
    path.write_bytes(make_image(tmp_path / "p.png", 1).read_bytes())
    with pytest.raises(DecodeError):
        load_audio(path)


def test_overlong_audio_refused(tmp_path):
    path = write_wav(tmp_path / "long.wav", tone(2, seconds=3.0))
    with pytest.raises(MediaTooLarge):
        load_audio(path, max_seconds=2.0)


def test_thumbnail_is_small_jpeg(tmp_path):
    data = thumbnail_jpeg(make_image(tmp_path / "a.png", 2, size=(600, 300)), max_side=128)
    assert data[:2] == b"\xff\xd8"
    assert tmp_path.joinpath("t.jpg").write_bytes(data) and Image.open(tmp_path / "t.jpg").size == (128, 64)


def test_kind_of_path_ignores_other_files():
    assert kind_of_path("a/b/notes.txt") is None
    assert kind_of_path("X.WEBM") == Kind.AUDIO
