"""Which bundle an index uses: the check before a new index is written, the binding of an existing one.

Both only look at names and files until a model is needed; their errors carry what the command
line needs to print a command that can be run as it stands.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from pathlib import Path

from . import settings
from .bundles.hub import hub_reachable
from .bundles.registry import BUNDLED_BUNDLE, bundle_source, default_bundle_name
from .bundles.weights import bundle_weights, describe_missing
from .errors import BundleMismatch, BundleNotFound, WeightsMissing
from .types import BundleInfo


def check_first_bundle(bundle, clip_weights: str | None = None, whisper_model: str | None = None) -> None:
    """Before a new index is written: WeightsMissing unless its bundle's weights are here.

    Looks at files only (no model loads). The default bundle must have its weights here; a bundle
    named on purpose (argument, environment, config file) may still be fetched from the hub.
    The error carries `suggested_bundle` (the bundle that ships inside the package) and `detail` (what is
    missing), for the CLI's hint.
    """
    if bundle is not None and not isinstance(bundle, (str, os.PathLike)):
        return  # a Bundle the caller loaded
    chosen = settings.resolve("bundle", bundle)
    try:
        states = bundle_weights(chosen.value, clip_weights, whisper_model)
    except BundleNotFound:
        return  # an unknown name is reported when the bundle is first used, as before
    missing = [s for s in states if s.present is False]
    if not missing:
        return
    named = chosen.origin != "default"
    if named and all(s.downloadable for s in missing) and hub_reachable():
        return  # open_clip and faster-whisper fetch them on first use
    which = f"bundle '{chosen.value}'" if named else f"default bundle '{chosen.value}'"
    message = f"the {which} needs weights that are not here:\n{describe_missing(missing)}"
    if chosen.value == BUNDLED_BUNDLE:
        raise WeightsMissing(message)
    exc = WeightsMissing(f"{message}\nOr run now with the bundled model (it knows only the stamp-scenes world, "
                         f"see README): --bundle {BUNDLED_BUNDLE}")
    exc.suggested_bundle, exc.detail = BUNDLED_BUNDLE, message
    raise exc


def rebuild_command(index_path: Path, bundle: str, folders: list[str] | None = None, **flags: str | None) -> str:
    """`searchengine index --rebuild ...` as a shell line (the folders as FOLDER... when not known).

    flags: more options as given on the command line (db="...", clip_weights="..."); None ones are left out.
    """
    words = ["searchengine", "index", "--rebuild", "--index", str(index_path), "--bundle", str(bundle)]
    for key, value in flags.items():
        words += [f"--{key.replace('_', '-')}", str(value)] if value is not None else []
    line = shlex.join(words + [str(Path(f).expanduser().absolute()) for f in folders or []])
    return line if folders else line + " FOLDER..."


def _mismatch(reason: str, index_path: Path, bundle: str) -> BundleMismatch:
    """BundleMismatch with the command that re-embeds; `reason`, `index_path`, `bundle` let the CLI add the folders."""
    exc = BundleMismatch(f"{reason}. To re-embed everything with it, run: {rebuild_command(index_path, bundle)}")
    exc.reason, exc.index_path, exc.bundle = reason, index_path, str(bundle)
    return exc


class BundleBinding:
    """Which bundle an index uses: checked by name at open, loaded once on first use, its weights checked once."""

    def __init__(self, index_path: Path, recorded: Callable[[], BundleInfo | None], requested, load_kwargs: dict):
        self.index_path, self.recorded, self.load_kwargs = index_path, recorded, load_kwargs
        is_ref = requested is None or isinstance(requested, (str, os.PathLike))
        self.ref = requested if is_ref else None  # a name or folder, loaded on first use
        self.loaded = None if is_ref else requested  # a Bundle the caller built

    def check(self, recorded: BundleInfo | None) -> None:
        """BundleMismatch when the caller asked for another bundle than the recorded one (no model loads)."""
        if recorded is None:
            return
        if self.loaded is not None:
            self._check_weights(recorded, self.loaded.info)
        elif self.ref is not None and bundle_source(self.ref) != recorded.source:
            raise _mismatch(f"index {self.index_path} was built with bundle '{recorded.name}' ({recorded.source}); "
                            f"it cannot be searched or extended with '{self.ref}'", self.index_path, self.ref)

    def bundle(self):
        """The loaded bundle (loading it the first time), verified against the index's record."""
        if self.loaded is None:
            recorded = self.recorded()
            self.loaded = _load(self.ref or (recorded.source if recorded else default_bundle_name()), self.load_kwargs)
            self._check_weights(recorded, self.loaded.info)
        return self.loaded

    def bind(self, bundle) -> None:
        """Use this loaded bundle from now on (the one a rebuild just published)."""
        self.ref, self.loaded = None, bundle

    def follow_rebuild(self) -> None:
        """Another process published a rebuild: an index opened without a bundle follows it."""
        if self.ref is None:
            self.loaded = None
        self.check(self.recorded())

    def _check_weights(self, recorded: BundleInfo | None, asked: BundleInfo) -> None:
        if recorded is not None and asked.fingerprint != recorded.fingerprint:
            raise _mismatch(f"index {self.index_path} was built with bundle '{recorded.name}' ({recorded.source}) "
                            f"and other weights than '{asked.name}' has now", self.index_path, asked.source)


def _load(ref, load_kwargs: dict):
    from .bundles.bundle import load_bundle  # torch and open_clip: only when a model is needed

    return load_bundle(ref, **load_kwargs)
