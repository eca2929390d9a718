"""The only module that decodes media: images through Pillow, audio through PyAV (FFmpeg in the wheel)."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Union

import av
import numpy as np
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DecodeError, MediaTooLarge, UnsupportedMedia
from .types import SAMPLE_RATE, Kind

# The file types the engine indexes, with the Content-Type each is served as (mimetypes lacks
# several audio types, .opus and .m4a on some systems, and calls .webm video).
CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
                 ".bmp": "image/bmp", ".gif": "image/gif", ".tif": "image/tiff", ".tiff": "image/tiff",
                 ".heic": "image/heic", ".heif": "image/heif",
                 ".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg",
                 ".oga": "audio/ogg", ".opus": "audio/ogg", ".m4a": "audio/mp4", ".aac": "audio/aac",
                 ".webm": "audio/webm"}
IMAGE_EXTENSIONS = frozenset(ext for ext, ctype in CONTENT_TYPES.items() if ctype.startswith("image/"))
AUDIO_EXTENSIONS = frozenset(ext for ext, ctype in CONTENT_TYPES.items() if ctype.startswith("audio/"))
# The first bytes of the formats above (what a file says it is, whatever its name).
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
AUDIO_MAGIC = (b"fLaC", b"ID3", b"OggS", b"\x1a\x45\xdf\xa3")
# ISO media files (bytes 4-8 "ftyp") are images when their brand is one of HEIF's, else audio (.m4a).
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
# Pillow's own names for the formats we accept; MPO is how Pillow reports many camera JPEGs.
_IMAGE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF", "HEIF"})
# Phones save photos as HEIC: pillow-heif teaches Pillow to open them (it applies their rotation itself).
pillow_heif.register_heif_opener()
MAX_IMAGE_PIXELS = 100_000_000
MAX_AUDIO_SECONDS = 600.0
MIN_AUDIO_SECONDS = 0.1

ImageSource = Union[str, Path, bytes, Image.Image]
AudioSource = Union[str, Path, bytes, np.ndarray]


@dataclass(frozen=True)
class AudioClip:
    """Mono float32 samples at SAMPLE_RATE, and what is wrong with them if they decoded only in part."""

    samples: np.ndarray
    warning: str | None = None

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / SAMPLE_RATE


def kind_of_path(path: str | Path) -> Kind | None:
    """The media kind a file name promises, or None for files the engine ignores."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return Kind.IMAGE
    if suffix in AUDIO_EXTENSIONS:
        return Kind.AUDIO
    return None


def content_type(path: str | Path) -> str:
    """The Content-Type to serve a media file with."""
    return CONTENT_TYPES.get(Path(path).suffix.lower(), "application/octet-stream")


