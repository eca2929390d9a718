"""Cross-modal search: find photos by speaking, and spoken recordings by photo."""

from . import errors
from .bundles import Bundle, list_bundles, load_bundle
from .index import Index, default_index_dir, open_index
from .types import Hit, IndexReport, IndexStatus, Kind, Skipped

__all__ = ["Bundle", "Hit", "Index", "IndexReport", "IndexStatus", "Kind", "Skipped", "default_index_dir",
           "errors", "list_bundles", "load_bundle", "open_index"]
