"""Reading a search request: size- and time-limited form parsing, upload type checks, the kind and k fields."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser

from ..errors import QueryError
from ..media import sniff
from ..search import QUERY_FIELDS, one_query
from ..types import KIND_FILTERS
from .controls import ControlError, steering_fields

MAX_K = 200
DEFAULT_K = 12
FORM_OVERHEAD = 64 * 1024  # multipart boundaries, part headers and the small fields around the upload


class ApiError(Exception):
    """An error answered as JSON `{"error": message}` with an HTTP status."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class UploadTooLarge(MultiPartException):
    """The request body passed the upload limit (a MultiPartException so the parser closes its files)."""


class BodyStalled(Exception):
    """No piece of the request body arrived within the body timeout."""


class BodyTruncated(Exception):
    """The body ended (the client half-closed) before the bytes its Content-Length promised."""


class CheckedMultiPartParser(MultiPartParser):
    """Starlette's parser, noting whether the closing boundary came: without it a form is cut off, not empty."""

    ended = False

    def on_end(self) -> None:
        self.ended = True


class SearchForm:
    """Parses one search request within an upload limit and a body timeout: ({field: value}, kind, k, steering)."""

    def __init__(self, max_upload_bytes: int, body_timeout: float = 20.0):
        self.max_upload_bytes = max_upload_bytes
        self.body_timeout = body_timeout

    async def parse(self, request: Request) -> tuple[dict, str, int, dict]:
        form = await self._read(request)
        try:
            return await self._query(form)
        finally:
            await form.close()

    async def _read(self, request: Request) -> FormData:
        """Parse the form while counting bytes, so a lying or missing Content-Length cannot pass the limit.

        A client that goes away mid-body raises starlette's ClientDisconnect, which the app answers quietly."""
        limit = self.max_upload_bytes + FORM_OVERHEAD
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ApiError(413, self._too_large())
        if declared in ("", "0") and "content-type" not in request.headers:
            return FormData()  # an empty POST: answered below as "no query", not as a wrong type
        body = _limited(request.stream(), limit, self._too_large(), self.body_timeout,
                        int(declared) if declared.isdigit() else None)
        parser = _form_parser(request, body)
        try:
            form = await parser.parse()
        except UploadTooLarge as exc:
            raise ApiError(413, exc.message) from exc
        except MultiPartException as exc:
            raise ApiError(400, f"malformed form data: {exc.message}") from exc
        except BodyStalled as exc:  # "close": the rest of a stalled body is not worth waiting for
            raise ApiError(408, str(exc), {"Connection": "close"}) from exc
        except BodyTruncated as exc:
            raise ApiError(400, str(exc), {"Connection": "close"}) from exc
        if isinstance(parser, CheckedMultiPartParser) and not parser.ended:
            await form.close()
            raise ApiError(400, "malformed form data: the body ends before the closing boundary"
                           " (--<boundary>--); the upload was cut off")
        return form

    def _too_large(self) -> str:
        return f"upload too large: the limit is {self.max_upload_bytes / 2**20:.1f} MiB"

    async def _query(self, form: FormData) -> tuple[dict, str, int, dict]:
        """({field: value}, kind, k, Index.search's steering arguments) from the form, or ApiError."""
        try:
            field, _ = one_query(**{f: form.get(f) for f in QUERY_FIELDS})
        except QueryError as exc:
            raise ApiError(400, str(exc)) from exc
        values = form.getlist(field)
        if len(values) > 1:
            raise ApiError(400, f"give one {field} query, not {len(values)}")
        value = await self._value(field, values[0])
        try:
            steering = steering_fields(form)
        except ControlError as exc:
            raise ApiError(400, str(exc)) from exc
        return {field: value}, _parse_kind(form.get("kind")), _parse_k(form.get("k")), steering

    async def _value(self, field: str, value: str | UploadFile) -> str | bytes:
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
    if kind not in KIND_FILTERS:
        raise ApiError(400, f"kind must be one of {', '.join(KIND_FILTERS)}")
    return kind


def _parse_k(raw) -> int:
    if raw in (None, ""):
        return DEFAULT_K
    if not isinstance(raw, str) or not raw.strip().isdigit() or not 1 <= int(raw) <= MAX_K:
        raise ApiError(400, f"k must be a whole number from 1 to {MAX_K}")
    return int(raw)


async def _limited(stream: AsyncIterator[bytes], limit: int, message: str, timeout: float,
                   declared: int | None) -> AsyncIterator[bytes]:
    """Pass the body through, failing as soon as more than `limit` bytes arrived, a piece takes longer than
    `timeout` seconds (a stalled client must not hold its slot forever) or it ends short of `declared`."""
    total, pieces = 0, stream.__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(pieces.__anext__(), timeout)
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise BodyStalled(f"request body timed out: nothing arrived for {timeout:g} s") from None
        total += len(chunk)
        if total > limit:
            raise UploadTooLarge(message)
        yield chunk
    if declared is not None and total < declared:
        raise BodyTruncated(f"request body ended after {total} of the {declared} bytes its Content-Length gave")


def _form_parser(request: Request, stream: AsyncIterator[bytes]) -> MultiPartParser | FormParser:
    ctype = request.headers.get("content-type", "").lower()
    if ctype.startswith("multipart/form-data"):
        return CheckedMultiPartParser(request.headers, stream, max_files=4, max_fields=16)
    if ctype.startswith("application/x-www-form-urlencoded"):
        return FormParser(request.headers, stream)
    raise ApiError(415, "send the query as multipart/form-data (fields audio, image or text; kind; k)")
