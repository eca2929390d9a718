"""The HTTP API and the search page: parse each request, call the Index, shape the JSON. No search logic here."""

from __future__ import annotations

import hmac
import os
import re
import tempfile
from pathlib import Path
from typing import AsyncIterator

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import errors
from ..index import Index
from ..media import thumbnail_jpeg
from ..types import Hit

STATIC_DIR = Path(__file__).parent / "static"
THUMB_SIDE = 256
MAX_K = 200
KINDS = ("image", "audio", "any")
QUERY_FIELDS = ("audio", "image", "text")
FORM_OVERHEAD = 64 * 1024  # multipart boundaries, part headers and the small fields around the upload
ID_PATTERN = re.compile(r"[0-9]{1,18}")  # ids are SQLite rowids; longer digit strings overflow int64
# mimetypes lacks several audio types (.opus, .m4a on some systems) or calls .webm video.
CONTENT_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg",
                 ".oga": "audio/ogg", ".opus": "audio/ogg", ".m4a": "audio/mp4", ".aac": "audio/aac",
                 ".webm": "audio/webm", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
                 ".webp": "image/webp", ".bmp": "image/bmp", ".gif": "image/gif", ".tif": "image/tiff",
                 ".tiff": "image/tiff"}
# Library errors -> HTTP status; the first matching class wins, so subclasses come first.
ERROR_STATUS = ((errors.QueryError, 400), (errors.MediaTooLarge, 413), (errors.UnsupportedMedia, 415),
                (errors.DecodeError, 422), (errors.MediaError, 422), (errors.BundleError, 503),
                (errors.BundleMismatch, 503), (errors.IndexStateError, 503))
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
AUDIO_MAGIC = (b"fLaC", b"ID3", b"OggS", b"\x1a\x45\xdf\xa3")


class ApiError(Exception):
    """An error answered as JSON `{"error": message}` with an HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class UploadTooLarge(MultiPartException):
    """The request body passed the upload limit (a MultiPartException so the parser closes its files)."""


class HitOut(BaseModel):
    """One result as the API returns it (documentation only)."""

    id: int
    path: str
    kind: str
    score: float
    media_url: str
    thumb_url: str | None = None
    transcript: str | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None


class SearchOut(BaseModel):
    """The search response (documentation only)."""

    hits: list[HitOut]
    query_transcript: str | None = None


class ErrorOut(BaseModel):
    """Every error response."""

    error: str


SEARCH_FORM = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object",
    "properties": {
        "audio": {"type": "string", "format": "binary", "description": "Spoken query (wav, webm/opus, mp3, ...)."},
        "image": {"type": "string", "format": "binary", "description": "Image query."},
        "text": {"type": "string", "description": "Typed query."},
        "kind": {"type": "string", "enum": list(KINDS), "default": "any"},
        "k": {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 12}},
    "description": "Exactly one of audio, image or text."}}}}}
ERRORS_DOC = {code: {"model": ErrorOut} for code in (400, 401, 413, 415, 422, 503)}


def create_app(index: Index, *, token: str | None = None, max_upload_bytes: int = 25 * 2**20) -> FastAPI:
    """The FastAPI app serving `index`: the JSON API under /api, the page at /."""
    app = FastAPI(title="searchengine", version="0.1.0",
                  description="Find photos by speaking, and spoken recordings by photo.")
    _install_error_handlers(app)
    app.include_router(Api(index, max_upload_bytes).router())
    app.add_api_route("/", page, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if token:
        app.add_middleware(TokenGuard, token=token)
    return app


async def page() -> FileResponse:
    """The single-page UI."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