def sniff(data: bytes) -> str | None:
    """"image", "audio" or "text" from the first bytes, or None when unsure (the decoder decides)."""
    head = data[:4096]
    if b"\x00" not in head and _is_utf8(head):
        return "text"
    if head.startswith(IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP") or _is_heif(head):
        return "image"
    if head.startswith(AUDIO_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WAVE") or head[4:8] == b"ftyp":
        return "audio"
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # MPEG/ADTS frame sync
        return "audio"
    return None


def _is_heif(head: bytes) -> bool:
    return head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS


def _is_utf8(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a character cut at the 4 KiB boundary is still text
    return True


def _check_source(source, allowed: tuple, what: str) -> None:
    if not isinstance(source, allowed):
        raise UnsupportedMedia(f"cannot read {what} from a {type(source).__name__}: give a path, bytes"
                               + (" or a PIL image" if what == "an image" else " or a numpy waveform"))


def load_image(source: ImageSource, max_pixels: int = MAX_IMAGE_PIXELS, min_side: int | None = None,
               reserve=None) -> Image.Image:
    """Decode an image, apply its EXIF orientation and return it as RGB.

    min_side: the encoder's input size. The image is then decoded small (JPEG's DCT scaling) and
    shrunk so its short side keeps at least twice that: a 49-MP photo costs a few MB, not 150.
    The size before shrinking is kept in `image.info["original_size"]`.
    reserve: called with the bytes the decode may hold at its peak (read from the header: JPEG
    decodes small, other formats whole at four bytes a pixel); it returns a context the decode runs
    in, so a caller can keep concurrent decodes within a memory budget.
    Raises DecodeError for unreadable data, UnsupportedMedia for other formats and
    MediaTooLarge above `max_pixels` (a decompression bomb is refused before decoding).
    """
    _check_source(source, (str, Path, bytes, Image.Image), "an image")
    if isinstance(source, Image.Image):
        return _to_rgb(source)
    try:
        with _open_image(source, max_pixels) as img:
            if img.format not in _IMAGE_FORMATS:
                raise UnsupportedMedia(f"unsupported image format {img.format}")
            img.seek(0)  # first frame of an animation
            size = _display_size(img)
            if min_side:
                img.draft("RGB", _scaled(img.size, 2 * min_side))
            cost = 0 if img.format in ("JPEG", "MPO") else img.width * img.height * 4
            with reserve(cost) if reserve else contextlib.nullcontext():
                img.load()  # decode now so truncation surfaces here, not later
                out = _to_rgb(ImageOps.exif_transpose(_shrink(img, 2 * min_side) if min_side else img))
            out.info["original_size"] = size
            return out
    except Image.DecompressionBombError as exc:
        raise MediaTooLarge(f"image too large: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DecodeError(f"not a readable image: {_short(exc)}") from exc


def _open_image(source: str | Path | bytes, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and refuse oversized images before any pixel is decoded.

    The check is explicit rather than Pillow's warning filter: decoding runs in threads, and
    warnings filters are process-wide state.
    """
    img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    if img.width * img.height > max_pixels:
        img.close()
        raise MediaTooLarge(f"image too large: {img.width}x{img.height} pixels exceeds the limit of {max_pixels}")
    return img


def _display_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) as shown: EXIF orientations 5-8 turn the picture a quarter."""
    try:
        turned = img.getexif().get(0x0112) in (5, 6, 7, 8)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the picture
        turned = False
    return (img.height, img.width) if turned else (img.width, img.height)


def _scaled(size: tuple[int, int], short: int) -> tuple[int, int]:
    """`size` scaled so its short side is `short` (never up)."""
    scale = min(1.0, short / max(1, min(size)))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _shrink(img: Image.Image, short: int) -> Image.Image:
    """A whole-factor reduction keeping the short side at least `short` (cheap, before RGB conversion)."""
    factor = min(img.size) // short
    if factor < 2:
        return img
    if img.mode in ("P", "1"):  # palettes cannot be averaged; a nearest-pixel pick stays small
        return img.resize((img.width // factor, img.height // factor), Image.NEAREST)
    try:
        return img.reduce(factor)
    except ValueError:  # a mode reduce() does not handle
        return img.convert("RGBA").reduce(factor)


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB with transparency composited onto white (black would hide dark subjects)."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def load_audio(source: AudioSource, max_seconds: float = MAX_AUDIO_SECONDS,
               sample_rate: int | None = None) -> AudioClip:
    """Decode any FFmpeg-readable audio (wav, flac, mp3, ogg, opus, m4a, webm) to mono 16 kHz float32.

    An ndarray is taken as samples at `sample_rate` (default 16 kHz) and resampled if needed.
    """
    _check_source(source, (str, Path, bytes, np.ndarray), "audio")
    if isinstance(source, np.ndarray):
        samples = _resample_array(_waveform(source), sample_rate or SAMPLE_RATE)
    else:
        samples = _decode_audio_file(source, max_seconds)
    if samples.size == 0:
        raise DecodeError("no audio samples")
    if samples.size > max_seconds * SAMPLE_RATE:
        raise MediaTooLarge(f"audio longer than {max_seconds:.0f} s")
    warning = None if isinstance(source, np.ndarray) else _audio_warning(source, samples.size / SAMPLE_RATE)
    return AudioClip(np.ascontiguousarray(samples, dtype=np.float32), warning)


def _audio_warning(source: str | Path | bytes, seconds: float) -> str | None:
    """What makes a decoded recording suspect: cut short (a WAV header promising more), or too short to hold a word."""
    announced = _wav_announced_seconds(source)
    if announced is not None and seconds < announced - 0.05:
        return f"truncated: {seconds:.2f} s of audio where the header announces {announced:.2f} s"
    if seconds < MIN_AUDIO_SECONDS:
        return f"only {seconds * 1000:.1f} ms of audio: too short to hold speech"
    return None


def _read_head(path: Path, n: int) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(n)


def _wav_announced_seconds(source: str | Path | bytes) -> float | None:
    """Seconds a RIFF/WAVE header says its data chunk holds, or None for other files (FFmpeg trusts the size)."""
    try:
        head = source[:4096] if isinstance(source, bytes) else _read_head(Path(source), 4096)
    except OSError:
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, None
    while pos + 8 <= len(head):
        chunk, size = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if chunk == b"fmt " and pos + 16 <= len(head):
            byte_rate = int.from_bytes(head[pos + 16:pos + 20], "little")
        if chunk == b"data":
            return size / byte_rate if byte_rate and size < 0xFFFFFFF0 else None  # streaming writers put 0xFFFFFFFF
        pos += 8 + size + (size & 1)
    return None


def _decode_audio_file(source: str | Path | bytes, max_seconds: float) -> np.ndarray:
    """Demux the first audio stream and resample it as it decodes (no full-rate copy in memory)."""
    handle = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        with av.open(handle, mode="r") as container:
            if not container.streams.audio:
                raise DecodeError("no audio stream")
            return _decode_stream(container, max_seconds)
    except av.FFmpegError as exc:
        raise DecodeError(f"not readable audio: {_short(exc)}") from exc
    except (OSError, ValueError, EOFError) as exc:
        raise DecodeError(f"not readable audio: {_short(exc)}") from exc


def _decode_stream(container: av.container.InputContainer, max_seconds: float) -> np.ndarray:
    """Decode and resample frame by frame, stopping once the length limit is passed."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    limit = int(max_seconds * SAMPLE_RATE) + 1
    chunks: list[np.ndarray] = []
    total = 0
    for frame in container.decode(container.streams.audio[0]):
        for out in resampler.resample(frame):
            chunks.append(out.to_ndarray().reshape(-1))
            total += chunks[-1].size
        if total > limit:
            break
    else:
        chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def _waveform(array: np.ndarray) -> np.ndarray:
    """A numeric [time] or [channels, time] array as float32; DecodeError for anything else."""
    if array.ndim not in (1, 2) or not np.issubdtype(array.dtype, np.number):
        raise DecodeError(f"a waveform must be a 1-D or 2-D numeric array, not {array.ndim}-D {array.dtype}")
    return np.asarray(array, dtype=np.float32)


def _resample_array(samples: np.ndarray, rate: int) -> np.ndarray:
    """Mix down to mono and resample an in-memory waveform with FFmpeg's resampler."""
    if samples.ndim == 2:
        samples = samples.mean(axis=0 if samples.shape[0] <= 8 else 1)
    if rate == SAMPLE_RATE or samples.size == 0:
        return samples
    frame = av.AudioFrame.from_ndarray(samples[None, :], format="flt", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    outs = list(resampler.resample(frame)) + list(resampler.resample(None))
    return np.concatenate([o.to_ndarray().reshape(-1) for o in outs])


# EXIF: the Exif sub-IFD, and in it when the picture was taken and that time's UTC offset.
_EXIF_IFD, _DATETIME_ORIGINAL, _OFFSET_TIME_ORIGINAL = 0x8769, 0x9003, 0x9011


def capture_time(path: str | Path) -> float | None:
    """When a photo was taken, as POSIX seconds: its EXIF DateTimeOriginal, or None when it does not say.

    Reads the header only. EXIF times name no time zone unless OffsetTimeOriginal gives one; without
    it they are taken as local time (the camera's clock was set to the owner's). A file whose
    metadata cannot be read simply has no capture time.
    """
    try:
        with Image.open(path) as img:
            exif = img.getexif().get_ifd(_EXIF_IFD)
            taken, offset = exif.get(_DATETIME_ORIGINAL), exif.get(_OFFSET_TIME_ORIGINAL)
    except Exception:  # noqa: BLE001 - any decoder complaint about metadata means "unknown", not a failure
        return None
    return _exif_time(taken, offset)


def _exif_time(taken, offset) -> float | None:
    """POSIX seconds from EXIF's "YYYY:MM:DD HH:MM:SS" (and "+HH:MM"), or None for blanks and junk."""
    if not isinstance(taken, str):
        return None
    try:
        when = datetime.strptime(taken.strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
        if isinstance(offset, str) and offset.strip("\x00 "):
            when = when.replace(tzinfo=datetime.strptime(offset.strip("\x00 "), "%z").tzinfo)
        return when.timestamp()
    except (ValueError, OverflowError, OSError):  # "0000:00:00 00:00:00", an odd offset, year 1
        return None


def thumbnail_jpeg(source: ImageSource, max_side: int = 256, quality: int = 85) -> bytes:
    """A small JPEG of an image, oriented and RGB, longest side at most `max_side`."""
    img = load_image(source, min_side=max_side)
    img.thumbnail((max_side, max_side), Image.LANCZOS)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _short(exc: BaseException) -> str:
    """One line of an exception, for skip reasons people read."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


# Lossy codecs a browser or phone records with, and the container each travels in.
LOSSY_CODECS = {"opus": ("libopus", "ogg"), "mp3": ("libmp3lame", "mp3")}


def encode_audio(samples: np.ndarray, codec: str = "opus", bitrate: int = 24000) -> bytes:
    """16 kHz mono float32 samples compressed as a browser (Opus in Ogg) or a phone (MP3) would send them.

    For robustness training and tests: `load_audio(encode_audio(x))` is x after a lossy round trip.
    """
    if codec not in LOSSY_CODECS:
        raise UnsupportedMedia(f"cannot encode {codec!r}; known: {', '.join(LOSSY_CODECS)}")
    encoder, container_format = LOSSY_CODECS[codec]
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as container:
        stream = container.add_stream(encoder, rate=SAMPLE_RATE, layout="mono")
        stream.bit_rate = int(bitrate)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, np.float32)[None, :], format="flt", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buffer.getvalue()
