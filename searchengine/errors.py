"""One exception tree for the whole library: callers catch SearchEngineError or a branch of it.

Builtin errors (ValueError, OSError, ...) are caught where they arise and raised again as one of
these, with a message a person can act on.
"""


class SearchEngineError(Exception):
    """Base of every error the library raises on purpose."""


class MediaError(SearchEngineError):
    """A media file or buffer could not be used."""


class UnsupportedMedia(MediaError):
    """The file type is not one the engine indexes."""


class DecodeError(MediaError):
    """The file claims a supported type but cannot be decoded (corrupt, truncated, empty)."""


class MediaTooLarge(MediaError):
    """The media exceeds a safety limit (decompression bomb, overlong audio)."""


class BundleError(SearchEngineError):
    """A model bundle cannot be found, loaded or used."""


class BundleNotFound(BundleError):
    """No bundle of that name in the registry and no bundle directory at that path."""


class WeightsMissing(BundleError):
    """Weights a bundle needs are not on disk and cannot be fetched."""


class BundleMismatch(SearchEngineError):
    """The index was built with a different bundle than the one asked for."""


class IndexStateError(SearchEngineError):
    """The index directory is missing, unreadable or inconsistent beyond repair."""


class ArgumentError(SearchEngineError):
    """A library call got an argument it cannot use (wrong type or value): the caller's mistake."""


class PathNotFound(SearchEngineError):
    """A folder or file given to index does not exist (and the index holds nothing from it)."""


class StorageError(SearchEngineError):
    """The disk refused a write (full, over quota, read-only); the index is left as it was."""


class ClusterError(SearchEngineError):
    """Ray is missing, cannot be started or joined, or its workers died more often than a batch is retried."""


class RecordingError(SearchEngineError):
    """No microphone to record from (no input device, no sound server), or it failed while recording."""


class QueryError(ArgumentError):
    """A search request is malformed (no query, several queries, bad kind or k)."""


class TrainingError(SearchEngineError):
    """Training or evaluation cannot proceed (bad manifest, empty split)."""