class Api:
    """The /api routes, bound to one Index."""

    def __init__(self, index: Index, max_upload_bytes: int):
        self.index = index
        self.max_upload_bytes = max_upload_bytes
        self.thumb_dir = index.path / "thumbs"

    def router(self) -> APIRouter:
        """The routes, documented for /openapi.json."""
        r = APIRouter(prefix="/api", tags=["api"])
        r.add_api_route("/search", self.search, methods=["POST"], openapi_extra=SEARCH_FORM,
                        responses={200: {"model": SearchOut}, **ERRORS_DOC}, summary="Search by audio, image or text")
        r.add_api_route("/media/{file_id}", self.media, summary="An indexed file (Range requests supported)",
                        responses={200: {"content": {"audio/*": {}, "image/*": {}}}, 404: {"model": ErrorOut}})
        r.add_api_route("/thumb/{file_id}", self.thumb, summary="A JPEG thumbnail of an indexed image",
                        responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": ErrorOut}})
        r.add_api_route("/status", self.status, summary="What the index holds")
        return r

    async def search(self, request: Request) -> JSONResponse:
        """Search with exactly one of the form fields audio, image or text."""
        form = await self._read_form(request)
        try:
            query, kind, k = await self._parse_query(form)
        finally:
            await form.close()
        try:
            hits, transcript = await run_in_threadpool(_run_search, self.index, query, kind, k)
        except errors.MediaError as exc:
            raise ApiError(error_status(exc), f"could not use the `{next(iter(query))}` upload: {exc}") from exc
        body: dict = {"hits": [hit_json(h) for h in hits]}
        if transcript:
            body["query_transcript"] = transcript
        return JSONResponse(body)

    async def _read_form(self, request: Request) -> FormData:
        """Parse the form while counting bytes, so a lying or missing Content-Length cannot pass the limit."""
        limit = self.max_upload_bytes + FORM_OVERHEAD
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ApiError(413, self._too_large())
        if declared in ("", "0") and "content-type" not in request.headers:
            return FormData()  # an empty POST: answered below as "no query", not as a wrong type
        stream = _limited(request.stream(), limit, self._too_large())
        parser = _form_parser(request, stream)
        try:
            return await parser.parse()
        except UploadTooLarge as exc:
            raise ApiError(413, exc.message) from exc
        except MultiPartException as exc:
            raise ApiError(400, f"malformed form data: {exc.message}") from exc

    def _too_large(self) -> str:
        return f"upload too large: the limit is {self.max_upload_bytes / 2**20:.1f} MiB"

    async def _parse_query(self, form: FormData) -> tuple[dict, str, int]:
        """({field: value}, kind, k) from the form, or ApiError."""
        given = [f for f in QUERY_FIELDS if f in form]
        if len(given) != 1:
            raise ApiError(400, "give exactly one query: audio, image or text"
                           + (f" (got {', '.join(given)})" if given else ""))
        field = given[0]
        values = form.getlist(field)
        if len(values) > 1:
            raise ApiError(400, f"give one {field} query, not {len(values)}")
        value = await self._query_value(field, values[0])
        return {field: value}, _parse_kind(form.get("kind")), _parse_k(form.get("k"))

    async def _query_value(self, field: str, value: str | UploadFile) -> str | bytes:
        """The text, or the uploaded bytes checked for size and obvious type mistakes."""
        if field == "text":
            if not isinstance(value, str):
                raise ApiError(400, "`text` must be a form field, not a file")
            return value
        if isinstance(value, str):
            raise ApiError(400, f"`{field}` must be a file upload")
        data = await value.read()
        if len(data) > self.max_upload_bytes:
            raise ApiError(413, self._too_large())
        check_upload_type(field, data)
        return data

    async def media(self, file_id: str) -> FileResponse:
        """Stream an indexed file; FileResponse answers Range requests with 206."""
        path, _ = await run_in_threadpool(self._lookup, file_id)
        return FileResponse(path, media_type=content_type(path))

    async def thumb(self, file_id: str) -> FileResponse:
        """A JPEG at most THUMB_SIDE pixels on its long side, made once and kept in <index>/thumbs."""
        path, kind = await run_in_threadpool(self._lookup, file_id)
        if kind != "image":
            raise ApiError(404, f"file {file_id} is a recording: it has no thumbnail")
        cached = await run_in_threadpool(self._thumb_file, int(file_id), path)
        return FileResponse(cached, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})

    async def status(self) -> dict:
        """Counts per kind, bundle, index type and size, skipped files."""
        return (await run_in_threadpool(self.index.status)).to_dict()

    def _lookup(self, raw_id: str) -> tuple[Path, str]:
        """(path, kind) of an indexed file that is still on disk, else a 404: only ids, never paths."""
        if not ID_PATTERN.fullmatch(raw_id):
            raise ApiError(404, "no indexed file with that id")
        try:
            path, kind = self.index.media(int(raw_id))
        except errors.SearchEngineError as exc:
            raise ApiError(404, str(exc)) from exc
        if not path.is_file():
            raise ApiError(404, f"indexed file {raw_id} is no longer on disk")
        return path, kind

    def _thumb_file(self, file_id: int, source: Path) -> Path:
        """The cached thumbnail, keyed by id, mtime and size so an edited photo gets a new one."""
        st = source.stat()
        target = self.thumb_dir / f"{file_id}-{st.st_mtime_ns}-{st.st_size}.jpg"
        if target.is_file():
            return target
        data = thumbnail_jpeg(source, THUMB_SIDE)
        self.thumb_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.thumb_dir.glob(f"{file_id}-*.jpg"):
            stale.unlink(missing_ok=True)
        _atomic_write(target, data)
        return target


