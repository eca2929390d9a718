"""The HTTP API and the search page: parse each request, call the Index, shape the JSON. No search logic here."""

from __future__ import annotations

import dataclasses
import hmac
import logging
import re
import typing
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, create_model
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import errors
from ..fileio import atomic_write
from ..index import Index
from ..media import content_type, thumbnail_jpeg
from ..types import KIND_FILTERS, Hit
from .controls import FIELDS as STEERING_FIELDS
from .limits import Gate, Limits
from .uploads import DEFAULT_K, MAX_K, ApiError, SearchForm

log = logging.getLogger("searchengine.server")
STATIC_DIR = Path(__file__).parent / "static"
THUMB_SIDE = 256
ID_PATTERN = re.compile(r"[0-9]{1,18}")  # ids are SQLite rowids; longer digit strings overflow int64
# Library errors -> HTTP status; the first matching class wins, so subclasses come first.
ERROR_STATUS = ((errors.ArgumentError, 400), (errors.MediaTooLarge, 413), (errors.UnsupportedMedia, 415),
                (errors.DecodeError, 422), (errors.MediaError, 422), (errors.BundleError, 503),
                (errors.BundleMismatch, 503), (errors.IndexStateError, 503), (errors.StorageError, 507))


def _hit_schema() -> type[BaseModel]:
    """One result as the API returns it: Hit's fields plus the URLs (documentation only)."""
    hints = typing.get_type_hints(Hit)
    fields = {f.name: (hints[f.name], ... if f.default is dataclasses.MISSING else f.default)
              for f in dataclasses.fields(Hit)}
    return create_model("HitOut", media_url=(str, ...), thumb_url=(str | None, None), **fields)


HitOut = _hit_schema()


class SearchOut(BaseModel):
    """The search response (documentation only)."""

    hits: list[HitOut]
    offset: int = 0
    more: bool = False
    query_transcript: str | None = None
    query_paths: list[str] | None = None


class ErrorOut(BaseModel):
    """Every error response."""

    error: str


SEARCH_FORM = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object",
    "properties": {
        "audio": {"type": "string", "format": "binary", "description": "Spoken query (wav, webm/opus, mp3, ...)."},
        "image": {"type": "string", "format": "binary", "description": "Image query."},
        "text": {"type": "string", "description": "Typed query."},
        "kind": {"type": "string", "enum": list(KIND_FILTERS), "default": "any"},
        "k": {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": DEFAULT_K},
        **{name: {**schema, "description": text} for name, (schema, text) in STEERING_FIELDS.items()}},
    "description": "Exactly one of audio, image or text; hits are ranked by calibrated score."}}}}}
ERRORS_DOC = {code: {"model": ErrorOut} for code in (400, 401, 408, 413, 415, 422, 503, 507)}


def create_app(index: Index, *, token: str | None = None, max_upload_bytes: int = 25 * 2**20,
               limits: Limits | None = None) -> FastAPI:
    """The FastAPI app serving `index`: the JSON API under /api, the page at /."""
    app = FastAPI(title="searchengine", version="0.1.0",
                  description="Find photos by speaking, and spoken recordings by photo.")
    _install_error_handlers(app)
    app.include_router(Api(index, max_upload_bytes, limits or Limits()).router())
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

    def __init__(self, index: Index, max_upload_bytes: int, limits: Limits):
        self.index = index
        self.limits = limits
        self.form = SearchForm(max_upload_bytes, limits.body_timeout)
        self.thumb_dir = index.path / "thumbs"
        self.uploads = Gate(limits.max_uploads, f"the server is busy: {limits.max_uploads} searches are already"
                            " being received or run; try again in a moment")
        # Decoding (query uploads, thumbnails) is where memory goes: a 12 KB PNG can decode to gigabytes.
        self.decodes = Gate(limits.max_searches, "the server is busy decoding other queries; try again in a moment")

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
        async with self.uploads.enter_now():  # refused before the body is read, so a flood costs nothing
            query, kind, k, steering = await self.form.parse(request)
            try:
                async with self.decodes.enter_within(self.limits.search_wait):
                    result = await run_in_threadpool(lambda: self.index.search(**query, kind=kind, k=k, **steering))
            except errors.MediaError as exc:
                raise ApiError(error_status(exc), f"could not use the `{next(iter(query))}` upload: {exc}") from exc
        body = result.to_dict()
        body["hits"] = [hit_json(h) for h in result]
        if not result.transcript:  # the cascade heard nothing: no empty transcript to show
            body.pop("query_transcript", None)
        return JSONResponse(body)

    async def media(self, file_id: str) -> FileResponse:
        """Stream an indexed file; FileResponse answers Range requests with 206."""
        path, _ = await run_in_threadpool(self._lookup, file_id)
        return FileResponse(path, media_type=content_type(path))

    async def thumb(self, file_id: str) -> FileResponse:
        """A JPEG at most THUMB_SIDE pixels on its long side, made once and kept in <index>/thumbs."""
        path, kind = await run_in_threadpool(self._lookup, file_id)
        if kind != "image":
            raise ApiError(404, f"file {file_id} is a recording: it has no thumbnail")
        cached = await run_in_threadpool(self._thumb_path, int(file_id), path)
        if not cached.is_file():  # only making one decodes the photo: that waits for a decode slot
            async with self.decodes.enter_within(self.limits.search_wait):
                await run_in_threadpool(self._make_thumb, int(file_id), path, cached)
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

    def _thumb_path(self, file_id: int, source: Path) -> Path:
        """Where the cached thumbnail lives, keyed by id, mtime and size so an edited photo gets a new one."""
        st = source.stat()
        return self.thumb_dir / f"{file_id}-{st.st_mtime_ns}-{st.st_size}.jpg"

    def _make_thumb(self, file_id: int, source: Path, target: Path) -> None:
        if target.is_file():  # made by a request that held the slot before this one
            return
        data = thumbnail_jpeg(source, THUMB_SIDE)
        self.thumb_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.thumb_dir.glob(f"{file_id}-*.jpg"):
            stale.unlink(missing_ok=True)
        atomic_write(target, data)


def hit_json(hit: Hit) -> dict:
    """The CLI's `search --json` fields plus the URLs the page needs."""
    out = hit.to_dict()
    out["media_url"] = f"/api/media/{hit.id}"
    if hit.kind == "image":
        out["thumb_url"] = f"/api/thumb/{hit.id}"
    return out


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
    app.add_exception_handler(ApiError, lambda _r, exc: _error(exc.status, exc.message, exc.headers))
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(errors.SearchEngineError, _engine_error)
    app.add_exception_handler(Exception, lambda _r, exc: _error(500, f"internal error: {type(exc).__name__}"))


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _client_gone(request: Request, _exc: ClientDisconnect) -> JSONResponse:
    """A client that left mid-upload is routine (a closed tab, a lost network): one line, no traceback.
    Nobody reads this answer; uvicorn drops what is sent to a closed connection."""
    log.info("client %s went away during %s %s", _client(request), request.method, request.url.path)
    return _error(400, "the client went away before its request was read")


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "?"


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
