"""Cross-modal search: find photos by speaking, and spoken recordings by photo.

The public names are resolved on first use (PEP 562), so `import searchengine` loads no torch,
FAISS, SQLAlchemy or media decoder: a command that only lists bundles starts at once.
"""

from __future__ import annotations

import importlib

# public name -> the module that defines it
_EXPORTS = {
    "Bundle": "bundles.bundle", "load_bundle": "bundles.bundle", "list_bundles": "bundles.registry",
    "Index": "index", "open_index": "index", "default_index_dir": "index",
    "Hit": "types", "IndexReport": "types", "IndexStatus": "types", "Kind": "types", "ProgressEvent": "types",
    "SearchResult": "types", "Skipped": "types",
}

__all__ = sorted([*_EXPORTS, "errors"])


def __getattr__(name: str):
    if name == "errors":
        return importlib.import_module(".errors", __name__)
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__
