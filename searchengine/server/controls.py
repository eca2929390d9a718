"""The search form's steering fields (paging, threshold, filters) as Index.search arguments.

Only their shape is checked here (numbers, flags); what they mean (dates, file types, folders) is
the library's to judge, and its QueryError becomes a 400 like every ArgumentError.
"""

from __future__ import annotations

import math

from starlette.datastructures import FormData

from ..types import DEFAULT_MIN_SCORE

MAX_OFFSET = 10_000
TRUE, FALSE = ("1", "true", "on", "yes"), ("", "0", "false", "off", "no")
# The form fields, for the API description: name -> (JSON schema, description).
FIELDS = {
    "offset": ({"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
               "Skip this many hits (paging; the response's `more` says whether another page follows)."),
    "min_score": ({"type": "string"}, "Leave out hits whose calibrated score is lower: a number, or `default` "
                  f"for the documented threshold {DEFAULT_MIN_SCORE:g}."),
    "under": ({"type": "array", "items": {"type": "string"}}, "Only files in this folder (repeat the field for more)."),
    "since": ({"type": "string"}, "Only photos taken (else files modified) on or after this date (YYYY-MM-DD) "
              "or ISO time."),
    "until": ({"type": "string"}, "Only photos taken (else files modified) up to this date (the whole day) "
              "or before this ISO time."),
    "type": ({"type": "array", "items": {"type": "string"}}, "Only files of this type, e.g. jpg or wav (repeatable)."),
    "exclude_query": ({"type": "boolean", "default": False},
                      "Leave out indexed copies of the query file (else they come first, marked `is_query`)."),
    "moments": ({"type": "boolean", "default": False},
                "Every matching moment of a long recording (each hit with its `start` and `end`), not only its best."),
}


class ControlError(ValueError):
    """A steering field that is not the shape it must be; the message says which and why."""


def steering_fields(form: FormData) -> dict:
    """Keyword arguments for Index.search from the form (absent fields take the library's defaults)."""
    return {"offset": _offset(form.get("offset")), "min_score": _min_score(form.get("min_score")),
            "under": _texts(form, "under"), "since": _text(form, "since"), "until": _text(form, "until"),
            "types": _texts(form, "type"), "exclude_query": _flag(form.get("exclude_query")),
            "moments": _flag(form.get("moments"), "moments")}


def _offset(raw) -> int:
    if raw in (None, ""):
        return 0
    if not isinstance(raw, str) or not raw.strip().isdigit() or int(raw) > MAX_OFFSET:
        raise ControlError(f"offset must be a whole number from 0 to {MAX_OFFSET}")
    return int(raw)


def _min_score(raw) -> float | None:
    if raw in (None, ""):
        return None
    if isinstance(raw, str) and raw.strip().lower() == "default":
        return DEFAULT_MIN_SCORE
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise ControlError("min_score must be a number (or `default`)")
    return value


def _flag(raw, name: str = "exclude_query") -> bool:
    value = raw.strip().lower() if isinstance(raw, str) else raw
    if value is None or value in FALSE:
        return False
    if value in TRUE:
        return True
    raise ControlError(f"{name} must be true or false")


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is not None and not isinstance(value, str):
        raise ControlError(f"`{name}` must be a form field, not a file")
    return value or None


def _texts(form: FormData, name: str) -> list[str]:
    values = form.getlist(name)
    if any(not isinstance(v, str) for v in values):
        raise ControlError(f"`{name}` must be form fields, not files")
    return [v for v in values if v.strip()]