def _run_search(index: Index, query: dict, kind: str, k: int) -> tuple[list[Hit], str | None]:
    """Hits and, where the library reports it, the transcript of a spoken query."""
    with_transcript = getattr(index, "search_with_transcript", None)  # newer library versions
    if with_transcript is not None:
        return with_transcript(**query, kind=kind, k=k)
    return index.search(**query, kind=kind, k=k), None


def hit_json(hit: Hit) -> dict:
    """The CLI's `search --json` fields plus the URLs the page needs."""
    out = hit.to_dict()
    out["media_url"] = f"/api/media/{hit.id}"
    if hit.kind == "image":
        out["thumb_url"] = f"/api/thumb/{hit.id}"
    return out


def content_type(path: Path) -> str:
    """The Content-Type to serve an indexed file with."""
    return CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")


def sniff(data: bytes) -> str | None:
    """"image", "audio" or "text" from the first bytes, or None when unsure (the decoder decides)."""
    head = data[:4096]
    if b"\x00" not in head and _is_utf8(head):
        return "text"
    if head.startswith(IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    if head.startswith(AUDIO_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WAVE") or head[4:8] == b"ftyp":
        return "audio"
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # MPEG/ADTS frame sync
        return "audio"
    return None


def _is_utf8(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a character cut at the 4 KiB boundary is still text
    return True


def check_upload_type(field: str, data: bytes) -> None:
    """415 for uploads that are plainly the wrong kind, with a message saying which field to use."""
    if not data:
        raise ApiError(422, f"the `{field}` upload is empty")
    found = sniff(data)
    expected = "audio" if field == "audio" else "image"
    if found == "text":
        raise ApiError(415, f"the `{field}` upload is a text file, not {'audio' if field == 'audio' else 'an image'};"
                       " send typed queries in the `text` field")
    if found is not None and found != expected:
        raise ApiError(415, f"the `{field}` upload looks like {'an image' if found == 'image' else 'audio'};"
                       f" send it as `{found}`")


def _parse_kind(raw) -> str:
    kind = "any" if raw in (None, "") else raw
    if kind not in KINDS:
        raise ApiError(400, f"kind must be one of {', '.join(KINDS)}")
    return kind


def _parse_k(raw) -> int:
    if raw in (None, ""):
        return 12
    if not isinstance(raw, str) or not raw.strip().isdigit() or not 1 <= int(raw) <= MAX_K:
        raise ApiError(400, f"k must be a whole number from 1 to {MAX_K}")
    return int(raw)


async def _limited(stream: AsyncIterator[bytes], limit: int, message: str) -> AsyncIterator[bytes]:
    """Pass the body through, failing as soon as more than `limit` bytes arrived."""
    total = 0
    async for chunk in stream:
        total += len(chunk)
        if total > limit:
            raise UploadTooLarge(message)
        yield chunk


def _form_parser(request: Request, stream: AsyncIterator[bytes]) -> MultiPartParser | FormParser:
    ctype = request.headers.get("content-type", "").lower()
    if ctype.startswith("multipart/form-data"):
        return MultiPartParser(request.headers, stream, max_files=4, max_fields=16)
    if ctype.startswith("application/x-www-form-urlencoded"):
        return FormParser(request.headers, stream)
    raise ApiError(415, "send the query as multipart/form-data (fields audio, image or text; kind; k)")


def _atomic_write(path: Path, data: bytes) -> None:
    """Write then rename, so a concurrent reader never sees half a thumbnail."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class TokenGuard:
    """ASGI middleware: every /api/ call needs the token as a Bearer header or a ?token= parameter."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/") and not self._allowed(Request(scope)):
            response = JSONResponse({"error": "missing or wrong access token (use Authorization: Bearer <token>"
                                     " or ?token=<token>)"}, 401, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _allowed(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else request.query_params.get("token", "")
        return hmac.compare_digest(given.encode(), self.token)


def _install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as JSON {"error": "..."}."""
    app.add_exception_handler(ApiError, lambda _r, exc: _error(exc.status, exc.message))
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(errors.SearchEngineError, _engine_error)
    app.add_exception_handler(Exception, lambda _r, exc: _error(500, f"internal error: {type(exc).__name__}"))


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return _error(422, f"invalid request: {where} {first.get('msg', '')}".strip())


def error_status(exc: errors.SearchEngineError) -> int:
    """The HTTP status for a library error."""
    return next((code for cls, code in ERROR_STATUS if isinstance(exc, cls)), 500)


async def _engine_error(_request: Request, exc: errors.SearchEngineError) -> JSONResponse:
    return _error(error_status(exc), str(exc))
